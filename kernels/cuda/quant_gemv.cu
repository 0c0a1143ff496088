// nvcc -std=c++17 -arch=sm_90 -c quant_gemv.cu (CMake: -DINGOT_CUDA=ON).
//
// GEMV: one warp per output row, 4 rows per 128-thread block. Lane l decodes chunks
// l, l + 32, ... of its row (32 weights each, quant_decode.h) into registers and
// multiplies them with the same 32 columns of each of the step's m tokens (bf16 pairs),
// accumulating in f32; the warp then reduces by shuffles and lane 0 writes the m
// outputs. Adjacent lanes read adjacent chunks, so a warp reads a contiguous stretch of
// the row (e.g. 32 x 18 bytes of Q4_0) and of x per iteration; each weight byte is read
// once per step whatever m is, which is what makes decode bandwidth-bound on the
// weights alone. m is a template bound (1, 4 or 16) so the accumulators stay in
// registers.
//
// ptxas (sm_90, nvcc 13.0): 32-96 registers per thread, no spills, for every format and
// width. Expected, not yet measured (no GPU in the sessions that wrote it): a 4096 x 4096 Q4_0
// layer is 9.4 MB; at the H100's ~3 TB/s a perfect read is ~3 us. Byte loads of 18-byte
// blocks and the f16 -> f32 scale conversions per chunk cost issue slots, so the first
// version is expected well below the bandwidth goal (60%); vectorized 16-byte loads with
// a repacked upload layout are the next step once tests/gpu/run.sh has numbers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/quant_gemv.h"

namespace ingot::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

template <QuantFormat F, int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    GemvKernel(QuantView v, const __nv_bfloat16* x, int64_t ldx, int m, __nv_bfloat16* y, int64_t ldy) {
  if constexpr (F == QuantFormat::kCodebook) {
    // The 16 code values from shared memory: every weight looks one up, and a global
    // (L1) load per weight would cost more issue slots than the weight's own bytes.
    // Before any warp leaves (the barrier wants the whole block).
    __shared__ float book[16];
    if (threadIdx.x < 16) book[threadIdx.x] = v.book[threadIdx.x];
    __syncthreads();
    v.book = book;
  }
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= v.rows) return;  // whole warps leave together
  const int64_t chunks = v.cols / kChunk;
  float acc[M];
#pragma unroll
  for (int t = 0; t < M; ++t) acc[t] = 0.0f;
  float w[kChunk];
  for (int64_t c = lane; c < chunks; c += 32) {
    DecodeChunk<F>(v, r, c, w);
#pragma unroll
    for (int t = 0; t < M; ++t) {
      if (t < m) {
        const auto* xs = reinterpret_cast<const __nv_bfloat162*>(x + t * ldx + c * kChunk);
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < kChunk / 2; ++j) {
          const float2 f = __bfloat1622float2(xs[j]);
          s = fmaf(w[2 * j], f.x, s);
          s = fmaf(w[2 * j + 1], f.y, s);
        }
        acc[t] += s;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < M; ++t) {
    float s = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0 && t < m) y[t * ldy + r] = __float2bfloat16(s);
  }
}

// One thread per chunk: 32 bf16 out.
template <QuantFormat F>
__global__ void ToBf16Kernel(QuantView v, __nv_bfloat16* out) {
  const int64_t chunks = v.cols / kChunk;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= v.rows * chunks) return;
  const int64_t r = i / chunks, c = i % chunks;
  float w[kChunk];
  DecodeChunk<F>(v, r, c, w);
  __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(out + r * v.cols + c * kChunk);
#pragma unroll
  for (int j = 0; j < kChunk / 2; ++j) o[j] = __floats2bfloat162_rn(w[2 * j], w[2 * j + 1]);
}

template <QuantFormat F>
int LaunchGemv(const QuantView& v, const void* x, int64_t ldx, int m, void* y, int64_t ldy, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((v.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const auto* xb = static_cast<const __nv_bfloat16*>(x);
  auto* yb = static_cast<__nv_bfloat16*>(y);
  if (m == 1) {
    GemvKernel<F, 1><<<blocks, kWarpsPerBlock * 32, 0, s>>>(v, xb, ldx, m, yb, ldy);
  } else if (m <= 4) {
    GemvKernel<F, 4><<<blocks, kWarpsPerBlock * 32, 0, s>>>(v, xb, ldx, m, yb, ldy);
  } else {
    GemvKernel<F, kMaxGemvTokens><<<blocks, kWarpsPerBlock * 32, 0, s>>>(v, xb, ldx, m, yb, ldy);
  }
  return static_cast<int>(cudaGetLastError());
}

template <QuantFormat F>
int LaunchToBf16(const QuantView& v, void* out, cudaStream_t s) {
  constexpr int kThreads = 256;
  const int64_t n = v.rows * (v.cols / kChunk);
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  ToBf16Kernel<F><<<blocks, kThreads, 0, s>>>(v, static_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

#define INGOT_QUANT_FORMATS(X) \
  X(kQ4_0) X(kQ4_1) X(kQ5_0) X(kQ5_1) X(kQ8_0) X(kQ4_K) X(kQ5_K) X(kQ6_K) X(kAffine) X(kCodebook)

}  // namespace

int QuantGemv(QuantFormat f, const QuantView& v, const void* x, int64_t ldx, int m, void* y, int64_t ldy,
              void* stream) {
  if (m < 1 || m > kMaxGemvTokens || v.cols % kChunk != 0 || (ldx & 1) != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (v.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (f) {
#define INGOT_CASE(n) \
  case QuantFormat::n: return LaunchGemv<QuantFormat::n>(v, x, ldx, m, y, ldy, s);
    INGOT_QUANT_FORMATS(INGOT_CASE)
#undef INGOT_CASE
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int QuantToBf16(QuantFormat f, const QuantView& v, void* out, void* stream) {
  if (v.cols % kChunk != 0) return static_cast<int>(cudaErrorInvalidValue);
  if (v.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (f) {
#define INGOT_CASE(n) \
  case QuantFormat::n: return LaunchToBf16<QuantFormat::n>(v, out, s);
    INGOT_QUANT_FORMATS(INGOT_CASE)
#undef INGOT_CASE
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace ingot::kernels::cuda
