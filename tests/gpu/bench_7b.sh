#!/usr/bin/env bash
# The issue-16 benchmark on a GPU host, over the same bundle as run.sh
# (scripts/gpu_bundle.sh): Llama-2-7B-shaped random weights (random_gguf --shape
# llama2-7b: 32 layers, 4096 embd, 11008 ff, 32 heads; the default model's 49152-token
# vocabulary, so the head is 1.5x Llama-2's; token_embd/head Q8_0 in every row) through
# ingot's torch row on cuda:0. Per row, over one load and placement (forward_bench
# --plan): decode batch 1 (128 new tokens after a 128-token prompt), batch 16 aggregate
# (64 new tokens each), prefill of 512 tokens; the bytes on the device; the % of the
# measured copy bandwidth that batch-1 decode reaches (device bytes read per token); the
# seconds the placement (upload, any repacking) and the host quantization took.
#
# Rows, in the order the issue's goals need them (a deadline cuts the tail; the table
# is rewritten after each row). ingot's rows come from one Q8_0 file (7 GB to write,
# against 13.5 for f16) quantized on the host by forward_bench --quantize PRESET (NONE:
# f16), or from a GGML file of the row's type, each placed once per
# $INGOT_CUDA_QUANT_KERNELS policy it names (auto: tinygemm for int4 forms, ingot's
# kernels for the rest; all: ingot's kernels for everything), decode steps CUDA-graphed:
#   TORCHAO_INT4  affine 4-bit g128 with zero: tinygemm (auto) vs ingot's kernel (all)
#   torch         tests/gpu/torch_7b.py: PyTorch's own kernels on the same shapes (bf16
#                 cuBLAS, _weight_int8pack_mm, tinygemm int4 g128/g32; torchao's
#                 quantize_ when it is importable), linear layers only, CUDA-graphed:
#                 those kernels' ceiling, beside ingot's whole forward. (Through ingot,
#                 libtorch 2.11's int8pack is not measured: its CUDA kernel is one
#                 thread per output looping over K, minutes for this table's runs.)
#   NONE          bf16 dense (cuBLAS)
#   BNB_NF4       NF4, double-quantized absmax (ingot's kernel)
#   TORCHAO_INT8  int8 rows (ingot's kernel)
#   q4_0          tinygemm (auto) vs ingot's kernel (all)
#   MLX_INT4      affine 4-bit g64 with bias: tinygemm (auto) vs ingot's kernel (all)
#   BNB_INT8      LLM.int8 rows (ingot's kernel)
#   q8_0          ingot's kernel
#   q4_0_mma1     ingot's kernels with the tensor-core kernel from 1 token on
#                 (INGOT_CUDA_MMA=1; the default starts it at 5): batch 1 on mma
#   q4_K q6_K     ingot's kernels
#   llama.cpp     q4_0 and q8_0 through llama.cpp's own CUDA llama-bench, when
#                 .bench/llama-cuda.tar.xz (tests/gpu/build_llama_cuda.sh) travelled
#   tests/gpu/bench_7b.sh [OUT_DIR]
# $BENCH_DEADLINE_S (default 420): no new row starts after that many seconds, and a
# running one gets 60 s past it; the table is rewritten after every row.
# $BENCH_ROWS: a subset, e.g. "torch NONE TORCHAO_INT4 q4_0".
# BENCH_DRY_RUN=1: the whole script on a CPU machine, before a lease is spent on it:
# tiny shapes (random_gguf --shape mini), the CPU build's binaries (build/bin), the torch
# row on cpu, no bandwidth; every row, parse and table as on the GPU host.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ "${BENCH_DRY_RUN:-0}" = 1 ]; then
  ROOT=$PWD
  B=$ROOT/build-dry-run
  mkdir -p "$B"
  ln -sfn "$ROOT/${INGOT_BUILD_DIR:-build}/bin" "$B/bin"
  [ -f "$B/smol-meta.gguf" ] || "$B/bin/random_gguf" --strip models/SmolLM2-135M-Instruct.Q4_1.gguf "$B/smol-meta.gguf"
  SHAPE=mini DEVICE=cpu THREADS=2
  source tests/gpu/helpers.sh
else
  source tests/gpu/env.sh
  SHAPE=llama2-7b DEVICE=cuda:0 THREADS=16
fi
LOGS=${1:-${OUT:-/tmp/ingot-gpu}}
mkdir -p "$LOGS"
WORK=${INGOT_BENCH_DIR:-/tmp/ingot-7b}
mkdir -p "$WORK"
DEADLINE=$(( SECONDS + ${BENCH_DEADLINE_S:-420} ))
ROWS_WANTED=${BENCH_ROWS:-"TORCHAO_INT4 torch NONE BNB_NF4 TORCHAO_INT8 q4_0 MLX_INT4 BNB_INT8 q8_0 q4_0_mma1 q4_K q6_K"}
RUNS=${BENCH_RUNS:-2}  # after a warm-up run; a GPU's runs agree to a few %
# Decode steps of 1-16 tokens as CUDA graphs (as torch_7b.py's rows) over ingot's paged
# attention; BENCH_GRAPHS=0 for eager steps.
GRAPHS=${BENCH_GRAPHS:-1}
PLAN="128:128:1,128:64:16,512:1:1"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
GPU=${GPU:-"no GPU (dry run)"}
TABLE=$LOGS/bench7b_summary.txt
: > "$LOGS/bench7b_rows.txt"

# Device copy bandwidth in GB/s (torch_7b.py's probe: read + write bytes / time, median
# of 10 copies of 1 GiB), measured once and handed to the torch row.
BW=1
[ "$DEVICE" = cpu ] || BW=$(py tests/gpu/torch_7b.py --bandwidth-only)
[[ $BW =~ ^[0-9]+$ ]] || BW=1  # a failed probe: the table without its % column

# A row's own limit: 300 s, or what is left before the deadline plus 60 s.
row_timeout() { local t=$(( DEADLINE + 60 - SECONDS )); [ $t -gt 300 ] && t=300; [ $t -lt 30 ] && t=30; echo $t; }
wanted() { [[ " $ROWS_WANTED " == *" $1 "* ]] && [ $SECONDS -lt $DEADLINE ]; }
model_for() {  # type -> the file, made once
  local t=$1 f=$WORK/llama7b-$1.gguf
  [ -f "$f" ] || "$B/bin/random_gguf" --fill "$B/smol-meta.gguf" "$f" --shape "$SHAPE" --type "$t" --seed 7 \
    >> "$LOGS/bench7b_gen.txt" 2>&1
  echo "$f"
}
# forward_bench over one file: LABEL MODEL MODES [--quantize PRESET]; its lines go to
# bench7b_LABEL.txt and the parsed rows to bench7b_rows.txt.
ingot_rows() {
  local label=$1 model=$2 modes=$3
  shift 3
  INGOT_CUDA_GRAPHS=$GRAPHS INGOT_CUDA_ATTENTION=ingot INGOT_CUDA_MMA=${ROW_MMA:-} timeout "$(row_timeout)" \
    "$B/bin/forward_bench" "$model" --backend torch --device "$DEVICE" --threads "$THREADS" --kv f16 \
    --runs "$RUNS" --plan "$PLAN" --modes "$modes" "$@" > "$LOGS/bench7b_$label.txt" 2>&1
  local rc=$?
  py - "$label" "$LOGS/bench7b_$label.txt" "$rc" >> "$LOGS/bench7b_rows.txt" <<'PY'
import re, sys
label, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path).read()
quant = re.search(r"quantized with \S+: \d+ modules in ([0-9.]+) s", text)
rows = {}
for m in re.finditer(r"placed on \S+ \[kernels (\w+)\] in ([0-9.]+) s: (\d+) bytes on the device; layer 0 as (\S+), head", text):
    rows[m.group(1)] = {"place_s": float(m.group(2)), "bytes": int(m.group(3)), "form": m.group(4)}
for m in re.finditer(r"\[kernels (\w+)\], .* (\d+) sequence\(s\), prompt (\d+), gen (\d+): prefill ([0-9.]+) tok/s, "
                     r"decode ([0-9.]+) tok/s", text):
    r = rows.setdefault(m.group(1), {})
    batch, prompt = int(m.group(2)), int(m.group(3))
    if int(m.group(4)) == 1: r["pre"] = float(m.group(5))  # the prefill-only entry
    elif batch == 1: r["b1"] = float(m.group(6))
    else: r["b16"] = float(m.group(6))
if not rows:
    err = text.strip().splitlines()[-1][:100] if text.strip() else f"exit {rc}"
    print(f"{label}\t-\tFAIL: {err}")
for mode, r in rows.items():
    print("\t".join([label, mode, r.get("form", "?"), str(r.get("b1", "")), str(r.get("b16", "")),
                     str(r.get("pre", "")), str(r.get("bytes", "")),
                     f"{quant.group(1)}" if quant else "", "" if rc == 0 else f"exit {rc}",
                     str(r.get("place_s", ""))]))
PY
}

# llama.cpp's CUDA llama-bench on the same file, when tests/gpu/build_llama_cuda.sh's
# archive travelled: pp512, and tg128 at depth 128 (128 new tokens after 128 in the
# cache, as ingot's b1 entry), -ngl 99, no FlashAttention (not in that build). No
# batch-16 row: llama-bench decodes one sequence.
# $BENCH_LLAMA_BENCH names another llama-bench (the dry run: the CPU peer's).
LLAMA_BENCH=${BENCH_LLAMA_BENCH:-}
if [ -z "$LLAMA_BENCH" ] && [ "$DEVICE" != cpu ] && [ -f "$ROOT/.bench/llama-cuda.tar.xz" ]; then
  tar xJf "$ROOT/.bench/llama-cuda.tar.xz" -C "$WORK" 2>/dev/null && LLAMA_BENCH=$WORK/llama-cuda/llama-bench
fi
llama_row() {
  [ -n "$LLAMA_BENCH" ] && [ $SECONDS -lt $DEADLINE ] || return 0
  local t=$1 model=$WORK/llama7b-$1.gguf
  LD_LIBRARY_PATH="$(dirname "$LLAMA_BENCH"):${LD_LIBRARY_PATH:-}" timeout "$(row_timeout)" "$LLAMA_BENCH" -m "$model" \
    -ngl 99 -fa 0 -p 512 -n 0 -r 3 -o jsonl > "$LOGS/bench7b_llama_$t.txt" 2>&1
  LD_LIBRARY_PATH="$(dirname "$LLAMA_BENCH"):${LD_LIBRARY_PATH:-}" timeout "$(row_timeout)" "$LLAMA_BENCH" -m "$model" \
    -ngl 99 -fa 0 -p 0 -n 128 -d 128 -r 3 -o jsonl >> "$LOGS/bench7b_llama_$t.txt" 2>&1
  py - "$t" "$LOGS/bench7b_llama_$t.txt" "$model" >> "$LOGS/bench7b_rows.txt" <<'PY'
import json, os, sys
t, path, model = sys.argv[1:4]
pre = dec = ""
for line in open(path):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("n_prompt") == 512 and r.get("n_gen") == 0: pre = f"{r['avg_ts']:.1f}"
    if r.get("n_gen") == 128: dec = f"{r['avg_ts']:.1f}"
print("\t".join([f"{t} llama.cpp", "cuda", "ggml blocks", dec, "-", pre, str(os.path.getsize(model)), "", "", ""]))
PY
}

table() {
py - "$LOGS/bench7b_rows.txt" "$BW" "$GPU" "$LOGS/bench7b_torch.txt" > "$TABLE" <<'PY'
import os, sys
rows_path, bw, gpu, torch_path = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"=== Llama-2-7B shapes (vocab 49152) on {gpu}, copy bandwidth {bw:.0f} GB/s (tests/gpu/bench_7b.sh) ===")
if os.path.exists(torch_path):
    print("-- PyTorch's kernels alone (tests/gpu/torch_7b.py: linear layers only, CUDA-graphed) --")
    print(open(torch_path).read().rstrip())
print("-- ingot (forward_bench: the whole forward, torch row on cuda:0, f16 KV) --")
print(f"{'row':<14} {'kernels':<7} {'form':<22} {'dec b1':>8} {'dec b16':>8} {'pre 512':>8} {'GB':>6} {'% bw':>5} "
      f"{'load s':>6} {'quant s':>7}")
for line in open(rows_path):
    f = line.rstrip("\n").split("\t")
    if len(f) < 10:
        print(f"{f[0]:<14} {' '.join(f[1:])}")
        continue
    label, mode, form, b1, b16, pre, nbytes, qs, err, place_s = f
    gb = int(nbytes) / 1e9 if nbytes else 0
    pct = f"{100 * float(b1) * gb / bw:.0f}%" if b1 and gb and bw > 1 else "-"
    print(f"{label:<14} {mode:<7} {form:<22} {b1 or 'FAIL':>8} {b16 or 'FAIL':>8} {pre or 'FAIL':>8} {gb:6.2f} {pct:>5} "
          f"{place_s:>6} {qs:>7} {err}")
PY
publish "$TABLE"
}

for row in $ROWS_WANTED; do
  wanted "$row" || continue
  case $row in
    torch)
      if [ "$DEVICE" = cpu ]; then
        py -c 'import torch' 2> /dev/null && py tests/gpu/torch_7b.py --device cpu --small --layers 1 --reps 2 \
          > "$LOGS/bench7b_torch.txt" 2>&1
      else
        # torchao's own rows when its wheel travelled (.bench/wheels, unzipped: it needs
        # no dependency the host lacks)
        TAO=
        WHEEL=$(ls "$ROOT"/.bench/wheels/torchao-*.whl 2>/dev/null | head -1)
        if [ -n "$WHEEL" ]; then
          TAO=$WORK/torchao-site
          py -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WHEEL" "$TAO"
        fi
        PYTHONPATH="$TAO${PYTHONPATH:+:$PYTHONPATH}" timeout "$(row_timeout)" py tests/gpu/torch_7b.py --reps 20 --bandwidth "$BW" \
          > "$LOGS/bench7b_torch.txt" 2>&1
      fi ;;
    NONE) ingot_rows "$row" "$(model_for q8_0)" auto --quantize NONE ;;
    TORCHAO_INT4 | MLX_INT4) ingot_rows "$row" "$(model_for q8_0)" auto,all --quantize "$row" ;;
    BNB_NF4 | BNB_INT8 | TORCHAO_INT8) ingot_rows "$row" "$(model_for q8_0)" auto --quantize "$row" ;;
    q4_0) ingot_rows "$row" "$(model_for "$row")" auto,all; llama_row "$row" ;;
    q4_0_mma1) ROW_MMA=1 ingot_rows "$row" "$(model_for q4_0)" all ;;
    q8_0) ingot_rows "$row" "$(model_for "$row")" auto; llama_row "$row" ;;
    *) ingot_rows "$row" "$(model_for "$row")" auto ;;
  esac
  table
done
rm -f "$WORK"/llama7b-*.gguf
echo
cat "$TABLE"
