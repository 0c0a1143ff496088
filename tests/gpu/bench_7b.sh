#!/usr/bin/env bash
# The issue-16 benchmark on a GPU host, over the same bundle as run.sh
# (scripts/gpu_bundle.sh): Llama-2-7B-shaped random weights (random_gguf --shape
# llama2-7b: 32 layers, 4096 embd, 11008 ff, 32 heads; the default model's 49152-token
# vocabulary, so the head is 1.5x Llama-2's) in each GGML representation, through the
# torch row on cuda:0:
#   decode batch 1 (128 new tokens after a 128-token prompt), batch 16 aggregate,
#   prefill 512; the % of the measured device copy bandwidth that batch-1 decode reaches
#   (bytes read per token ~ the file's tensor bytes).
# Rows: f16 (torch bf16 dense, cuBLAS: PyTorch's own number), q4_0 through tinygemm int4
# (torch's int4 kernel, INGOT_CUDA_QUANT_KERNELS=auto) and through ingot's kernel (=all),
# q8_0, q4_K, q6_K (ingot's kernels). Not here: torchao itself and llama.cpp CUDA (say
# so in the note if the host lacks them), NF4/affine rows (need a quantize-on-load of a
# 7B model, minutes on the host).
#   tests/gpu/bench_7b.sh [OUT_DIR] [TYPES...]   (default types: f16 q4_0 q8_0 q4_K q6_K)
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/env.sh
LOGS=${1:-${OUT:-/tmp/ingot-gpu}}
shift || true
TYPES=("$@")
[ ${#TYPES[@]} -eq 0 ] && TYPES=(f16 q4_0 q8_0 q4_K q6_K)
mkdir -p "$LOGS"
WORK=${INGOT_BENCH_DIR:-/tmp/ingot-7b}
mkdir -p "$WORK"

# Device copy bandwidth (read + write bytes / time), median of 10 copies of 1 GiB.
BW=$(python3 - <<'PY'
import torch, statistics
x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
t = []
for _ in range(10):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); y.copy_(x); e.record(); torch.cuda.synchronize(); t.append(s.elapsed_time(e) / 1e3)
print(f"{2 * x.numel() / statistics.median(t) / 1e9:.0f}")
PY
)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
declare -a ROWS
ROWS+=("$(printf '%-22s %10s %10s %10s %9s %8s' representation 'dec b1' 'dec b16' 'pre 512' 'GB/tok' '% bw')")
bench() {  # label model mode
  local label=$1 model=$2 mode=$3 b1 b16 pre gb pct
  run() { INGOT_CUDA_QUANT_KERNELS=$mode timeout 240 "$B/bin/forward_bench" "$model" --backend torch --device cuda:0 \
            --threads 8 "$@" 2>&1 | tail -1; }
  b1=$(run --prompt 128 --gen 128 --runs 3 | tee -a "$LOGS/bench7b_$label.txt" | sed -n 's/.*decode \([0-9.]*\) tok.*/\1/p')
  b16=$(run --prompt 128 --gen 64 --runs 3 --batch 16 | tee -a "$LOGS/bench7b_$label.txt" | sed -n 's/.*decode \([0-9.]*\) tok.*/\1/p')
  pre=$(run --prompt 512 --gen 1 --runs 3 | tee -a "$LOGS/bench7b_$label.txt" | sed -n 's/.*prefill \([0-9.]*\) tok.*/\1/p')
  gb=$(python3 -c "import os; print(f'{os.path.getsize(\"$model\") / 1e9:.2f}')")
  pct=$(python3 -c "print(f'{100 * float(\"${b1:-0}\") * $gb / $BW:.0f}')" 2>/dev/null)
  ROWS+=("$(printf '%-22s %10s %10s %10s %9s %7s%%' "$label" "${b1:-FAIL}" "${b16:-FAIL}" "${pre:-FAIL}" "$gb" "$pct")")
}
for t in "${TYPES[@]}"; do
  model=$WORK/llama7b-$t.gguf
  [ -f "$model" ] || "$B/bin/random_gguf" --fill "$B/smol-meta.gguf" "$model" --shape llama2-7b --type "$t" --seed 7 \
    >> "$LOGS/bench7b_gen.txt" 2>&1
  case $t in
    f16) bench "f16 (torch bf16)" "$model" auto ;;
    q4_0) bench "q4_0 (torch tinygemm)" "$model" auto; bench "q4_0 (ingot kernel)" "$model" all ;;
    *) bench "$t (ingot kernel)" "$model" auto ;;
  esac
  rm -f "$model"
done
echo
echo "=== Llama-2-7B shapes on $GPU, copy bandwidth $BW GB/s (tests/gpu/bench_7b.sh) ==="
printf '%s\n' "${ROWS[@]}" | tee "$LOGS/bench7b_summary.txt"
