#!/usr/bin/env bash
# Load benchmark: starts tessera (release build) on all-MiniLM-L6-v2 (or MODEL: a name
# scripts/fetch-model.sh knows, such as all-mpnet-base-v2, or a model directory) and runs the shared
# closed-loop load generator for three shapes of traffic. Prints requests/s, embeddings/s and
# p50/p99 for each; JSON summaries go to bench/results/.
#
#   bench/load.sh [extra `tessera serve` flags...]     e.g. bench/load.sh --max-batch-tokens 8192
#
# DURATION (seconds per scenario, default 30), PORT (default 3900), MODEL and SCENARIOS (default
# "1x1-short 32x1-mixed 4x32-mixed") can be set in the env.
set -euo pipefail
cd "$(dirname "$0")/.."
loadgen="../shared/bench/loadgen.py"
[ -f "$loadgen" ] || { echo "needs $loadgen (the shared load generator)" >&2; exit 2; }
duration="${DURATION:-30}"
port="${PORT:-3900}"
if [ -d "${MODEL:-}" ]; then
  model="$MODEL"
else
  model="$(scripts/fetch-model.sh "${MODEL:-all-MiniLM-L6-v2}")"
fi
scenarios="${SCENARIOS:-1x1-short 32x1-mixed 4x32-mixed}"
cargo build --release --bin tessera >&2
mkdir -p bench/results
target/release/tessera serve --model-id "$model" --port "$port" --hostname 127.0.0.1 --prometheus-port 0 "$@" \
  > bench/results/server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done

run() {
  local label="$1"; shift
  python3 "$loadgen" --url "http://127.0.0.1:$port" --duration "$duration" -n 1000000 --warmup 20 \
    --truncate --pid "$pid" --label "$label" --json-out "bench/results/$label.json" "$@" >/dev/null
  python3 - "bench/results/$label.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_ms"]
errors = sum(r["errors"].values()) if r["errors"] else 0
print(f"{r['label']:<12} requests/s {r['req_per_s']:8.1f}  embeddings/s {r['emb_per_s']:8.1f}  "
      f"p50 {lat['p50']:8.1f} ms  p99 {lat['p99']:8.1f} ms  errors {errors}  "
      f"server peak RSS {r.get('server_hwm_kib_after', 0) / 1024:.0f} MiB")
PY
}

for scenario in $scenarios; do
  case "$scenario" in
    1x1-short) run "$scenario" -c 1 -b 1 --min-words 10 --max-words 10 ;;
    32x1-mixed) run "$scenario" -c 32 -b 1 ;;
    4x32-mixed) run "$scenario" -c 4 -b 32 ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done
