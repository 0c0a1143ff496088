// The torch row's CUDA half (torch_cuda.cc) as the row sees it: a quantized weight kept
// on a CUDA device in its own representation (GGML blocks, affine groups, NF4/FP4
// codebook blocks: the arrays copied as the host holds them and the kernels' view of
// them), and the paged KV kernels. Included by the ATen translation units only.
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
// out (m, rows) = x (m, cols) . W^T on the weight's device: ingot's GEMV or tensor-core
// kernel up to QuantGemvMaxTokens (quant_gemv.h), a bf16 tile + a GEMM above. out is
// written in place when it is a bf16 matrix with
// unit column stride (the step's buffers: no copy kernel after each linear layer), else
// through a temporary.
void QuantLinearOnCuda(const at::Tensor& x, const CudaQuant& q, const at::Tensor& out);
// out[i] = x . W_i^T for count (<= 3) weights of one format in one launch (q/k/v,
// gate/up); swiglu (count 2): out[0] = SiLU(x . W0^T) * (x . W1^T), out[1] untouched.
// false (nothing done) when one launch cannot serve them (formats differ, more tokens
// than the kernels take, x or an output not bf16 rows, step ops off): the caller runs
// them one by one.
bool QuantLinearGroupOnCuda(const at::Tensor& x, const CudaQuant* const* q, const at::Tensor* out, int count,
                            bool swiglu);

// The step's small ops as one kernel each (kernels/cuda/step_ops.cu), on bf16 matrices
// with unit column stride; false (nothing done) for anything else, which the caller then
// runs through libtorch. $INGOT_CUDA_STEP_OPS=torch turns them off (the A/B of
// tests/gpu/run.sh).
bool RmsNormOnCuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& out, float eps);
// res += x, then out = RMSNorm(res): the residual add and the next norm as one kernel.
bool AddRmsNormOnCuda(const at::Tensor& res, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& out,
                      float eps);
bool RopeOnCuda(const at::Tensor& q, int32_t n_head, const at::Tensor& k, int32_t n_head_kv, int32_t head_dim,
                int32_t rope_dim, bool neox, const at::Tensor& cos, const at::Tensor& sin);
bool SwiGluOnCuda(const at::Tensor& gate, const at::Tensor& up);

// ingot's paged KV kernels (kernels/cuda/paged_attention.cu).
// Rows rows[i] (int64, device) of one layer's stores (rows, width) = k / v row i, in the
// store's type (f16, f32) or as Q8_0 blocks (q8: byte stores), k and v in one kernel.
// false (nothing done) for an f16/f32 store when the step ops are off or k/v are not
// bf16 rows: the caller copies through libtorch. Q8_0 always takes the kernel.
bool StoreKvRowsOnCuda(const at::Tensor& k, const at::Tensor& v, const at::Tensor& rows, const at::Tensor& k_store,
                       const at::Tensor& v_store, bool q8);
// out (n, n_head * head_dim) = attention of q (n, ...) over the layer's store k/v
// (rows, width) in store_dtype (or Q8_0 bytes), token t over rows
// ctx_rows[ctx_off[t] .. + ctx_len[t]).
void PagedAttentionOnCuda(const at::Tensor& q, const at::Tensor& out, const at::Tensor& k, const at::Tensor& v,
                          bool q8, at::ScalarType store_dtype, const at::Tensor& ctx_rows, const at::Tensor& ctx_off,
                          const at::Tensor& ctx_len, int32_t n_head, int32_t n_head_kv, int32_t head_dim);

}  // namespace ingot::kernels
