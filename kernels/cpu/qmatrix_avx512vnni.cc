// AVX-512 VNNI multi-token kernels for the affine integer path, 4- and 8-bit codes with
// groups that hold whole 32-blocks (qmatrix_internal.h has the math, qmatrix_ref.cc the
// plain loops): the shared 16-row tile (tile_avx512vnni.h) with the affine unpack
// (affine_tile_avx512vnni.h, shared with the AMX kernels). Built with
// -mavx512f/bw/vl/dq -mavx512vnni; called only when the CPU has them.
#include "kernels/cpu/affine_tile_avx512vnni.h"

namespace ingot::kernels::internal {

bool AffineTokensAvx512Vnni(const AffineMatrix& a) {
  return (a.bits == 4 || a.bits == 8) && a.group % 32 == 0 && AffineIntegerPath(a);
}

void AffineDotTokensAvx512Vnni(const AffineMatrix& a, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                               int64_t ys, int64_t r0, int64_t r1) {
  if (a.bits == 8) {
    vnni::DotTokens<vnni::AffineFormat<8>>(a, x, xs, n_tok, y, ys, r0, r1);
  } else {
    vnni::DotTokens<vnni::AffineFormat<4>>(a, x, xs, n_tok, y, ys, r0, r1);
  }
}

}  // namespace ingot::kernels::internal
