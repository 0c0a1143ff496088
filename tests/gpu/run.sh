#!/usr/bin/env bash
# The GPU checks of the device seam, on a GPU host, over a copy of the tree with
# build-gpu-bundle.tar.xz (scripts/gpu_bundle.sh) carried along. A session runs it as the
# first step of tests/gpu/session.sh (one device call for everything, its header says
# how); alone: run(command="tests/gpu/run.sh $OUT", carry=["build-gpu-bundle.tar.xz"]).
#   1. the torch version (2.11.x, the libtorch the bundle was built against)
#   2. backend_test on cuda:0: every representation x shape, and the step ops (libtorch's
#      here, no grouped or fused launches, and the GEMV for 5-16 tokens instead of the
#      tensor-core kernel: INGOT_CUDA_MMA=0), against the native CPU references
#      (tolerances in tests/kernels/backend_test.cc)
#   3. placement_test on cuda:0's model: a random-weight model of the default model's
#      shapes, greedy on cuda:0 vs native cpu, teacher-forced
#   4. ingotd serving that model on cuda:0 over gRPC: load, generate, info, the memory
#      metrics scraped, unload
#   5. forward_bench: prefill/decode on cuda:0 (torch) beside native cpu; 5b. decode with
#      and without CUDA graphs ($INGOT_CUDA_GRAPHS), batch 1 and 16
#   2b. backend_test again with INGOT_CUDA_QUANT_KERNELS=all and INGOT_CUDA_ATTENTION=ingot
#      (ingot's fused kernels for every quantized representation, the tensor-core kernel
#      for 5-64 tokens, q/k/v and gate/up+SwiGLU as one launch each, its paged attention
#      and KV store kernel, its fused rms_norm/add+rms_norm/rope/swiglu)
# Prints one summary table, written row by row; each step has its own timeout (90 s for
# the tests, 45 s per forward_bench) and session.sh gives the whole 240 s. The 7B-shaped
# benchmark of the kernels is tests/gpu/bench_7b.sh.
#   tests/gpu/run.sh [OUT_DIR]      (OUT_DIR: logs; default $OUT or /tmp/ingot-gpu)
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/env.sh
LOGS=${1:-${OUT:-/tmp/ingot-gpu}}
mkdir -p "$LOGS"
# Each row lands in summary.txt as it is made (a caller's timeout keeps what ran).
: > "$LOGS/summary.txt"
row() { printf '%-34s %-6s %s\n' "$1" "$2" "$3" >> "$LOGS/summary.txt"; publish "$LOGS/summary.txt"; }

export INGOT_TEST_SOURCE_DIR=$ROOT
row "torch" ok "$TORCH_VER at $TORCH_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$LOGS/gpu.txt" 2>&1
row "gpu" ok "$(head -1 "$LOGS/gpu.txt")"

# 2. backend table on cuda:0
# (with libtorch's own step ops: $INGOT_CUDA_STEP_OPS=torch; 2b runs ingot's fused ones)
INGOT_CUDA_STEP_OPS=torch INGOT_CUDA_MMA=0 INGOT_BACKEND_TEST_DEVICES=cuda:0 timeout 90 "$B/bin/backend_test" \
  > "$LOGS/backend_test.log" 2>&1
rc=$?; row "backend_test cuda:0 torch ops, GEMV" "$([ $rc = 0 ] && echo PASS || echo FAIL)" \
  "$(grep -E '^\[ backend \]' "$LOGS/backend_test.log" | head -1) $(grep -c '^\[ upload \]' "$LOGS/backend_test.log") uploads"
# 2b. the same with every quantized weight on ingot's CUDA kernels (kernels/cuda), the
# ones libtorch has int4/int8 kernels for included, ingot's paged attention kernel for
# f32/f16 stores too (q8_0 stores always use it), and its fused step ops (the default:
# kernels/cuda/step_ops.cu)
INGOT_CUDA_QUANT_KERNELS=all INGOT_CUDA_ATTENTION=ingot INGOT_BACKEND_TEST_DEVICES=cuda:0 timeout 90 "$B/bin/backend_test" \
  > "$LOGS/backend_test_kernels.log" 2>&1
rc=$?; row "backend_test cuda:0 ingot kernels" "$([ $rc = 0 ] && echo PASS || echo FAIL)" \
  "$(grep -c 'ingot CUDA kernels' "$LOGS/backend_test_kernels.log") uploads kept quantized"

# 3. a random-weight default-shaped model; greedy cuda:0 vs native cpu
# The model stays out of the log folder (random weights do not compress; the logs
# travel back as one archive of at most 16 MiB).
MODEL_DIR=$(mktemp -d /tmp/ingot-gpu-model.XXXXXX)
MODEL=$MODEL_DIR/smol-random.gguf
"$B/bin/random_gguf" --fill "$B/smol-meta.gguf" "$MODEL" --type q4_1 --seed 7 > "$LOGS/random_gguf.log" 2>&1
INGOT_TEST_MODEL=$MODEL INGOT_PLACEMENT_DEVICE=cuda:0 timeout 90 "$B/bin/placement_test" > "$LOGS/placement_test.log" 2>&1
rc=$?; row "placement_test cuda:0" "$([ $rc = 0 ] && echo PASS || echo FAIL)" \
  "$(grep -E '^\[ placement \] (default|random)' "$LOGS/placement_test.log" | head -1 | cut -c15-150)"

# 4. ingotd on cuda:0 over gRPC, metrics scraped
"$B/bin/ingotd" --listen 127.0.0.1:50071 --metrics-listen 127.0.0.1:9171 --threads 8 \
  --model "smol=$MODEL" > "$LOGS/ingotd.log" 2>&1 &
PID=$!
C="$B/bin/ingot --server 127.0.0.1:50071"
for _ in $(seq 1 120); do $C models > /dev/null 2>&1 && break; sleep 0.5; done
ok=PASS; detail=""
$C load gpu "$MODEL" --device cuda:0 > "$LOGS/load.txt" 2>&1 || ok=FAIL
$C info gpu > "$LOGS/info.txt" 2>&1 || ok=FAIL
$C generate gpu "Hello" -n 16 --greedy --json > "$LOGS/gen_gpu.txt" 2>&1 || ok=FAIL
$C generate smol "Hello" -n 16 --greedy --json > "$LOGS/gen_cpu.txt" 2>&1 || ok=FAIL
curl -s http://127.0.0.1:9171/metrics > "$LOGS/metrics.txt" 2>&1 || py -c \
  "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9171/metrics').read().decode())" > "$LOGS/metrics.txt"
grep -q 'ingot_model_memory_bytes{device="cuda:0",kind="device_weights",model="gpu"}' "$LOGS/metrics.txt" || ok=FAIL
grep -q 'ingot_device_memory_allocator_bytes{device="cuda:0"' "$LOGS/metrics.txt" || ok=FAIL
same=$([ "$(grep -o '"token_ids":\[[^]]*\]' "$LOGS/gen_gpu.txt")" = "$(grep -o '"token_ids":\[[^]]*\]' "$LOGS/gen_cpu.txt")" ] && echo same || echo differ)
$C unload gpu > /dev/null 2>&1 || ok=FAIL
$C info > "$LOGS/server_info.txt" 2>&1
kill -TERM $PID; wait $PID 2>/dev/null
detail="greedy tokens cuda:0 vs cpu: $same; $(grep -E 'backend:' "$LOGS/info.txt" | head -1 | xargs)"
row "ingotd cuda:0 over gRPC" "$ok" "$detail"

# 5. speed: torch on cuda:0 and native on cpu, same model, same call
for cfg in "torch cuda:0" "native cpu"; do
  set -- $cfg
  timeout 45 "$B/bin/forward_bench" "$MODEL" --backend "$1" --device "$2" --threads 8 --prompt 128 --gen 64 --runs 5 \
    > "$LOGS/bench_$1.txt" 2>&1
  row "forward_bench $1:$2" "$([ $? = 0 ] && echo ok || echo FAIL)" "$(tail -1 "$LOGS/bench_$1.txt")"
done
# 5b. decode steps without and with CUDA graphs (INGOT_CUDA_GRAPHS=1 records each batch
# size's decode step once and replays it; both with ingot's paged attention, which the
# graphs use), batch 1 and 16, alternated
# (and batch 16 on the GEMV instead of the tensor-core kernel: INGOT_CUDA_MMA=0)
for cfg in "1 0 5" "1 1 5" "16 0 5" "16 1 5" "16 1 0"; do  # mma: INGOT_CUDA_MMA (5: the default threshold; 0: off)
  set -- $cfg
  batch=$1 graphs=$2 mma=$3
  INGOT_CUDA_ATTENTION=ingot INGOT_CUDA_GRAPHS=$graphs INGOT_CUDA_MMA=$mma timeout 45 "$B/bin/forward_bench" "$MODEL" \
    --backend torch --device cuda:0 --threads 8 --prompt 128 --gen 64 --runs 5 --batch $batch \
    > "$LOGS/bench_graphs${graphs}_mma${mma}_b$batch.txt" 2>&1
  row "forward_bench cuda graphs=$graphs mma=$mma b$batch" "$([ $? = 0 ] && echo ok || echo FAIL)" \
    "$(tail -1 "$LOGS/bench_graphs${graphs}_mma${mma}_b$batch.txt")"
done

echo
echo "=== ingot GPU checks (tests/gpu/run.sh) ==="
cat "$LOGS/summary.txt"
grep -q -E ' FAIL ' "$LOGS/summary.txt" && exit 1
exit 0
