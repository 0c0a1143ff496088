// AVX2 kernels for the qmatrix integer paths (interim: forwards to the references).
#include "kernels/cpu/qmatrix_internal.h"

namespace ingot::kernels::internal {

void AffineDotRowsAvx2(const AffineMatrix& a, const BlockQ8_1* const* x, int n_tok,
                       float* const* y, int64_t r0, int64_t r1) {
  AffineDotRowsRef(a, x, n_tok, y, r0, r1);
}

void CodebookDotRowsAvx2(const CodebookMatrix& m, const BlockQ8_0* const* x, int n_tok,
                         float* const* y, int64_t r0, int64_t r1) {
  CodebookDotRowsRef(m, x, n_tok, y, r0, r1);
}

}  // namespace ingot::kernels::internal
