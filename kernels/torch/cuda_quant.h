// A quantized weight kept on a CUDA device in its own representation (GGML blocks,
// affine groups, NF4/FP4 codebook blocks), for the torch row's CUDA half
// (torch_cuda.cc): the arrays copied as the host holds them and the kernels' view of
// them. Included by the ATen translation units only.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "kernels/cuda/quant_decode.h"
#include "kernels/linear.h"

namespace ingot::kernels {

struct CudaQuant {
  cuda::QuantFormat format = cuda::QuantFormat::kQ4_0;
  cuda::QuantView view;            // device pointers into `arrays`
  std::vector<at::Tensor> arrays;  // the representation's arrays, byte tensors on the device
  int64_t bytes = 0;               // sum of the arrays (the host representation's bytes)
};

// Copies w to cuda:index in its representation; empty, or why no kernel serves it.
std::string UploadQuantOnCuda(const Linear& w, int index, CudaQuant* out);
// The weight expanded to a bf16 (rows, cols) tensor on its device.
at::Tensor QuantToBf16OnCuda(const CudaQuant& q, int index);
// x (m, cols) on the weight's device -> (m, rows) bf16: the fused GEMV for m <= 16,
// a bf16 tile + at::linear above.
at::Tensor QuantLinearOnCuda(const at::Tensor& x, const CudaQuant& q);

}  // namespace ingot::kernels
