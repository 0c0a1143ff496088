// Attention over the torch row's paged KV store on a CUDA device (paged_attention.cu),
// and the Q8_0 store of new rows: the path for kv_cache_dtype q8_0 on cuda (libtorch
// has no 8-bit attention), and for f16/f32 when $INGOT_CUDA_ATTENTION=ingot.
//
// One block per (token, head), kAttnWarps warps splitting the context's positions. Lane
// l holds the head's dimensions l, l + 32, ... of q and of the output accumulator; for
// each position of its share the lanes' partial dot products are summed by shuffles,
// and the online softmax (running max m, running sum l) rescales the accumulator: one
// pass over K and V, nothing materialized; the warps' states merge at the end.
// The per-lane steps below (LaneDot, LaneUpdate, LaneMerge, LaneFinish, the row decoders and the
// Q8_0 block quantizer) are __host__ __device__: the CPU test replays the warp with
// them (tests/kernels/cuda_decode_test.cc) against the CPU AttentionRef.
// Plain C++: no CUDA headers outside __CUDACC__.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/quant_decode.h"

#if defined(__CUDACC__)
#define INGOT_UNROLL _Pragma("unroll")
#else
#define INGOT_UNROLL
#endif

namespace ingot::kernels::cuda {

enum class KvStore : uint8_t { kF32, kF16, kQ8_0 };

// Most head dimensions a lane holds: head_dim <= 32 * kMaxLaneDims (256).
constexpr int kMaxLaneDims = 8;

struct PagedAttentionArgs {
  const void* q = nullptr;  // (n, n_head * head_dim) bf16
  void* out = nullptr;      // (n, n_head * head_dim) bf16
  const uint8_t* k = nullptr;  // the layer's key rows: row r at k + r * row_bytes
  const uint8_t* v = nullptr;
  int64_t row_bytes = 0;  // one stored row of kv_dim values
  KvStore store = KvStore::kF16;
  // Token t attends to store rows rows[ctx_off[t] .. ctx_off[t] + ctx_len[t]) (its
  // sequence's positions 0..pos, through the block table).
  const int32_t* rows = nullptr;
  const int32_t* ctx_off = nullptr;
  const int32_t* ctx_len = nullptr;
  int32_t n = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  float scale = 0.0f;  // 1 / sqrt(head_dim)
};

// Element i of a stored row.
// On the device one load of the element's width: rows are 2 (f16), 4 (f32) or 34-byte
// blocks (Q8_0) wide in a 256-byte aligned store, so an element is aligned to its width
// and a Q8_0 scale to 2.
INGOT_HD float KvElement(const uint8_t* row, KvStore s, int64_t i) {
  switch (s) {
    case KvStore::kF32: {
#if defined(__CUDA_ARCH__)
      return reinterpret_cast<const float*>(row)[i];
#else
      float f;
      __builtin_memcpy(&f, row + 4 * i, 4);
      return f;
#endif
    }
    case KvStore::kF16: {
#if defined(__CUDA_ARCH__)
      return HalfBits(reinterpret_cast<const uint16_t*>(row)[i]);
#else
      return HalfBits(Load16(row + 2 * i));
#endif
    }
    case KvStore::kQ8_0: {
      const uint8_t* b = row + (i / 32) * 34;
#if defined(__CUDA_ARCH__)
      const uint16_t d = *reinterpret_cast<const uint16_t*>(b);
#else
      const uint16_t d = Load16(b);
#endif
      return static_cast<int8_t>(b[2 + i % 32]) * HalfBits(d);
    }
  }
  return 0.0f;
}

// One lane's running state for one (token, head).
struct LaneState {
  float q[kMaxLaneDims];
  float acc[kMaxLaneDims];
  float m = -INFINITY, l = 0.0f;
};

// Dimensions lane `lane` holds: lane, lane + 32, ... < head_dim.
INGOT_HD int LaneDims(int head_dim, int lane) { return (head_dim - lane + 31) / 32; }

// The lane's share of q . k for the key row `row` (kv head kvh).
INGOT_HD float LaneDot(const LaneState& st, const PagedAttentionArgs& a, const uint8_t* row, int kvh, int lane) {
  float s = 0.0f;
  const int nd = LaneDims(a.head_dim, lane);
  INGOT_UNROLL
  for (int e = 0; e < kMaxLaneDims; ++e) {  // fixed bound: the arrays stay in registers
    if (e < nd) s += st.q[e] * KvElement(row, a.store, static_cast<int64_t>(kvh) * a.head_dim + lane + 32 * e);
  }
  return s;
}

// Online softmax step with the whole dot product (same value in every lane) and the
// value row.
INGOT_HD void LaneUpdate(LaneState& st, const PagedAttentionArgs& a, float dot, const uint8_t* vrow, int kvh,
                         int lane) {
  const float s = dot * a.scale;
  const float m = s > st.m ? s : st.m;
  const float c = expf(st.m - m);  // 0 on the first position (m was -inf)
  const float p = expf(s - m);
  st.l = st.l * c + p;
  st.m = m;
  const int nd = LaneDims(a.head_dim, lane);
  INGOT_UNROLL
  for (int e = 0; e < kMaxLaneDims; ++e) {
    if (e < nd) {
      st.acc[e] = st.acc[e] * c + p * KvElement(vrow, a.store, static_cast<int64_t>(kvh) * a.head_dim + lane + 32 * e);
    }
  }
}

// The lane's output dimension e.
INGOT_HD float LaneFinish(const LaneState& st, int e) { return st.l > 0 ? st.acc[e] / st.l : 0.0f; }

// A block's warps split a token's context: warp w takes positions w, w + kAttnWarps, ...
// with its own running state (the sequential chain of positions is what bounds decode
// attention: one warp per head walked every position alone, at batch 1 a few dozen
// warps on the whole GPU), and warp 0 merges the states at the end.
constexpr int kAttnWarps = 8;

// st becomes the state over its own positions and those of another part (running max m,
// sum l, accumulators acc[kMaxLaneDims]; a part with no positions has m = -inf, l = 0).
INGOT_HD void LaneMerge(LaneState& st, float m, float l, const float* acc) {
  const float mm = m > st.m ? m : st.m;
  if (mm == -INFINITY) return;  // neither part saw a position
  const float ca = expf(st.m - mm), cb = expf(m - mm);
  st.l = st.l * ca + l * cb;
  st.m = mm;
  INGOT_UNROLL
  for (int e = 0; e < kMaxLaneDims; ++e) st.acc[e] = st.acc[e] * ca + acc[e] * cb;
}

// A 32-value Q8_0 block as the native KV store writes it (ggml's quantize_row_q8_0_ref:
// d = amax / 127, q = round(x / d), halves away from zero); the f16 scale bits come from
// `to_half` (the device intrinsic or the CPU's).
template <class ToHalf>
INGOT_HD void QuantizeQ8_0Block(const float* x, uint8_t* out, ToHalf to_half) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t h = to_half(d);
  out[0] = static_cast<uint8_t>(h & 0xff);
  out[1] = static_cast<uint8_t>(h >> 8);
  for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(roundf(x[j] * id)));
}

// Launches on `stream`; returns the cudaError_t (0 = ok). head_dim <= 256.
int PagedAttention(const PagedAttentionArgs& a, void* stream);

// A step's keys and values into one layer of the store in one launch: row rows[t] of
// k_dst / v_dst (row_bytes apart) = src row t of k / v (bf16, row strides ldk / ldv),
// converted to the store's element type (f32, f16) or quantized to Q8_0 blocks
// (kv_dim % 32 == 0). Through libtorch this was a conversion and an index_copy for each
// of k and v: four kernels per layer where this is one.
struct KvStoreArgs {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ldk = 0, ldv = 0;
  int32_t n = 0, kv_dim = 0;
  const int64_t* rows = nullptr;  // a row outside [0, store_rows) is skipped (index_copy_ would have refused it)
  int64_t store_rows = 0;
  uint8_t* k_dst = nullptr;
  uint8_t* v_dst = nullptr;
  int64_t row_bytes = 0;
  KvStore store = KvStore::kF16;
};
int StoreKvRows(const KvStoreArgs& a, void* stream);

// Work item i of StoreKvRows (one value, or one Q8_0 block of 32): which of k (0) or v
// (1), which step row, and the first value. Shared with the CPU test.
INGOT_HD void KvStoreItem(int64_t i, int32_t n, int32_t per_row, int32_t* which, int32_t* t, int32_t* unit) {
  const int64_t per_src = static_cast<int64_t>(n) * per_row;
  *which = static_cast<int32_t>(i / per_src);
  const int64_t j = i % per_src;
  *t = static_cast<int32_t>(j / per_row);
  *unit = static_cast<int32_t>(j % per_row);
}

}  // namespace ingot::kernels::cuda
