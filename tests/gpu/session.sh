#!/usr/bin/env bash
# Everything a GPU session has to run, as ONE device call sized to the lease (15 minutes
# of device time per session, the machine's start included; one command at most 10).
# Here, first (no GPU needed): tests/gpu/prepare.sh, which builds the bundle
# (scripts/gpu_bundle.sh), fetches torchao's wheel into .bench/wheels, dry-runs the
# benchmark on this CPU and prints the call:
#   run(command="tests/gpu/session.sh $OUT", timeout_s=600,
#       carry=["build-gpu-bundle.tar.xz", ".bench/wheels"])
# (plus ".bench/llama-cuda.tar.xz" when tests/gpu/build_llama_cuda.sh made it), then
# give_back.
# In priority order, each step under its own timeout and all under $SESSION_DEADLINE_S
# (default 540 s, so the files come back inside the call's 600):
#   1. tests/gpu/run.sh (at most $RUN_SH_LIMIT_S, default 240 s): correctness on cuda:0
#      (backend table with torch's and with ingot's kernels, the placement test with the
#      CUDA graph test, ingotd over gRPC with its metrics), the small model's speed and
#      CUDA graphs on/off
#   2. tests/gpu/torchao_int4.sh when the torchao wheel travelled: torchao's CUDA-only
#      int4 checkpoint (issue 18's vector: torchao_int4.tgz; then, here,
#      tests/reference/gen_torchao_int4_tile.py FILES_AT)
#   3. tests/gpu/bench_7b.sh with what time is left: the 7B-shaped table (issue 16)
# The device tool brings back at most 8 files, so $OUT gets: summary.txt (step 1's
# table), bench7b_summary.txt, torchao_int4.tgz, session.txt and logs.tgz (every log),
# rewritten after each step: a step cut short still returns what ran before it.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-${OUT:-/tmp/ingot-gpu}}
mkdir -p "$OUT_DIR"
W=$(mktemp -d /tmp/ingot-gpu-logs.XXXXXX)
START=$SECONDS
BUDGET=${SESSION_DEADLINE_S:-540}
left() { echo $(( BUDGET - (SECONDS - START) )); }
note() { echo "$*" | tee -a "$OUT_DIR/session.txt"; }
pack() {
  cp "$W/summary.txt" "$W/bench7b_summary.txt" "$OUT_DIR/" 2>/dev/null
  tar czf "$OUT_DIR/logs.tgz" --exclude='*.gguf' --exclude='*.whl' -C "$W" . 2>/dev/null
}
# run.sh and bench_7b.sh copy their summaries here as each row lands
export INGOT_GPU_OUT=$OUT_DIR
: > "$OUT_DIR/session.txt"
note "session: $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)," \
  "$(nproc) CPUs, budget ${BUDGET} s; tree $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "bundle $(tar xJOf build-gpu-bundle.tar.xz build-gpu-bundle/REVISION 2>/dev/null || echo 'without a revision')"

timeout "${RUN_SH_LIMIT_S:-240}" tests/gpu/run.sh "$W" > "$W/run_sh.txt" 2>&1
note "run.sh: exit $? after $(( SECONDS - START )) s"
pack

if ls .bench/wheels/torchao-*.whl > /dev/null 2>&1 && [ "$(left)" -gt 150 ]; then
  mkdir -p "$W/torchao"
  timeout 130 tests/gpu/torchao_int4.sh "$W/torchao" > "$W/torchao_int4_sh.txt" 2>&1
  note "torchao_int4.sh: exit $? after $(( SECONDS - START )) s"
  mv "$W/torchao/torchao_int4.tgz" "$OUT_DIR/" 2>/dev/null
  pack
fi

if [ "$(left)" -gt 90 ]; then
  # bench_7b rewrites its table after every row; it starts no row in its last 100 s
  BENCH_DEADLINE_S=$(( $(left) - 100 )) timeout $(( $(left) - 10 )) tests/gpu/bench_7b.sh "$W" \
    > "$W/bench_7b_sh.txt" 2>&1
  note "bench_7b.sh: exit $? after $(( SECONDS - START )) s"
fi
pack
echo
cat "$W/summary.txt" "$W/bench7b_summary.txt" 2>/dev/null
cat "$OUT_DIR/session.txt"
