// Per-type vector dot kernels shared between quant_dot.cc (reference, dispatch) and
// quant_dot_avx2.cc. n = elements in the row (multiple of 32).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"
#include "kernels/linear.h"

namespace ingot::kernels::internal {

using VecDotFn = float (*)(int64_t n, const void* w_row, const void* x_act);

// Multi-token kernels: rows [r0, r1) of w against n_tok prepared activation rows at
// x + t * x_stride -> y[t * y_stride + r] (DotRowsTokens' contract).
using DotTokensFn = void (*)(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                             int64_t y_stride, int64_t r0, int64_t r1);

// A prepared Q8_0 / Q8_1 row is its nb blocks, padded to 4 bytes, then f32 d[nb], f32
// s[nb] and int32 sum[nb]: the block scale widened; Q8_1's stored f16 s widened (so
// results match the one-token kernels), Q8_0's d * sum(q) in f32; and sum(q) exactly.
// Multi-token kernels broadcast them from memory instead of converting f16 per token
// and block.
inline size_t ActivationScalesOffset(int64_t nb, size_t block_bytes) {
  return (static_cast<size_t>(nb) * block_bytes + 3) & ~size_t{3};
}

float VecDotQ4_0Q8_0Ref(int64_t n, const void* w, const void* x);
float VecDotQ4_1Q8_1Ref(int64_t n, const void* w, const void* x);
float VecDotQ5_0Q8_0Ref(int64_t n, const void* w, const void* x);
float VecDotQ5_1Q8_1Ref(int64_t n, const void* w, const void* x);
float VecDotQ8_0Q8_0Ref(int64_t n, const void* w, const void* x);

bool CpuHasAvx2();
float VecDotQ4_0Q8_0Avx2(int64_t n, const void* w, const void* x);
float VecDotQ4_1Q8_1Avx2(int64_t n, const void* w, const void* x);
float VecDotQ8_0Q8_0Avx2(int64_t n, const void* w, const void* x);
// The 8-row AVX2 tile (tile_avx2.h).
void DotTokensQ4_0Avx2(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                       int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ4_1Avx2(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                       int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ8_0Avx2(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                       int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ4_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                             int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ4_1Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                             int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ8_0Avx512Vnni(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                             int64_t y_stride, int64_t r0, int64_t r1);
// The same 16-row tile with AMX-INT8 (tile_amx.h): equal to the VNNI kernels bit for bit.
void DotTokensQ4_0Amx(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                      int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ4_1Amx(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                      int64_t y_stride, int64_t r0, int64_t r1);
void DotTokensQ8_0Amx(const WeightMatrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                      int64_t y_stride, int64_t r0, int64_t r1);
// The AMX tile beats the VNNI one for a group (of at most 16 tokens) from about 9 tokens
// on (matmul_bench, default model, time per weight row, AMX against VNNI: 16 tokens
// 12-21% less, 12 tokens 2-8% less, 8-9 tokens the same within noise, 6 mixed, 1-4
// tokens 15-45% more): n_tok = 16 q + r runs its 16 q tokens, and the r rest when
// r >= 9, on AMX; the results are the same either way.
constexpr int64_t kAmxMinTokens = 9;
inline int64_t AmxTokens(int64_t n_tok) {
  const int64_t rest = n_tok % 16;
  return n_tok - rest + (rest >= kAmxMinTokens ? rest : 0);
}
// The 16-row tile's split, for GGML blocks and affine groups alike: AmxTokens(n_tok)
// token rows on `amx` (nullptr: none), the rest on `vnni`.
template <class Matrix>
using TileTokensFn = void (*)(const Matrix& w, const uint8_t* x, size_t x_stride, int64_t n_tok, float* y,
                              int64_t y_stride, int64_t r0, int64_t r1);
template <class Matrix>
void DotTokensAmxThenVnni(TileTokensFn<Matrix> amx, TileTokensFn<Matrix> vnni, const Matrix& w, const uint8_t* x,
                          size_t x_stride, int64_t n_tok, float* y, int64_t y_stride, int64_t r0, int64_t r1) {
  const int64_t on_amx = amx != nullptr ? AmxTokens(n_tok) : 0;
  if (on_amx > 0) amx(w, x, x_stride, on_amx, y, y_stride, r0, r1);
  if (on_amx < n_tok) {
    vnni(w, x + on_amx * x_stride, x_stride, n_tok - on_amx, y + on_amx * y_stride, y_stride, r0, r1);
  }
}
float DotF32Avx2(const float* a, const float* b, int64_t n);
float DotHalfF32Avx2(const uint16_t* w, const float* x, int64_t n, bool bf16);
void QuantizeRowQ8_0Avx2(const float* x, BlockQ8_0* y, int64_t n);
void QuantizeRowQ8_1Avx2(const float* x, BlockQ8_1* y, int64_t n);

}  // namespace ingot::kernels::internal
