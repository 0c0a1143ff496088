// The step's small ops on a CUDA device as one kernel each (step_ops.cu): RMSNorm (alone
// or after the residual add), rope over the q and k buffers together, SwiGLU. Through
// libtorch they are a chain of elementwise kernels and a copy each (rope alone: ~16 per
// layer), which at decode sizes
// costs more than the layer's weights: a kernel's launch and ramp are ~2 us, a 4-bit
// 7B layer's weights ~30 us of memory time, and a step has ~40 such kernels per layer.
// Each op computes in f32 from bf16 and rounds once to bf16.
//
// The per-element arithmetic and the rope index math are the __host__ __device__
// functions below: the CPU test (tests/kernels/cuda_decode_test.cc) applies them over
// whole buffers against the CPU references (RmsNormRef, RopeRef, SwiGluRef).
// Plain C++: no CUDA headers outside __CUDACC__.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/quant_decode.h"

namespace ingot::kernels::cuda {

// Rope: pair i (< rope_dim / 2) of a head rotates dimensions (a, c): the halves of the
// rotated part for the NeoX layout, adjacent dimensions otherwise (as kernels/cpu Rope).
INGOT_HD void RopePairDims(int32_t i, int32_t half, bool neox, int32_t* a, int32_t* c) {
  *a = neox ? i : 2 * i;
  *c = neox ? i + half : 2 * i + 1;
}

INGOT_HD void RopeRotate(float a, float c, float cos, float sin, float* na, float* nc) {
  *na = a * cos - c * sin;
  *nc = a * sin + c * cos;
}

// x / (1 + e^-x) * up
INGOT_HD float SwiGluValue(float g, float up) {
#if defined(__CUDA_ARCH__)
  return g / (1.0f + __expf(-g)) * up;
#else
  return g / (1.0f + std::exp(-g)) * up;
#endif
}

// x * 1 / sqrt(mean(x^2) + eps) * w, given the row's sum of squares.
INGOT_HD float RmsNormScale(float sum_sq, int64_t cols, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(cols) + eps);
}

// Launchers: every pointer on the device of `stream` (a cudaStream_t), bf16 buffers
// row-major with the given row strides (in elements). Return the cudaError_t of the
// launch (0 = ok).
// y (rows, cols) = RMSNorm of x (rows, cols) with weight w (cols).
int RmsNormBf16(const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t rows, int64_t cols, float eps,
                void* stream);
// res (rows, cols) += x, rounded to bf16 as a separate add would leave it, then y =
// RMSNorm of the new res (the residual add and the next layer's norm in one kernel).
// y must not overlap res or x.
int AddRmsNormBf16(void* res, int64_t ldr, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy,
                   int64_t rows, int64_t cols, float eps, void* stream);
// q (n, n_head * head_dim) and k (n, n_head_kv * head_dim) rotated in place by token t's
// cos/sin rows (n, rope_dim / 2; row stride ldc).
int RopeBf16(void* q, int64_t ldq, int32_t n_head, void* k, int64_t ldk, int32_t n_head_kv, int64_t n,
             int32_t head_dim, int32_t rope_dim, bool neox, const void* cos, const void* sin, int64_t ldc, void* stream);
// gate (n) = SwiGLU(gate, up), elementwise over n contiguous values.
int SwiGluBf16(void* gate, const void* up, int64_t n, void* stream);

}  // namespace ingot::kernels::cuda
