// Reference dequantizers, one per GGML type, exactly as ggml defines them: plain loops
// over the packed blocks of ggml_types.h, no SIMD. The fast paths are tested against
// these; these are tested against golden vectors from the gguf Python package
// (tests/kernels/dequant_test.cc). Reach them through GetGgmlTypeTraits(type).dequantize.
//
// Every function: `src` holds n / block_size packed blocks, `dst` receives n floats,
// n a multiple of the type's block size.
#pragma once

#include <cstdint>

namespace ingot {

// Plain element types (ggml_types.cc).
void DequantizeRowF32Ref(const void* src, float* dst, int64_t n);
void DequantizeRowF16Ref(const void* src, float* dst, int64_t n);
void DequantizeRowBF16Ref(const void* src, float* dst, int64_t n);
void DequantizeRowF64Ref(const void* src, float* dst, int64_t n);
void DequantizeRowI8Ref(const void* src, float* dst, int64_t n);
void DequantizeRowI16Ref(const void* src, float* dst, int64_t n);
void DequantizeRowI32Ref(const void* src, float* dst, int64_t n);
void DequantizeRowI64Ref(const void* src, float* dst, int64_t n);

// Blocks of 32 with one fp16 scale (dequant_ref.cc).
void DequantizeRowQ4_0Ref(const void* src, float* dst, int64_t n);
void DequantizeRowQ4_1Ref(const void* src, float* dst, int64_t n);
void DequantizeRowQ5_0Ref(const void* src, float* dst, int64_t n);
void DequantizeRowQ5_1Ref(const void* src, float* dst, int64_t n);
void DequantizeRowQ8_0Ref(const void* src, float* dst, int64_t n);
void DequantizeRowQ8_1Ref(const void* src, float* dst, int64_t n);
void DequantizeRowIQ4_NLRef(const void* src, float* dst, int64_t n);
void DequantizeRowMXFP4Ref(const void* src, float* dst, int64_t n);

// K-quant super-blocks of 256 (dequant_k_ref.cc).
void DequantizeRowQ2_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowQ3_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowQ4_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowQ5_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowQ6_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowQ8_KRef(const void* src, float* dst, int64_t n);
void DequantizeRowIQ4_XSRef(const void* src, float* dst, int64_t n);
void DequantizeRowTQ1_0Ref(const void* src, float* dst, int64_t n);
void DequantizeRowTQ2_0Ref(const void* src, float* dst, int64_t n);

}  // namespace ingot
