// The GGML Q4_0 / Q4_1 / Q8_0 unpacks of the 16-row multi-token tile
// (tile_avx512vnni.h), shared by the AVX-512 VNNI kernels (quant_dot_avx512vnni.cc) and
// the AMX ones (quant_dot_amx.cc), so both see the same u8 weights and coefficients.
// Include only from files built with the *_avx512vnni.cc / *_amx.cc flags.
//
// vpdpbusd multiplies u8 x s8. Q4_1 nibbles are unsigned as stored (c_w = m_w times the
// Q8_1 block's s, as ggml does); Q4_0 nibbles are used as q (0..15) with c_w = -8 d_w
// times s_x = d_x * sum q_x; Q8_0 weights are made u8 by + 128 (xor 0x80) with
// c_w = -128 d_w.
#pragma once

#include "kernels/cpu/tile_avx512vnni.h"

namespace ingot::kernels::internal::vnni {

// The 16 rows of a GGML tile (rows past the range repeat the last one) and their byte
// offsets from the first, for gathers of the 16 block scales.
struct GgmlTile {
  const uint8_t* rows[kTile];
  __m512i offs;
};

struct GgmlFormat {
  using Matrix = WeightMatrix;
  using Tile = GgmlTile;
  static int64_t Rows(const Matrix& w) { return w.rows; }
  static int64_t Blocks(const Matrix& w) { return w.cols / 32; }
  static size_t RowBytes(const Matrix& w) { return w.row_bytes; }
  static const uint8_t* RowPtr(const Matrix& w, int64_t r) { return w.Row(r); }
  static INGOT_ALWAYS_INLINE Tile Begin(const Matrix& w, int64_t first, int n) {
    Tile t;
    alignas(64) int32_t off[kTile];
#pragma GCC unroll 16
    for (int r = 0; r < kTile; ++r) {
      t.rows[r] = w.Row(first + std::min(r, n - 1));
      off[r] = static_cast<int32_t>(t.rows[r] - t.rows[0]);
    }
    t.offs = _mm512_load_si512(off);
    return t;
  }
};

// Nibble bytes p[i] (qs bytes 4i..4i+3) -> elements 4i.. (low) and 16 + 4i.. (high).
INGOT_ALWAYS_INLINE void SplitNibbles(const __m512i p[4], __m512i q[8]) {
  const __m512i m = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    q[i] = _mm512_and_si512(p[i], m);
    q[4 + i] = _mm512_and_si512(_mm512_srli_epi32(p[i], 4), m);
  }
}

struct Q4_1 : GgmlFormat {
  using ActBlock = BlockQ8_1;
  static constexpr bool kOffset128 = false;
  static INGOT_ALWAYS_INLINE void Unpack(const Tile& t, int64_t b, bool last, Unpacked* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_1);
    __m512i z[8];
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) z[m] = Load2(t.rows[2 * m] + o, t.rows[2 * m + 1] + o, last, 0x1F);
    __m512i p[4];
    Transpose4(z, 1, p);  // dwords 1..4: the 16 nibble bytes
    SplitNibbles(p, u->q);
    const __m512i dm = Column0(z);  // d | m << 16
    u->d = HalfLow(dm);
    u->c = HalfHigh(dm);
  }
};

struct Q4_0 : GgmlFormat {
  using ActBlock = BlockQ8_0;
  static constexpr bool kOffset128 = false;
  static INGOT_ALWAYS_INLINE void Unpack(const Tile& t, int64_t b, bool last, Unpacked* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_0);
    __m512i z[8];
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) z[m] = Load2(t.rows[2 * m] + o + 2, t.rows[2 * m + 1] + o + 2, last, 0x0F);
    __m512i p[4];
    Transpose4(z, 0, p);
    SplitNibbles(p, u->q);
    // d and the first two code bytes: four bytes inside the block.
    u->d = HalfLow(_mm512_i32gather_epi32(t.offs, t.rows[0] + o, 1));
    u->c = _mm512_mul_ps(u->d, _mm512_set1_ps(-8.0f));
  }
};

struct Q8_0 : GgmlFormat {
  using ActBlock = BlockQ8_0;
  static constexpr bool kOffset128 = false;
  static INGOT_ALWAYS_INLINE void Unpack(const Tile& t, int64_t b, bool, Unpacked* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ8_0);
    __m512i z[8];  // the 32 code bytes end the block: no masking
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) z[m] = Load2(t.rows[2 * m] + o + 2, t.rows[2 * m + 1] + o + 2, false, 0xFF);
    Transpose4(z, 0, u->q);
    Transpose4(z, 4, u->q + 4);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) u->q[k] = _mm512_xor_si512(u->q[k], bias);  // q + 128
    u->d = HalfLow(_mm512_i32gather_epi32(t.offs, t.rows[0] + o, 1));
    u->c = _mm512_mul_ps(u->d, _mm512_set1_ps(-128.0f));
  }
};

}  // namespace ingot::kernels::internal::vnni
