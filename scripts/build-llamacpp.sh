#!/usr/bin/env bash
# Build (once) and install llama-cpp-python, the llama.cpp reference used by
# scripts/llamacpp_reference.py and scripts/compare-llamacpp.py.
#
#   scripts/build-llamacpp.sh            # idempotent; prints the installed version
#
# Layout (all under the git-ignored .cache/):
#   .cache/llamacpp-venv/   venv from /usr/bin/python3 --system-site-packages
#   .cache/sdist/           the llama-cpp-python source tarball from PyPI
#   .cache/wheels/          the wheel built from it (CPU only), reused on later runs
#   .cache/llamacpp-build.log  the log of the last build
#
# llama.cpp is built from source on the CPU (no CUDA), lean: no tests, examples,
# tools, server, llava/mtmd, OpenMP; AVX2/FMA/F16C baseline instead of -march=native
# so the wheel can be reused on any x86-64 machine with AVX2.
#
# Environment overrides:
#   LLAMACPP_PY_VERSION  llama-cpp-python version (default 0.3.16)
#   LLAMACPP_CMAKE_ARGS  replaces the default CMAKE_ARGS below
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default 2)
#   LLAMACPP_REBUILD=1   rebuild the wheel even if one is cached
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/llamacpp-venv"
WHEELS="$CACHE/wheels"
SDIST_DIR="$CACHE/sdist"
LOG="$CACHE/llamacpp-build.log"
VERSION="${LLAMACPP_PY_VERSION:-0.3.16}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_OPENMP=OFF -DGGML_CUDA=OFF -DGGML_BLAS=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
-DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DCMAKE_BUILD_TYPE=Release"
CMAKE_ARGS_USED="${LLAMACPP_CMAKE_ARGS:-$DEFAULT_CMAKE_ARGS}"

mkdir -p "$CACHE" "$WHEELS" "$SDIST_DIR"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[build-llamacpp] creating venv $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"

installed_version() {
    "$PY" -c 'import llama_cpp, sys; sys.stdout.write(llama_cpp.__version__)' 2>/dev/null || true
}

have="$(installed_version)"
if [[ "$have" == "$VERSION" ]]; then
    echo "[build-llamacpp] llama-cpp-python $have already installed in $VENV"
    echo "llama-cpp-python $have"
    exit 0
fi

wheel="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -n "$wheel" && "${LLAMACPP_REBUILD:-0}" != "1" ]]; then
    echo "[build-llamacpp] reusing cached wheel $wheel"
else
    sdist="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        echo "[build-llamacpp] downloading the llama-cpp-python $VERSION source from PyPI"
        "$PY" -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
    fi
    [[ -f "$sdist" ]] || { echo "[build-llamacpp] error: no $sdist after download" >&2; exit 1; }
    echo "[build-llamacpp] building the wheel (CMAKE_ARGS=$CMAKE_ARGS_USED, jobs=$CMAKE_BUILD_PARALLEL_LEVEL); log: $LOG"
    start=$(date +%s)
    if ! CMAKE_ARGS="$CMAKE_ARGS_USED" FORCE_CMAKE=1 \
        "$PY" -m pip wheel --no-deps -v "$sdist" -w "$WHEELS" >"$LOG" 2>&1; then
        echo "[build-llamacpp] error: the build failed; the last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
    end=$(date +%s)
    echo "[build-llamacpp] wheel built in $((end - start)) s"
    commit="$(grep -o 'GGML_COMMIT=\\"[0-9a-f]*' "$LOG" | head -n1 | sed 's/.*"//' || true)"
    echo "build_seconds=$((end - start)) version=$VERSION llama.cpp_commit=${commit:-unknown} cmake_args=$CMAKE_ARGS_USED" \
        >"$WHEELS/BUILD-INFO-$VERSION.txt"
    wheel="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl | head -n1)"
fi

# With its runtime dependencies from PyPI (numpy comes from the system site packages).
"$PY" -m pip install --quiet --find-links "$WHEELS" "$wheel"

have="$(installed_version)"
if [[ "$have" != "$VERSION" ]]; then
    echo "[build-llamacpp] error: llama_cpp does not import from $VENV (got '$have')" >&2
    exit 1
fi
echo "llama-cpp-python $have"
