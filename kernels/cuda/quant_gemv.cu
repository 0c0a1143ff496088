// nvcc -std=c++17 -arch=sm_90 -c quant_gemv.cu (CMake: -DINGOT_CUDA=ON).
// quant_gemv.h says what the two kernels do and why; their index math is there.
//
// GEMV: one warp per output row, 4 rows per 128-thread block. Lane l decodes chunks
// l, l + 32, ... of its row (32 weights each) into registers and multiplies them with
// the same 32 columns of each of the step's m tokens, accumulating in f32; the warp then
// reduces by shuffles. m is a template bound (1, 4 or 16) so the accumulators stay in
// registers.
//
// MMA: 16 RT output rows per block of kMmaWarps warps. Per 64-column step a warp decodes
// its RT 16 x 64 slabs (RT chunks per lane) to bf16 in its shared-memory tiles, then
// runs four k16 slices: the B fragments (x^T, 8 tokens per n8 tile) loaded once from
// global memory (L1/L2) and shared by the RT tiles, the A fragment from each tile, one
// mma per (tile, n8 tile). The warps' partial sums meet
// in shared memory (reusing the tiles' space) and the block writes bf16.
//
// Expected, not yet measured (no GPU in the sessions that wrote it): see the closing
// notes of issue 16; tests/gpu/run.sh's backend_test holds both kernels to the CPU
// reference on cuda:0.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/quant_gemv.h"
#include "kernels/cuda/step_ops.h"

namespace ingot::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

// The group as a kernel argument: the weights and where each one's blocks start.
struct GroupArgs {
  GemvGroup g;
  int64_t first[kMaxGemvGroup + 1];
};

// Codebook formats look every weight's value up in the 16-entry table: staged in shared
// memory (a global/L1 load per weight would cost more issue slots than its own bytes).
// Called by every thread before any leaves (the barrier wants the whole block).
template <QuantFormat F>
__device__ __forceinline__ void StageBook(QuantView& v, float* book) {
  if constexpr (F == QuantFormat::kCodebook) {
    if (threadIdx.x < 16) book[threadIdx.x] = v.book[threadIdx.x];
    __syncthreads();
    v.book = book;
  }
}

// w (32 weights) . the 32 bf16 of x at xs, in f32. x as 16 words of two bf16: four
// 16-byte loads when xs is 16-byte aligned (vec), else sixteen 4-byte ones; a bf16 is the
// high half of its f32, so each value is one shift or mask of its word.
__device__ __forceinline__ float ChunkDot(const float* w, const __nv_bfloat16* xs, bool vec) {
  uint32_t words[kChunk / 2];
  if (vec) {
#pragma unroll
    for (int q = 0; q < kChunk / 8; ++q) {
      const uint4 u = reinterpret_cast<const uint4*>(xs)[q];
      words[4 * q] = u.x;
      words[4 * q + 1] = u.y;
      words[4 * q + 2] = u.z;
      words[4 * q + 3] = u.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < kChunk / 2; ++k) words[k] = reinterpret_cast<const uint32_t*>(xs)[k];
  }
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kChunk / 2; ++k) {  // low half: the lower-addressed element
    s = fmaf(w[2 * k], __uint_as_float(words[k] << 16), s);
    s = fmaf(w[2 * k + 1], __uint_as_float(words[k] & 0xffff0000u), s);
  }
  return s;
}

// acc[t] (every lane) = row r of W . token t of x, for t < m.
template <QuantFormat F, int M>
__device__ __forceinline__ void RowDot(const QuantView& v, int64_t r, const __nv_bfloat16* x, int64_t ldx, int m,
                                       int lane, float* acc) {
  const int64_t chunks = v.cols / kChunk;
  // Every chunk of every token row starts 16-byte aligned when x and its row stride are.
  const bool vec = ((reinterpret_cast<uintptr_t>(x) | static_cast<uintptr_t>(ldx * 2)) & 15) == 0;
  const bool factored = Factored<F>(v);  // one scale per chunk: out of the dot product
#pragma unroll
  for (int t = 0; t < M; ++t) acc[t] = 0.0f;
  float w[kChunk];
  for (int64_t c = lane; c < chunks; c += 32) {
    float scale = 1.0f;  // fmaf(1, dot, acc) is acc + dot exactly
    if (factored) {
      DecodeChunkFactored<F>(v, r, c, w, &scale);
    } else {
      DecodeChunk<F>(v, r, c, w);
    }
#pragma unroll
    for (int t = 0; t < M; ++t) {
      if (t < m) acc[t] = fmaf(scale, ChunkDot(w, x + t * ldx + c * kChunk, vec), acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < M; ++t) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
  }
}

template <QuantFormat F, int M, bool kSwiGlu>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    GemvKernel(const __grid_constant__ GroupArgs a, const __nv_bfloat16* x, int64_t ldx, int m) {
  int64_t row0;
  const int which = GroupBlockWeight(a.first, a.g.count, blockIdx.x, kWarpsPerBlock, &row0);
  QuantView v = a.g.v[which];
  QuantView u = a.g.v[1];  // kSwiGlu: the up weight
  __shared__ float book[2][16];
  StageBook<F>(v, book[0]);
  if constexpr (kSwiGlu) StageBook<F>(u, book[1]);
  const int lane = threadIdx.x & 31;
  const int64_t r = row0 + (threadIdx.x >> 5);
  if (r >= v.rows) return;  // whole warps leave together
  float acc[M];
  RowDot<F, M>(v, r, x, ldx, m, lane, acc);
  if constexpr (kSwiGlu) {
    float up[M];
    RowDot<F, M>(u, r, x, ldx, m, lane, up);
#pragma unroll
    for (int t = 0; t < M; ++t) acc[t] = SwiGluValue(acc[t], up[t]);
  }
  auto* y = static_cast<__nv_bfloat16*>(a.g.y[which]);
  const int64_t ldy = a.g.ldy[which];
#pragma unroll
  for (int t = 0; t < M; ++t) {
    if (lane == 0 && t < m) y[t * ldy + r] = __float2bfloat16(acc[t]);
  }
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&p);
}

// dst[0..32) (16-byte aligned) = w rounded to bf16, as four 16-byte stores.
__device__ __forceinline__ void StoreChunkBf16(const float* w, __nv_bfloat16* dst) {
  auto* d = reinterpret_cast<uint4*>(dst);
#pragma unroll
  for (int q = 0; q < kChunk / 8; ++q) {
    const float* p = w + 8 * q;
    d[q] = make_uint4(PackBf16(p[0], p[1]), PackBf16(p[2], p[3]), PackBf16(p[4], p[5]), PackBf16(p[6], p[7]));
  }
}

// d += a . b, one m16n8k16 bf16 mma with f32 accumulators.
__device__ __forceinline__ void Mma16816(float* d, const uint32_t* a, const uint32_t* b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // the launcher never sends the MMA kernel to a GPU below sm_80
#endif
}

// The block's shared memory: the warps' bf16 tiles, later their f32 sums.
template <int NT, int RT>
struct MmaShared {
  static constexpr int kTiles = kMmaWarps * RT * kMmaRows * kMmaTileStride * 2;
  static constexpr int kSums = kMmaWarps * RT * kMmaRows * NT * 8 * 4;
  static constexpr int kBytes = kTiles > kSums ? kTiles : kSums;
};

// NT n8 tiles of tokens (m <= 8 NT), RT 16-row tiles per warp (MmaRowTiles).
template <QuantFormat F, int NT, int RT>
__global__ void __launch_bounds__(kMmaWarps * 32)
    MmaKernel(const __grid_constant__ GroupArgs a, const __nv_bfloat16* x, int64_t ldx, int m) {
  constexpr int kBlockRows = RT * kMmaRows;
  int64_t row0;
  const int which = GroupBlockWeight(a.first, a.g.count, blockIdx.x, kBlockRows, &row0);
  QuantView v = a.g.v[which];
  __shared__ float book[16];
  StageBook<F>(v, book);
  static_assert(MmaShared<NT, RT>::kBytes <= 48 * 1024, "static shared memory");
  __shared__ __align__(16) unsigned char smem[MmaShared<NT, RT>::kBytes];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  auto* tiles = reinterpret_cast<__nv_bfloat16*>(smem) + warp * kBlockRows * kMmaTileStride;
  float acc[RT][NT][4];
#pragma unroll
  for (int rt = 0; rt < RT; ++rt) {
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[rt][j][0] = acc[rt][j][1] = acc[rt][j][2] = acc[rt][j][3] = 0.0f;
  }
  int tile_row, half;
  MmaDecodeSlot(lane, &tile_row, &half);
  const int64_t chunks = v.cols / kChunk;
  const int64_t steps = (chunks + 1) / 2;
  for (int64_t s = warp; s < steps; s += kMmaWarps) {
    const int64_t c = 2 * s + half;
#pragma unroll
    for (int rt = 0; rt < RT; ++rt) {  // tile rt: rows row0 + 16 rt ..
      const int64_t r = row0 + rt * kMmaRows + tile_row;
      float w[kChunk];
      if (r < v.rows && c < chunks) {
        DecodeChunk<F>(v, r, c, w);
      } else {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) w[j] = 0.0f;
      }
      StoreChunkBf16(w, tiles + (rt * kMmaRows + tile_row) * kMmaTileStride + half * kChunk);
    }
    __syncwarp();
#pragma unroll
    for (int kk = 0; kk < kMmaStepCols / 16; ++kk) {
      const int64_t col = s * kMmaStepCols + kk * 16;  // the slice's first column of W and x
      if (col >= v.cols) break;                        // an odd chunk count's last half: zeros
      // x's fragments once per slice, shared by the warp's RT row tiles.
      uint32_t bf[NT][2];
#pragma unroll
      for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          int bk, bn;
          MmaFragB(lane, 2 * i, &bk, &bn);
          const int tok = 8 * j + bn;
          bf[j][i] = tok < m ? *reinterpret_cast<const uint32_t*>(x + tok * ldx + col + bk) : 0u;
        }
      }
#pragma unroll
      for (int rt = 0; rt < RT; ++rt) {
        uint32_t af[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          int ar, ac;
          MmaFragA(lane, 2 * i, &ar, &ac);
          af[i] = *reinterpret_cast<const uint32_t*>(tiles + (rt * kMmaRows + ar) * kMmaTileStride + kk * 16 + ac);
        }
#pragma unroll
        for (int j = 0; j < NT; ++j) Mma16816(acc[rt][j], af, bf[j]);
      }
    }
    __syncwarp();  // the tiles are read before the next step overwrites them
  }
  __syncthreads();  // every warp is done with its tiles: the space holds the sums now
  auto* sums = reinterpret_cast<float*>(smem);  // [warp][row of the block][token]
  constexpr int kTok = NT * 8;
#pragma unroll
  for (int rt = 0; rt < RT; ++rt) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        int cr, cn;
        MmaFragC(lane, i, &cr, &cn);
        sums[(warp * kBlockRows + rt * kMmaRows + cr) * kTok + 8 * j + cn] = acc[rt][j][i];
      }
    }
  }
  __syncthreads();
  auto* y = static_cast<__nv_bfloat16*>(a.g.y[which]);
  const int64_t ldy = a.g.ldy[which];
  for (int e = threadIdx.x; e < kBlockRows * kTok; e += kMmaWarps * 32) {
    const int row = e % kBlockRows, tok = e / kBlockRows;  // adjacent threads, adjacent rows of y
    if (tok >= m || row0 + row >= v.rows) continue;
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < kMmaWarps; ++k) sum += sums[(k * kBlockRows + row) * kTok + tok];
    y[tok * ldy + row0 + row] = __float2bfloat16(sum);
  }
}

// One thread per chunk: 32 bf16 out.
template <QuantFormat F>
__global__ void ToBf16Kernel(QuantView v, __nv_bfloat16* out) {
  const int64_t chunks = v.cols / kChunk;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= v.rows * chunks) return;
  const int64_t r = i / chunks, c = i % chunks;
  float w[kChunk];
  DecodeChunk<F>(v, r, c, w);
  StoreChunkBf16(w, out + r * v.cols + c * kChunk);  // 64-byte chunks of a fresh tensor
}

template <QuantFormat F, int M>
void LaunchGemvM(const GroupArgs& a, unsigned blocks, const __nv_bfloat16* x, int64_t ldx, int m, cudaStream_t s) {
  if (a.g.epilogue == GemvEpilogue::kSwiGlu) {
    GemvKernel<F, M, true><<<blocks, kWarpsPerBlock * 32, 0, s>>>(a, x, ldx, m);
  } else {
    GemvKernel<F, M, false><<<blocks, kWarpsPerBlock * 32, 0, s>>>(a, x, ldx, m);
  }
}

template <QuantFormat F>
int LaunchGroup(const GemvGroup& g, const void* xv, int64_t ldx, int m, int mma_min, cudaStream_t s) {
  GroupArgs a;
  a.g = g;
  const auto* x = static_cast<const __nv_bfloat16*>(xv);
  const bool tensor_cores = mma_min > 0 && m >= mma_min && g.epilogue == GemvEpilogue::kNone;
  const int nt = MmaTokenTiles(m);
  GroupBlocks(g, tensor_cores ? kMmaRows * MmaRowTiles(nt) : kWarpsPerBlock, a.first);
  const auto blocks = static_cast<unsigned>(a.first[g.count]);
  if (blocks == 0) return 0;
  if (tensor_cores) {
    if (nt == 1) {
      MmaKernel<F, 1, MmaRowTiles(1)><<<blocks, kMmaWarps * 32, 0, s>>>(a, x, ldx, m);
    } else if (nt == 2) {
      MmaKernel<F, 2, MmaRowTiles(2)><<<blocks, kMmaWarps * 32, 0, s>>>(a, x, ldx, m);
    } else if (nt == 4) {
      MmaKernel<F, 4, MmaRowTiles(4)><<<blocks, kMmaWarps * 32, 0, s>>>(a, x, ldx, m);
    } else {
      MmaKernel<F, 8, MmaRowTiles(8)><<<blocks, kMmaWarps * 32, 0, s>>>(a, x, ldx, m);
    }
  } else if (m == 1) {
    LaunchGemvM<F, 1>(a, blocks, x, ldx, m, s);
  } else if (m <= 4) {
    LaunchGemvM<F, 4>(a, blocks, x, ldx, m, s);
  } else {
    LaunchGemvM<F, kMaxGemvTokens>(a, blocks, x, ldx, m, s);
  }
  return static_cast<int>(cudaGetLastError());
}

template <QuantFormat F>
int LaunchToBf16(const QuantView& v, void* out, cudaStream_t s) {
  constexpr int kThreads = 256;
  const int64_t n = v.rows * (v.cols / kChunk);
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  ToBf16Kernel<F><<<blocks, kThreads, 0, s>>>(v, static_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

#define INGOT_QUANT_FORMATS(X) \
  X(kQ4_0) X(kQ4_1) X(kQ5_0) X(kQ5_1) X(kQ8_0) X(kQ4_K) X(kQ5_K) X(kQ6_K) X(kAffine) X(kCodebook)

bool GroupOk(const GemvGroup& g, int m, int mma_min) {
  if (mma_min < 0 || mma_min > kMaxGemvTokens + 1) return false;
  if (g.count < 1 || g.count > kMaxGemvGroup) return false;
  if (g.epilogue == GemvEpilogue::kSwiGlu) {
    if (g.count != 2 || g.v[0].rows != g.v[1].rows || m > kMaxGemvTokens) return false;
  }
  if (m < 1 || m > QuantGemvMaxTokens(mma_min)) return false;
  for (int i = 0; i < g.count; ++i) {
    if (g.v[i].cols != g.v[0].cols || g.v[i].cols % kChunk != 0 || g.y[i] == nullptr) return false;
  }
  return true;
}

}  // namespace

int QuantGemvGroup(QuantFormat f, const GemvGroup& g, const void* x, int64_t ldx, int m, int mma_min, void* stream) {
  if (!GroupOk(g, m, mma_min) || (ldx & 1) != 0) return static_cast<int>(cudaErrorInvalidValue);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (f) {
#define INGOT_CASE(n) \
  case QuantFormat::n: return LaunchGroup<QuantFormat::n>(g, x, ldx, m, mma_min, s);
    INGOT_QUANT_FORMATS(INGOT_CASE)
#undef INGOT_CASE
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int QuantGemv(QuantFormat f, const QuantView& v, const void* x, int64_t ldx, int m, void* y, int64_t ldy, int mma_min,
              void* stream) {
  GemvGroup g;
  g.v[0] = v;
  g.y[0] = y;
  g.ldy[0] = ldy;
  g.count = 1;
  return QuantGemvGroup(f, g, x, ldx, m, mma_min, stream);
}

int QuantToBf16(QuantFormat f, const QuantView& v, void* out, void* stream) {
  if (v.cols % kChunk != 0) return static_cast<int>(cudaErrorInvalidValue);
  if (v.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (f) {
#define INGOT_CASE(n) \
  case QuantFormat::n: return LaunchToBf16<QuantFormat::n>(v, out, s);
    INGOT_QUANT_FORMATS(INGOT_CASE)
#undef INGOT_CASE
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace ingot::kernels::cuda
