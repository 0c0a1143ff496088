// The CUDA half of the torch row, built only with -DINGOT_CUDA=ON: device count,
// memory (the driver's free/total and the caching allocator's statistics), sync, and
// the uploads that run a kernel of kernels/cuda. No GPU needed to compile or load:
// c10::cuda::device_count() is 0 without a driver.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cuda/codebook_dequant.h"

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

// NF4/FP4 blocks to a bf16 (rows, cols) tensor on cuda:index, expanded on the GPU.
at::Tensor CodebookToBf16OnCuda(const CodebookMatrix& m, int index) {
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  c10::cuda::CUDAGuard guard(dev.index());
  const int64_t n = m.rows * m.cols, blocks = n / m.block;
  auto up = [&](const void* p, int64_t count, at::ScalarType t) {
    return at::from_blob(const_cast<void*>(p), {count}, at::TensorOptions().dtype(t)).to(dev);
  };
  at::Tensor codes = up(m.codes, n / 2, at::kByte);
  at::Tensor book = up(CodebookValues(m.book), 16, at::kFloat);
  at::Tensor absmax, absmax_code, absmax_scale, dmap;
  cuda::CodebookArgs a;
  if (m.absmax_code != nullptr) {
    absmax_code = up(m.absmax_code, blocks, at::kByte);
    absmax_scale = up(m.absmax_scale, (blocks + m.absmax_block - 1) / m.absmax_block, at::kFloat);
    dmap = up(DynamicMap(), 256, at::kFloat);
    a.absmax_code = absmax_code.data_ptr<uint8_t>();
    a.absmax_scale = absmax_scale.data_ptr<float>();
    a.dmap = dmap.data_ptr<float>();
    a.absmax_block = m.absmax_block;
    a.absmax_offset = m.absmax_offset;
  } else {
    absmax = up(m.absmax, blocks, at::kFloat);
    a.absmax = absmax.data_ptr<float>();
  }
  at::Tensor out = at::empty({m.rows, m.cols}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
  a.codes = codes.data_ptr<uint8_t>();
  a.book = book.data_ptr<float>();
  a.n = n;
  a.block = m.block;
  a.out = out.data_ptr();
  const int err = cuda::CodebookToBf16(a, c10::cuda::getCurrentCUDAStream(dev.index()).stream());
  if (err != 0) throw std::runtime_error(std::string("codebook dequantize kernel: ") +
                                         cudaGetErrorString(static_cast<cudaError_t>(err)));
  return out;  // the inputs are freed after the kernel ran (same stream, caching allocator)
}

}  // namespace ingot::kernels
