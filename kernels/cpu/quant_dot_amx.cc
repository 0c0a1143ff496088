// AMX-INT8 multi-token kernels for GGML Q4_0 / Q4_1 / Q8_0 weights: the 16-row tile of
// tile_avx512vnni.h with the formats' unpacks (ggml_tile_avx512vnni.h) and the AMX Dot
// (tile_amx.h). Bit for bit the VNNI kernels' results. Built with the AVX-512 VNNI flags
// plus -mamx-tile -mamx-int8; called only when CpuHasLevel(CpuLevel::kAmx).
#include "kernels/cpu/ggml_tile_avx512vnni.h"
#include "kernels/cpu/tile_amx.h"

namespace ingot::kernels::internal {

void DotTokensQ4_0Amx(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                      int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q4_0, amx::Dot>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ4_1Amx(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                      int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q4_1, amx::Dot>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ8_0Amx(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys,
                      int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q8_0, amx::Dot>(w, x, xs, n_tok, y, ys, r0, r1);
}

}  // namespace ingot::kernels::internal
