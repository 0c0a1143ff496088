// AVX2 + FMA + F16C kernels for the qmatrix integer paths (qmatrix_internal.h has the
// math, qmatrix_ref.cc the plain loops). Built with -mavx2 -mfma -mf16c; called only when
// the CPU has them.
//
// Per 32 weights: unpack the codes to 32 bytes (4-bit: two ands, a shift, two unpacks;
// 8-bit: a load; 1..3-bit: four shuffles, variable shifts and a pack; 5..7-bit: scalar
// shifts), one maddubs/madd integer dot with the int8 activations, one FMA with
// scale * d. Prompt batches reuse each unpacked block for four tokens.
//
// Napkin math, 4-bit affine group 64 with f16 scale + zero: 0.5625 B/weight, so a 2048
// x 2048 layer is 2.4 MB per token; at ~15 GB/s that is ~160 us, i.e. memory-bound as
// long as a row of 2048 costs less than ~80 ns of compute per core pair.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/qmatrix_internal.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/tile_avx2.h"

namespace ingot::kernels::internal {
namespace {

using avx2::DotU8S8I32;
using avx2::HalfToFloat;
using avx2::HorizontalSum;

// B little-endian bytes assembled in registers (a partial memcpy into a stack word
// stalls on store forwarding; a wider load could run past the matrix).
template <int B>
inline uint64_t LoadBytes(const uint8_t* p) {
  uint64_t t = 0;
  for (int i = 0; i < B; ++i) t |= static_cast<uint64_t>(p[i]) << (8 * i);
  return t;
}

// 32 codes of `B` bits (LSB-first bitstream, 4 * B bytes at p) as 32 unsigned bytes.
template <int B>
inline __m256i UnpackCodes(const uint8_t* p) {
  if constexpr (B == 8) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else if constexpr (B == 4) {
    // Byte j holds codes 2j (low nibble) and 2j + 1 (high nibble): interleave.
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(packed, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
  } else if constexpr (B <= 3) {
    // Eight codes live in B bytes: copy those bytes into all 8 int32 lanes (one
    // in-lane shuffle of the block's 4 * B bytes), shift lane i by B * i, mask, then
    // pack 4 x 8 int32 -> 32 bytes in order.
    __m128i bytes16;
    if constexpr (B == 1) {
      uint32_t v;
      std::memcpy(&v, p, 4);
      bytes16 = _mm_cvtsi32_si128(static_cast<int>(v));
    } else if constexpr (B == 2) {
      bytes16 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    } else {
      uint32_t v;
      std::memcpy(&v, p + 8, 4);
      bytes16 = _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)),
                                 static_cast<int>(v), 2);
    }
    const __m256i src = _mm256_broadcastsi128_si256(bytes16);
    const __m256i shifts = _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B);
    const __m256i mask = _mm256_set1_epi32((1 << B) - 1);
    __m256i v[4];
    for (int k = 0; k < 4; ++k) {
      const uint32_t b0 = k * B, b1 = B >= 2 ? k * B + 1 : 0x80, b2 = B == 3 ? k * B + 2 : 0x80;
      const __m256i ctrl = _mm256_set1_epi32(static_cast<int>(b0 | b1 << 8 | b2 << 16 | 0x80u << 24));
      v[k] = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(src, ctrl), shifts), mask);
    }
    const __m256i p01 = _mm256_packs_epi32(v[0], v[1]);
    const __m256i p23 = _mm256_packs_epi32(v[2], v[3]);
    const __m256i bytes = _mm256_packus_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  } else {
    // 5..7 bits: eight codes in B bytes, spread to one byte each with scalar shifts.
    uint64_t out[4];
    for (int k = 0; k < 4; ++k) {
      const uint64_t t = LoadBytes<B>(p + k * B);
      uint64_t o = 0;
      for (int i = 0; i < 8; ++i) o |= ((t >> (B * i)) & ((1u << B) - 1)) << (8 * i);
      out[k] = o;
    }
    return _mm256_setr_epi64x(static_cast<int64_t>(out[0]), static_cast<int64_t>(out[1]),
                              static_cast<int64_t>(out[2]), static_cast<int64_t>(out[3]));
  }
}

inline void GroupConstants(const AffineMatrix& a, int64_t gi, float* scale, float* m_eff) {
  const float s = HalfToFloat(a.scale[gi]);
  const float zero = a.zero != nullptr ? HalfToFloat(a.zero[gi]) : 0.0f;
  float m = a.zero_kind == ZeroKind::kZero ? -zero * s : zero;
  if (a.bits == 8) m += 128.0f * s;
  *scale = s;
  *m_eff = m;
}

// Integer dot of one unpacked weight block with activation block qx. 8-bit codes are
// made int8 (q - 128) so maddubs cannot saturate: |q| goes in the unsigned operand and
// its sign moves onto x.
template <int B>
struct WeightBlock {
  __m256i u;  // unsigned operand
  __m256i s;  // sign source (8-bit only)
  explicit WeightBlock(const uint8_t* p) {
    const __m256i q = UnpackCodes<B>(p);
    if constexpr (B == 8) {
      s = _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
      u = _mm256_sign_epi8(s, s);
    } else {
      u = q;
    }
  }
  __m256i Dot(__m256i qx) const {
    if constexpr (B == 8) return DotU8S8I32(u, _mm256_sign_epi8(qx, s));
    return DotU8S8I32(u, qx);
  }
};

// Every 32-block inside one group (group % 32 == 0): ggml's Q4_1 x Q8_1 scheme, the
// m term from the activation block's stored s = d * sum(q).
template <int B, int NT>
void AffineRowsWhole(const AffineMatrix& a, const BlockQ8_1* const* x, float* const* y,
                     int64_t r0, int64_t r1) {
  const int64_t gpr = a.groups_per_row();
  const int64_t bpg = a.group / 32;
  const int64_t blocks = a.cols / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.q + static_cast<size_t>(r) * a.row_bytes;
    __m256 acc[NT];
    float bias[NT];
    for (int k = 0; k < NT; ++k) {
      acc[k] = _mm256_setzero_ps();
      bias[k] = 0;
    }
    float scale = 0, m = 0;
    for (int64_t b = 0, in_group = 0; b < blocks; ++b) {
      if (in_group == 0) GroupConstants(a, r * gpr + b / bpg, &scale, &m);
      if (++in_group == bpg) in_group = 0;
      const WeightBlock<B> w(row + b * 4 * B);
      for (int k = 0; k < NT; ++k) {
        const BlockQ8_1& bx = x[k][b];
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx.qs));
        const __m256 d = _mm256_set1_ps(scale * HalfToFloat(bx.d));
        acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(w.Dot(qx)), acc[k]);
        bias[k] += m * HalfToFloat(bx.s);
      }
    }
    for (int k = 0; k < NT; ++k) y[k][r - r0] = HorizontalSum(acc[k]) + bias[k];
  }
}

// Groups of 16, 48, ...: each 16-half of a 32-block has its own scale and m, and its
// exact integer activation sum (int32 lanes 0..3 cover the first half).
template <int B, int NT>
void AffineRowsSplit(const AffineMatrix& a, const BlockQ8_1* const* x, float* const* y,
                     int64_t r0, int64_t r1) {
  const int64_t gpr = a.groups_per_row();
  const int64_t blocks = a.cols / 32;
  const __m256i ones8 = _mm256_set1_epi8(1);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.q + static_cast<size_t>(r) * a.row_bytes;
    __m256 acc[NT];
    for (int k = 0; k < NT; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      float s0, m0, s1, m1;
      GroupConstants(a, r * gpr + b * 32 / a.group, &s0, &m0);
      GroupConstants(a, r * gpr + (b * 32 + 16) / a.group, &s1, &m1);
      const __m256 svec = _mm256_setr_m128(_mm_set1_ps(s0), _mm_set1_ps(s1));
      const __m256 mvec = _mm256_setr_m128(_mm_set1_ps(m0), _mm_set1_ps(m1));
      const WeightBlock<B> w(row + b * 4 * B);
      for (int k = 0; k < NT; ++k) {
        const BlockQ8_1& bx = x[k][b];
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx.qs));
        const __m256 dot = _mm256_cvtepi32_ps(w.Dot(qx));
        const __m256 xsum = _mm256_cvtepi32_ps(DotU8S8I32(ones8, qx));
        const __m256 t = _mm256_fmadd_ps(svec, dot, _mm256_mul_ps(mvec, xsum));
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(bx.d)), t, acc[k]);
      }
    }
    for (int k = 0; k < NT; ++k) y[k][r - r0] = HorizontalSum(acc[k]);
  }
}

using AffineRowsFn = void (*)(const AffineMatrix&, const BlockQ8_1* const*, float* const*,
                              int64_t, int64_t);

template <int NT, bool kSplit>
AffineRowsFn PickAffine(int bits) {
  switch (bits) {
#define INGOT_AFFINE_CASE(B) \
  case B: return kSplit ? AffineRowsSplit<B, NT> : AffineRowsWhole<B, NT>;
    INGOT_AFFINE_CASE(1)
    INGOT_AFFINE_CASE(2)
    INGOT_AFFINE_CASE(3)
    INGOT_AFFINE_CASE(4)
    INGOT_AFFINE_CASE(5)
    INGOT_AFFINE_CASE(6)
    INGOT_AFFINE_CASE(7)
    INGOT_AFFINE_CASE(8)
#undef INGOT_AFFINE_CASE
  }
  return nullptr;
}

// Codebook: codes to int8 values with one in-lane table lookup (the 16 values in both
// 128-bit lanes), then the signed dot. Elements come high nibble first.
template <int NT>
void CodebookRows(const CodebookMatrix& m, const BlockQ8_0* const* x, float* const* y,
                  int64_t r0, int64_t r1) {
  const __m256i table = _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(CodebookInt8(m.book))));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const float* dmap = DynamicMap();
  const int64_t sub_per_block = m.block / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t base = r * m.cols;
    __m256 acc[NT];
    for (int k = 0; k < NT; ++k) acc[k] = _mm256_setzero_ps();
    int64_t j = 0;  // 32-block of the row
    for (int64_t blk = base / m.block; blk < (base + m.cols) / m.block; ++blk) {
      const float absmax =
          m.absmax_code == nullptr
              ? m.absmax[blk]
              : dmap[m.absmax_code[blk]] * m.absmax_scale[blk / m.absmax_block] + m.absmax_offset;
      const float ws = absmax / 127.0f;
      const uint8_t* codes = m.codes + blk * m.block / 2;
      for (int64_t s = 0; s < sub_per_block; ++s, ++j) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16 * s));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
        const __m128i lo = _mm_and_si128(packed, mask);
        const __m256i idx = _mm256_set_m128i(_mm_unpackhi_epi8(hi, lo), _mm_unpacklo_epi8(hi, lo));
        const __m256i w = _mm256_shuffle_epi8(table, idx);
        const __m256i aw = _mm256_sign_epi8(w, w);
        for (int k = 0; k < NT; ++k) {
          const BlockQ8_0& bx = x[k][j];
          const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx.qs));
          const __m256 dot = _mm256_cvtepi32_ps(DotU8S8I32(aw, _mm256_sign_epi8(qx, w)));
          acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(ws * HalfToFloat(bx.d)), dot, acc[k]);
        }
      }
    }
    for (int k = 0; k < NT; ++k) y[k][r - r0] = HorizontalSum(acc[k]);
  }
}

// ---- the 8-row tile (tile_avx2.h) for 4- and 8-bit codes in groups of whole 32-blocks --
// 4-bit codes are unsigned (maddubs pairs sum in int16: c_w = m against s_x); 8-bit codes
// go in as the reference's q - 128 (s8, the sign trick), with c_w = m + 128 s.

struct AffineTile8 {
  const AffineMatrix* a;
  int64_t blocks_per_group;
  const uint8_t* rows[avx2::kTile8];
  __m256i group0;  // lane r: index of row r's first group in scale[] / zero[]
  __m256 s, m;     // the current group's constants
};

// base[idx[r]] (f16) for 8 element indices, as f32; each gather reads the 4-aligned
// dword holding the element, so it never crosses into another page.
INGOT_AVX2_INLINE __m256 GatherHalf8(const uint16_t* base, __m256i idx) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base);
  const auto* aligned = reinterpret_cast<const int*>(addr & ~uintptr_t{3});
  const __m256i byte = _mm256_add_epi32(_mm256_slli_epi32(idx, 1), _mm256_set1_epi32(static_cast<int>(addr & 3)));
  const __m256i word = _mm256_i32gather_epi32(aligned, _mm256_andnot_si256(_mm256_set1_epi32(3), byte), 1);
  const __m256i shift = _mm256_slli_epi32(_mm256_and_si256(byte, _mm256_set1_epi32(2)), 3);  // 0 or 16
  return avx2::HalfLow8(_mm256_srlv_epi32(word, shift));
}

template <int B>
struct AffineTileFormat8 {
  using Matrix = AffineMatrix;
  using Tile = AffineTile8;
  using ActBlock = BlockQ8_1;
  static constexpr bool kSigned = B == 8, kSmallCodes = B == 4;
  static int64_t Rows(const Matrix& a) { return a.rows; }
  static int64_t Blocks(const Matrix& a) { return a.cols / 32; }
  static size_t RowBytes(const Matrix& a) { return a.row_bytes; }
  static const uint8_t* RowPtr(const Matrix& a, int64_t r) { return a.q + static_cast<size_t>(r) * a.row_bytes; }

  static INGOT_AVX2_INLINE Tile Begin(const Matrix& a, int64_t first, int n) {
    Tile t;
    t.a = &a;
    t.blocks_per_group = a.group / 32;
    alignas(32) int32_t g0[avx2::kTile8];
#pragma GCC unroll 8
    for (int r = 0; r < avx2::kTile8; ++r) {
      const int64_t row = first + std::min(r, n - 1);  // lanes past the range repeat the last row
      t.rows[r] = RowPtr(a, row);
      g0[r] = static_cast<int32_t>(row * a.groups_per_row());
    }
    t.group0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(g0));
    t.s = t.m = _mm256_setzero_ps();
    return t;
  }

  static INGOT_AVX2_INLINE void Unpack(Tile& t, int64_t b, bool last, avx2::Unpacked8* u) {
    const AffineMatrix& a = *t.a;
    if (b % t.blocks_per_group == 0) {
      const __m256i idx = _mm256_add_epi32(t.group0, _mm256_set1_epi32(static_cast<int>(b / t.blocks_per_group)));
      t.s = GatherHalf8(a.scale, idx);
      if (a.zero == nullptr) {
        t.m = _mm256_setzero_ps();
      } else {
        const __m256 z = GatherHalf8(a.zero, idx);
        t.m = a.zero_kind == ZeroKind::kZero ? _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), t.s) : z;
      }
    }
    const size_t o = static_cast<size_t>(b) * 4 * B;
    __m256i r[8];
    if constexpr (B == 8) {
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = avx2::LoadRow(t.rows[i] + o, false, 8);
      avx2::Transpose8(r, u->s, 8);
      const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        u->s[k] = _mm256_xor_si256(u->s[k], bias);         // q - 128 as s8
        u->q[k] = _mm256_sign_epi8(u->s[k], u->s[k]);      // |q - 128|
      }
      u->c = _mm256_fmadd_ps(t.s, _mm256_set1_ps(128.0f), t.m);
    } else {
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = avx2::LoadRow(t.rows[i] + o, last, 4);
      __m256i p[8];
      avx2::Transpose8(r, p, 4);
      // Bytes b0 b1 of a dword -> words b0, b1 -> bytes (b0 & 15, b0 >> 4, b1 & 15, b1 >> 4).
      const __m256i lo_pair = _mm256_broadcastsi128_si256(
          _mm_setr_epi8(0, -128, 1, -128, 4, -128, 5, -128, 8, -128, 9, -128, 12, -128, 13, -128));
      const __m256i hi_pair = _mm256_broadcastsi128_si256(
          _mm_setr_epi8(2, -128, 3, -128, 6, -128, 7, -128, 10, -128, 11, -128, 14, -128, 15, -128));
      const __m256i mask = _mm256_set1_epi16(0x0F0F);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const __m256i w0 = _mm256_shuffle_epi8(p[i], lo_pair);
        const __m256i w1 = _mm256_shuffle_epi8(p[i], hi_pair);
        u->q[2 * i] = _mm256_and_si256(_mm256_or_si256(w0, _mm256_slli_epi16(w0, 4)), mask);
        u->q[2 * i + 1] = _mm256_and_si256(_mm256_or_si256(w1, _mm256_slli_epi16(w1, 4)), mask);
      }
      u->c = t.m;
    }
    u->d = t.s;
  }
};

}  // namespace

bool AffineTokensAvx2(const AffineMatrix& a) {
  return (a.bits == 4 || a.bits == 8) && a.group % 32 == 0 && AffineIntegerPath(a);
}

void AffineDotTokensAvx2(const AffineMatrix& a, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                         int64_t r0, int64_t r1) {
  if (a.bits == 8) {
    avx2::DotTokens8<AffineTileFormat8<8>>(a, x, xs, n_tok, y, ys, r0, r1);
  } else {
    avx2::DotTokens8<AffineTileFormat8<4>>(a, x, xs, n_tok, y, ys, r0, r1);
  }
}

void AffineDotRowsAvx2(const AffineMatrix& a, const BlockQ8_1* const* x, int n_tok,
                       float* const* y, int64_t r0, int64_t r1) {
  const bool split = a.group % 32 != 0;
  AffineRowsFn fn = n_tok == 4 ? (split ? PickAffine<4, true>(a.bits) : PickAffine<4, false>(a.bits))
                               : (split ? PickAffine<1, true>(a.bits) : PickAffine<1, false>(a.bits));
  fn(a, x, y, r0, r1);
}

void CodebookDotRowsAvx2(const CodebookMatrix& m, const BlockQ8_0* const* x, int n_tok,
                         float* const* y, int64_t r0, int64_t r1) {
  if (n_tok == 4) {
    CodebookRows<4>(m, x, y, r0, r1);
  } else {
    CodebookRows<1>(m, x, y, r0, r1);
  }
}

}  // namespace ingot::kernels::internal
