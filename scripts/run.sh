#!/usr/bin/env bash
# From a fresh Debian 12 machine to a served model: installs packages and the default
# model, builds, starts ingotd with SmolLM2-135M-Instruct, asks it one question
# through the CLI, and keeps serving until Ctrl-C.
#   INGOT_LISTEN (default 127.0.0.1:50051)  INGOT_METRICS_LISTEN (default 127.0.0.1:9090)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh ingotd ingot
LISTEN=${INGOT_LISTEN:-127.0.0.1:50051}
METRICS=${INGOT_METRICS_LISTEN:-127.0.0.1:9090}
build/bin/ingotd --listen "$LISTEN" --metrics-listen "$METRICS" \
  --model smollm2=models/SmolLM2-135M-Instruct.Q4_1.gguf &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 1 100); do
  build/bin/ingot --server "$LISTEN" models >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "run: ingotd exited" >&2; exit 1; }
  sleep 0.2
done
echo "run: ingotd serves smollm2 on $LISTEN (metrics: http://$METRICS/metrics)"
echo "run: ingot generate smollm2 --chat 'What is the capital of France?'"
build/bin/ingot --server "$LISTEN" generate smollm2 --chat "What is the capital of France?" \
  --max-tokens 64 --temperature 0
echo
echo "run: serving until Ctrl-C"
wait $server
