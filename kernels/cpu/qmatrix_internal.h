// Shared between qmatrix.cc (dispatch, dequantization, outliers), qmatrix_ref.cc (scalar
// references) and qmatrix_avx2.cc. Not part of the public contract (qmatrix.h).
//
// Integer paths (LinearActivation picks them; everything else is the f32 path):
//   kAffine    cols % 32 == 0, group % 16 == 0. Activations are Q8_1 blocks of 32
//              (f16 d, f16 s = d * sum q). Per 32-block and per group g:
//                sum_j w_j x_j ~= scale_g * d * sum_j (q_j - o) qx_j + m_g * d * sum_j qx_j
//              with m_g = zero_g (kBias) or -zero_g * scale_g (kZero) and the code offset
//              o = 128 for 8 bits (codes become int8 so maddubs cannot saturate; m_g then
//              gains + 128 * scale_g), 0 otherwise. When group % 32 == 0 the whole block
//              is in one group and the second term uses the stored f16 s (as ggml's
//              Q4_1 x Q8_1); when a block spans two groups (group 16, 48, ...) each 16-half
//              takes its own scale and its exact integer sum.
//   kCodebook  block % 32 == 0. Activations are Q8_0 blocks. The 16 codebook values are
//              rounded to int8 (round(v * 127)); per 32 elements
//                sum_j w_j x_j ~= absmax / 127 * d * sum_j v8[code_j] qx_j.
// LLM.int8 outliers (kAffine, threshold > 0): LinearPrepare zeroes the columns with
// |x| > threshold before quantizing and appends them as an OutlierList; each row then
// adds x_c * (dequantized w[r][c]) in f32 for those columns.
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"

namespace ingot::kernels::internal {

// Follows the Q8 blocks of a prepared row when ActivationSpec.outlier_threshold > 0;
// room for `cols` entries, `count` used.
struct OutlierEntry {
  int32_t col;
  float value;
};
struct OutlierList {
  int32_t count;
  int32_t reserved;
  // The entries follow the header.
  OutlierEntry* entries() { return reinterpret_cast<OutlierEntry*>(this + 1); }
  const OutlierEntry* entries() const { return reinterpret_cast<const OutlierEntry*>(this + 1); }
};
static_assert(sizeof(OutlierList) == 8 && sizeof(OutlierEntry) == 8);
// nullptr when the spec has no outlier section.
const OutlierList* FindOutliers(const ActivationSpec& spec, const void* x_act, int64_t cols);

bool AffineIntegerPath(const AffineMatrix& a);
bool CodebookIntegerPath(const CodebookMatrix& m);

// Code c of an affine row (LSB-first bitstream).
inline uint32_t AffineCode(const uint8_t* row, int bits, int64_t c) {
  const int64_t bit = c * bits;
  const uint8_t* p = row + (bit >> 3);
  const int shift = static_cast<int>(bit & 7);
  uint32_t v = p[0] >> shift;
  if (shift + bits > 8) v |= static_cast<uint32_t>(p[1]) << (8 - shift);
  return v & ((1u << bits) - 1u);
}
// The exact dequantized weight w[r][c] (qmatrix.h's formula, f32).
float AffineWeight(const AffineMatrix& a, int64_t r, int64_t c);
// The integer-path constants of group index gi (= r * groups_per_row + g): scale and
// m + offset * scale (see above).
void AffineGroupConstants(const AffineMatrix& a, int64_t gi, float* scale, float* m_eff);

// round(v * 127) of the codebook values, code order.
const int8_t* CodebookInt8(Codebook book);
// absmax of flattened block b (plain or double-quantized).
float CodebookAbsmax(const CodebookMatrix& m, int64_t b);

// Integer paths for n_tok = 1 or 4 tokens: y[k][r - r0] for r in [r0, r1).
void AffineDotRowsRef(const AffineMatrix& a, const BlockQ8_1* const* x, int n_tok,
                      float* const* y, int64_t r0, int64_t r1);
void CodebookDotRowsRef(const CodebookMatrix& m, const BlockQ8_0* const* x, int n_tok,
                        float* const* y, int64_t r0, int64_t r1);
// n_tok must be 1 or 4.
void AffineDotRowsAvx2(const AffineMatrix& a, const BlockQ8_1* const* x, int n_tok,
                       float* const* y, int64_t r0, int64_t r1);
void CodebookDotRowsAvx2(const CodebookMatrix& m, const BlockQ8_0* const* x, int n_tok,
                         float* const* y, int64_t r0, int64_t r1);
// Any token count (DotRowsTokens' contract, outliers not included), 4- and 8-bit codes
// whose groups hold whole 32-blocks: the 8-row AVX2 tile and the 16-row AVX-512 one.
bool AffineTokensAvx2(const AffineMatrix& a);
void AffineDotTokensAvx2(const AffineMatrix& a, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                         int64_t y_stride, int64_t r0, int64_t r1);
bool AffineTokensAvx512Vnni(const AffineMatrix& a);
void AffineDotTokensAvx512Vnni(const AffineMatrix& a, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                               int64_t y_stride, int64_t r0, int64_t r1);
// The AVX-512 one with AMX-INT8 (same matrices as AffineTokensAvx512Vnni, same results).
void AffineDotTokensAmx(const AffineMatrix& a, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                        int64_t y_stride, int64_t r0, int64_t r1);

}  // namespace ingot::kernels::internal
