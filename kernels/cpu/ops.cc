// Norm, RoPE and attention on the CPU. These are cheap next to the matmuls for short
// contexts (n_embd = 576 floats per token for the default model); attention grows
// with the context: per (token, head) one pass of head_dim-wide dots over pos + 1 keys.
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/quant_dot_internal.h"
#include "kernels/cpu/quantize_ref.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot::kernels {

void RmsNorm(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps) {
  // As ggml's rms_norm: float squares summed in double, mean and scale in float. Summed in
  // 8 independent lanes (a loop the compiler vectorizes); in double the order changes the
  // sum by ~1e-16 relative, so the float scale is ggml's.
  constexpr int64_t kLanes = 8;
  const int64_t whole = d - d % kLanes;
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * d;
    double part[kLanes] = {};
    for (int64_t i = 0; i < whole; i += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) part[l] += static_cast<double>(xt[i + l] * xt[i + l]);
    }
    double ss = 0;
    for (double p : part) ss += p;
    for (int64_t i = whole; i < d; ++i) ss += static_cast<double>(xt[i] * xt[i]);
    const float mean = static_cast<float>(ss / static_cast<double>(d));
    const float scale = 1.0f / std::sqrt(mean + eps);
    float* ot = out + t * d;
    for (int64_t i = 0; i < d; ++i) ot[i] = xt[i] * scale * w[i];
  }
}

void RmsNormRef(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[t * d + i]) * x[t * d + i];
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<float>(x[t * d + i] * scale * w[i]);
  }
}

namespace {

void RopeHead(float* v, const float* cos, const float* sin, int32_t rope_dim, bool neox) {
  const int32_t half = rope_dim / 2;
  if (!neox) {
    for (int32_t i = 0; i < half; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos[i] - b * sin[i];
      v[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  } else {
    for (int32_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

}  // namespace

void Rope(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
          int32_t rope_dim, bool neox) {
  const int32_t half = rope_dim / 2;
  const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t h = 0; h < n_heads; ++h) {
      RopeHead(x + t * width + h * head_dim, cos + t * half, sin + t * half, rope_dim, neox);
    }
  }
}

void RopeRef(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
             int32_t rope_dim, bool neox) {
  // As a complex multiplication: (a + ib) * (cos + i sin), pair by pair.
  const int32_t half = rope_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int32_t i = 0; i < half; ++i) {
        const int32_t ia = neox ? i : 2 * i;
        const int32_t ib = neox ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib], c = cos[t * half + i], s = sin[t * half + i];
        v[ia] = static_cast<float>(a * c - b * s);
        v[ib] = static_cast<float>(a * s + b * c);
      }
    }
  }
}

CpuKvStore::CpuKvStore(const KvSpec& s)
    : spec(s),
      row_bytes(static_cast<size_t>(KvRowBytes(s.dtype, s.kv_dim))),
      block_bytes(static_cast<size_t>(s.BlockBytes())) {}

CpuKvStore::~CpuKvStore() { std::free(data); }

void CpuKvStore::Reserve(int32_t blocks) {
  if (blocks <= n_blocks) return;
  // malloc, not a zeroing allocator: pages of blocks never written are never touched,
  // so the resident size follows the blocks in use, not the pool's size.
  auto* grown = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(blocks) * block_bytes));
  if (grown == nullptr) throw std::bad_alloc();
  if (data != nullptr) std::memcpy(grown, data, static_cast<size_t>(n_blocks) * block_bytes);
  std::free(data);
  data = grown;
  n_blocks = blocks;
}

void CpuKvStore::Store(const float* x, uint8_t* row) const {
  switch (spec.dtype) {
    case KvDtype::kF32: std::memcpy(row, x, row_bytes); return;
    case KvDtype::kF16:
      if (!internal::CpuHasAvx2() || !internal::F32ToF16Avx2(x, reinterpret_cast<uint16_t*>(row), spec.kv_dim)) {
        QuantizeRowF16Ref(x, row, spec.kv_dim);
      }
      return;
    case KvDtype::kQ8_0: QuantizeRowQ8_0Ref(x, row, spec.kv_dim); return;
  }
}

void CpuKvStore::CopyBlock(int32_t src, int32_t dst, int32_t tokens) {
  for (int32_t l = 0; l < spec.n_layer; ++l) {
    for (int kind = 0; kind < 2; ++kind) {
      std::memcpy(Row(dst, l, kind, 0), Row(src, l, kind, 0), static_cast<size_t>(tokens) * row_bytes);
    }
  }
}

namespace {

// `n` values of a stored row (starting at a head's first value) as f32: f32 rows in
// place, others decoded into `out`.
const float* DecodeRow(KvDtype dtype, const uint8_t* row, int64_t first, float* out, int64_t n, bool fast) {
  switch (dtype) {
    case KvDtype::kF32: return reinterpret_cast<const float*>(row) + first;
    case KvDtype::kF16:
      if (fast) {
        internal::F16ToF32Avx2(reinterpret_cast<const uint16_t*>(row) + first, out, n);
      } else {
        GetGgmlTypeTraits(GgmlType::kF16).dequantize(reinterpret_cast<const uint16_t*>(row) + first, out, n);
      }
      return out;
    case KvDtype::kQ8_0: {
      const auto* blocks = reinterpret_cast<const BlockQ8_0*>(row) + first / kQK8_0;
      if (fast) {
        internal::Q8_0ToF32Avx2(blocks, out, n);
      } else {
        GetGgmlTypeTraits(GgmlType::kQ8_0).dequantize(blocks, out, n);
      }
      return out;
    }
  }
  return out;
}

using internal::AttendBlockArgs;
using internal::kAttendPositions;

// AttendBlockAvx2's contract in plain loops, for CPUs without AVX2 and head sizes that
// are not a multiple of 8.
void AttendBlockScalar(const AttendBlockArgs& a) {
  for (int32_t i = 0; i < a.nq; ++i) {
    const int32_t n = a.valid[i];
    if (n == 0) continue;
    float s[kAttendPositions];
    float mx = a.m[i];
    for (int32_t p = 0; p < n; ++p) {
      float dot = 0;
      for (int32_t d = 0; d < a.hd; ++d) dot += a.q[i][d] * a.k[p][d];
      s[p] = dot * a.scale;
      mx = std::max(mx, s[p]);
    }
    const float corr = std::exp(a.m[i] - mx);
    float sum = 0;
    for (int32_t p = 0; p < n; ++p) sum += (s[p] = std::exp(s[p] - mx));
    a.m[i] = mx;
    a.l[i] = a.l[i] * corr + sum;
    float* acc = a.acc + static_cast<int64_t>(i) * a.hd;
    for (int32_t d = 0; d < a.hd; ++d) {
      float x = acc[d] * corr;
      for (int32_t p = 0; p < n; ++p) x += s[p] * a.v[p][d];
      acc[d] = x;
    }
  }
}

// Consecutive tokens of one sequence (same store and block table, positions counting
// up), at most kTileTokens of them: their query heads share every decoded key and value
// row. A decode batch is a tile per sequence; a prompt chunk is cut into tiles.
struct QueryTile {
  int64_t t0 = 0;
  int32_t n = 0;
};
constexpr int32_t kTileTokens = 16;

std::vector<QueryTile> QueryTiles(const AttentionArgs& a) {
  std::vector<QueryTile> tiles;
  for (int64_t t = 0; t < a.n; ++t) {
    if (!tiles.empty()) {
      QueryTile& last = tiles.back();
      const int64_t prev = last.t0 + last.n - 1;
      if (last.n < kTileTokens && a.kv[t] == a.kv[prev] && a.blocks[t] == a.blocks[prev] &&
          a.pos[t] == a.pos[prev] + 1) {
        ++last.n;
        continue;
      }
    }
    tiles.push_back(QueryTile{t, 1});
  }
  return tiles;
}

// Per-thread buffers of one (tile, kv head) item.
struct AttendScratch {
  std::vector<float> k, v, m, l, acc;
  std::vector<const float*> q;
  std::vector<int32_t> valid;
};

void AttendTile(const AttentionArgs& a, const QueryTile& tile, int32_t kvh, bool avx2, AttendScratch& w) {
  const int32_t hd = a.head_dim;
  const int32_t group = a.n_head / a.n_head_kv;
  const int64_t qd = static_cast<int64_t>(a.n_head) * hd;
  const int32_t nq = tile.n * group;  // query i: token t0 + i / group, head kvh * group + i % group
  const CpuKvStore& kv = *a.kv[tile.t0];
  const int32_t* blocks = a.blocks[tile.t0];
  const KvDtype dtype = kv.spec.dtype;
  w.k.resize(static_cast<size_t>(kAttendPositions) * hd);
  w.v.resize(w.k.size());
  w.q.resize(nq);
  w.valid.resize(nq);
  w.m.assign(nq, -INFINITY);
  w.l.assign(nq, 0.0f);
  w.acc.assign(static_cast<size_t>(nq) * hd, 0.0f);
  for (int32_t i = 0; i < nq; ++i) {
    w.q[i] = a.q + (tile.t0 + i / group) * qd + static_cast<int64_t>(kvh * group + i % group) * hd;
  }
  AttendBlockArgs b;
  b.q = w.q.data();
  b.valid = w.valid.data();
  b.nq = nq;
  b.hd = hd;
  b.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  b.m = w.m.data();
  b.l = w.l.data();
  b.acc = w.acc.data();
  const float* krow[kAttendPositions];
  const float* vrow[kAttendPositions];
  b.k = krow;
  b.v = vrow;
  const int32_t len = a.pos[tile.t0 + tile.n - 1] + 1;  // the tile's last token sees the most
  const int64_t head = static_cast<int64_t>(kvh) * hd;
  const size_t head_offset = static_cast<size_t>(KvRowBytes(dtype, head));
  const size_t head_bytes = static_cast<size_t>(KvRowBytes(dtype, hd));
  for (int32_t p0 = 0; p0 < len; p0 += kAttendPositions) {
    const int32_t np = std::min(kAttendPositions, len - p0);
    // The next positions' rows stream in while these are used: a decode batch reads each
    // sequence's rows once per layer, so they come from memory (the f16 decode was 10%
    // of a 16-sequence step without this).
    for (int32_t p = p0 + kAttendPositions; p < std::min(len, p0 + 2 * kAttendPositions); ++p) {
      for (int kind = 0; kind < 2; ++kind) {
        const uint8_t* row = kv.At(blocks, a.layer, kind, p) + head_offset;
        for (size_t o = 0; o < head_bytes; o += 64) __builtin_prefetch(row + o);
      }
    }
    for (int32_t j = 0; j < kAttendPositions; ++j) {
      if (j < np) {
        krow[j] = DecodeRow(dtype, kv.At(blocks, a.layer, 0, p0 + j), head, w.k.data() + j * hd, hd, avx2);
        vrow[j] = DecodeRow(dtype, kv.At(blocks, a.layer, 1, p0 + j), head, w.v.data() + j * hd, hd, avx2);
      } else {
        krow[j] = krow[0];
        vrow[j] = vrow[0];
      }
    }
    for (int32_t i = 0; i < nq; ++i) w.valid[i] = std::clamp(a.pos[tile.t0 + i / group] + 1 - p0, 0, np);
    if (avx2 && hd % 8 == 0) {
      internal::AttendBlockAvx2(b);
    } else {
      AttendBlockScalar(b);
    }
  }
  for (int32_t i = 0; i < nq; ++i) {
    float* out = a.out + (tile.t0 + i / group) * qd + static_cast<int64_t>(kvh * group + i % group) * hd;
    const float inv = 1.0f / w.l[i];
    for (int32_t d = 0; d < hd; ++d) out[d] = w.acc[static_cast<size_t>(i) * hd + d] * inv;
  }
}

}  // namespace

void Attention(const AttentionArgs& a, ThreadPool& pool, CpuLevel level) {
  const std::vector<QueryTile> tiles = QueryTiles(a);
  const bool avx2 = level >= CpuLevel::kAvx2 && CpuHasLevel(CpuLevel::kAvx2);
  pool.ParallelFor(static_cast<int64_t>(tiles.size()) * a.n_head_kv, 1, [&](int64_t i0, int64_t i1) {
    thread_local AttendScratch scratch;
    for (int64_t i = i0; i < i1; ++i) {
      AttendTile(a, tiles[i / a.n_head_kv], static_cast<int32_t>(i % a.n_head_kv), avx2, scratch);
    }
  });
}

void Attention(const AttentionArgs& a, ThreadPool& pool) { Attention(a, pool, BestCpuLevel()); }

void AttentionRef(const AttentionArgs& a) {
  const int32_t hd = a.head_dim;
  const int64_t qd = static_cast<int64_t>(a.n_head) * hd;
  const int32_t group = a.n_head / a.n_head_kv;
  std::vector<float> k(hd), v(hd);
  for (int64_t t = 0; t < a.n; ++t) {
    const int32_t len = a.pos[t] + 1;
    const CpuKvStore& kv = *a.kv[t];
    for (int32_t h = 0; h < a.n_head; ++h) {
      const int32_t kvh = h / group;
      const float* q = a.q + t * qd + h * hd;
      std::vector<double> s(len);
      double mx = -INFINITY;
      for (int32_t p = 0; p < len; ++p) {
        const float* kp = DecodeRow(kv.spec.dtype, kv.At(a.blocks[t], a.layer, 0, p), static_cast<int64_t>(kvh) * hd,
                                    k.data(), hd, false);
        double dot = 0;
        for (int32_t i = 0; i < hd; ++i) dot += static_cast<double>(q[i]) * kp[i];
        s[p] = dot / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (int32_t p = 0; p < len; ++p) sum += (s[p] = std::exp(s[p] - mx));
      std::vector<double> acc(hd, 0.0);
      for (int32_t p = 0; p < len; ++p) {
        const float* vp = DecodeRow(kv.spec.dtype, kv.At(a.blocks[t], a.layer, 1, p), static_cast<int64_t>(kvh) * hd,
                                    v.data(), hd, false);
        for (int32_t i = 0; i < hd; ++i) acc[i] += s[p] / sum * vp[i];
      }
      for (int32_t i = 0; i < hd; ++i) a.out[t * qd + h * hd + i] = static_cast<float>(acc[i]);
    }
  }
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  if (internal::CpuHasAvx2()) {
    internal::SwiGluAvx2(gate, up, n);
    return;
  }
  SwiGluRef(gate, up, n);
}

void SwiGluRef(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace ingot::kernels
