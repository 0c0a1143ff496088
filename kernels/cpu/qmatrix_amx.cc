// AMX-INT8 multi-token kernels for the affine integer path (4- and 8-bit codes, groups of
// whole 32-blocks: AffineTokensAvx512Vnni): the 16-row tile of tile_avx512vnni.h with the
// affine unpack (affine_tile_avx512vnni.h) and the AMX Dot (tile_amx.h). Bit for bit the
// VNNI kernels' results. Built with the AVX-512 VNNI flags plus -mamx-tile -mamx-int8;
// called only when CpuHasLevel(CpuLevel::kAmx).
#include "kernels/cpu/affine_tile_avx512vnni.h"
#include "kernels/cpu/tile_amx.h"

namespace ingot::kernels::internal {

void AffineDotTokensAmx(const AffineMatrix& a, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                        int64_t r0, int64_t r1) {
  if (a.bits == 8) {
    vnni::DotTokens<vnni::AffineFormat<8>, amx::Dot>(a, x, xs, n_tok, y, ys, r0, r1);
  } else {
    vnni::DotTokens<vnni::AffineFormat<4>, amx::Dot>(a, x, xs, n_tok, y, ys, r0, r1);
  }
}

}  // namespace ingot::kernels::internal
