#!/usr/bin/env bash
# Builds the checkpoint-parser fuzzers (libFuzzer + AddressSanitizer + UBSan, clang)
# straight from the sources (no CMake) and runs each for a bounded time; exits non-zero
# on any crash, leak, sanitizer report or timeout.
#   tests/fuzz/run_fuzzers.sh [seconds_per_target=20] [target ...]
#   targets: safetensors npz torch_pickle gguf grammar (default: all)
# Needs clang++ and the compiler-rt fuzzer runtime (Debian: clang, libclang-rt-14-dev),
# plus the project's build dependencies (libabsl-dev, nlohmann-json3-dev, zlib1g-dev).
# Binaries, corpora and crash artifacts go to $FUZZ_OUT (default build-fuzz/); the
# corpora grow across runs, seeded from the committed test files. Exit status: 0 all
# clean, 1 a target failed (its log tail is printed), 77 no usable clang (skipped).
# Reproduce a crash: $FUZZ_OUT/<target>_fuzzer $FUZZ_OUT/artifacts/<target>-crash-...
set -euo pipefail
ROOT=${INGOT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SECS=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors npz torch_pickle gguf grammar)
OUT=${FUZZ_OUT:-$ROOT/build-fuzz}
CXX=${FUZZ_CXX:-clang++}
MAX_LEN=${FUZZ_MAX_LEN:-65536}

if ! command -v "$CXX" >/dev/null; then
  echo "run_fuzzers.sh: $CXX not found; install clang and libclang-rt-14-dev" >&2
  exit 77
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$CXX" -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "run_fuzzers.sh: $CXX cannot link -fsanitize=fuzzer; install libclang-rt-14-dev" >&2
  exit 77
fi

mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/seeds" "$OUT/artifacts"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
# INGOT_FUZZING: MappedFile reads files into exact-size heap buffers (see mapped_file.cc).
CXXFLAGS="-std=c++20 -g -O1 $SAN -I$ROOT -DNDEBUG -DINGOT_FUZZING"
ABSL_LIBS=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format \
  absl_flat_hash_map absl_hash absl_raw_hash_set)

# Library sources each target needs (gguf's type table pulls in the reference
# dequantizers it points at).
declare -A SOURCES=(
  [safetensors]="engine/formats/safetensors.cc engine/formats/mapped_file.cc engine/formats/file_access.cc"
  [npz]="engine/formats/npz.cc engine/formats/zip.cc engine/formats/mapped_file.cc engine/formats/file_access.cc"
  [torch_pickle]="engine/formats/torch_pickle.cc engine/formats/torch_pickle_machine.cc engine/formats/torch_pickle_value.cc engine/formats/zip.cc engine/formats/mapped_file.cc engine/formats/file_access.cc"
  [gguf]="engine/formats/gguf.cc engine/formats/mapped_file.cc engine/formats/file_access.cc kernels/ggml_types.cc kernels/cpu/dequant_ref.cc kernels/cpu/dequant_k_ref.cc"
  [grammar]="engine/grammar/gbnf_parser.cc engine/grammar/grammar.cc engine/grammar/matcher.cc engine/grammar/json_schema.cc engine/grammar/json_schema_terms.cc engine/grammar/json_schema_pattern.cc engine/tokenizer/unicode.cc"
)

# Compiles src into an instrumented object unless it is newer than every input
# (the source, the headers of engine/formats and kernels/cpu, this script).
compile() {
  local src=$1 obj=$2
  if [ -f "$obj" ] && [ -z "$(find "$ROOT/$src" "$ROOT"/engine/formats/*.h "$ROOT"/engine/grammar/*.h "$ROOT"/engine/common/*.h \
      "$ROOT"/kernels/cpu/*.h "$ROOT"/tests/fuzz/*.h "$0" -newer "$obj" 2>/dev/null | head -1)" ]; then
    return
  fi
  echo "  compile $src" >&2
  "$CXX" $CXXFLAGS -fsanitize=fuzzer-no-link -c "$ROOT/$src" -o "$obj"
}

build() {
  local t=$1 objs=()
  for src in ${SOURCES[$t]} tests/fuzz/${t}_fuzzer.cc; do
    local obj="$OUT/obj/$(echo "$src" | tr '/' '_').o"
    compile "$src" "$obj"
    objs+=("$obj")
  done
  "$CXX" $CXXFLAGS -fsanitize=fuzzer "${objs[@]}" $ABSL_LIBS -lz -o "$OUT/${t}_fuzzer"
}

# Seeds: the committed files of each format (small enough for MAX_LEN), named after
# their paths; for the pickle target also the bare data.pkl of every torch archive.
seed() {
  local t=$1 dir="$OUT/seeds/$1" data="$ROOT/tests/data" pattern
  rm -rf "$dir" && mkdir -p "$dir"
  case $t in
    safetensors) pattern='.*\.safetensors' ;;
    npz) pattern='.*\.np[yz]' ;;
    gguf) pattern='.*\.gguf' ;;
    torch_pickle) pattern='.*\.pt' ;;
    grammar) pattern='.*/grammar/.*' ;;
  esac
  find "$data" -regex "$pattern" -size -"$((MAX_LEN / 1024))"k -print0 |
    while IFS= read -r -d '' f; do
      rel=${f#"$data"/}
      cp "$f" "$dir/${rel//\//_}"
    done
  if [ "$t" = grammar ]; then
    # The mode byte first: 0 GBNF, 1 JSON Schema.
    for f in "$dir"/*; do
      case $f in *.json) m='\001' ;; *) m='\000' ;; esac
      { printf "$m"; cat "$f"; } > "$f.in" && mv "$f.in" "$f"
    done
  fi
  if [ "$t" = torch_pickle ] && command -v python3 >/dev/null; then
    python3 - "$dir" "$data" <<'EOF'
import os, sys, zipfile
d, data = sys.argv[1], sys.argv[2]
def extract(p, out):
    with zipfile.ZipFile(p) as z:
        for e in z.namelist():
            if e.endswith("/data.pkl"):
                with open(out, "wb") as f:
                    f.write(z.read(e))
for n in os.listdir(d):
    p = os.path.join(d, n)
    if n.endswith(".pt") and zipfile.is_zipfile(p):
        extract(p, p[:-3] + ".pkl")
# The pickles of the larger archives too (torchao's wrapper subclasses, ...).
for root, _, files in os.walk(data):
    for n in files:
        p = os.path.join(root, n)
        if n.endswith(".bin") and zipfile.is_zipfile(p):
            extract(p, os.path.join(d, os.path.relpath(p, data).replace("/", "_")[:-4] + ".pkl"))
EOF
  fi
}

status=0
for t in "${TARGETS[@]}"; do
  [ -n "${SOURCES[$t]:-}" ] || { echo "unknown target $t" >&2; exit 2; }
  echo "== $t: build" >&2
  build "$t"
  seed "$t"
  mkdir -p "$OUT/corpus/$t"
  echo "== $t: fuzz for ${SECS}s" >&2
  # -timeout: one input may take at most 10 s; -rss_limit_mb bounds allocations.
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$OUT/${t}_fuzzer" -max_total_time="$SECS" -max_len="$MAX_LEN" -timeout=10 \
         -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="$OUT/artifacts/${t}-" "$OUT/corpus/$t" "$OUT/seeds/$t" \
         > "$OUT/$t.log" 2>&1; then
    echo "FAIL: $t (log: $OUT/$t.log; artifacts in $OUT/artifacts)" >&2
    tail -40 "$OUT/$t.log" >&2
    status=1
  else
    echo "ok: $t ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$') runs)" >&2
  fi
done
exit $status
