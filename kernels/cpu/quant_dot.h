// Dot products of quantized weight rows with activations: the decode hot path.
// Integer paths follow ggml's scheme (activations quantized per 32-block to int8,
// one int8 x int4/int8 dot per block, scales applied once per block); every other
// type takes the generic path (dequantize the row block, f32 dot). Each kernel has a
// plain reference; the AVX2 versions are chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/ggml_types.h"
#include "kernels/linear.h"

namespace ingot::kernels {

// How activations are prepared for a weight type.
enum class ActType { kF32, kQ8_0, kQ8_1 };

ActType ActivationTypeFor(GgmlType weight_type);
// Bytes of one prepared activation row of `cols` features.
size_t ActivationRowBytes(ActType act, int64_t cols);
// Prepares one activation row (f32 copy, or Q8_0/Q8_1 blocks followed by their scales
// widened to f32 for the multi-token kernels). cols % 32 == 0 for the quantized kinds.
void PrepareActivations(ActType act, const float* x, int64_t cols, void* out);
// True when DotRows supports this weight type.
bool DotSupported(GgmlType weight_type);

// y[r - r0] = <row r of w, x> for r in [r0, r1); `x_act` was prepared with
// ActivationTypeFor(w.type). Generic types use a per-thread scratch row.
void DotRows(const WeightMatrix& w, const void* x_act, float* y, int64_t r0, int64_t r1);

// The same for n_tok activation rows (a prompt batch, or one row per running sequence):
// y[t * y_stride + r] for r in [r0, r1) and activation row t at x_act + t * x_stride.
// Q4_0 / Q4_1 / Q8_0 unpack a weight block once for up to 16 tokens, for a tile of 8
// rows (AVX2) or 16 rows (AVX-512 VNNI). `level` (at most what the CPU has) picks the
// path; the overload without it takes BestCpuLevel().
void DotRowsTokens(const WeightMatrix& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                   float* y, int64_t y_stride, int64_t r0, int64_t r1, CpuLevel level);
void DotRowsTokens(const WeightMatrix& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                   float* y, int64_t y_stride, int64_t r0, int64_t r1);

// Reference versions (plain loops), for tests and for CPUs without AVX2.
void DotRowsRef(const WeightMatrix& w, const void* x_act, float* y, int64_t r0, int64_t r1);
void PrepareActivationsRef(ActType act, const float* x, int64_t cols, void* out);

// The best level's name (CpuLevelName(BestCpuLevel())): "amx", "avx512vnni", "avx2" or "ref".
const char* DotImplementation();

// The f32 dot of the dense (f32) weight rows.
float DotF32(const float* a, const float* b, int64_t n);

}  // namespace ingot::kernels
