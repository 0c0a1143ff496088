// AVX2 + FMA + F16C helpers shared by the AVX2 kernels (quant_dot_avx2.cc,
// qmatrix_avx2.cc). Include only from files built with -mavx2 -mfma -mf16c (the *_avx2.cc
// rule in kernels/CMakeLists.txt): every function here is inline and compiled for AVX2.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace ingot::kernels::internal::avx2 {

inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Sum of u8 x s8 products in 8 int32 lanes (lane i: bytes 4i..4i+3). maddubs saturates
// its int16 pairs: |u| * |s| * 2 must stay below 32768 (4-bit codes, or |s| <= 127
// against u <= 128).
inline __m256i DotU8S8I32(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
inline __m256 DotU8S8(__m256i u, __m256i s) { return _mm256_cvtepi32_ps(DotU8S8I32(u, s)); }

// Sum of s8 x s8 products: x's sign moves onto y so maddubs sees |x| (unsigned).
inline __m256 DotS8S8(__m256i x, __m256i y) {
  return DotU8S8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// 16 bytes of GGML nibbles -> 32 bytes: low nibbles in lanes 0..15, high in 16..31, the
// element order of Q4_0 / Q4_1 blocks.
inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i hi = _mm_srli_epi16(packed, 4);
  return _mm256_and_si256(_mm256_set_m128i(hi, packed), _mm256_set1_epi8(0x0F));
}

// exp(x) for x in [-87.3, 88.7] (clamped outside): x = n ln2 + r, |r| <= ln2/2, a
// degree-6 polynomial for exp(r) (Cephes' expf coefficients), times 2^n built in the
// exponent field. Relative error within 2 ulp of expf on that range.
inline __m256 Exp(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

}  // namespace ingot::kernels::internal::avx2
