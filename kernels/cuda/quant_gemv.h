// Fused dequantize-GEMV for ingot's quantized representations on a CUDA device
// (quant_gemv.cu): y = x . W^T read straight from the stored blocks, codes and scales,
// for the decode sizes (1-16 tokens), and a dequantize-to-bf16 kernel for the prefill
// path (bf16 tile, then cuBLAS through at::linear in kernels/torch/torch_cuda.cc).
// The decoders are quant_decode.h's, tested on the CPU against the CPU references.
// Plain C++: no CUDA or ATen headers here.
#pragma once

#include <cstdint>

#include "kernels/cuda/quant_decode.h"

namespace ingot::kernels::cuda {

// Most tokens one QuantGemv call takes; more go through QuantToBf16 + a GEMM.
constexpr int kMaxGemvTokens = 16;

// y (m, v.rows; row stride ldy) bf16 = x (m, v.cols; row stride ldx, even) bf16 . W^T,
// m in 1..kMaxGemvTokens; x 4-byte aligned. All pointers on the device of `stream` (a
// cudaStream_t). Returns the cudaError_t of the launch (0 = ok).
int QuantGemv(QuantFormat f, const QuantView& v, const void* x, int64_t ldx, int m, void* y, int64_t ldy,
              void* stream);

// out (v.rows, v.cols) bf16, row-major.
int QuantToBf16(QuantFormat f, const QuantView& v, void* out, void* stream);

}  // namespace ingot::kernels::cuda
