// AVX2 + FMA + F16C versions of the integer dot kernels (quant_dot.cc has the
// references). Built with -mavx2 -mfma -mf16c; called only when the CPU has them.
//
// Napkin math for the default model's decode: ~106 M Q4_1 weights at 20 bytes per 32
// (0.625 B/weight) + 28 M Q8_0 logits weights at 34/32 -> ~96 MB read per token; at
// ~15 GB/s of DRAM bandwidth that caps decode near 150 tok/s on this 2-core machine.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant_dot_internal.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/tile_avx2.h"

namespace ingot::kernels::internal {

using avx2::DotS8S8;
using avx2::DotU8S8;
using avx2::HalfToFloat;
using avx2::HorizontalSum;
using avx2::UnpackNibbles;

float VecDotQ4_0Q8_0Avx2(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  const auto* bx = static_cast<const BlockQ8_0*>(x);
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const __m256 d = _mm256_set1_ps(HalfToFloat(bw[i].d) * HalfToFloat(bx[i].d));
    const __m256i qw = _mm256_sub_epi8(UnpackNibbles(bw[i].qs), eight);
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx[i].qs));
    acc = _mm256_fmadd_ps(d, DotS8S8(qw, qx), acc);
  }
  return HorizontalSum(acc);
}

float VecDotQ4_1Q8_1Avx2(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ4_1*>(w);
  const auto* bx = static_cast<const BlockQ8_1*>(x);
  __m256 acc = _mm256_setzero_ps();
  float min_sum = 0;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    min_sum += HalfToFloat(bw[i].m) * HalfToFloat(bx[i].s);
    const __m256 d = _mm256_set1_ps(HalfToFloat(bw[i].d) * HalfToFloat(bx[i].d));
    const __m256i qw = UnpackNibbles(bw[i].qs);
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx[i].qs));
    acc = _mm256_fmadd_ps(d, DotU8S8(qw, qx), acc);
  }
  return HorizontalSum(acc) + min_sum;
}

float VecDotQ8_0Q8_0Avx2(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  const auto* bx = static_cast<const BlockQ8_0*>(x);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const __m256 d = _mm256_set1_ps(HalfToFloat(bw[i].d) * HalfToFloat(bx[i].d));
    const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw[i].qs));
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx[i].qs));
    acc = _mm256_fmadd_ps(d, DotS8S8(qw, qx), acc);
  }
  return HorizontalSum(acc);
}

namespace {

// GGML formats for the 8-row tile (tile_avx2.h): Q4_1 nibbles unsigned with c_w = m_w;
// Q4_0 nibbles as q (0..15) with c_w = -8 d_w against s_x = d_x * sum q_x; Q8_0 signed.
struct GgmlTile8 {
  const uint8_t* rows[avx2::kTile8];
  __m256i offs;  // byte offset of each row from rows[0] (gathers of the block scales)
};

struct GgmlFormat8 {
  using Matrix = WeightMatrix;
  using Tile = GgmlTile8;
  static int64_t Rows(const Matrix& w) { return w.rows; }
  static int64_t Blocks(const Matrix& w) { return w.cols / 32; }
  static size_t RowBytes(const Matrix& w) { return w.row_bytes; }
  static const uint8_t* RowPtr(const Matrix& w, int64_t r) { return w.Row(r); }
  static INGOT_AVX2_INLINE Tile Begin(const Matrix& w, int64_t first, int n) {
    Tile t;
    alignas(32) int32_t off[avx2::kTile8];
#pragma GCC unroll 8
    for (int r = 0; r < avx2::kTile8; ++r) {
      t.rows[r] = w.Row(first + std::min(r, n - 1));  // lanes past the range repeat the last row
      off[r] = static_cast<int32_t>(t.rows[r] - t.rows[0]);
    }
    t.offs = _mm256_load_si256(reinterpret_cast<const __m256i*>(off));
    return t;
  }
};

// Nibble bytes p[i] (qs bytes 4i..4i+3) -> elements 4i.. (low) and 16 + 4i.. (high).
INGOT_AVX2_INLINE void SplitNibbles8(const __m256i p[4], __m256i q[8]) {
  const __m256i m = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 8
  for (int i = 0; i < 4; ++i) {
    q[i] = _mm256_and_si256(p[i], m);
    q[4 + i] = _mm256_and_si256(_mm256_srli_epi32(p[i], 4), m);
  }
}

struct Q4_1Tile8 : GgmlFormat8 {
  using ActBlock = BlockQ8_1;
  static constexpr bool kSigned = false, kSmallCodes = true;
  static INGOT_AVX2_INLINE void Unpack(const Tile& t, int64_t b, bool last, avx2::Unpacked8* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_1);
    __m256i r[8], col[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = avx2::LoadRow(t.rows[i] + o, last, 5);
    avx2::Transpose8(r, col, 5);  // d | m << 16, then the 16 nibble bytes
    SplitNibbles8(col + 1, u->q);
    u->d = avx2::HalfLow8(col[0]);
    u->c = avx2::HalfHigh8(col[0]);
  }
};

struct Q4_0Tile8 : GgmlFormat8 {
  using ActBlock = BlockQ8_0;
  static constexpr bool kSigned = false, kSmallCodes = true;
  static INGOT_AVX2_INLINE void Unpack(const Tile& t, int64_t b, bool last, avx2::Unpacked8* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ4_0);
    __m256i r[8], col[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = avx2::LoadRow(t.rows[i] + o + 2, last, 4);
    avx2::Transpose8(r, col, 4);
    SplitNibbles8(col, u->q);
    // d and the first two code bytes: four bytes inside the block.
    u->d = avx2::HalfLow8(_mm256_i32gather_epi32(reinterpret_cast<const int*>(t.rows[0] + o), t.offs, 1));
    u->c = _mm256_mul_ps(u->d, _mm256_set1_ps(-8.0f));
  }
};

struct Q8_0Tile8 : GgmlFormat8 {
  using ActBlock = BlockQ8_0;
  static constexpr bool kSigned = true, kSmallCodes = false;
  static INGOT_AVX2_INLINE void Unpack(const Tile& t, int64_t b, bool, avx2::Unpacked8* u) {
    const size_t o = static_cast<size_t>(b) * sizeof(BlockQ8_0);
    __m256i r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = avx2::LoadRow(t.rows[i] + o + 2, false, 8);
    avx2::Transpose8(r, u->s, 8);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) u->q[k] = _mm256_sign_epi8(u->s[k], u->s[k]);
    u->d = avx2::HalfLow8(_mm256_i32gather_epi32(reinterpret_cast<const int*>(t.rows[0] + o), t.offs, 1));
    u->c = _mm256_setzero_ps();
  }
};

}  // namespace

void DotTokensQ4_0Avx2(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                       int64_t r0, int64_t r1) {
  avx2::DotTokens8<Q4_0Tile8>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ4_1Avx2(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                       int64_t r0, int64_t r1) {
  avx2::DotTokens8<Q4_1Tile8>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ8_0Avx2(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                       int64_t r0, int64_t r1) {
  avx2::DotTokens8<Q8_0Tile8>(w, x, xs, n_tok, y, ys, r0, r1);
}

float DotF32Avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Dense half-precision rows (Hugging Face f16/bf16 checkpoints) against f32 activations:
// widen 8 values at a time (F16C, or a 16-bit shift for bf16) straight into the FMA.
float DotHalfF32Avx2(const uint16_t* w, const float* x, int64_t n, bool bf16) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  auto widen = [bf16](const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(widen(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(widen(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(widen(w + i), _mm256_loadu_ps(x + i), acc0);
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) {
    const float v = bf16 ? Bf16ToFp32(w[i]) : _cvtsh_ss(w[i]);
    s += v * x[i];
  }
  return s;
}

namespace {

// Quantizes 32 floats to int8 with scale amax/127; returns the scale and writes qs.
// Rounds half to even like nearbyint in the reference (default MXCSR mode).
inline float QuantizeBlock32(const float* x, int8_t* qs, int32_t* sum_out) {
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[k]));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float max_scalar = _mm_cvtss_f32(m);
  const float d = max_scalar / 127.0f;
  const float id = max_scalar != 0.0f ? 127.0f / max_scalar : 0.0f;
  const __m256 mul = _mm256_set1_ps(id);
  __m256i i32[4];
  for (int k = 0; k < 4; ++k) {
    i32[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (sum_out != nullptr) {
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    *sum_out = _mm_cvtsi128_si32(s4);
  }
  // Pack 32 x i32 -> 32 x i8 in order (packs interleave 128-bit lanes; fix with a permute).
  __m256i p01 = _mm256_packs_epi32(i32[0], i32[1]);
  __m256i p23 = _mm256_packs_epi32(i32[2], i32[3]);
  __m256i p = _mm256_packs_epi16(p01, p23);
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), p);
  return d;
}

}  // namespace

void QuantizeRowQ8_0Avx2(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float d = QuantizeBlock32(x + i * kQK8_0, y[i].qs, nullptr);
    y[i].d = _cvtss_sh(d, 0);
  }
}

void QuantizeRowQ8_1Avx2(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    int32_t sum = 0;
    const float d = QuantizeBlock32(x + i * kQK8_1, y[i].qs, &sum);
    y[i].d = _cvtss_sh(d, 0);
    y[i].s = _cvtss_sh(d * static_cast<float>(sum), 0);
  }
}

}  // namespace ingot::kernels::internal
