#!/usr/bin/env bash
# Builds llama.cpp's llama-server and llama-bench (CPU only, Release, Ninja) from the llama.cpp source
# that the PyPI sdist of llama-cpp-python carries in vendor/llama.cpp, at the version
# pinned in tests/reference/requirements.txt, so the peer is the same llama.cpp the
# goldens were made with and nothing is downloaded from outside PyPI. Everything lives
# in the git-ignored .bench/; skips when the binary exists. Prints the binary's path
# on stdout (progress on stderr).
#   tests/bench/build_llama_server.sh        # -> .bench/llama.cpp-build/bin/llama-server
# llama-bench lands beside it (bin/llama-bench; tests/bench/bench_compare.sh runs it).
# $BENCH_JOBS: parallel compile jobs (default 2); runs under nice -n 10.
# About 12 CPU-minutes (6 minutes on 2 idle cores). GGML_NATIVE is on (llama.cpp's
# default): the binary is built for this CPU, like ingot's kernels, so build it on the
# machine that benchmarks. Rebuilds from scratch when the CMake arguments below change.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/.bench
BUILD=$BENCH/llama.cpp-build
BIN=$BUILD/bin/llama-server
TARGETS=(llama-server llama-bench)
# CPU only; no curl/OpenSSL (models are local files), no web UI (the prebuilt one would
# be fetched from Hugging Face), only the llama-server and llama-bench targets. No AMX: on the Xeons
# with amx_int8 that we bench on, llama.cpp 0c1e57098's AMX matmul segfaults on the
# first forward (ggml_backend_amx_mul_mat; llama.cpp issue 20824, fix pending in PR
# 26954), and GGML_NATIVE's -march=native would turn it on. So llama.cpp runs its AVX-512
# (VNNI) kernels there, while ingot uses its AMX-INT8 tile (kernels/cpu/tile_amx.h) for
# 9-16-token batches where the CPU has AMX (INGOT_CPU_LEVEL=avx512vnni turns it off for a
# like-for-like run).
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX"
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_CUDA=OFF)
same_args=false
[ "$(cat "$BUILD/ARGS" 2>/dev/null)" = "${CMAKE_ARGS[*]}" ] && same_args=true
if $same_args && [ -x "$BIN" ] && [ -x "$BUILD/bin/llama-bench" ]; then
  echo "$BIN"
  exit 0
fi

VERSION=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' tests/reference/requirements.txt)
[ -n "$VERSION" ] || { echo "no llama-cpp-python pin in tests/reference/requirements.txt" >&2; exit 1; }
SDIST=$BENCH/sdist/llama_cpp_python-$VERSION.tar.gz
SRC=$BENCH/llama-cpp-python-$VERSION
mkdir -p "$BENCH/sdist"
if [ ! -f "$SDIST" ]; then
  echo "pip download llama-cpp-python==$VERSION (sdist)" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    -d "$BENCH/sdist" "llama-cpp-python==$VERSION" >&2
fi
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar -xzf "$SDIST" -C "$SRC.tmp" --strip-components=1
  # vendor/llama.cpp/.git points at the sdist maker's submodule gitdir, which the sdist
  # lacks; without it llama.cpp's build-info does not ask git (which would fail or,
  # worse, find the ingot checkout above and report its commit).
  rm -f "$SRC.tmp/vendor/llama.cpp/.git"
  mv "$SRC.tmp" "$SRC"
fi

# The sdist has no git history: the upstream commit is the one llama-cpp-python's
# changelog names for this release ("update llama.cpp to ggml-org/llama.cpp@0c1e57098").
COMMIT=$(awk -v v="## [$VERSION]" '$0 == v {f = 1; next} /^## \[/ {f = 0}
  f && match($0, /llama\.cpp@[0-9a-f]+/) {print substr($0, RSTART + 10, RLENGTH - 10); exit}' \
  "$SRC/CHANGELOG.md")
COMMIT=${COMMIT:-unknown}
echo "llama.cpp $COMMIT (llama-cpp-python $VERSION)" >&2

start=$(date +%s)
# Same flags as an earlier build (one that made only llama-server): build what is
# missing in place; other flags: start clean.
if ! $same_args || [ ! -f "$BUILD/build.ninja" ]; then
  rm -rf "$BUILD"
  nice -n 10 cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" "${CMAKE_ARGS[@]}" \
    -DLLAMA_BUILD_COMMIT="$COMMIT" -DLLAMA_BUILD_NUMBER=0 >&2
fi
nice -n 10 cmake --build "$BUILD" --target "${TARGETS[@]}" -j "${BENCH_JOBS:-2}" >&2
echo "${CMAKE_ARGS[*]}" >"$BUILD/ARGS"
echo "$COMMIT" >"$BUILD/COMMIT"
echo "built ${TARGETS[*]} in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
