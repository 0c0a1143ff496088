// The AVX-512 VNNI multi-token tile: shared by quant_dot_avx512vnni.cc (GGML blocks) and
// qmatrix_avx512vnni.cc (affine groups). Include only from files built with
// -mavx512f/bw/vl/dq -mavx512vnni (the *_avx512vnni.cc rule in kernels/CMakeLists.txt).
//
// A zmm lane is a weight row. A tile of 16 rows is unpacked one 32-element block at a
// time into eight u8 vectors (lane r, dword k = row r's elements 4k..4k+3) plus per-row
// f32 coefficients; each token then costs eight vpdpbusd with its activation dword k
// broadcast from memory (64 MACs each, 512 per block) and one convert + two or three FMAs
// that apply the 16 rows' scales at once. The unpack (a 16 x 8 dword transpose, ~45
// uops) is paid once per block for up to 16 tokens.
//
// Per block and token, with acc = sum_j u8 weight_j * q_x,j - offset * sum_j q_x,j (exact
// in int32; offset = 128 for formats whose codes are the reference's q - 128, else 0):
//   y += d_w * d_x * acc + c_w * s_x
// d_x, s_x (Q8_1: its f16 s widened; Q8_0: d_x * sum q_x) and sum q_x come after the
// activation blocks (ActivationScalesOffset), so they are broadcast from memory.
//
// Napkin math, 16 tokens x 16 rows x one block: 128 vpdpbusd + 64 scale uops + ~45 unpack
// ~= 240 uops for 8192 MACs (~34 MACs/uop; the 4-token AVX2 kernel does ~4). Measured
// here, one core, L2-resident 576 x 576 Q4_1: 3.9 ns per row per token at 16 tokens
// (148 GMAC/s) against 33 for the AVX2 kernel; 18 ns per row for one token (the unpack).
#pragma once

// GCC 12's AVX-512 headers start many intrinsics from _mm512_undefined_*(), which -Wall
// reports as uninitialized where they are inlined (GCC PR 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_dot_internal.h"

// The unpack helpers must inline into the tile loop (their zmm arguments would go
// through memory otherwise) and their short loops must unroll.
#define INGOT_ALWAYS_INLINE inline __attribute__((always_inline))

namespace ingot::kernels::internal::vnni {

constexpr int kTile = 16;  // weight rows per tile: one per zmm lane

// The unpacked block of a 16-row tile.
struct Unpacked {
  __m512i q[8];  // u8 weights, lane = row, dword k = elements 4k..4k+3
  __m512 d;      // d_w: times d_x * acc
  __m512 c;      // c_w: times s_x
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

// z[m] holds rows 2m and 2m + 1, eight dwords each. For the dword at offset first + i
// (i = 0..3) of every row: out[i], lane r = that dword of row r.
INGOT_ALWAYS_INLINE void Transpose4(const __m512i z[8], int first, __m512i out[4]) {
  // s[g]: rows 4g..4g+3, lane 4i + j = dword first + i of row 4g + j.
  const __m512i idx = _mm512_add_epi32(
      _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27), _mm512_set1_epi32(first));
  __m512i s[4];
#pragma GCC unroll 4
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
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) d[g] = _mm512_permutex2var_epi32(z[2 * g], idx, z[2 * g + 1]);
  const __m512i lo = _mm512_mask_blend_epi32(0x00F0, d[0], d[1]);
  const __m512i hi = _mm512_mask_blend_epi32(0xF000, d[2], d[3]);
  return _mm512_mask_blend_epi32(0xFF00, lo, hi);
}

// f16 in the low / high half of each dword, as f32.
INGOT_ALWAYS_INLINE __m512 HalfLow(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
INGOT_ALWAYS_INLINE __m512 HalfHigh(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

// base[idx[r]] (f16) for 16 element indices, as f32. Each gather reads the 4-aligned
// dword holding the element, so it never crosses into another page.
INGOT_ALWAYS_INLINE __m512 GatherHalf(const uint16_t* base, __m512i idx) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base);
  const auto* aligned = reinterpret_cast<const uint8_t*>(addr & ~uintptr_t{3});
  const __m512i byte = _mm512_add_epi32(_mm512_slli_epi32(idx, 1), _mm512_set1_epi32(static_cast<int>(addr & 3)));
  const __m512i word = _mm512_i32gather_epi32(_mm512_andnot_si512(_mm512_set1_epi32(3), byte), aligned, 1);
  const __m512i shift = _mm512_slli_epi32(_mm512_and_si512(byte, _mm512_set1_epi32(2)), 3);  // 0 or 16
  return HalfLow(_mm512_srlv_epi32(word, shift));
}

INGOT_ALWAYS_INLINE __m512i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The VNNI product of one unpacked block with a token's activation block: eight vpdpbusd
// with the token's dword k broadcast from memory (Tiles' default Dot; tile_amx.h has the
// AMX one). Tiles calls, for b = 0 .. nb - 1 + kLag: when b < nb, Stage(u, token 0's
// codes of block b, b) right after unpacking block b into u; then for block s = b - kLag
// (when s >= 0) Scale / Offset (its d and c) and Token(u, t, token t's codes of block s,
// s), token t's 16 int32 row sums; then Block(u, token 0's codes of block min(b, nb - 1),
// stride, b, nb). kLag = 0: block s is u itself. Begin / End bracket a call.
struct VnniDot {
  static constexpr int64_t kLag = 0;
  static INGOT_ALWAYS_INLINE void Begin() {}
  static INGOT_ALWAYS_INLINE void End() {}
  INGOT_ALWAYS_INLINE void Stage(const Unpacked&, const int8_t*, int64_t) {}
  INGOT_ALWAYS_INLINE void Block(const Unpacked&, const int8_t*, size_t, int64_t, int64_t) {}
  INGOT_ALWAYS_INLINE __m512 Scale(const Unpacked& u, int64_t) const { return u.d; }
  INGOT_ALWAYS_INLINE __m512 Offset(const Unpacked& u, int64_t) const { return u.c; }
  INGOT_ALWAYS_INLINE __m512i Token(const Unpacked& u, int, const int8_t* qx, int64_t) const {
    // Two chains of four: a lone token's latency.
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 8; k += 2) {
      s0 = _mm512_dpbusd_epi32(s0, u.q[k], Broadcast4(qx + 4 * k));
      s1 = _mm512_dpbusd_epi32(s1, u.q[k + 1], Broadcast4(qx + 4 * k + 4));
    }
    return _mm512_add_epi32(s0, s1);
  }
};

// Rows [r0, r1) of a matrix in format F against NT consecutive prepared token rows at x
// (stride xs) -> y[t * ys + r]. F provides:
//   Matrix, ActBlock (BlockQ8_0 / BlockQ8_1), kOffset128 (acc takes - 128 * sum q_x),
//   Tile F::Begin(const Matrix&, int64_t first_row, int rows)  (rows past `rows` repeat
//       the last one), void F::Unpack(Tile&, int64_t block, bool last_block, Unpacked*),
//   F::Rows / Blocks / RowBytes / RowPtr (for the prefetch of the next tile).
// D (VnniDot or amx::Dot<NT>) computes the integer sums; the float ops that apply the
// scales are the same, in the same order, for every D, so the paths agree bit for bit.
template <class F, int NT, class D = VnniDot>
void Tiles(const typename F::Matrix& w, const uint8_t* x, size_t xs, float* y, int64_t ys, int64_t r0,
           int64_t r1) {
  using A = typename F::ActBlock;
  const int64_t nb = F::Blocks(w);
  const size_t scales = ActivationScalesOffset(nb, sizeof(A));
  D::Begin();
  D dots;
  for (int64_t rt = r0; rt < r1; rt += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, r1 - rt));
    typename F::Tile tile = F::Begin(w, rt, n);
    // The next tile (16 contiguous rows) streams in while this one computes: a decode
    // step reads each weight once, so without it a lone token waits on memory (one
    // token: 61 -> 45 ns per 576-column Q4_1 row measured here, ~10 GB/s of the ~12 GB/s
    // a plain streaming read gets on this shared machine).
    const int64_t next_rows = std::min<int64_t>(kTile, F::Rows(w) - (rt + kTile));
    const uint8_t* next = next_rows > 0 ? F::RowPtr(w, rt + kTile) : nullptr;
    const int64_t next_lines = next_rows > 0 ? (next_rows * static_cast<int64_t>(F::RowBytes(w)) + 63) / 64 : 0;
    const int64_t lines_per_block = (next_lines + nb - 1) / nb;
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    // Block b's scales (d, c: its Unpacked's) applied to each token's sums.
    auto scale = [&](int64_t b, const Unpacked& u, __m512 d, __m512 c) __attribute__((always_inline)) {
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* xt = x + static_cast<size_t>(t) * xs;
        const int8_t* qx = reinterpret_cast<const A*>(xt)[b].qs;
        const float* sc = reinterpret_cast<const float*>(xt + scales);
        __m512i dot = dots.Token(u, t, qx, b);
        if constexpr (F::kOffset128) {
          const int32_t* sums = reinterpret_cast<const int32_t*>(sc + 2 * nb);
          dot = _mm512_sub_epi32(dot, _mm512_slli_epi32(_mm512_set1_epi32(sums[b]), 7));
        }
        const __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(sc[b]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), dd, acc[t]);
        acc[t] = _mm512_fmadd_ps(c, _mm512_set1_ps(sc[nb + b]), acc[t]);
      }
    };
    Unpacked u;
    for (int64_t b = 0; b < nb + D::kLag; ++b) {
      if (b < nb) {
        for (int64_t l = b * lines_per_block; l < std::min(next_lines, (b + 1) * lines_per_block); ++l) {
          _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
        }
        F::Unpack(tile, b, b == nb - 1, &u);
        dots.Stage(u, reinterpret_cast<const A*>(x)[b].qs, b);
      }
      // Block b - kLag's sums are ready (the AMX tile unit works on later blocks); they
      // are read before Block's tile stores, which the loads could not pass.
      if (b >= D::kLag) {
        const int64_t s = b - D::kLag;
        scale(s, u, dots.Scale(u, s), dots.Offset(u, s));
      }
      dots.Block(u, reinterpret_cast<const A*>(x)[std::min(b, nb - 1)].qs, xs, b, nb);
    }
    const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ys + rt, keep, acc[t]);
  }
  D::End();
}

// VnniDot for any token count (DotTokens' default D).
template <int>
using AnyVnniDot = VnniDot;

// Tokens in groups of 16 (16 accumulators + 8 weight vectors + the coefficients fit the
// 32 zmm registers; one pass of 16 measured ~15% faster than two of 8), the rest in one
// group of its own size. D<n>: the Dot for n tokens.
template <class F, template <int> class D = AnyVnniDot>
void DotTokens(const typename F::Matrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
               int64_t r0, int64_t r1) {
  using Fn = void (*)(const typename F::Matrix&, const uint8_t*, size_t, float*, int64_t, int64_t, int64_t);
  static constexpr Fn kByCount[17] = {
      nullptr,           Tiles<F, 1, D<1>>,   Tiles<F, 2, D<2>>,   Tiles<F, 3, D<3>>,   Tiles<F, 4, D<4>>,
      Tiles<F, 5, D<5>>, Tiles<F, 6, D<6>>,   Tiles<F, 7, D<7>>,   Tiles<F, 8, D<8>>,   Tiles<F, 9, D<9>>,
      Tiles<F, 10, D<10>>, Tiles<F, 11, D<11>>, Tiles<F, 12, D<12>>, Tiles<F, 13, D<13>>, Tiles<F, 14, D<14>>,
      Tiles<F, 15, D<15>>, Tiles<F, 16, D<16>>};
  for (int64_t t = 0; t < n_tok; t += 16) {
    const int64_t n = std::min<int64_t>(16, n_tok - t);
    kByCount[n](w, x + t * xs, xs, y + t * ys, ys, r0, r1);
  }
}

}  // namespace ingot::kernels::internal::vnni
