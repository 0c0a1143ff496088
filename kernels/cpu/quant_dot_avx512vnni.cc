// AVX-512 VNNI kernels for GGML Q4_0 / Q4_1 / Q8_0 weights against 1..n prepared token
// rows (quant_dot.cc has the references and the dispatch). Built with -mavx512f/bw/vl/dq
// -mavx512vnni; called only when the CPU has them (CpuLevel::kAvx512Vnni).
//
// Layout: a zmm lane is a weight row. A tile of 16 rows is unpacked one 32-element block
// at a time into eight u8 vectors (lane r, dword k = the row's elements 4k..4k+3) plus
// the rows' scales as f32; each token then costs eight vpdpbusd with the activation's
// dword k broadcast from memory (64 MACs each, 512 per block) and one convert + two FMAs
// that apply the 16 rows' scales at once. The unpack (a 16 x 8 dword transpose, ~45
// uops) is paid once per block for up to 16 tokens.
//
// vpdpbusd multiplies u8 x s8. Q4_1 nibbles are unsigned as stored; Q4_0 nibbles are
// used as q (0..15) and the -8 offset is applied as -8 * d_w * (d_x * sum q_x); Q8_0
// weights are made u8 by + 128 (xor 0x80) and corrected by -128 * d_w * (d_x * sum q_x).
// d_x and the per-block sum term come widened to f32 after the activation blocks
// (ActivationScalesOffset), so they are broadcast straight from memory.
//
// Napkin math, 16 tokens x 16 rows x one block: 128 vpdpbusd + 64 scale uops + ~45 unpack
// ~= 240 uops for 8192 MACs (~34 MACs/uop; the 4-token AVX2 kernel does ~4). Measured
// here, one core, L2-resident 576 x 576 Q4_1: 3.9 ns per row per token at 16 tokens
// (148 GMAC/s) against 33 for the AVX2 kernel; 18 ns per row for one token (the unpack).

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/quant_dot_internal.h"

// The unpack helpers must inline into the tile loop (their zmm arguments would go
// through memory otherwise) and its short loops must unroll.
#define INGOT_ALWAYS_INLINE inline __attribute__((always_inline))

namespace ingot::kernels::internal {
namespace {

constexpr int kTile = 16;  // weight rows per tile: one per zmm lane

// The unpacked block of a 16-row tile.
struct Unpacked {
  __m512i q[8];  // u8 weights, lane = row, dword k = elements 4k..4k+3
  __m512 d;      // f32 weight scales
  __m512 c;      // f32 coefficient of the activation's sum term (ActivationScales s)
};

// Two 32-byte row segments in one zmm (p in the low half). `last`: read only `dwords`
// dwords from each (the final block of a row may end the matrix).
INGOT_ALWAYS_INLINE __m512i Load2(const uint8_t* p, const uint8_t* q, bool last, __mmask8 dwords) {
  if (last) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi32(dwords, p)),
                              _mm256_maskz_loadu_epi32(dwords, q), 1);
  }
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), 1);
}

// z[m] holds rows 2m and 2m + 1, eight dwords each. Returns, for the dword at offset
// `first` + i (i = 0..3) of every row, a vector with lane r = that dword of row r.
INGOT_ALWAYS_INLINE void Transpose4(const __m512i z[8], int first, __m512i out[4]) {
  // s[g]: rows 4g..4g+3, lane 4i + j = dword first + i of row 4g + j.
  const __m512i idx = _mm512_add_epi32(
      _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27), _mm512_set1_epi32(first));
  __m512i s[4];
#pragma GCC unroll 16
  for (int g = 0; g < 4; ++g) s[g] = _mm512_permutex2var_epi32(z[2 * g], idx, z[2 * g + 1]);
  // 4 x 4 transpose of 128-bit quarters: out[i] quarter g = s[g] quarter i.
  const __m512i t0 = _mm512_shuffle_i32x4(s[0], s[1], 0x44), t1 = _mm512_shuffle_i32x4(s[0], s[1], 0xEE);
  const __m512i t2 = _mm512_shuffle_i32x4(s[2], s[3], 0x44), t3 = _mm512_shuffle_i32x4(s[2], s[3], 0xEE);
  out[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
  out[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
  out[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
  out[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

// Dword 0 of every row (z as in Transpose4) as lane r.
INGOT_ALWAYS_INLINE __m512i Column0(const __m512i z[8]) {
  // Every quarter of d[g] holds dword 0 of rows 4g..4g+3; keep quarter g of each.
  const __m512i idx = _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24);
  __m512i d[4];
#pragma GCC unroll 16
  for (int g = 0; g < 4; ++g) d[g] = _mm512_permutex2var_epi32(z[2 * g], idx, z[2 * g + 1]);
  const __m512i lo = _mm512_mask_blend_epi32(0x00F0, d[0], d[1]);
  const __m512i hi = _mm512_mask_blend_epi32(0xF000, d[2], d[3]);
  return _mm512_mask_blend_epi32(0xFF00, lo, hi);
}

INGOT_ALWAYS_INLINE __m512 HalfLow(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
INGOT_ALWAYS_INLINE __m512 HalfHigh(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

// Nibble bytes P (bytes 4i..4i+3 of qs, i = 0..3) -> elements 4i.. (low) and 16 + 4i.. (high).
INGOT_ALWAYS_INLINE void SplitNibbles(const __m512i p[4], __m512i q[8]) {
  const __m512i m = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {
    q[i] = _mm512_and_si512(p[i], m);
    q[4 + i] = _mm512_and_si512(_mm512_srli_epi32(p[i], 4), m);
  }
}

// Per-type unpack of block b of the tile's rows. `offs`: byte offset of each row from
// rows[0] (gathers of the 16 scales).
struct Q4_1 {
  using ActBlock = BlockQ8_1;
  static INGOT_ALWAYS_INLINE void Unpack(const uint8_t* const rows[kTile], __m512i offs, int64_t b, bool last, Unpacked* u) {
    (void)offs;
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_1);
    __m512i z[8];
#pragma GCC unroll 16
    for (int m = 0; m < 8; ++m) z[m] = Load2(rows[2 * m] + o, rows[2 * m + 1] + o, last, 0x1F);
    __m512i p[4];
    Transpose4(z, 1, p);  // dwords 1..4: the 16 nibble bytes
    SplitNibbles(p, u->q);
    const __m512i dm = Column0(z);  // d | m << 16
    u->d = HalfLow(dm);
    u->c = HalfHigh(dm);  // + m * s_x
  }
};

struct Q4_0 {
  using ActBlock = BlockQ8_0;
  static INGOT_ALWAYS_INLINE void Unpack(const uint8_t* const rows[kTile], __m512i offs, int64_t b, bool last, Unpacked* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_0);
    __m512i z[8];
#pragma GCC unroll 16
    for (int m = 0; m < 8; ++m) z[m] = Load2(rows[2 * m] + o + 2, rows[2 * m + 1] + o + 2, last, 0x0F);
    __m512i p[4];
    Transpose4(z, 0, p);
    SplitNibbles(p, u->q);
    // d and the first two code bytes: four bytes inside the block.
    u->d = HalfLow(_mm512_i32gather_epi32(offs, rows[0] + o, 1));
    u->c = _mm512_mul_ps(u->d, _mm512_set1_ps(-8.0f));  // - 8 d_w * (d_x sum q_x)
  }
};

struct Q8_0 {
  using ActBlock = BlockQ8_0;
  static INGOT_ALWAYS_INLINE void Unpack(const uint8_t* const rows[kTile], __m512i offs, int64_t b, bool last, Unpacked* u) {
    (void)last;  // the 32 code bytes end the block
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ8_0);
    __m512i z[8];
#pragma GCC unroll 16
    for (int m = 0; m < 8; ++m) z[m] = Load2(rows[2 * m] + o + 2, rows[2 * m + 1] + o + 2, false, 0xFF);
    Transpose4(z, 0, u->q);
    Transpose4(z, 4, u->q + 4);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 16
    for (int k = 0; k < 8; ++k) u->q[k] = _mm512_xor_si512(u->q[k], bias);  // q + 128
    u->d = HalfLow(_mm512_i32gather_epi32(offs, rows[0] + o, 1));
    u->c = _mm512_mul_ps(u->d, _mm512_set1_ps(-128.0f));
  }
};

INGOT_ALWAYS_INLINE __m512i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Rows [r0, r1) against NT consecutive token rows at x (stride xs) -> y[t * ys + r].
template <class T, int NT>
void Tiles(const WeightMatrix& w, const uint8_t* x, size_t xs, float* y, int64_t ys, int64_t r0, int64_t r1) {
  using A = typename T::ActBlock;
  const int64_t nb = w.cols / 32;
  const size_t scales = ActivationScalesOffset(nb, sizeof(A));
  for (int64_t rt = r0; rt < r1; rt += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, r1 - rt));
    const uint8_t* rows[kTile];
    alignas(64) int32_t off[kTile];
#pragma GCC unroll 16
    for (int r = 0; r < kTile; ++r) {
      rows[r] = w.Row(rt + std::min(r, n - 1));  // lanes past r1 repeat the last row
      off[r] = static_cast<int32_t>(rows[r] - rows[0]);
    }
    const __m512i offs = _mm512_load_si512(off);
    // The next tile (16 contiguous rows) streams in while this one computes: one step of
    // a decode reads each weight once, so without it a lone token waits on memory
    // (one token: 61 -> 45 ns per 576-column Q4_1 row measured here, ~10 GB/s of the
    // ~12 GB/s a plain streaming read gets on this shared machine).
    const int64_t next_rows = std::min<int64_t>(kTile, w.rows - (rt + kTile));
    const uint8_t* next = w.Row(rt + kTile);
    const int64_t next_lines = next_rows > 0 ? (next_rows * static_cast<int64_t>(w.row_bytes) + 63) / 64 : 0;
    const int64_t lines_per_block = (next_lines + nb - 1) / nb;
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t l = b * lines_per_block; l < std::min(next_lines, (b + 1) * lines_per_block); ++l) {
        _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
      }
      Unpacked u;
      T::Unpack(rows, offs, b, b == nb - 1, &u);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* xt = x + static_cast<size_t>(t) * xs;
        const int8_t* qx = reinterpret_cast<const A*>(xt)[b].qs;
        const float* sc = reinterpret_cast<const float*>(xt + scales);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
          s0 = _mm512_dpbusd_epi32(s0, u.q[k], Broadcast4(qx + 4 * k));
          s1 = _mm512_dpbusd_epi32(s1, u.q[k + 1], Broadcast4(qx + 4 * k + 4));
        }
        const __m512 dd = _mm512_mul_ps(u.d, _mm512_set1_ps(sc[b]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), dd, acc[t]);
        acc[t] = _mm512_fmadd_ps(u.c, _mm512_set1_ps(sc[nb + b]), acc[t]);
      }
    }
    const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ys + rt, keep, acc[t]);
  }
}

// Tokens in groups of 16 (16 accumulators + 8 weight vectors + 2 scale vectors fit the
// 32 zmm registers), the rest in one group of its own size.
template <class T>
void DotTokens(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
               int64_t r0, int64_t r1) {
  using Fn = void (*)(const WeightMatrix&, const uint8_t*, size_t, float*, int64_t, int64_t, int64_t);
  static constexpr Fn kByCount[17] = {nullptr,       Tiles<T, 1>,  Tiles<T, 2>,  Tiles<T, 3>,  Tiles<T, 4>,
                                      Tiles<T, 5>,   Tiles<T, 6>,  Tiles<T, 7>,  Tiles<T, 8>,  Tiles<T, 9>,
                                      Tiles<T, 10>,  Tiles<T, 11>, Tiles<T, 12>, Tiles<T, 13>, Tiles<T, 14>,
                                      Tiles<T, 15>,  Tiles<T, 16>};
  for (int64_t t = 0; t < n_tok; t += 16) {
    const int64_t n = std::min<int64_t>(16, n_tok - t);
    kByCount[n](w, x + t * xs, xs, y + t * ys, ys, r0, r1);
  }
}

}  // namespace

void DotTokensQ4_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  DotTokens<Q4_0>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ4_1Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  DotTokens<Q4_1>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ8_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  DotTokens<Q8_0>(w, x, xs, n_tok, y, ys, r0, r1);
}

}  // namespace ingot::kernels::internal
