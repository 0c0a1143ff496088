// AVX-512 VNNI multi-token kernels for GGML Q4_0 / Q4_1 / Q8_0 weights (quant_dot.cc has
// the references and the dispatch): the shared 16-row tile (tile_avx512vnni.h) with the
// formats' unpacks (ggml_tile_avx512vnni.h, shared with the AMX kernels). Built with
// -mavx512f/bw/vl/dq -mavx512vnni; called only when the CPU has them
// (CpuLevel::kAvx512Vnni).
#include "kernels/cpu/ggml_tile_avx512vnni.h"

namespace ingot::kernels::internal {

void DotTokensQ4_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q4_0>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ4_1Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q4_1>(w, x, xs, n_tok, y, ys, r0, r1);
}
void DotTokensQ8_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t xs, int64_t n_tok, float* y,
                             int64_t ys, int64_t r0, int64_t r1) {
  vnni::DotTokens<vnni::Q8_0>(w, x, xs, n_tok, y, ys, r0, r1);
}

}  // namespace ingot::kernels::internal
