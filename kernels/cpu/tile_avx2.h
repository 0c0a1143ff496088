// The AVX2 multi-token tile, the ymm sibling of tile_avx512vnni.h: a lane is a weight
// row, a tile is 8 rows, unpacked one 32-element block at a time (an 8 x 8 dword
// transpose: unpack 32/64 + permute2x128) into eight u8 vectors plus f32 scales, then
// reused by up to 16 tokens. Without VNNI the int8 dot is maddubs (u8 x s8 -> pairs of
// int16) + madd; 4-bit weights let the eight maddubs of a block sum in int16 first
// (8 * 2 * 15 * 127 = 30480 < 32767), so a token costs 8 maddubs + 7 adds + 1 madd +
// 4 scale uops per 8 rows x 32 (256 MACs), against ~7 uops per row x 32 for the 4-token
// kernel it replaced, which unpacked per row. Measured here (one core, L2-resident, ns per
// row per token at 16 tokens, that kernel -> this one): 576x576 Q4_1 29 -> 7.2, 576x1536
// Q4_1 75 -> 21, 49152x576 Q8_0 30 -> 13.7; one token 43 -> 23. Include only from files
// built with -mavx2 -mfma -mf16c.
//
// Per block and token, acc = sum_j weight_j * q_x,j (exact int32):
//   y += d_w * d_x * acc + c_w * s_x        (d_x, s_x: ActivationScalesOffset)
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_dot_internal.h"
#include "kernels/cpu/simd_avx2.h"

// The unpack helpers must inline into the tile loop and their short loops unroll, or the
// weight vectors and accumulators go through memory.
#define INGOT_AVX2_INLINE inline __attribute__((always_inline))

namespace ingot::kernels::internal::avx2 {

constexpr int kTile8 = 8;  // weight rows per tile: one per ymm lane

// The unpacked block of an 8-row tile.
struct Unpacked8 {
  __m256i q[8];  // u8 weights, lane = row, dword k = elements 4k..4k+3 (kSigned: |w|)
  __m256i s[8];  // kSigned: the s8 weights, whose signs move onto x
  __m256 d;      // d_w: times d_x * acc
  __m256 c;      // c_w: times s_x
};

// One row's 32 bytes; `last`: only `dwords` dwords (the final block may end the matrix).
INGOT_AVX2_INLINE __m256i LoadRow(const uint8_t* p, bool last, int dwords) {
  if (last) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(dwords), lane);
    return _mm256_maskload_epi32(reinterpret_cast<const int*>(p), mask);
  }
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// r[i] = 8 dwords of row i -> col[k] lane i = dword k of row i, for k < ncols.
INGOT_AVX2_INLINE void Transpose8(const __m256i r[8], __m256i col[8], int ncols) {
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  col[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  col[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  col[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  col[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  if (ncols > 4) col[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  if (ncols > 5) col[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  if (ncols > 6) col[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  if (ncols > 7) col[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// f16 in the low / high half of each dword, as f32.
INGOT_AVX2_INLINE __m256 HalfLow8(__m256i v) {
  const __m256i packed = _mm256_packus_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), v);
  return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
}
INGOT_AVX2_INLINE __m256 HalfHigh8(__m256i v) { return HalfLow8(_mm256_srli_epi32(v, 16)); }

INGOT_AVX2_INLINE __m256i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Rows [r0, r1) of a matrix in format F against NT consecutive prepared token rows at x
// (stride xs) -> y[t * ys + r]. F provides Matrix, ActBlock, kSigned (s8 weights: |w|
// in q, w in s, the sign moves onto x per token), kSmallCodes (4-bit: maddubs pairs sum in int16), Tile
// Begin(const Matrix&, first_row, rows), Unpack(Tile&, block, last_block, Unpacked8*),
// and Rows / Blocks / RowBytes / RowPtr.
template <class F, int NT>
void Tiles8(const typename F::Matrix& w, const uint8_t* x, size_t xs, float* y, int64_t ys, int64_t r0,
            int64_t r1) {
  using A = typename F::ActBlock;
  const int64_t nb = F::Blocks(w);
  const size_t scales = ActivationScalesOffset(nb, sizeof(A));
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t rt = r0; rt < r1; rt += kTile8) {
    const int n = static_cast<int>(std::min<int64_t>(kTile8, r1 - rt));
    typename F::Tile tile = F::Begin(w, rt, n);
    const int64_t next_rows = std::min<int64_t>(kTile8, F::Rows(w) - (rt + kTile8));
    const uint8_t* next = next_rows > 0 ? F::RowPtr(w, rt + kTile8) : nullptr;
    const int64_t next_lines = next_rows > 0 ? (next_rows * static_cast<int64_t>(F::RowBytes(w)) + 63) / 64 : 0;
    const int64_t lines_per_block = (next_lines + nb - 1) / nb;
    __m256 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t l = b * lines_per_block; l < std::min(next_lines, (b + 1) * lines_per_block); ++l) {
        _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
      }
      Unpacked8 u;
      F::Unpack(tile, b, b == nb - 1, &u);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const uint8_t* xt = x + static_cast<size_t>(t) * xs;
        const int8_t* qx = reinterpret_cast<const A*>(xt)[b].qs;
        const float* sc = reinterpret_cast<const float*>(xt + scales);
        __m256i dot;
        if constexpr (F::kSmallCodes) {
          __m256i p = _mm256_maddubs_epi16(u.q[0], Broadcast4(qx));
#pragma GCC unroll 8
          for (int k = 1; k < 8; ++k) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(u.q[k], Broadcast4(qx + 4 * k)));
          dot = _mm256_madd_epi16(p, ones16);
        } else {
          __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 8
          for (int k = 0; k < 8; k += 2) {
            __m256i x0 = Broadcast4(qx + 4 * k), x1 = Broadcast4(qx + 4 * k + 4);
            if constexpr (F::kSigned) {
              x0 = _mm256_sign_epi8(x0, u.s[k]);
              x1 = _mm256_sign_epi8(x1, u.s[k + 1]);
            }
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[k], x0), ones16));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[k + 1], x1), ones16));
          }
          dot = _mm256_add_epi32(s0, s1);
        }
        const __m256 dd = _mm256_mul_ps(u.d, _mm256_set1_ps(sc[b]));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), dd, acc[t]);
        acc[t] = _mm256_fmadd_ps(u.c, _mm256_set1_ps(sc[nb + b]), acc[t]);
      }
    }
    if (n == kTile8) {
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) _mm256_storeu_ps(y + t * ys + rt, acc[t]);
    } else {
      const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(y + t * ys + rt, keep, acc[t]);
    }
  }
}

// Tokens in groups of 16, the rest in one group of its own size. AVX2 has 16 ymm
// registers, so the eight weight vectors live in L1 (two loads per maddubs are cheap):
// per row per token at 16 tokens, L2-resident 576-column Q4_1, groups of 4 / 8 / 16
// measured 11.7 / 8.3 / 7.2 ns.
template <class F>
void DotTokens8(const typename F::Matrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                int64_t r0, int64_t r1) {
  using Fn = void (*)(const typename F::Matrix&, const uint8_t*, size_t, float*, int64_t, int64_t, int64_t);
  static constexpr Fn kByCount[17] = {nullptr,        Tiles8<F, 1>,  Tiles8<F, 2>,  Tiles8<F, 3>,  Tiles8<F, 4>,
                                      Tiles8<F, 5>,   Tiles8<F, 6>,  Tiles8<F, 7>,  Tiles8<F, 8>,  Tiles8<F, 9>,
                                      Tiles8<F, 10>,  Tiles8<F, 11>, Tiles8<F, 12>, Tiles8<F, 13>, Tiles8<F, 14>,
                                      Tiles8<F, 15>,  Tiles8<F, 16>};
  for (int64_t t = 0; t < n_tok; t += 16) {
    const int64_t n = std::min<int64_t>(16, n_tok - t);
    kByCount[n](w, x + t * xs, xs, y + t * ys, ys, r0, r1);
  }
}

}  // namespace ingot::kernels::internal::avx2
