// KV rows to f32 for attention: f16 through F16C, Q8_0 blocks through AVX2. n is a
// multiple of 8 (f16) or of 32 (Q8_0): a head's slice of a row. And f32 rows into an
// f16 store through F16C.
#include <immintrin.h>

#include <cstdint>

#include "kernels/ggml_types.h"

namespace ingot::kernels::internal {

void F16ToF32Avx2(const uint16_t* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  for (; i < n; ++i) out[i] = _cvtsh_ss(x[i]);
}

void Q8_0ToF32Avx2(const BlockQ8_0* x, float* out, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d));
    for (int j = 0; j < kQK8_0; j += 8) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].qs + j));
      const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
      _mm256_storeu_ps(out + b * kQK8_0 + j, _mm256_mul_ps(v, d));
    }
  }
}

bool F32ToF16Avx2(const float* x, uint16_t* out, int64_t n) {
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    if (x[i] != x[i]) return false;
    out[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
  }
  return _mm256_movemask_ps(nan) == 0;
}

}  // namespace ingot::kernels::internal
