// NF4/FP4 codebook blocks (kernels/linear.h CodebookMatrix) dequantized to bf16 on a
// CUDA device: the torch row's upload of bitsandbytes 4-bit weights, which libtorch has
// no kernel for. The codes and absmax travel to the GPU as stored (~0.56 bytes per
// weight instead of 4 for a host-dequantized f32 copy) and expand there. The oracle is
// LinearDequantizeRow on the CPU (tests/kernels/backend_test.cc on cuda:0).
// Plain C++: no CUDA or ATen headers here.
#pragma once

#include <cstdint>

namespace ingot::kernels::cuda {

// All pointers are device pointers. Element i of the flattened (rows * cols) matrix is
// codes[i / 2] >> 4 (even i) or & 15 (odd i), times the absmax of block i / block:
// absmax[b], or dmap[absmax_code[b]] * absmax_scale[b / absmax_block] + absmax_offset
// when absmax_code is set (double quantization).
struct CodebookArgs {
  const uint8_t* codes = nullptr;
  const float* book = nullptr;  // 16 values
  const float* absmax = nullptr;
  const uint8_t* absmax_code = nullptr;
  const float* absmax_scale = nullptr;
  const float* dmap = nullptr;  // 256 values (double quantization)
  int64_t absmax_block = 256;
  float absmax_offset = 0.0f;
  int64_t n = 0;      // rows * cols
  int64_t block = 64; // elements per absmax block (even)
  void* out = nullptr;  // n bf16 values
};

// Launches on `stream` (a cudaStream_t); returns the cudaError_t of the launch (0 = ok).
int CodebookToBf16(const CodebookArgs& args, void* stream);

}  // namespace ingot::kernels::cuda
