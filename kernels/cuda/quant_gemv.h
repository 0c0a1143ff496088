// Fused dequantize-GEMV/GEMM for ingot's quantized representations on a CUDA device
// (quant_gemv.cu): y = x . W^T read straight from the stored blocks, codes and scales,
// for the decode sizes, and a dequantize-to-bf16 kernel for the prefill path (bf16
// tile, then cuBLAS through at::mm in kernels/torch/torch_cuda.cc).
//
// Two kernels share the decoders (quant_decode.h, tested on the CPU against the CPU
// references):
//   GEMV  (1-16 tokens): one warp per output row, f32 FMAs; each weight byte is read
//         once per step, x once per row from L1.
//   MMA   (5-64 tokens, sm_80+): a block of 16 or 32 output rows; each warp decodes
//         16 x 64 slabs of W into bf16 tiles in shared memory and multiplies them with
//         the step's tokens on the tensor cores (mma.sync m16n8k16, f32 accumulate), the
//         block's warps splitting K and adding up through shared memory at the end. At
//         16 tokens the GEMV reads x 16 times per weight through L1 and issues 16 FMAs
//         per weight; here x is read once per 32 rows and the products are one mma per
//         16 x 8 x 16.
// A launch serves a group of up to three weights with the same format and input (q/k/v,
// gate/up): one kernel instead of three. The GEMV can also end a gate/up pair with
// SwiGLU (y0 = SiLU(x . W0^T) * (x . W1^T)), the MLP's two linears and its activation
// in one kernel.
//
// The index math of both kernels is the __host__ __device__ functions below, which the
// CPU test (tests/kernels/cuda_decode_test.cc) replays over whole warps.
// Plain C++: no CUDA or ATen headers here.
#pragma once

#include <cstdint>

#include "kernels/cuda/quant_decode.h"

namespace ingot::kernels::cuda {

// Most tokens the GEMV kernel takes (and a CUDA graph's decode step).
constexpr int kMaxGemvTokens = 16;
// The MMA kernel's range of tokens; above it the bf16 tile + GEMM.
constexpr int kMinMmaTokens = 5;
constexpr int kMaxMmaTokens = 64;
constexpr int kMaxGemvGroup = 3;

enum class GemvEpilogue : uint8_t {
  kNone,
  kSwiGlu,  // count 2, equal rows: y[0] = SiLU(x . W0^T) * (x . W1^T); y[1] unused
};

// Weights of one launch: all of one format, with equal cols, over the same x.
struct GemvGroup {
  QuantView v[kMaxGemvGroup];
  void* y[kMaxGemvGroup] = {};    // bf16 (m, v[i].rows), row stride ldy[i]
  int64_t ldy[kMaxGemvGroup] = {};
  int count = 0;
  GemvEpilogue epilogue = GemvEpilogue::kNone;
};

// y[i] = x (m, cols; row stride ldx, even; bf16, 4-byte aligned) . W_i^T for each weight
// of the group, in one launch. mma_min: the fewest tokens the tensor-core kernel serves
// (1..kMaxGemvTokens + 1; the GPU must be sm_80+), fewer take the GEMV; 0: no tensor
// cores, m <= kMaxGemvTokens. kSwiGlu always takes the GEMV (m <= kMaxGemvTokens). All
// pointers on the device of `stream` (a cudaStream_t). Returns the cudaError_t of the
// launch (0 = ok).
int QuantGemvGroup(QuantFormat f, const GemvGroup& g, const void* x, int64_t ldx, int m, int mma_min, void* stream);
// Most tokens QuantGemvGroup takes with and without the tensor-core kernel.
inline int QuantGemvMaxTokens(int mma_min) { return mma_min > 0 ? kMaxMmaTokens : kMaxGemvTokens; }

// One weight: y (m, v.rows; row stride ldy) = x . W^T.
int QuantGemv(QuantFormat f, const QuantView& v, const void* x, int64_t ldx, int m, void* y, int64_t ldy, int mma_min,
              void* stream);

// out (v.rows, v.cols) bf16, row-major, 16-byte aligned.
int QuantToBf16(QuantFormat f, const QuantView& v, void* out, void* stream);

// --- index math shared with the CPU test ---

// A group's blocks: weight i takes blocks [first[i], first[i + 1]), `rows_per_block` of
// its rows each. first has count + 1 entries.
INGOT_HD void GroupBlocks(const GemvGroup& g, int64_t rows_per_block, int64_t* first) {
  const int n = g.epilogue == GemvEpilogue::kSwiGlu ? 1 : g.count;  // SwiGLU: both weights per row
  first[0] = 0;
  for (int i = 0; i < n; ++i) first[i + 1] = first[i] + (g.v[i].rows + rows_per_block - 1) / rows_per_block;
  for (int i = n; i < g.count; ++i) first[i + 1] = first[n];
}
// Which weight block b serves, and the first of its rows.
INGOT_HD int GroupBlockWeight(const int64_t* first, int count, int64_t b, int64_t rows_per_block, int64_t* row0) {
  int i = 0;
  while (i + 1 < count && b >= first[i + 1]) ++i;
  *row0 = (b - first[i]) * rows_per_block;
  return i;
}

// The MMA kernel's tiles. A warp step covers 64 columns (two chunks) of 16 rows: lane l
// decodes chunk 2 s + l / 16 of row l % 16 into the tile (16 rows of kMmaTileStride
// bf16; 8 columns of padding spread the fragment loads over the 32 banks).
constexpr int kMmaRows = 16;
constexpr int kMmaStepCols = 2 * kChunk;
constexpr int kMmaTileStride = kMmaStepCols + 8;
constexpr int kMmaWarps = 8;  // per block, splitting K: step s goes to warp s % kMmaWarps
// n8 tiles of tokens for m tokens (1, 2, 4 or 8: the kernel's instances).
constexpr int MmaTokenTiles(int m) { return m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8; }
// 16-row tiles per warp: the x fragments of a slice are loaded once for all of them
// (every block reads all of x from L2: RT tiles halve that), as shared memory allows
// (the warps' f32 sums of 16 RT rows x 8 NT tokens reuse the tiles' space, 48 KB in all).
constexpr int MmaRowTiles(int nt) { return nt <= 4 ? 2 : 1; }
INGOT_HD void MmaDecodeSlot(int lane, int* tile_row, int* half) {
  *tile_row = lane & 15;
  *half = lane >> 4;
}

// mma.sync.aligned.m16n8k16.row.col (bf16 in, f32 accumulate): which element of each
// operand lane `lane` holds, from the PTX ISA's "Matrix Fragments for mma.m16n8k16 with
// floating point type" (groupID = lane / 4, threadID_in_group = lane % 4).
// A (16 x 16, row-major), elements i = 0..7 (two per 32-bit register, low half first).
INGOT_HD void MmaFragA(int lane, int i, int* row, int* col) {
  const int g = lane >> 2, t = lane & 3;
  *row = g + ((i & 2) ? 8 : 0);
  *col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
}
// B (16 x 8, k x n), elements i = 0..3.
INGOT_HD void MmaFragB(int lane, int i, int* k, int* n) {
  const int g = lane >> 2, t = lane & 3;
  *k = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
  *n = g;
}
// C / D (16 x 8, f32), elements i = 0..3.
INGOT_HD void MmaFragC(int lane, int i, int* row, int* n) {
  const int g = lane >> 2, t = lane & 3;
  *row = g + (i >= 2 ? 8 : 0);
  *n = 2 * t + (i & 1);
}

}  // namespace ingot::kernels::cuda
