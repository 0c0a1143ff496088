#!/usr/bin/env bash
# Everything a GPU session has to run, as ONE device call sized to the lease (15 minutes
# of device time per session, the machine's start included; one command at most 10):
#   scripts/gpu_bundle.sh                       (here, on the CPU machine: the binaries)
#   cp /path/to/torchao-0.18.0-*.whl .bench/wheels/   (optional: torchao's rows and the
#                                                issue-18 vector; tests/gpu/torchao_int4.sh)
#   run(command="tests/gpu/session.sh $OUT", carry=["build-gpu-bundle.tar.xz", ".bench/wheels"],
#       timeout_s=600)
# In priority order, each step under its own timeout and all under $SESSION_DEADLINE_S
# (default 540 s, so the logs come back inside the call's 600):
#   1. tests/gpu/run.sh (at most $RUN_SH_LIMIT_S, default 240 s): correctness on cuda:0 (backend table with torch's and with
#      ingot's kernels, the placement test, ingotd over gRPC with its metrics), the small
#      model's speed and CUDA graphs on/off
#   2. tests/gpu/torchao_int4.sh when the torchao wheel travelled: torchao's CUDA-only
#      int4 checkpoint (issue 18's vector), back in $OUT
#   3. tests/gpu/bench_7b.sh with what time is left: the 7B-shaped table (issue 16)
# Everything lands in $OUT as it is made (summary.txt, bench7b_summary.txt, logs), so
# a step cut short still returns what ran before it.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOGS=${1:-${OUT:-/tmp/ingot-gpu}}
mkdir -p "$LOGS"
START=$SECONDS
BUDGET=${SESSION_DEADLINE_S:-540}
left() { echo $(( BUDGET - (SECONDS - START) )); }
echo "session: $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" | tee "$LOGS/session.txt"

timeout "${RUN_SH_LIMIT_S:-240}" tests/gpu/run.sh "$LOGS" > "$LOGS/run_sh.txt" 2>&1
echo "run.sh: exit $? after $(( SECONDS - START )) s" | tee -a "$LOGS/session.txt"

if ls .bench/wheels/torchao-*.whl > /dev/null 2>&1 && [ -x tests/gpu/torchao_int4.sh ] && [ "$(left)" -gt 150 ]; then
  timeout 120 tests/gpu/torchao_int4.sh "$LOGS" > "$LOGS/torchao_int4_sh.txt" 2>&1
  echo "torchao_int4.sh: exit $? after $(( SECONDS - START )) s" | tee -a "$LOGS/session.txt"
  # torchao's own rows in the torch table need it importable
  TORCHAO_DIR=$(ls -d /tmp/ingot-torchao 2>/dev/null)
  [ -n "$TORCHAO_DIR" ] && export PYTHONPATH="$TORCHAO_DIR${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ "$(left)" -gt 90 ]; then
  BENCH_DEADLINE_S=$(( $(left) - 100 )) timeout $(( $(left) - 10 )) tests/gpu/bench_7b.sh "$LOGS" \
    > "$LOGS/bench_7b_sh.txt" 2>&1
  echo "bench_7b.sh: exit $? after $(( SECONDS - START )) s" | tee -a "$LOGS/session.txt"
fi
echo
cat "$LOGS/summary.txt" "$LOGS/bench7b_summary.txt" 2>/dev/null
cat "$LOGS/session.txt"
