#!/usr/bin/env bash
# The serving comparison behind the README table: ingotd against llama.cpp's
# llama-server on the same GGUF file, same threads, same machine, one run.
#   tests/bench/serve_compare.sh                      # N = 1,4,16,64, 64+64 tokens
#   STREAMS=1,4 GEN_TOKENS=16 tests/bench/serve_compare.sh    # a quick check
# Steps: a venv for the client (.bench/venv, tests/bench/requirements.txt); llama-server
# built from llama-cpp-python's sdist (build_llama_server.sh); ingotd built with
# scripts/build.sh unless $INGOTD names a binary. ingotd starts once with the model
# loaded with max_sequences = the largest N; llama-server restarts for every N with
# -np N -c N*SLOT_CTX (each slot SLOT_CTX positions) --cont-batching. For each N the two
# run back to back, ingot first at the 1st, 3rd, ... N and llama first at the others.
# Then 16 streams sharing a 400-token system prompt against the model with its prefix
# cache and a second copy loaded with prefix_cache false. Prints the tables (Markdown)
# with ratios ingot/llama and each server's peak RSS; everything, the per-stream JSON
# included, stays in .bench/serve-compare/<time>/.
# Run on an otherwise idle machine. llama.cpp's threads meet at a spinning barrier
# after every op, so any other runnable thread on their cores (the client, a compiler)
# stalls them: on this 2-core VM under other builds, llama-server -t 2 decoded 1-2 tok/s
# and -t 1 34 tok/s. With more cores than THREADS, give the servers and the client
# separate cores (SERVER_CPUS=0-1 CLIENT_CPUS=2-3, taskset lists); on 2 cores the
# client's share per token is small but not zero, and both servers pay it alike.
#
# Environment (defaults): MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (2),
# STREAMS (1,4,16,64), PROMPT_TOKENS (64), GEN_TOKENS (64), SHARED_STREAMS (16; 0 skips
# the shared-prefix run), SHARED_PREFIX_TOKENS (400), SLOT_CTX (512), INGOT_PORT (50871),
# LLAMA_PORT (8089), INGOTD (build it), LLAMA_SERVER (build it), PROTO_DIR (proto: the
# .proto files ingotd was built from, for the client's stubs), SERVER_CPUS and
# CLIENT_CPUS (unset: no pinning).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
STREAMS=${STREAMS:-1,4,16,64}
PROMPT_TOKENS=${PROMPT_TOKENS:-64}
GEN_TOKENS=${GEN_TOKENS:-64}
SHARED_STREAMS=${SHARED_STREAMS:-16}
SHARED_PREFIX_TOKENS=${SHARED_PREFIX_TOKENS:-400}
SLOT_CTX=${SLOT_CTX:-512}
INGOT_PORT=${INGOT_PORT:-50871}
LLAMA_PORT=${LLAMA_PORT:-8089}
PROTO_DIR=${PROTO_DIR:-proto}
server_pin=()
client_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${CLIENT_CPUS:-}" ] && client_pin=(taskset -c "$CLIENT_CPUS")
[ -f "$MODEL" ] || { echo "no $MODEL (scripts/fetch_model.sh fetches the default)" >&2; exit 1; }
MODEL=$(realpath "$MODEL")

# Client venv, rebuilt when requirements.txt changes.
VENV=.bench/venv
REQ=tests/bench/requirements.txt
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "serve_compare: installing the client into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ" </dev/null
  echo "$want" >"$VENV/.requirements.sha256"
fi
PY=$VENV/bin/python

LLAMA_SERVER=${LLAMA_SERVER:-$(tests/bench/build_llama_server.sh)}
if [ -z "${INGOTD:-}" ]; then
  scripts/build.sh ingotd >&2
  INGOTD=${INGOT_BUILD_DIR:-build}/bin/ingotd
fi

OUT=.bench/serve-compare/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
for port in "$INGOT_PORT" "$LLAMA_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (set INGOT_PORT / LLAMA_PORT)" >&2
    exit 1
  fi
done

INGOTD_PID=
LLAMA_PID=
cleanup() {
  [ -n "$LLAMA_PID" ] && kill "$LLAMA_PID" 2>/dev/null && wait "$LLAMA_PID" 2>/dev/null
  [ -n "$INGOTD_PID" ] && kill "$INGOTD_PID" 2>/dev/null && wait "$INGOTD_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT

peak_rss_mib() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

"${server_pin[@]}" "$INGOTD" --listen "127.0.0.1:$INGOT_PORT" --metrics-listen "" --threads "$THREADS" \
  >"$OUT/ingotd.log" 2>&1 &
INGOTD_PID=$!

start_llama() {  # $1 = slots
  "${server_pin[@]}" "$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np "$1" -c $(( $1 * SLOT_CTX )) \
    --cont-batching --host 127.0.0.1 --port "$LLAMA_PORT" >"$OUT/llama-server-np$1.log" 2>&1 &
  LLAMA_PID=$!
  for _ in $(seq 600); do
    if "$PY" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$LLAMA_PORT/health', timeout=1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$LLAMA_PID" 2>/dev/null || { cat "$OUT/llama-server-np$1.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "llama-server did not come up" >&2
  exit 1
}
stop_llama() {
  echo "llama-server -np $1: peak RSS $(peak_rss_mib "$LLAMA_PID") MiB" >>"$OUT/rss.txt"
  kill "$LLAMA_PID"
  wait "$LLAMA_PID" 2>/dev/null || true
  LLAMA_PID=
}

bench=("${client_pin[@]}" "$PY" tests/bench/serve_bench.py --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS"
       --proto-dir "$PROTO_DIR")
max_n=$(tr ',' '\n' <<<"$STREAMS" | sort -n | tail -1)
max_seq=$(( max_n > SHARED_STREAMS ? max_n : SHARED_STREAMS ))
run_ingot() {  # $1 = N
  "${bench[@]}" --ingot "127.0.0.1:$INGOT_PORT" --model smol --load "$MODEL" \
    --max-sequences "$max_seq" --streams "$1" --json "$OUT/ingot-n$1.json" >>"$OUT/runs.md"
}
run_llama() {
  start_llama "$1"
  "${bench[@]}" --llama "http://127.0.0.1:$LLAMA_PORT" --streams "$1" \
    --json "$OUT/llama-n$1.json" >>"$OUT/runs.md"
  stop_llama "$1"
}

i=0
jsons=()
for n in ${STREAMS//,/ }; do
  if (( i % 2 == 0 )); then run_ingot "$n"; run_llama "$n"; else run_llama "$n"; run_ingot "$n"; fi
  jsons+=("$OUT/ingot-n$n.json" "$OUT/llama-n$n.json")
  i=$(( i + 1 ))
done
echo "ingotd: peak RSS $(peak_rss_mib "$INGOTD_PID") MiB after the N runs" >>"$OUT/rss.txt"

shared=()
if (( SHARED_STREAMS > 0 )); then
  sp=("${bench[@]}" --ingot "127.0.0.1:$INGOT_PORT" --streams "$SHARED_STREAMS"
      --shared-prefix-tokens "$SHARED_PREFIX_TOKENS" --load "$MODEL" --max-sequences "$max_seq")
  "${sp[@]}" --model smol --label "ingot prefix cache" --json "$OUT/shared-cache.json" >>"$OUT/runs.md"
  "${sp[@]}" --model smol-nocache --no-prefix-cache --label "ingot no prefix cache" \
    --json "$OUT/shared-nocache.json" >>"$OUT/runs.md"
  shared=("$OUT/shared-cache.json" "$OUT/shared-nocache.json")
fi

# The checkout ingotd was built in (its build/bin lies inside it).
ingot_dir=$(dirname "$INGOTD")
ingot_rev=$(git -C "$ingot_dir" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$ingot_dir" diff --quiet HEAD 2>/dev/null || ingot_rev+=+dirty
{
  echo "# ingot vs llama-server, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
  echo "command: STREAMS=$STREAMS PROMPT_TOKENS=$PROMPT_TOKENS GEN_TOKENS=$GEN_TOKENS THREADS=$THREADS SHARED_STREAMS=$SHARED_STREAMS${SERVER_CPUS:+ SERVER_CPUS=$SERVER_CPUS}${CLIENT_CPUS:+ CLIENT_CPUS=$CLIENT_CPUS} tests/bench/serve_compare.sh"
  echo "model: $MODEL; ingotd: $INGOTD ($ingot_rev); llama-server: llama.cpp $(cat "$(dirname "$LLAMA_SERVER")/../COMMIT" 2>/dev/null || echo '?') -t $THREADS -np N -c N*$SLOT_CTX --cont-batching"
  "$PY" tests/bench/serve_bench.py --compare "${jsons[@]}"
  if (( ${#shared[@]} )); then
    echo
    echo "## shared prefix: $SHARED_STREAMS streams, the same $SHARED_PREFIX_TOKENS-token system prompt (warm) + a distinct note each"
    "$PY" tests/bench/serve_bench.py --compare "${shared[@]}"
  fi
  echo
  echo "peak RSS (VmHWM):"
  sed 's/^/- /' "$OUT/rss.txt"
} | tee "$OUT/table.md"
echo "results: $OUT (table.md, runs.md, *.json, server logs)" >&2
