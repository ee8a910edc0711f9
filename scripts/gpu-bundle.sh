#!/usr/bin/env bash
# scripts/gpu-bundle.sh: builds Kestrel here for the GPU machine and packs what it needs into
# one archive, so that a 15-minute GPU lease is spent measuring, not building.
#
#   scripts/gpu-bundle.sh [--build-dir DIR] [--no-build] [--out FILE]
#
# The GPU machine (an H200 lent through the device tool) has the CUDA toolkit, CMake and
# PyTorch but none of our Debian libraries, and nothing can be installed there. So this
# builds here (nvcc 13.0, the device's version) the default preset (Release, the CUDA backend
# for sm_90, tests and tools) and packs, into FILE (default .gpu-bundle/kestrel-gpu-bundle.tar.gz;
# at most about 40 MiB):
#   bin/       the examples and the test binaries, their run path set to ../lib
#   lib/       libkestrel and every shared library they load that the device does not have
#              (found with ldd: OpenBLAS, libgfortran, libgomp, PCRE2, Open MPI, ...)
#   compat/    libstdc++ and libgcc_s, used only when the device's own are too old
#   fixtures/  tests/fixtures (the tests find them through $KESTREL_FIXTURE_DIR)
#   run.sh     scripts/gpu-run.sh: the check itself (device, CUDA tests, compute-sanitizer,
#              ceilings, kestrel-bench on random weights, transformers); see there
#   compare-speed-hf.py  its Kestrel-vs-transformers step
#   MANIFEST   commit, date, compiler, build flags
#   PROVIDED   the pattern of the libraries left to the machine (run.sh checks that nothing
#              else resolves outside the bundle)
# Left out, because the device provides them: glibc, the CUDA driver, the CUDA runtime,
# cuBLAS / cuBLASLt (its toolkit) and NCCL (its PyTorch's nvidia-nccl wheel); run.sh finds
# them. MPI is in the bundle but a one-GPU run never starts it.
#
# On the device (the device tool runs commands in a copy of this working tree; .gpu-bundle/
# is ignored by git, so name it in `carry`):
#   tar xzf .gpu-bundle/kestrel-gpu-bundle.tar.gz -C /tmp && /tmp/kestrel-gpu-bundle/run.sh
#
# Fallback, if the bundle cannot run there (say, a C library older than Debian 12's):
# build on the device from the carried source, with our Debian packages carried as .deb
# files and extracted into a folder, never into /:
#   here:   scripts/gpu-bundle.sh --fetch-debs      (apt-get download into .gpu-debs/)
#   device: scripts/gpu-fallback-build.sh           (dpkg -x into .gpu-debs/root, configure
#                                                    with that prefix, build, run gpu-run.sh)
# with `carry` naming .gpu-debs.
#
# tests/bundle/run_bundle_test.cmake (ctest bundle.scrubbed_env) packs the build tree ctest
# runs in, unpacks it and runs its CPU tests under `env -i`, so that a library missing from
# the bundle fails here rather than on the device.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build="$root/build"
out="$root/.gpu-bundle/kestrel-gpu-bundle.tar.gz"
do_build=1
fetch_debs=0
while (( $# )); do
  case "$1" in
    --build-dir) build="$(realpath -m "$2")"; shift 2 ;;
    --out) out="$(realpath -m "$2")"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --fetch-debs) fetch_debs=1; shift ;;
    -h|--help) sed -n '2,40p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "gpu-bundle: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# The Debian packages a build needs, as .deb files for the fallback (their libraries' own
# dependencies too, except what every system has).
if (( fetch_debs )); then
  debs="$root/.gpu-debs"
  mkdir -p "$debs"
  packages=(libopenblas-dev libopenblas0-openmp libopenblas0 libopenblas-openmp-dev libgfortran5 libgomp1
            libquadmath0 libdnnl-dev libdnnl2 ocl-icd-libopencl1 libpcre2-dev libpcre2-8-0 nlohmann-json3-dev libcli11-dev libfmt-dev libfmt9 libgtest-dev libgmock-dev
            patchelf pkgconf pkgconf-bin libpkgconf3)
  (cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "${packages[@]}")
  echo "gpu-bundle: $(ls "$debs"/*.deb | wc -l) packages in $debs ($(du -sh "$debs" | cut -f1))"
  exit 0
fi

command -v patchelf >/dev/null || { echo "gpu-bundle: patchelf is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

if (( do_build )); then
  scripts/install-deps.sh
  cmake --preset default >/dev/null
  cmake --build "$build" -j "$(nproc)"
fi
grep -q '^KESTREL_CUDA_ARCHITECTURES:STRING=.*90' "$build/CMakeCache.txt" ||
  { echo "gpu-bundle: $build is not configured for sm_90 (KESTREL_CUDA_ARCHITECTURES)" >&2; exit 1; }
[[ -f "$build/libkestrel.so.0" ]] || { echo "gpu-bundle: $build/libkestrel.so.0 is missing: build first" >&2; exit 1; }
compgen -G "$build/CMakeFiles/kestrel.dir/kernels/cuda/*.cu.o" >/dev/null ||
  { echo "gpu-bundle: $build has no CUDA backend (nvcc not found at configure time?)" >&2; exit 1; }

stage_parent="$(mktemp -d)"
trap 'rm -rf "$stage_parent"' EXIT
stage="$stage_parent/kestrel-gpu-bundle"
mkdir -p "$stage/bin" "$stage/lib" "$stage/compat"

binaries=()
# The examples the run script uses (the server and kestrel-quantize stay home: OpenSSL and
# oneDNN would double the bundle), and the test suites.
for b in "$build"/examples/kestrel-{generate,bench,score,size,perplexity,chat} "$build"/tests/kestrel_unit_tests \
         "$build"/tests/kestrel_kernels_tests "$build"/tests/kestrel_models_tests; do
  [[ -x "$b" && -f "$b" ]] || continue
  cp "$b" "$stage/bin/"
  binaries+=("$stage/bin/$(basename "$b")")
done
(( ${#binaries[@]} >= 4 )) || { echo "gpu-bundle: binaries missing in $build" >&2; exit 1; }
cp -L "$build/libkestrel.so.0" "$stage/lib/"

# What the device provides: glibc, the CUDA driver and libraries of its toolkit / wheels.
provided='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-.*|libnvrtc|libnvJitLink)\.so'
compat='^(libstdc\+\+|libgcc_s)\.so'
# ldd's closure of every binary and library, by soname; copied once each.
declare -A seen=()
queue=("${binaries[@]}" "$stage/lib/libkestrel.so.0")
while (( ${#queue[@]} )); do
  f="${queue[0]}"
  queue=("${queue[@]:1}")
  while read -r name arrow path _; do
    [[ "$arrow" == "=>" ]] || continue
    [[ -n "${seen[$name]:-}" ]] && continue
    seen[$name]=1
    [[ "$name" =~ $provided ]] && continue
    if [[ "$path" == "not" ]]; then echo "gpu-bundle: $f needs $name, which is not found here" >&2; exit 1; fi
    if [[ "$name" =~ $compat ]]; then cp -L "$path" "$stage/compat/$name"; continue; fi
    [[ "$name" == libkestrel.so.0 ]] && continue
    cp -L "$path" "$stage/lib/$name"
    queue+=("$stage/lib/$name")
  done < <(ldd "$f")
done
# Run paths: binaries look in ../lib, libraries beside themselves (the CUDA libraries come
# from LD_LIBRARY_PATH, which run.sh sets).
for b in "${binaries[@]}"; do patchelf --set-rpath '$ORIGIN/../lib' "$b"; done
for l in "$stage"/lib/*.so*; do chmod u+w "$l"; patchelf --set-rpath '$ORIGIN' "$l"; done

# The fixtures the CUDA tests read (tests/{kernels,models}/cuda_*, MoeCuda): the Hugging Face
# folders and two K-quant files. GGUF copies, tokenizer cases and the other quant files
# stay home: the working tree's tests/fixtures (48 MB, random weights that do not compress)
# cannot travel beside the bundle, so the device call leaves it out (docs/GPU.md).
mkdir -p "$stage/fixtures/kquant"
for f in tests/fixtures/*; do
  case "$(basename "$f")" in
    *.gguf | *.py | __pycache__ | kquant | spm-* | llamacpp-quants | tiny-llama-gguf) ;;
    *) cp -r "$f" "$stage/fixtures/" ;;
  esac
done
cp tests/fixtures/kquant/tiny256-Q4_K_M.gguf tests/fixtures/kquant/tiny256-Q5_K_M.gguf \
   tests/fixtures/kquant/reference.json "$stage/fixtures/kquant/"
cp scripts/gpu-run.sh "$stage/run.sh"
cp scripts/compare-speed-hf.py "$stage/"
chmod +x "$stage/run.sh"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit+=" (with local changes)"
{
  echo "commit: $commit"
  echo "built: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "nvcc: $(nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*')"
  echo "cxx: $(grep -m1 '^CMAKE_CXX_COMPILER:' "$build/CMakeCache.txt" | cut -d= -f2) $(c++ -dumpfullversion)"
  echo "build: $(grep -m1 '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2), CUDA architectures $(grep -m1 '^KESTREL_CUDA_ARCHITECTURES:' "$build/CMakeCache.txt" | cut -d= -f2)"
  echo "bundled libraries: $(cd "$stage/lib" && ls | tr '\n' ' ')"
  echo "compat libraries: $(cd "$stage/compat" && ls | tr '\n' ' ')"
} >"$stage/MANIFEST"
echo "$provided|$compat" >"$stage/PROVIDED"

mkdir -p "$(dirname "$out")"
tar -C "$stage_parent" -czf "$out" kestrel-gpu-bundle
size=$(stat -c %s "$out")
echo "gpu-bundle: $out ($(( size / 1024 / 1024 )) MiB; $(du -sh "$stage" | cut -f1) unpacked)"
# What travels with the device call: the bundle and the working tree without tests/fixtures
# (set aside for the call, docs/GPU.md); 64 MiB in all, 4 MiB kept in hand.
tree=$(git ls-files -z -- . ':!tests/fixtures' | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
travel=$(( size + tree ))
echo "gpu-bundle: with the working tree less tests/fixtures ($(( tree / 1024 / 1024 )) MiB): $(( travel / 1024 / 1024 )) MiB travel"
if (( travel > 60 * 1024 * 1024 )); then
  echo "gpu-bundle: over 60 MiB with the working tree: it may not travel (64 MiB in all)" >&2
  exit 1
fi
