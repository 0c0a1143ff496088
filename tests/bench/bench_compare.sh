#!/usr/bin/env bash
# Single-stream speed: `ingot bench` (client/bench.cc, through a real ingotd) against
# llama.cpp's llama-bench on the same GGUF file, same threads, alternated in one run.
#   tests/bench/bench_compare.sh                          # 7 rounds, pp512 / tg128
#   ROUNDS=3 PROMPT_TOKENS=128 GEN_TOKENS=64 tests/bench/bench_compare.sh
# What is compared, per round:
#   prompt processing: ingot's prefill of PROMPT_TOKENS (the server's timing: prompt
#     tokens / (first token - admission), so it includes the first token's sampling)
#     against llama-bench -p PROMPT_TOKENS -n 0;
#   decode: ingot's decode rate after that prompt ((generated - 1) / (last token -
#     first token), server side, no gRPC in it) against llama-bench -p 0 -n GEN_TOKENS
#     -d PROMPT_TOKENS (GEN_TOKENS tokens at the same depth).
# Odd rounds run ingot first, even rounds llama-bench first; each side warms up once
# before round 1 (llama-bench also warms up inside every call, as it does by default).
# ingotd loads the model with --no-prefix-cache: every round's prompt is the same, and
# with the cache on the second round's prefill would be served from it.
# Prints the medians of the rounds and ingot/llama ratios (Markdown), with `uptime` before
# and after; every round's numbers stay in .bench/bench-compare/<time>/. Run on an idle
# machine (see serve_compare.sh on llama.cpp's spinning threads under load).
#
# Environment (defaults): MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (2),
# ROUNDS (7), PROMPT_TOKENS (512), GEN_TOKENS (128), INGOT_PORT (50873), INGOTD and
# INGOT (build them), LLAMA_BENCH (built beside llama-server by build_llama_server.sh),
# INGOTD_ARGS (extra ingotd flags), LLAMA_ARGS (extra llama-bench flags: `--poll 0`
# makes its threads sleep instead of spin between ops, which matters on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-7}
PROMPT_TOKENS=${PROMPT_TOKENS:-512}
GEN_TOKENS=${GEN_TOKENS:-128}
INGOT_PORT=${INGOT_PORT:-50873}
[ -f "$MODEL" ] || { echo "no $MODEL (scripts/fetch_model.sh fetches the default)" >&2; exit 1; }
MODEL=$(realpath "$MODEL")

if [ -z "${LLAMA_BENCH:-}" ]; then
  LLAMA_BENCH=$(dirname "$(tests/bench/build_llama_server.sh)")/llama-bench
fi
if [ -z "${INGOTD:-}" ] || [ -z "${INGOT:-}" ]; then
  scripts/build.sh ingotd ingot >&2
  INGOTD=${INGOT_BUILD_DIR:-build}/bin/ingotd
  INGOT=${INGOT_BUILD_DIR:-build}/bin/ingot
fi

OUT=.bench/bench-compare/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
if (exec 3<>"/dev/tcp/127.0.0.1/$INGOT_PORT") 2>/dev/null; then
  echo "port $INGOT_PORT is in use (set INGOT_PORT)" >&2
  exit 1
fi
INGOTD_PID=
cleanup() {
  [ -n "$INGOTD_PID" ] && kill "$INGOTD_PID" 2>/dev/null && wait "$INGOTD_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT

# shellcheck disable=SC2086
"$INGOTD" --listen "127.0.0.1:$INGOT_PORT" --metrics-listen "" --threads "$THREADS" ${INGOTD_ARGS:-} \
  >"$OUT/ingotd.log" 2>&1 &
INGOTD_PID=$!
ingot=("$INGOT" --server "127.0.0.1:$INGOT_PORT")
for _ in $(seq 300); do
  "${ingot[@]}" models >/dev/null 2>&1 && break
  kill -0 "$INGOTD_PID" 2>/dev/null || { cat "$OUT/ingotd.log" >&2; exit 1; }
  sleep 0.2
done
"${ingot[@]}" load bench "$MODEL" --no-prefix-cache >"$OUT/load.log" 2>&1 || { cat "$OUT/load.log" >&2; exit 1; }

run_ingot() {  # $1 = runs to keep (0: warm-up only)
  local runs=$(( $1 > 0 ? $1 : 1 ))
  "${ingot[@]}" bench bench --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" \
    --runs "$runs" --warmup 0 --json
}
run_llama() {  # prompt processing, then decode at the prompt's depth: two JSON arrays
  # shellcheck disable=SC2086
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -r 1 -p "$PROMPT_TOKENS" -n 0 ${LLAMA_ARGS:-} -o jsonl \
    2>>"$OUT/llama-bench.log"
  # shellcheck disable=SC2086
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -r 1 -p 0 -n "$GEN_TOKENS" -d "$PROMPT_TOKENS" ${LLAMA_ARGS:-} -o jsonl \
    2>>"$OUT/llama-bench.log"
}

echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt" >&2
run_ingot 0 >/dev/null
run_llama >/dev/null
for r in $(seq "$ROUNDS"); do
  if (( r % 2 == 1 )); then
    run_ingot 1 >"$OUT/ingot-$r.json"
    run_llama >"$OUT/llama-$r.jsonl"
  else
    run_llama >"$OUT/llama-$r.jsonl"
    run_ingot 1 >"$OUT/ingot-$r.json"
  fi
  echo "round $r done ($(cut -d, -f3- <<<"$(uptime)"))" >&2
done
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt" >&2

ingot_rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
git diff --quiet HEAD 2>/dev/null || ingot_rev+=+dirty
{
  echo "# ingot bench vs llama-bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
  llama_args=${LLAMA_ARGS:+ LLAMA_ARGS=\"$LLAMA_ARGS\"}
  echo "command: ROUNDS=$ROUNDS PROMPT_TOKENS=$PROMPT_TOKENS GEN_TOKENS=$GEN_TOKENS THREADS=$THREADS$llama_args tests/bench/bench_compare.sh"
  echo "model: $MODEL; ingotd: $INGOTD ($ingot_rev); llama-bench: llama.cpp $(cat "$(dirname "$LLAMA_BENCH")/../COMMIT" 2>/dev/null || echo '?')"
  sed 's/^/- /' "$OUT/uptime.txt"
  python3 - "$OUT" "$ROUNDS" "$PROMPT_TOKENS" "$GEN_TOKENS" <<'EOF'
import json, statistics, sys
out, rounds, pp, tg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ingot = {"pp": [], "tg": []}
llama = {"pp": [], "tg": []}
for r in range(1, rounds + 1):
    j = json.load(open(f"{out}/ingot-{r}.json"))
    ingot["pp"].append(j["median_prefill_tokens_per_second"])
    ingot["tg"].append(j["median_decode_tokens_per_second"])
    for line in open(f"{out}/llama-{r}.jsonl"):
        if not line.strip():
            continue
        t = json.loads(line)
        llama["pp" if t["n_gen"] == 0 else "tg"].append(t["avg_ts"])
print()
print(f"| test | ingot tok/s (median of {rounds}) | llama-bench tok/s (median of {rounds}) | ingot / llama |")
print("|---|---:|---:|---:|")
names = {"pp": f"prompt processing pp{pp}", "tg": f"decode tg{tg} @ depth {pp}"}
for k in ("pp", "tg"):
    a, b = statistics.median(ingot[k]), statistics.median(llama[k])
    print(f"| {names[k]} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
print()
for k in ("pp", "tg"):
    print(f"- {k} rounds, ingot: {', '.join(f'{v:.1f}' for v in ingot[k])}; "
          f"llama: {', '.join(f'{v:.1f}' for v in llama[k])}")
EOF
} | tee "$OUT/table.md"
echo "results: $OUT (table.md, per-round JSON, logs)" >&2
