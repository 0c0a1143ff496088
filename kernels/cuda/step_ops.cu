// nvcc -std=c++17 -arch=sm_90 -c step_ops.cu (CMake: -DINGOT_CUDA=ON). step_ops.h says
// why: one kernel per op instead of libtorch's chains of elementwise kernels.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/step_ops.h"

namespace ingot::kernels::cuda {
namespace {

constexpr int kNormThreads = 256;

// One block per row: each thread sums the squares of its strided columns, the block
// reduces them (shuffles, then one value per warp through shared memory), every thread
// scales its columns. kAdd: the row is first res + x, rounded to bf16 and stored back in
// res (the residual stream, as the add op would leave it), and normed from there; each
// thread reads back only the columns it wrote.
template <bool kAdd>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormKernel(__nv_bfloat16* res, int64_t ldr, const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w,
                  __nv_bfloat16* y, int64_t ldy, int64_t cols, float eps) {
  __nv_bfloat16* rr = res + blockIdx.x * ldr;
  const __nv_bfloat16* xr = x + blockIdx.x * ldx;
  __nv_bfloat16* yr = y + blockIdx.x * ldy;
  const __nv_bfloat16* in = kAdd ? rr : xr;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kNormThreads) {
    float v;
    if constexpr (kAdd) {
      const __nv_bfloat16 sum = __float2bfloat16(__bfloat162float(rr[c]) + __bfloat162float(xr[c]));
      rr[c] = sum;
      v = __bfloat162float(sum);
    } else {
      v = __bfloat162float(xr[c]);
    }
    s = fmaf(v, v, s);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  __shared__ float partial[kNormThreads / 32];
  __shared__ float scale;
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kNormThreads / 32; ++i) total += partial[i];
    scale = RmsNormScale(total, cols, eps);
  }
  __syncthreads();
  const float k = scale;
  for (int64_t c = threadIdx.x; c < cols; c += kNormThreads) {
    yr[c] = __float2bfloat16(__bfloat162float(in[c]) * k * __bfloat162float(w[c]));
  }
}

// One thread per (token, head of q then k, pair).
__global__ void RopeKernel(__nv_bfloat16* q, int64_t ldq, int32_t n_head, __nv_bfloat16* k, int64_t ldk,
                           int32_t n_head_kv, int64_t n, int32_t head_dim, int32_t half, bool neox,
                           const __nv_bfloat16* cos, const __nv_bfloat16* sin, int64_t ldc) {
  const int64_t heads = n_head + n_head_kv;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * heads * half) return;
  const int32_t pair = static_cast<int32_t>(i % half);
  const int64_t th = i / half;
  const int64_t t = th / heads;
  const int32_t h = static_cast<int32_t>(th % heads);
  __nv_bfloat16* v = h < n_head ? q + t * ldq + static_cast<int64_t>(h) * head_dim
                                : k + t * ldk + static_cast<int64_t>(h - n_head) * head_dim;
  int32_t a, c;
  RopePairDims(pair, half, neox, &a, &c);
  float na, nc;
  RopeRotate(__bfloat162float(v[a]), __bfloat162float(v[c]), __bfloat162float(cos[t * ldc + pair]),
             __bfloat162float(sin[t * ldc + pair]), &na, &nc);
  v[a] = __float2bfloat16(na);
  v[c] = __float2bfloat16(nc);
}

__global__ void SwiGluKernel(__nv_bfloat16* g, const __nv_bfloat16* up, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) g[i] = __float2bfloat16(SwiGluValue(__bfloat162float(g[i]), __bfloat162float(up[i])));
}

unsigned Blocks(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

namespace {

// RmsNormKernel<kAdd> over `rows` rows, one block each.
template <bool kAdd>
int LaunchRmsNorm(void* res, int64_t ldr, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy,
                  int64_t rows, int64_t cols, float eps, void* stream) {
  if (rows <= 0) return 0;
  if (rows > 0x7fffffff || cols <= 0) return static_cast<int>(cudaErrorInvalidValue);
  RmsNormKernel<kAdd><<<static_cast<unsigned>(rows), kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<__nv_bfloat16*>(res), ldr, static_cast<const __nv_bfloat16*>(x), ldx,
      static_cast<const __nv_bfloat16*>(w), static_cast<__nv_bfloat16*>(y), ldy, cols, eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int RmsNormBf16(const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t rows, int64_t cols, float eps,
                void* stream) {
  return LaunchRmsNorm<false>(nullptr, 0, x, ldx, w, y, ldy, rows, cols, eps, stream);
}

int AddRmsNormBf16(void* res, int64_t ldr, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy,
                   int64_t rows, int64_t cols, float eps, void* stream) {
  return LaunchRmsNorm<true>(res, ldr, x, ldx, w, y, ldy, rows, cols, eps, stream);
}

int RopeBf16(void* q, int64_t ldq, int32_t n_head, void* k, int64_t ldk, int32_t n_head_kv, int64_t n,
             int32_t head_dim, int32_t rope_dim, bool neox, const void* cos, const void* sin, int64_t ldc, void* stream) {
  const int32_t half = rope_dim / 2;
  const int64_t total = n * (n_head + n_head_kv) * static_cast<int64_t>(half);
  if (total <= 0) return 0;
  constexpr int kThreads = 256;
  RopeKernel<<<Blocks(total, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<__nv_bfloat16*>(q), ldq, n_head, static_cast<__nv_bfloat16*>(k), ldk, n_head_kv, n, head_dim, half,
      neox, static_cast<const __nv_bfloat16*>(cos), static_cast<const __nv_bfloat16*>(sin), ldc);
  return static_cast<int>(cudaGetLastError());
}

int SwiGluBf16(void* gate, const void* up, int64_t n, void* stream) {
  if (n <= 0) return 0;
  constexpr int kThreads = 256;
  SwiGluKernel<<<Blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<__nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up), n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ingot::kernels::cuda
