// Reference quantizers for GGML block types, byte for byte what llama.cpp writes without
// an importance matrix (ggml_quantize_chunk -> quantize_row_<type>_ref): same searches,
// same float operations in the same order, same fp16 rounding of scales. Plain loops,
// no SIMD; compile without -ffast-math or FMA contraction, or the bytes drift.
// Golden bytes from llama.cpp itself: tests/kernels/quantize_test.cc
// (tests/reference/gen_quant_gguf.py).
//
// Every function: `x` holds n floats, `dst` receives n / block_size packed blocks of
// ggml_types.h; n a multiple of the type's block size. Blocks are independent, so a
// matrix is quantized row by row or all at once with the same result.
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace ingot {

using QuantizeRowFn = void (*)(const float* x, void* dst, int64_t n);

// Plain element types (quantize_ref.cc). F16 and BF16 round to nearest even, as ggml's
// ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row_ref; NaNs become ggml's quiet NaNs.
void QuantizeRowF32Ref(const float* x, void* dst, int64_t n);
void QuantizeRowF16Ref(const float* x, void* dst, int64_t n);
void QuantizeRowBF16Ref(const float* x, void* dst, int64_t n);

// Blocks of 32 (quantize_ref.cc): absmax (Q4_0, Q5_0, Q8_0) or min/max (Q4_1, Q5_1).
void QuantizeRowQ4_0Ref(const float* x, void* dst, int64_t n);
void QuantizeRowQ4_1Ref(const float* x, void* dst, int64_t n);
void QuantizeRowQ5_0Ref(const float* x, void* dst, int64_t n);
void QuantizeRowQ5_1Ref(const float* x, void* dst, int64_t n);
void QuantizeRowQ8_0Ref(const float* x, void* dst, int64_t n);

// K-quant super-blocks of 256 (quantize_k_ref.cc): per-sub-block scale (and min)
// searches, then 6- or 4-bit quantized scales under one fp16 super-scale.
void QuantizeRowQ2_KRef(const float* x, void* dst, int64_t n);
void QuantizeRowQ3_KRef(const float* x, void* dst, int64_t n);
void QuantizeRowQ4_KRef(const float* x, void* dst, int64_t n);
void QuantizeRowQ5_KRef(const float* x, void* dst, int64_t n);
void QuantizeRowQ6_KRef(const float* x, void* dst, int64_t n);

// The reference quantizer of `type`, or nullptr when ingot cannot produce that type.
QuantizeRowFn GetQuantizeRowFn(GgmlType type);

// GGML_FP32_TO_FP16: Fp32ToFp16 (round to nearest even), but every NaN becomes ggml's
// quiet NaN 0x7e00 with the sign kept.
ggml_half Fp32ToFp16Ggml(float f);
// ggml_compute_fp32_to_bf16: round to nearest even, NaN -> quiet NaN with its top bits.
ggml_bf16 Fp32ToBf16(float f);

}  // namespace ingot
