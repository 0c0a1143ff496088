// nvcc -std=c++17 -arch=sm_90 -c paged_attention.cu (CMake: -DINGOT_CUDA=ON).
// See paged_attention.h. Grid (n_head, n), kAttnWarps warps per block splitting the
// context. Before, one warp per block walked every position: a chain of ~200-cycle
// steps (dot, five dependent shuffles, the softmax update), about 14 us per layer at
// 256 positions and 32 heads, as much as a 4-bit 7B layer's weights; split 8 ways it is
// an eighth of that. Long contexts over several blocks (flash-decoding's second pass)
// are the next step if run.sh shows attention still matters.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/paged_attention.h"

namespace ingot::kernels::cuda {
namespace {

__global__ void __launch_bounds__(kAttnWarps * 32) PagedAttentionKernel(PagedAttentionArgs a) {
  const int h = blockIdx.x, t = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (a.n_head / a.n_head_kv);
  const int64_t qd = static_cast<int64_t>(a.n_head) * a.head_dim;
  const auto* q = static_cast<const __nv_bfloat16*>(a.q) + t * qd + static_cast<int64_t>(h) * a.head_dim;
  LaneState st;
  const int nd = LaneDims(a.head_dim, lane);
#pragma unroll
  for (int e = 0; e < kMaxLaneDims; ++e) {
    st.q[e] = e < nd ? __bfloat162float(q[lane + 32 * e]) : 0.0f;
    st.acc[e] = 0.0f;
  }
  const int32_t* rows = a.rows + a.ctx_off[t];
  const int32_t len = a.ctx_len[t];
  for (int32_t p = warp; p < len; p += kAttnWarps) {
    const int64_t r = rows[p];
    float dot = LaneDot(st, a, a.k + r * a.row_bytes, kvh, lane);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    LaneUpdate(st, a, dot, a.v + r * a.row_bytes, kvh, lane);
  }
  // Warps 1.. hand their states to warp 0.
  __shared__ float part_acc[kAttnWarps][kMaxLaneDims][32];
  __shared__ float part_m[kAttnWarps], part_l[kAttnWarps];
  if (warp > 0) {
#pragma unroll
    for (int e = 0; e < kMaxLaneDims; ++e) part_acc[warp][e][lane] = st.acc[e];
    if (lane == 0) {
      part_m[warp] = st.m;
      part_l[warp] = st.l;
    }
  }
  __syncthreads();
  if (warp != 0) return;
  for (int w = 1; w < kAttnWarps; ++w) {
    float acc[kMaxLaneDims];
#pragma unroll
    for (int e = 0; e < kMaxLaneDims; ++e) acc[e] = part_acc[w][e][lane];
    LaneMerge(st, part_m[w], part_l[w], acc);
  }
  auto* out = static_cast<__nv_bfloat16*>(a.out) + t * qd + static_cast<int64_t>(h) * a.head_dim;
#pragma unroll
  for (int e = 0; e < kMaxLaneDims; ++e) {
    if (e < nd) out[lane + 32 * e] = __float2bfloat16(LaneFinish(st, e));
  }
}

// One thread per value (f32, f16 stores) or per 32-value block (Q8_0), k's items then v's.
template <KvStore S>
__global__ void StoreKvKernel(KvStoreArgs a) {
  constexpr int kUnit = S == KvStore::kQ8_0 ? 32 : 1;
  const int32_t per_row = a.kv_dim / kUnit;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= 2 * static_cast<int64_t>(a.n) * per_row) return;
  int32_t which, t, unit;
  KvStoreItem(i, a.n, per_row, &which, &t, &unit);
  const int64_t dst_row = a.rows[t];
  if (dst_row < 0 || dst_row >= a.store_rows) return;  // no write outside the store
  const auto* src = static_cast<const __nv_bfloat16*>(which == 0 ? a.k : a.v) + t * (which == 0 ? a.ldk : a.ldv);
  uint8_t* row = (which == 0 ? a.k_dst : a.v_dst) + dst_row * a.row_bytes;
  if constexpr (S == KvStore::kQ8_0) {
    float x[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) x[j] = __bfloat162float(src[unit * 32 + j]);
    QuantizeQ8_0Block(x, row + unit * 34, [](float d) { return __half_as_ushort(__float2half_rn(d)); });
  } else if constexpr (S == KvStore::kF16) {
    reinterpret_cast<__half*>(row)[unit] = __float2half_rn(__bfloat162float(src[unit]));
  } else {
    reinterpret_cast<float*>(row)[unit] = __bfloat162float(src[unit]);
  }
}

}  // namespace

int StoreKvRows(const KvStoreArgs& a, void* stream) {
  if (a.store == KvStore::kQ8_0 && a.kv_dim % 32 != 0) return static_cast<int>(cudaErrorInvalidValue);
  if (a.n == 0 || a.kv_dim == 0) return 0;
  constexpr int kThreads = 128;
  const int64_t work = 2 * static_cast<int64_t>(a.n) * (a.store == KvStore::kQ8_0 ? a.kv_dim / 32 : a.kv_dim);
  const auto blocks = static_cast<unsigned>((work + kThreads - 1) / kThreads);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (a.store) {
    case KvStore::kQ8_0: StoreKvKernel<KvStore::kQ8_0><<<blocks, kThreads, 0, s>>>(a); break;
    case KvStore::kF16: StoreKvKernel<KvStore::kF16><<<blocks, kThreads, 0, s>>>(a); break;
    case KvStore::kF32: StoreKvKernel<KvStore::kF32><<<blocks, kThreads, 0, s>>>(a); break;
  }
  return static_cast<int>(cudaGetLastError());
}

int PagedAttention(const PagedAttentionArgs& a, void* stream) {
  if (a.head_dim > 32 * kMaxLaneDims || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (a.n == 0) return 0;
  PagedAttentionKernel<<<dim3(a.n_head, a.n), kAttnWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ingot::kernels::cuda
