// The non-matmul ops of a transformer block on the CPU, each with its plain reference
// beside it (tests/kernels/ops_test.cc compares them on ragged shapes). Buffers are
// row-major f32; shapes are given per argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"

namespace ingot::kernels {

class ThreadPool;

// out (n, d) = x / rms(x) * w, per row. x and out may alias.
void RmsNorm(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps);
void RmsNormRef(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps);

// Rotates every head of x (n, n_heads * head_dim) in place: token t by the angles
// cos/sin (n, rope_dim / 2). neox: pairs (i, i + rope_dim/2); otherwise adjacent pairs
// (2i, 2i+1) as GGUF's permuted q/k rows expect. Features past rope_dim are untouched.
void Rope(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
          int32_t rope_dim, bool neox);
void RopeRef(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
             int32_t rope_dim, bool neox);

// The native backend's paged KV store: blocks of spec.block_tokens positions in one
// allocation (grown by reallocation while nothing else holds pointers into it). Inside a
// block: [layer][k, v][row][row bytes], so one layer's keys of a block are contiguous.
// Rows are stored in spec.dtype (f32, f16, Q8_0) and read in place by Attention.
struct CpuKvStore {
  explicit CpuKvStore(const KvSpec& spec);
  ~CpuKvStore();
  CpuKvStore(const CpuKvStore&) = delete;
  CpuKvStore& operator=(const CpuKvStore&) = delete;
  void Reserve(int32_t blocks);  // grows to at least `blocks`, keeping contents
  int64_t bytes() const { return static_cast<int64_t>(n_blocks) * spec.BlockBytes(); }
  // Row `row` (< block_tokens) of block `block`: kind 0 = keys, 1 = values.
  uint8_t* Row(int32_t block, int32_t layer, int kind, int32_t row) const {
    return data + static_cast<size_t>(block) * block_bytes +
           (static_cast<size_t>(layer * 2 + kind) * spec.block_tokens + row) * row_bytes;
  }
  // The row of position `pos` of a sequence with block table `blocks`.
  uint8_t* At(const int32_t* blocks, int32_t layer, int kind, int32_t pos) const {
    return Row(blocks[pos / spec.block_tokens], layer, kind, pos % spec.block_tokens);
  }
  // Stores kv_dim floats as a row.
  void Store(const float* x, uint8_t* row) const;
  void CopyBlock(int32_t src, int32_t dst, int32_t tokens);
  KvSpec spec;
  size_t row_bytes = 0, block_bytes = 0;
  int32_t n_blocks = 0;
  uint8_t* data = nullptr;
};

// Attention of n tokens over their own sequences' KV, layer `layer`: token t reads
// positions 0..pos[t] of its sequence (block table blocks[t] in store kv[t]; keys and
// values of the step already stored there). q (n, n_head * head_dim) -> out (n, n_head
// * head_dim); head h reads kv head h / (n_head / n_head_kv).
//
// Work items are (tile, kv head): a tile is up to 16 consecutive tokens of one sequence
// (a decode batch has one per sequence, a prompt chunk several), so each key and value
// row is decoded once for all the tile's query heads. Positions go 16 at a time through
// an online softmax (running max, sum and output per query head). A token's output does
// not depend on the other tokens of the batch: the same arithmetic runs for it alone.
struct AttentionArgs {
  const float* q = nullptr;
  float* out = nullptr;
  const int32_t* pos = nullptr;           // (n)
  CpuKvStore* const* kv = nullptr;        // (n)
  const int32_t* const* blocks = nullptr; // (n) block tables
  int64_t n = 0;
  int32_t layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
};
void Attention(const AttentionArgs& a, ThreadPool& pool);
// At `level` (kRef: plain loops; kAvx2 and above: AVX2 + F16C) where the CPU has it.
void Attention(const AttentionArgs& a, ThreadPool& pool, CpuLevel level);
// Plain loops, double-precision softmax, rows decoded by the GGML reference
// dequantizers; single-threaded.
void AttentionRef(const AttentionArgs& a);

// gate (n) = SiLU(gate) * up. AVX2 (a polynomial exponential, within a few ulp of
// expf) where the CPU has it; SwiGluRef is the libm loop.
void SwiGlu(float* gate, const float* up, int64_t n);
void SwiGluRef(float* gate, const float* up, int64_t n);

}  // namespace ingot::kernels
