// nvcc -std=c++17 -arch=sm_90 -c codebook_dequant.cu (CMake: -DINGOT_CUDA=ON).
// One thread per code byte (two weights). Napkin math for the default-size layer
// (1536 x 576 = 0.88 M weights): 0.44 MB of codes + 14 K absmax in, 1.77 MB of bf16 out;
// at ~3 TB/s that is ~1 us: upload time is the PCIe copy of the codes, not this.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/codebook_dequant.h"

namespace ingot::kernels::cuda {
namespace {

__global__ void CodebookToBf16Kernel(CodebookArgs a) {
  const int64_t pair = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t i = pair * 2;
  if (i >= a.n) return;
  const uint8_t byte = a.codes[pair];
  const int64_t b = i / a.block;  // block is even: i and i + 1 share it
  const float am = a.absmax_code != nullptr
                       ? a.dmap[a.absmax_code[b]] * a.absmax_scale[b / a.absmax_block] + a.absmax_offset
                       : a.absmax[b];
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out);
  out[i] = __float2bfloat16(a.book[byte >> 4] * am);
  if (i + 1 < a.n) out[i + 1] = __float2bfloat16(a.book[byte & 15] * am);
}

}  // namespace

int CodebookToBf16(const CodebookArgs& args, void* stream) {
  if (args.n <= 0) return 0;
  constexpr int kThreads = 256;
  const int64_t pairs = (args.n + 1) / 2;
  const unsigned blocks = static_cast<unsigned>((pairs + kThreads - 1) / kThreads);
  CodebookToBf16Kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(args);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ingot::kernels::cuda
