// The element-wise ops of a block with AVX2 + FMA: SwiGLU's exponential is the one
// transcendental per MLP feature (n_ff per token), single-threaded on the step's
// thread, so at 16 token rows it cost ~10% of a decode step in scalar expf. And the
// inner step of attention (ops_internal.h): scores of 8 positions per hadd tree, the
// online softmax's exponentials 8 at a time, values accumulated in registers.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/simd_avx2.h"

namespace ingot::kernels::internal {

void SwiGluAvx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = avx2::Exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

namespace {

// Eight dot products of q (hd floats, NC ymm chunks of it from `first`) with eight key
// rows, as one ymm: lane j = q . k[j]. One accumulator per row, then a hadd tree.
template <int NC>
inline void Dot8(const float* q, const float* const* k, int32_t first, __m256 acc[8]) {
  __m256 qc[NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) qc[c] = _mm256_loadu_ps(q + first + 8 * c);
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) acc[j] = _mm256_fmadd_ps(qc[c], _mm256_loadu_ps(k[j] + first + 8 * c), acc[j]);
  }
}

inline __m256 Reduce8(const __m256 d[8]) {
  const __m256 t0 = _mm256_hadd_ps(d[0], d[1]), t1 = _mm256_hadd_ps(d[2], d[3]);
  const __m256 t2 = _mm256_hadd_ps(d[4], d[5]), t3 = _mm256_hadd_ps(d[6], d[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  // u0: lanes 0..3 = low halves' sums of d0..d3, lanes 4..7 = their high halves'.
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Scores of positions [p0, p0 + 8) for query q: hd in chunks of 64 floats, then the tail.
inline __m256 Scores8(const float* q, const float* const* k, int32_t hd) {
  __m256 acc[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  int32_t c = 0;
  for (; c + 64 <= hd; c += 64) Dot8<8>(q, k, c, acc);
  for (; c + 8 <= hd; c += 8) Dot8<1>(q, k, c, acc);
  return Reduce8(acc);
}

// acc (NC ymm from `first`) = acc * corr + sum_p e[p] * v[p][first..].
template <int NC>
inline void Accumulate(float* acc, int32_t first, float corr, const float* e, const float* const* v, int32_t n) {
  __m256 a[NC];
  const __m256 c = _mm256_set1_ps(corr);
#pragma GCC unroll 8
  for (int i = 0; i < NC; ++i) a[i] = _mm256_mul_ps(_mm256_loadu_ps(acc + first + 8 * i), c);
  for (int32_t p = 0; p < n; ++p) {
    const __m256 w = _mm256_broadcast_ss(e + p);
#pragma GCC unroll 8
    for (int i = 0; i < NC; ++i) a[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v[p] + first + 8 * i), a[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NC; ++i) _mm256_storeu_ps(acc + first + 8 * i, a[i]);
}

}  // namespace

void AttendBlockAvx2(const AttendBlockArgs& a) {
  static_assert(kAttendPositions == 16, "two groups of eight positions");
  const __m256 scale = _mm256_set1_ps(a.scale);
  for (int32_t i = 0; i < a.nq; ++i) {
    const int32_t n = a.valid[i];
    if (n == 0) continue;
    alignas(32) float s[kAttendPositions];
    const float* q = a.q[i];
    _mm256_store_ps(s, _mm256_mul_ps(Scores8(q, a.k, a.hd), scale));
    if (n > 8) _mm256_store_ps(s + 8, _mm256_mul_ps(Scores8(q, a.k + 8, a.hd), scale));
    float mx = a.m[i];
    for (int32_t p = 0; p < n; ++p) mx = std::max(mx, s[p]);
    // exp(-inf) = 0 for the first block, whose state is all zero.
    const float corr = std::exp(a.m[i] - mx);
    const __m256 m = _mm256_set1_ps(mx);
    _mm256_store_ps(s, avx2::Exp(_mm256_sub_ps(_mm256_load_ps(s), m)));
    if (n > 8) _mm256_store_ps(s + 8, avx2::Exp(_mm256_sub_ps(_mm256_load_ps(s + 8), m)));
    float sum = 0;
    for (int32_t p = 0; p < n; ++p) sum += s[p];
    a.m[i] = mx;
    a.l[i] = a.l[i] * corr + sum;
    float* acc = a.acc + static_cast<int64_t>(i) * a.hd;
    int32_t c = 0;
    for (; c + 64 <= a.hd; c += 64) Accumulate<8>(acc, c, corr, s, a.v, n);
    for (; c + 8 <= a.hd; c += 8) Accumulate<1>(acc, c, corr, s, a.v, n);
  }
}

}  // namespace ingot::kernels::internal
