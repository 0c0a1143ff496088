#!/usr/bin/env bash
# KV blocks of 16 against blocks of 32 (ingotd --kv-block-tokens), alternated in one run:
#   tests/bench/block_compare.sh                  # 3 rounds, N = 1,16, 64+64 tokens
#   ROUNDS=1 STREAMS=1 tests/bench/block_compare.sh
# Each round runs, for each block size in turn (16 first in odd rounds, 32 first in even
# ones): forward_bench (Forward alone, f16 KV as served, --batch 1 and 16) and
# serve_bench.py against an ingotd started with that block size (greedy, distinct
# prompts, N streams). Both ingotds stay up for the whole run; the one not measured is
# idle. Prints the medians per block size (Markdown) with `uptime` before and after;
# every run stays in .bench/block-compare/<time>/.
#
# Environment (defaults): MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (2),
# ROUNDS (3), STREAMS (1,16), PROMPT_TOKENS (64), GEN_TOKENS (64), BLOCKS (16,32),
# PORT (50875: block size i listens on PORT + i), INGOTD / FORWARD_BENCH (build them).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-1,16}
PROMPT_TOKENS=${PROMPT_TOKENS:-64}
GEN_TOKENS=${GEN_TOKENS:-64}
PORT=${PORT:-50875}
IFS=, read -r -a blocks <<<"${BLOCKS:-16,32}"
[ -f "$MODEL" ] || { echo "no $MODEL (scripts/fetch_model.sh fetches the default)" >&2; exit 1; }
MODEL=$(realpath "$MODEL")

VENV=.bench/venv  # serve_compare.sh's client venv
REQ=tests/bench/requirements.txt
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$(sha256sum "$REQ" | cut -d' ' -f1)" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ" </dev/null
  sha256sum "$REQ" | cut -d' ' -f1 >"$VENV/.requirements.sha256"
fi
PY=$VENV/bin/python
if [ -z "${INGOTD:-}" ] || [ -z "${FORWARD_BENCH:-}" ]; then
  scripts/build.sh ingotd forward_bench >&2
  INGOTD=${INGOT_BUILD_DIR:-build}/bin/ingotd
  FORWARD_BENCH=${INGOT_BUILD_DIR:-build}/bin/forward_bench
fi

OUT=.bench/block-compare/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
for i in "${!blocks[@]}"; do
  "$INGOTD" --listen "127.0.0.1:$((PORT + i))" --metrics-listen "" --threads "$THREADS" \
    --kv-block-tokens "${blocks[$i]}" >"$OUT/ingotd-b${blocks[$i]}.log" 2>&1 &
  pids+=($!)
done
for i in "${!blocks[@]}"; do  # until each listens
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + i))") 2>/dev/null && break
    kill -0 "${pids[$i]}" 2>/dev/null || { cat "$OUT/ingotd-b${blocks[$i]}.log" >&2; exit 1; }
    sleep 0.2
  done
done

max_n=$(tr ',' '\n' <<<"$STREAMS" | sort -n | tail -1)
measure() {  # $1 = index into blocks, $2 = round
  local b=${blocks[$1]}
  for batch in 1 16; do
    "$FORWARD_BENCH" "$MODEL" --threads "$THREADS" --prompt "$PROMPT_TOKENS" --gen "$GEN_TOKENS" --runs 3 \
      --batch "$batch" --kv f16 --block-tokens "$b" | tail -1 >"$OUT/forward-b$b-batch$batch-r$2.txt"
  done
  local load=()
  (( $2 == 1 )) && load=(--load "$MODEL" --max-sequences "$max_n")
  "$PY" tests/bench/serve_bench.py --ingot "127.0.0.1:$((PORT + $1))" --model smol "${load[@]}" \
    --streams "$STREAMS" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --label "block $b" \
    --json "$OUT/serve-b$b-r$2.json" >>"$OUT/runs.md"
}

echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt" >&2
for r in $(seq "$ROUNDS"); do
  order=("${!blocks[@]}")
  (( r % 2 == 0 )) && mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
  for i in "${order[@]}"; do measure "$i" "$r"; done
  echo "round $r done ($(cut -d, -f3- <<<"$(uptime)"))" >&2
done
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt" >&2

{
  echo "# KV blocks ${blocks[*]}, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
  echo "command: ROUNDS=$ROUNDS STREAMS=$STREAMS PROMPT_TOKENS=$PROMPT_TOKENS GEN_TOKENS=$GEN_TOKENS THREADS=$THREADS tests/bench/block_compare.sh ($(git rev-parse --short HEAD))"
  sed 's/^/- /' "$OUT/uptime.txt"
  "$PY" - "$OUT" "$ROUNDS" "$STREAMS" "${blocks[@]}" <<'EOF'
import json, re, statistics, sys
out, rounds, streams, blocks = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
levels = [int(x) for x in streams.split(",")]
med = lambda v: statistics.median(v) if v else float("nan")
print()
print(f"| block | forward_bench decode, batch 1 | batch 16 | " +
      " | ".join(f"ingotd N={n} tok/s | TTFT p50 ms" for n in levels) + " |")
print("|---" * (3 + 2 * len(levels)) + "|")
for b in blocks:
    fwd = {1: [], 16: []}
    serve = {n: ([], []) for n in levels}
    for r in range(1, rounds + 1):
        for batch in fwd:
            line = open(f"{out}/forward-b{b}-batch{batch}-r{r}.txt").read()
            fwd[batch].append(float(re.search(r"decode ([0-9.]+) tok/s", line).group(1)))
        for run in json.load(open(f"{out}/serve-b{b}-r{r}.json"))["runs"]:
            n = run["streams"]
            serve[n][0].append(run["aggregate_tok_s"])
            serve[n][1].append(run["ttft_p50_ms"])
    cells = [f"{med(fwd[1]):.1f}", f"{med(fwd[16]):.1f}"]
    for n in levels:
        cells += [f"{med(serve[n][0]):.1f}", f"{med(serve[n][1]):.0f}"]
    print(f"| {b} | " + " | ".join(cells) + " |")
print(f"\nmedians of {rounds} rounds (forward_bench: each round's own median of 3 runs)")
EOF
} | tee "$OUT/table.md"
echo "results: $OUT" >&2
