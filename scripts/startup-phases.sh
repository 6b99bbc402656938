#!/usr/bin/env bash
# Measures a pod's start-up phases (download, listen, load, warm) for all-MiniLM-L6-v2 with the
# release binary, downloading from the tests' mock hub on loopback (no network: the download
# figure is tessera's own cost; add the model's size over your link's bandwidth).
# usage: scripts/startup-phases.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
model="$(scripts/fetch-model.sh)"
cargo build --release --quiet --bin tessera
# The same build as scripts/test.sh (debug; dependencies optimized): the mock hub example.
cargo build --quiet --workspace --all-targets
hub_out="$(mktemp)"
target/debug/examples/mock_hub "sentence-transformers/all-MiniLM-L6-v2=$model" > "$hub_out" &
hub=$!
trap 'kill $hub 2>/dev/null; rm -f "$hub_out"' EXIT
for _ in $(seq 100); do [ -s "$hub_out" ] && break; sleep 0.1; done
lscpu | grep -m1 "Model name" || true
HF_ENDPOINT="$(head -1 "$hub_out")" python3 scripts/startup_phases.py \
  target/release/tessera sentence-transformers/all-MiniLM-L6-v2 "$runs"
