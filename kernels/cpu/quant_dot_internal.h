// Per-type vector dot kernels shared between quant_dot.cc (reference, dispatch) and
// quant_dot_avx2.cc. n = elements in the row (multiple of 32).
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace ingot::kernels::internal {

using VecDotFn = float (*)(int64_t n, const void* w_row, const void* x_act);
// One weight row against four activation rows: out[k] = <w, x[k]>. Prompt batches
// reuse each unpacked weight block four times.
using VecDot4Fn = void (*)(int64_t n, const void* w_row, const void* const x_act[4], float out[4]);

float VecDotQ4_0Q8_0Ref(int64_t n, const void* w, const void* x);
float VecDotQ4_1Q8_1Ref(int64_t n, const void* w, const void* x);
float VecDotQ5_0Q8_0Ref(int64_t n, const void* w, const void* x);
float VecDotQ5_1Q8_1Ref(int64_t n, const void* w, const void* x);
float VecDotQ8_0Q8_0Ref(int64_t n, const void* w, const void* x);

bool CpuHasAvx2();
float VecDotQ4_0Q8_0Avx2(int64_t n, const void* w, const void* x);
float VecDotQ4_1Q8_1Avx2(int64_t n, const void* w, const void* x);
float VecDotQ8_0Q8_0Avx2(int64_t n, const void* w, const void* x);
void VecDotQ4_0Q8_0x4Avx2(int64_t n, const void* w, const void* const x[4], float out[4]);
void VecDotQ4_1Q8_1x4Avx2(int64_t n, const void* w, const void* const x[4], float out[4]);
void VecDotQ8_0Q8_0x4Avx2(int64_t n, const void* w, const void* const x[4], float out[4]);
float DotF32Avx2(const float* a, const float* b, int64_t n);
float DotHalfF32Avx2(const uint16_t* w, const float* x, int64_t n, bool bf16);
void AxpyF32Avx2(float a, const float* x, float* y, int64_t n);
void QuantizeRowQ8_0Avx2(const float* x, BlockQ8_0* y, int64_t n);
void QuantizeRowQ8_1Avx2(const float* x, BlockQ8_1* y, int64_t n);

}  // namespace ingot::kernels::internal
