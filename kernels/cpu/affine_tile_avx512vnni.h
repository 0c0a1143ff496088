// The affine 4- and 8-bit unpack of the 16-row multi-token tile (tile_avx512vnni.h),
// shared by the AVX-512 VNNI kernels (qmatrix_avx512vnni.cc) and the AMX ones
// (qmatrix_amx.cc). Include only from files built with the *_avx512vnni.cc / *_amx.cc
// flags.
//
// Codes are unsigned, so they go to vpdpbusd as stored: per block y += s * d_x * acc
// + m * s_x, with m = -zero * s (kZero) or zero (kBias). 8-bit codes keep the
// reference's q - 128 form exactly: the tile subtracts 128 * sum q_x from acc in int32
// and m + 128 s multiplies the f16 s_x, as the AVX2 and reference kernels do. Scales and
// zeros are gathered for the 16 rows once per group.
#pragma once

#include "kernels/cpu/qmatrix_internal.h"
#include "kernels/cpu/tile_avx512vnni.h"

namespace ingot::kernels::internal::vnni {

struct AffineTile {
  const AffineMatrix* a;
  int64_t blocks_per_group;
  const uint8_t* rows[kTile];
  __m512i group0;  // lane r: index of row r's first group in scale[] / zero[]
  __m512 s, m;     // the current group's constants (f32)
};

template <int B>
struct AffineFormat {
  using Matrix = AffineMatrix;
  using Tile = AffineTile;
  using ActBlock = BlockQ8_1;
  static constexpr bool kOffset128 = B == 8;
  static int64_t Rows(const Matrix& a) { return a.rows; }
  static int64_t Blocks(const Matrix& a) { return a.cols / 32; }
  static size_t RowBytes(const Matrix& a) { return a.row_bytes; }
  static const uint8_t* RowPtr(const Matrix& a, int64_t r) { return a.q + static_cast<size_t>(r) * a.row_bytes; }

  static INGOT_ALWAYS_INLINE Tile Begin(const Matrix& a, int64_t first, int n) {
    Tile t;
    t.a = &a;
    t.blocks_per_group = a.group / 32;
    alignas(64) int32_t g0[kTile];
#pragma GCC unroll 16
    for (int r = 0; r < kTile; ++r) {
      const int64_t row = first + std::min(r, n - 1);
      t.rows[r] = RowPtr(a, row);
      g0[r] = static_cast<int32_t>(row * a.groups_per_row());
    }
    t.group0 = _mm512_load_si512(g0);
    t.s = t.m = _mm512_setzero_ps();
    return t;
  }

  // Set t.s, t.m for group g (qmatrix_internal.h: m = -zero * s or zero, + 128 s for 8 bits
  // goes to the f16 s_x term as in the reference).
  static INGOT_ALWAYS_INLINE void Group(Tile& t, int64_t g) {
    const Matrix& a = *t.a;
    const __m512i idx = _mm512_add_epi32(t.group0, _mm512_set1_epi32(static_cast<int>(g)));
    t.s = GatherHalf(a.scale, idx);
    if (a.zero == nullptr) {
      t.m = _mm512_setzero_ps();
    } else {
      const __m512 z = GatherHalf(a.zero, idx);
      t.m = a.zero_kind == ZeroKind::kZero ? _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), t.s) : z;
    }
  }

  static INGOT_ALWAYS_INLINE void Codes(const Tile& t, int64_t b, bool last, __m512i q[8]) {
    const size_t o = static_cast<size_t>(b) * 4 * B;
    __m512i z[8];
    if constexpr (B == 8) {
#pragma GCC unroll 8
      for (int m = 0; m < 8; ++m) z[m] = Load2(t.rows[2 * m] + o, t.rows[2 * m + 1] + o, false, 0xFF);
      Transpose4(z, 0, q);
      Transpose4(z, 4, q + 4);
    } else {
      // 16 code bytes per block, LSB first: byte j holds codes 2j (low) and 2j + 1.
#pragma GCC unroll 8
      for (int m = 0; m < 8; ++m) z[m] = Load2(t.rows[2 * m] + o, t.rows[2 * m + 1] + o, last, 0x0F);
      __m512i p[4];
      Transpose4(z, 0, p);
      // Bytes b0 b1 of a dword -> words b0, b1 -> bytes (b0 & 15, b0 >> 4, b1 & 15, b1 >> 4).
      const __m512i lo_pair = _mm512_broadcast_i32x4(_mm_setr_epi8(0, -128, 1, -128, 4, -128, 5, -128, 8, -128, 9,
                                                                   -128, 12, -128, 13, -128));
      const __m512i hi_pair = _mm512_broadcast_i32x4(_mm_setr_epi8(2, -128, 3, -128, 6, -128, 7, -128, 10, -128, 11,
                                                                   -128, 14, -128, 15, -128));
      const __m512i mask = _mm512_set1_epi16(0x0F0F);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const __m512i w0 = _mm512_shuffle_epi8(p[i], lo_pair);
        const __m512i w1 = _mm512_shuffle_epi8(p[i], hi_pair);
        // (w | w << 4) & 0x0F0F: ternary logic 0xA8 = (A | B) & C.
        q[2 * i] = _mm512_ternarylogic_epi32(w0, _mm512_slli_epi16(w0, 4), mask, 0xA8);
        q[2 * i + 1] = _mm512_ternarylogic_epi32(w1, _mm512_slli_epi16(w1, 4), mask, 0xA8);
      }
    }
  }

  static INGOT_ALWAYS_INLINE void Unpack(Tile& t, int64_t b, bool last, Unpacked* u) {
    if (b % t.blocks_per_group == 0) Group(t, b / t.blocks_per_group);
    Codes(t, b, last, u->q);
    u->d = t.s;
    // 8 bits: m + 128 s times the f16 s_x, acc counting q - 128, as the reference does.
    u->c = B == 8 ? _mm512_fmadd_ps(t.s, _mm512_set1_ps(128.0f), t.m) : t.m;
  }
};

}  // namespace ingot::kernels::internal::vnni
