// The CUDA half of the torch row, built only with -DINGOT_CUDA=ON: device count,
// memory (the driver's free/total and the caching allocator's statistics), sync, and
// quantized weights kept in their representation on the device and multiplied by the
// fused kernels of kernels/cuda (quant_gemv.cu). No GPU needed to compile or load:
// c10::cuda::device_count() is 0 without a driver.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/quant_gemv.h"
#include "kernels/cuda/quant_view.h"
#include "kernels/torch/cuda_quant.h"

namespace ingot::kernels {

int CudaDeviceCount() {
  try {
    return static_cast<int>(c10::cuda::device_count());
  } catch (const std::exception&) {
    return 0;
  }
}

absl::StatusOr<MemoryStats> CudaMemory(int index) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    size_t free_b = 0, total_b = 0;
    if (cudaError_t e = cudaMemGetInfo(&free_b, &total_b); e != cudaSuccess) {
      return absl::UnavailableError(absl::StrCat("cudaMemGetInfo on cuda:", index, ": ", cudaGetErrorString(e)));
    }
    MemoryStats s;
    s.total_bytes = static_cast<int64_t>(total_b);
    s.free_bytes = static_cast<int64_t>(free_b);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    using c10::CachingAllocator::StatType;
    s.allocated_bytes = stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)].current;
    s.reserved_bytes = stats.reserved_bytes[static_cast<size_t>(StatType::AGGREGATE)].current;
    return s;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cuda:", index, " memory statistics: ", e.what()));
  }
}

absl::Status CudaSynchronize(int index) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    c10::cuda::device_synchronize();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cuda:", index, " synchronize: ", e.what()));
  }
}

namespace {

void Check(int err, const char* what) {
  if (err != 0) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(static_cast<cudaError_t>(err)));
  }
}

// The codebook tables (NF4, FP4 and the dynamic map of double quantization) once per
// device, shared by every codebook weight there.
const float* DeviceTable(int index, int which) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, at::Tensor> tables;
  std::lock_guard lock(mu);
  at::Tensor& t = tables[{index, which}];
  if (!t.defined()) {
    const float* host = which == 0 ? CodebookValues(Codebook::kNF4) : which == 1 ? CodebookValues(Codebook::kFP4)
                                                                                 : DynamicMap();
    const int64_t n = which == 2 ? 256 : 16;
    t = at::from_blob(const_cast<float*>(host), {n}, at::TensorOptions().dtype(at::kFloat))
            .to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index)));
  }
  return t.data_ptr<float>();
}

}  // namespace

std::string UploadQuantOnCuda(const Linear& w, int index, CudaQuant* out) {
  std::string why = cuda::QuantFormatFor(w, &out->format);
  if (!why.empty()) return why;
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  c10::cuda::CUDAGuard guard(dev.index());
  const cuda::QuantArrays a = cuda::QuantArraysOf(w);
  const void* ptr[cuda::QuantArrays::kCount] = {};
  out->arrays.clear();
  out->bytes = 0;
  for (int i = 0; i < cuda::QuantArrays::kCount; ++i) {
    if (a.host[i] == nullptr || a.bytes[i] == 0) continue;
    at::Tensor d = at::from_blob(const_cast<void*>(a.host[i]), {a.bytes[i]}, at::TensorOptions().dtype(at::kByte))
                       .to(dev);
    ptr[i] = d.data_ptr();
    out->bytes += a.bytes[i];
    out->arrays.push_back(std::move(d));
  }
  const bool codebook = w.kind == LinearKind::kCodebook;
  out->view = cuda::MakeQuantView(
      w, ptr, codebook ? DeviceTable(index, w.codebook.book == Codebook::kNF4 ? 0 : 1) : nullptr,
      codebook && w.codebook.absmax_code != nullptr ? DeviceTable(index, 2) : nullptr);
  return "";
}

at::Tensor QuantToBf16OnCuda(const CudaQuant& q, int index) {
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  c10::cuda::CUDAGuard guard(dev.index());
  at::Tensor out = at::empty({q.view.rows, q.view.cols}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
  Check(cuda::QuantToBf16(q.format, q.view, out.data_ptr(), c10::cuda::getCurrentCUDAStream(dev.index()).stream()),
        "dequantize kernel");
  return out;
}

at::Tensor QuantLinearOnCuda(const at::Tensor& x, const CudaQuant& q) {
  c10::cuda::CUDAGuard guard(x.device().index());
  const at::Tensor xb = x.to(at::kBFloat16).contiguous();
  const int64_t m = xb.size(0);
  if (m > cuda::kMaxGemvTokens) {
    // Prefill: the weight expanded to a bf16 tile for cuBLAS, then dropped.
    return at::linear(xb, QuantToBf16OnCuda(q, x.device().index()));
  }
  at::Tensor y = at::empty({m, q.view.rows}, xb.options());
  Check(cuda::QuantGemv(q.format, q.view, xb.data_ptr(), q.view.cols, static_cast<int>(m), y.data_ptr(), q.view.rows,
                        c10::cuda::getCurrentCUDAStream(x.device().index()).stream()),
        "quantized GEMV kernel");
  return y;
}

void StoreQ8_0RowsOnCuda(const at::Tensor& src, const at::Tensor& rows, const at::Tensor& layer_store) {
  c10::cuda::CUDAGuard guard(src.device().index());
  const at::Tensor x = src.to(at::kBFloat16).contiguous();
  Check(cuda::StoreQ8_0Rows(x.data_ptr(), static_cast<int32_t>(x.size(0)), static_cast<int32_t>(x.size(1)),
                            rows.data_ptr<int64_t>(), layer_store.data_ptr<uint8_t>(), layer_store.size(1),
                            c10::cuda::getCurrentCUDAStream(src.device().index()).stream()),
        "q8_0 KV store kernel");
}

void PagedAttentionOnCuda(const at::Tensor& q, const at::Tensor& out, const at::Tensor& k, const at::Tensor& v,
                          bool q8, at::ScalarType store_dtype, const at::Tensor& ctx_rows, const at::Tensor& ctx_off,
                          const at::Tensor& ctx_len, int32_t n_head, int32_t n_head_kv, int32_t head_dim) {
  c10::cuda::CUDAGuard guard(q.device().index());
  const at::Tensor qb = q.to(at::kBFloat16).contiguous();
  const bool direct = out.scalar_type() == at::kBFloat16 && out.is_contiguous();
  at::Tensor o = direct ? out : at::empty(out.sizes(), qb.options());
  cuda::PagedAttentionArgs a;
  a.q = qb.data_ptr();
  a.out = o.data_ptr();
  a.k = static_cast<const uint8_t*>(k.data_ptr());
  a.v = static_cast<const uint8_t*>(v.data_ptr());
  a.row_bytes = k.size(1) * static_cast<int64_t>(k.element_size());
  a.store = q8 ? cuda::KvStore::kQ8_0 : store_dtype == at::kHalf ? cuda::KvStore::kF16 : cuda::KvStore::kF32;
  a.rows = ctx_rows.data_ptr<int32_t>();
  a.ctx_off = ctx_off.data_ptr<int32_t>();
  a.ctx_len = ctx_len.data_ptr<int32_t>();
  a.n = static_cast<int32_t>(qb.size(0));
  a.n_head = n_head;
  a.n_head_kv = n_head_kv;
  a.head_dim = head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  Check(cuda::PagedAttention(a, c10::cuda::getCurrentCUDAStream(q.device().index()).stream()), "paged attention kernel");
  if (!direct) out.copy_(o);
}

}  // namespace ingot::kernels
