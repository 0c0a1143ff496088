// Plain-loop references of the qmatrix integer paths: the same activation preparation
// and the same per-block math as qmatrix_avx2.cc (qmatrix_internal.h describes it), so
// the two agree to float rounding.
#include <cstdint>

#include "kernels/cpu/qmatrix_internal.h"

namespace ingot::kernels::internal {

void AffineDotRowsRef(const AffineMatrix& a, const BlockQ8_1* const* x, int n_tok,
                      float* const* y, int64_t r0, int64_t r1) {
  const int64_t blocks = a.cols / 32;
  const int64_t gpr = a.groups_per_row();
  const bool split = a.group % 32 != 0;  // some 32-blocks span two groups
  const int offset = a.bits == 8 ? 128 : 0;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.q + static_cast<size_t>(r) * a.row_bytes;
    for (int k = 0; k < n_tok; ++k) {
      const BlockQ8_1* bx = x[k];
      float acc = 0, bias = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t isum[2] = {0, 0}, xsum[2] = {0, 0};
        for (int j = 0; j < 32; ++j) {
          const int q = static_cast<int>(AffineCode(row, a.bits, b * 32 + j)) - offset;
          isum[j / 16] += q * bx[b].qs[j];
          xsum[j / 16] += bx[b].qs[j];
        }
        const float d = Fp16ToFp32(bx[b].d);
        if (!split) {
          float scale, m;
          AffineGroupConstants(a, r * gpr + b * 32 / a.group, &scale, &m);
          acc += scale * d * static_cast<float>(isum[0] + isum[1]);
          bias += m * Fp16ToFp32(bx[b].s);
        } else {
          for (int h = 0; h < 2; ++h) {
            float scale, m;
            AffineGroupConstants(a, r * gpr + (b * 32 + h * 16) / a.group, &scale, &m);
            acc += d * (scale * static_cast<float>(isum[h]) + m * static_cast<float>(xsum[h]));
          }
        }
      }
      y[k][r - r0] = acc + bias;
    }
  }
}

void CodebookDotRowsRef(const CodebookMatrix& m, const BlockQ8_0* const* x, int n_tok,
                        float* const* y, int64_t r0, int64_t r1) {
  const int8_t* v8 = CodebookInt8(m.book);
  const int64_t sub = m.cols / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t base = r * m.cols;  // flattened index of the row's first element
    for (int k = 0; k < n_tok; ++k) {
      const BlockQ8_0* bx = x[k];
      float acc = 0;
      for (int64_t j = 0; j < sub; ++j) {
        const int64_t i0 = base + j * 32;
        const float ws = CodebookAbsmax(m, i0 / m.block) / 127.0f;
        const uint8_t* codes = m.codes + i0 / 2;
        int32_t isum = 0;
        for (int e = 0; e < 16; ++e) {
          isum += v8[codes[e] >> 4] * bx[j].qs[2 * e];
          isum += v8[codes[e] & 15] * bx[j].qs[2 * e + 1];
        }
        acc += ws * Fp16ToFp32(bx[j].d) * static_cast<float>(isum);
      }
      y[k][r - r0] = acc;
    }
  }
}

}  // namespace ingot::kernels::internal
