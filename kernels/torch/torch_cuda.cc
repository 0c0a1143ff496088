// The CUDA half of the torch row, built only with -DINGOT_CUDA=ON: device count,
// memory (the driver's free/total and the caching allocator's statistics) and sync.
// No GPU needed to compile or load: c10::cuda::device_count() is 0 without a driver.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

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

}  // namespace ingot::kernels
