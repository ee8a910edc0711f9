#!/usr/bin/env bash
# scripts/gpu-fallback-build.sh: the GPU check's fallback, for when the bundle built on the
# CPU machine cannot run on the GPU machine. Runs ON the GPU machine, in the carried source
# tree, with our Debian packages carried as .deb files (made here by
# `scripts/gpu-bundle.sh --fetch-debs`, into .gpu-debs/; name .gpu-debs in the device
# tool's `carry`). It extracts them with dpkg -x into .gpu-debs/root (never into /),
# configures a Release build for sm_90 against that folder (MPI off: one GPU), builds the
# tests and tools, packs them with gpu-bundle.sh and runs the bundle's run.sh with the
# arguments given (default: every step).
#
#   scripts/gpu-fallback-build.sh [run.sh steps...]
# Environment: BUILD_DIR (default build-device), JOBS (default: all cores), OUT as run.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
debs="$root/.gpu-debs"
sysroot="$debs/root"
build="${BUILD_DIR:-$root/build-device}"
arch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"

compgen -G "$debs/*.deb" >/dev/null || { echo "gpu-fallback-build: no .deb files in $debs (carry .gpu-debs)" >&2; exit 1; }
mkdir -p "$sysroot"
for f in "$debs"/*.deb; do dpkg -x "$f" "$sysroot"; done
# Debian's alternatives links (libopenblas.so -> /etc/alternatives/...) are made by maintainer
# scripts, which dpkg -x does not run: point them at the OpenMP build directly.
blas="$sysroot/usr/lib/$arch/openblas-openmp"
ln -sf "$blas/libopenblas.so.0" "$sysroot/usr/lib/$arch/libopenblas.so.0"
ln -sf "$blas/libopenblas.so.0" "$sysroot/usr/lib/$arch/libopenblas.so"

export PATH="$sysroot/usr/bin:$PATH"
export LD_LIBRARY_PATH="$blas:$sysroot/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_SYSROOT_DIR="$sysroot"
export PKG_CONFIG_LIBDIR="$blas/pkgconfig:$sysroot/usr/lib/$arch/pkgconfig:$sysroot/usr/share/pkgconfig"
command -v pkg-config >/dev/null || ln -sf pkgconf "$sysroot/usr/bin/pkg-config"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DKESTREL_ENABLE_CUDA=ON \
  -DKESTREL_CUDA_ARCHITECTURES=90 -DKESTREL_ENABLE_MPI=OFF -DKESTREL_WERROR=OFF -DKESTREL_DEPS_ROOT="$sysroot" \
  -DCMAKE_PREFIX_PATH="$sysroot/usr;$sysroot/usr/lib/$arch/cmake" >"$build.configure.log" 2>&1 ||
  { tail -n 30 "$build.configure.log"; exit 1; }
cmake --build "$build" -j "${JOBS:-$(getconf _NPROCESSORS_ONLN)}" \
  --target kestrel kestrel-bench kestrel-generate kestrel_unit_tests kestrel_kernels_tests kestrel_models_tests

bundle_dir="$(mktemp -d)"
scripts/gpu-bundle.sh --no-build --build-dir "$build" --out "$bundle_dir/kestrel-gpu-bundle.tar.gz"
tar -C "$bundle_dir" -xzf "$bundle_dir/kestrel-gpu-bundle.tar.gz"
exec "$bundle_dir/kestrel-gpu-bundle/run.sh" "$@"
