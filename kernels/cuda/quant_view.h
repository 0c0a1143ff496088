// The host side of the CUDA quantized kernels (quant_decode.h, quant_gemv.cu): which
// kernel format serves a Linear, and the arrays an upload copies. Plain C++ built into
// every binary (the CPU test exercises it), no CUDA headers.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cuda/quant_decode.h"
#include "kernels/linear.h"

namespace ingot::kernels::cuda {

// Empty when a kernel format serves `w` (set in *f); otherwise why not (e.g. "Q3_K has
// no CUDA kernel", "LLM.int8 outlier columns").
std::string QuantFormatFor(const Linear& w, QuantFormat* f);

// The arrays of w's representation, as stored on the host; bytes 0 when absent. The
// upload copies each one and points a QuantView at the copies; together they are
// exactly w.bytes() (the device holds what the CPU holds).
struct QuantArrays {
  enum : int { kData, kScale, kZero, kAbsmax, kAbsmaxCode, kAbsmaxScale, kCount };
  const void* host[kCount] = {};
  int64_t bytes[kCount] = {};
};
QuantArrays QuantArraysOf(const Linear& w);

// A view over the arrays at `ptr` (ptr[i] for array i; the host arrays for the CPU test,
// device copies for an upload), with the codebook tables `book` (16 floats) and `dmap`
// (256) where the caller keeps them.
QuantView MakeQuantView(const Linear& w, const void* const ptr[QuantArrays::kCount], const float* book,
                        const float* dmap);

}  // namespace ingot::kernels::cuda
