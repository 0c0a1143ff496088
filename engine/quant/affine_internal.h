// Shared by the affine-group quantizers (rtn.cc, gptq.cc, awq.cc): GPTQ's min/max
// quantizer, the kAffine storage writer, and the dense linear algebra GPTQ and AWQ need
// (affine_linalg.cc). Internal to engine/quant.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/quant/quantizers.h"

namespace ingot::quant::affine {

// One (row, group)'s parameters as GPTQ's Quantizer computes them, in f32:
// w ~ (q - zero) * scale, q in [0, maxq]; zero is an integer-valued float.
struct GroupParams {
  float scale = 1.0f;
  float zero = 0.0f;
};

// GPTQ's Quantizer.find_params (perchannel, weight=True, mse=False) over n values of
// one row: the range always includes 0 (xmin = min(min, 0), xmax = max(max, 0));
// sym: xmax = max(|xmin|, xmax), xmin = -xmax when xmin < 0, zero = (maxq + 1) / 2;
// an all-zero range becomes [-1, 1]; scale = (xmax - xmin) / maxq,
// zero = round(-xmin / scale) (half to even, like torch.round).
GroupParams FindParams(const float* x, int64_t n, int32_t maxq, bool symmetric);

// GPTQ's quantize(): clamp(round(x / scale) + zero, 0, maxq), all in f32.
inline int32_t QuantizeCode(float x, const GroupParams& p, int32_t maxq) {
  float q = std::nearbyint(x / p.scale) + p.zero;
  q = q < 0.0f ? 0.0f : (q > static_cast<float>(maxq) ? static_cast<float>(maxq) : q);
  return static_cast<int32_t>(q);
}
inline float Dequantize(int32_t q, const GroupParams& p) {
  return p.scale * (static_cast<float>(q) - p.zero);
}

// INVALID_ARGUMENT unless rows, cols > 0, bits in 1..8 and the group divides cols.
// Returns the effective group size in *group (group_size <= 0 means one group per
// row, GPTQ's group_size = -1).
absl::Status CheckAffineShape(int64_t rows, int64_t cols, const MethodParams& params,
                              int64_t* group);

using formats::AffineStorage;
using formats::AllocAffine;

// Writes code `q` (< 2^bits) of column c into a zeroed row of the bitstream.
inline void PutCode(uint8_t* row, int64_t c, int32_t bits, uint32_t q) {
  const int64_t bit = c * bits;
  const int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  row[byte] |= static_cast<uint8_t>(q << shift);
  if (shift + bits > 8) row[byte + 1] |= static_cast<uint8_t>(q >> (8 - shift));
}
inline uint32_t GetCode(const uint8_t* row, int64_t c, int32_t bits) {
  const int64_t bit = c * bits;
  const int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  uint32_t v = row[byte] >> shift;
  if (shift + bits > 8) v |= static_cast<uint32_t>(row[byte + 1]) << (8 - shift);
  return v & ((1u << bits) - 1u);
}

// ---- dense linear algebra (affine_linalg.cc), row-major throughout ----

// c[i][j] += alpha * sum_p a[i][p] * b[p][j] for i < m, j < n, p < k.
void GemmAccF32(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float* c, int64_t ldc);
void GemmAccF64(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                const double* b, int64_t ldb, double* c, int64_t ldc);

// In place: the lower triangle of a (n x n, symmetric positive definite, only the lower
// triangle is read) becomes L with a = L L^T; the strict upper triangle is left
// unspecified. FAILED_PRECONDITION when a pivot is not positive.
absl::Status CholeskyLower(double* a, int64_t n);

// U (upper triangular, n x n) with H^-1 = U^T U, i.e. torch.linalg.cholesky(
// torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True), computed as the
// inverse of the "reverse" Cholesky factor of H (J H J = L L^T, U = J L^-1 J) so it
// costs one factorization and one triangular inverse. h is overwritten.
absl::Status UpperCholeskyOfInverse(std::vector<double>& h, int64_t n, std::vector<double>* u);

}  // namespace ingot::quant::affine
