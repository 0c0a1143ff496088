// The non-matmul ops of a transformer block on the CPU, each with its plain reference
// beside it (tests/kernels/ops_test.cc compares them on ragged shapes). Buffers are
// row-major f32; shapes are given per argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

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

// Keys and values of one sequence in f32: per layer (capacity, kv_dim), grown by
// amortized doubling. The native backend's KV store.
struct CpuKvCache {
  CpuKvCache(int32_t n_layer, int32_t kv_dim) : kv_dim(kv_dim), k(n_layer), v(n_layer) {}
  void Reserve(int32_t tokens);
  float* K(int32_t layer, int32_t pos) { return k[layer].data() + static_cast<size_t>(pos) * kv_dim; }
  float* V(int32_t layer, int32_t pos) { return v[layer].data() + static_cast<size_t>(pos) * kv_dim; }
  int32_t kv_dim;
  int32_t capacity = 0;
  std::vector<std::vector<float>> k, v;  // [layer] -> (capacity, kv_dim)
};

// Attention of n tokens over their own sequences' caches, layer `layer`: token t reads
// positions 0..pos[t] of caches[t] (keys/values of the step already stored there).
// q (n, n_head * head_dim) -> out (n, n_head * head_dim); head h reads kv head
// h / (n_head / n_head_kv). One (token, head) pair per work item.
struct AttentionArgs {
  const float* q = nullptr;
  float* out = nullptr;
  const int32_t* pos = nullptr;       // (n)
  CpuKvCache* const* caches = nullptr;  // (n)
  int64_t n = 0;
  int32_t layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
};
void Attention(const AttentionArgs& a, ThreadPool& pool);
// Plain loops, double-precision softmax; single-threaded.
void AttentionRef(const AttentionArgs& a);

// gate (n) = SiLU(gate) * up.
void SwiGlu(float* gate, const float* up, int64_t n);

}  // namespace ingot::kernels
