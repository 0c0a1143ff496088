#!/usr/bin/env bash
# Builds llama.cpp's llama-bench with CUDA, here (no GPU needed: nvcc from
# /usr/local/cuda), for the GPU hosts' sm_90 (H100, H200), from the same llama.cpp
# source as the CPU peer (the PyPI sdist of llama-cpp-python pinned in
# tests/reference/requirements.txt; tests/bench/build_llama_server.sh fetches it), and
# packs it as .bench/llama-cuda.tar.xz for the device tool to carry (carry
# ".bench/llama-cuda.tar.xz"); tests/gpu/bench_7b.sh's llama.cpp row unpacks it.
# One static binary (ggml and llama linked in); the CUDA runtime and cuBLAS come from the
# GPU host's torch wheel (nvidia/*/lib, tests/gpu/env.sh), the driver from the host.
# FlashAttention kernels and NCCL are left out (most of the compile time; llama-bench runs
# -fa 0), so are the CPU's native flags (the host's CPU is another one).
# Runs under nice -n 19 with $BENCH_JOBS (default 2) jobs: 64 minutes on this 2-core
# machine beside other builds (session 12); 48 MB, 26 MB as .tar.xz, so with the bundle
# and the torchao wheel about 60 of the 64 MiB that travel.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/.bench
BUILD=$BENCH/llama.cpp-cuda-build
OUT=$BENCH/llama-cuda.tar.xz
VERSION=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' tests/reference/requirements.txt)
SRC=$BENCH/llama-cpp-python-$VERSION
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  # the CPU build script fetches and unpacks the sdist (and builds the CPU peer)
  tests/bench/build_llama_server.sh > /dev/null
fi
export PATH=/usr/local/cuda/bin:$PATH
if [ ! -f "$BUILD/build.ninja" ]; then
  nice -n 19 cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF \
    -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=OFF -DGGML_CCACHE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_NUMBER=0 >&2
fi
start=$(date +%s)
nice -n 19 cmake --build "$BUILD" --target llama-bench -j "${BENCH_JOBS:-2}" >&2
echo "built llama-bench (CUDA sm_90) in $(( $(date +%s) - start )) s" >&2
STAGE=$BENCH/llama-cuda
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp "$BUILD/bin/llama-bench" "$STAGE/"
strip --strip-unneeded "$STAGE/llama-bench" 2>/dev/null || true
# OpenMP's runtime (ggml's CPU backend links it) may be missing on the host: it travels;
# CUDA's runtime and cuBLAS come from the host's torch (tests/gpu/env.sh).
cp -L "$(ldd "$BUILD/bin/llama-bench" | awk '$1 == "libgomp.so.1" {print $3}')" "$STAGE/"
ldd "$BUILD/bin/llama-bench" | awk '{print $1}' > "$STAGE/NEEDED"
echo "$VERSION" > "$STAGE/VERSION"
XZ_OPT="-6 -T2" tar cJf "$OUT" -C "$BENCH" llama-cuda
echo "llama-cuda: $(du -sh "$STAGE" | cut -f1) unpacked, $(du -sh "$OUT" | cut -f1) as $OUT" >&2
echo "$OUT"
