// Norm, RoPE and attention on the CPU. These are cheap next to the matmuls for short
// contexts (n_embd = 576 floats per token for the default model); attention grows
// with the context: per (token, head) one pass of head_dim-wide dots over pos + 1 keys.
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot::kernels {

void RmsNorm(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * d;
    float ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += xt[i] * xt[i];
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    float* ot = out + t * d;
    for (int64_t i = 0; i < d; ++i) ot[i] = xt[i] * scale * w[i];
  }
}

void RmsNormRef(const float* x, const float* w, float* out, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[t * d + i]) * x[t * d + i];
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<float>(x[t * d + i] * scale * w[i]);
  }
}

namespace {

void RopeHead(float* v, const float* cos, const float* sin, int32_t rope_dim, bool neox) {
  const int32_t half = rope_dim / 2;
  if (!neox) {
    for (int32_t i = 0; i < half; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos[i] - b * sin[i];
      v[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  } else {
    for (int32_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

}  // namespace

void Rope(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
          int32_t rope_dim, bool neox) {
  const int32_t half = rope_dim / 2;
  const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t h = 0; h < n_heads; ++h) {
      RopeHead(x + t * width + h * head_dim, cos + t * half, sin + t * half, rope_dim, neox);
    }
  }
}

void RopeRef(float* x, const float* cos, const float* sin, int64_t n, int32_t n_heads, int32_t head_dim,
             int32_t rope_dim, bool neox) {
  // As a complex multiplication: (a + ib) * (cos + i sin), pair by pair.
  const int32_t half = rope_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int32_t i = 0; i < half; ++i) {
        const int32_t ia = neox ? i : 2 * i;
        const int32_t ib = neox ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib], c = cos[t * half + i], s = sin[t * half + i];
        v[ia] = static_cast<float>(a * c - b * s);
        v[ib] = static_cast<float>(a * s + b * c);
      }
    }
  }
}

void CpuKvCache::Reserve(int32_t tokens) {
  if (tokens <= capacity) return;
  int32_t cap = std::max<int32_t>(64, capacity);
  while (cap < tokens) cap *= 2;
  for (size_t l = 0; l < k.size(); ++l) {
    k[l].resize(static_cast<size_t>(cap) * kv_dim);
    v[l].resize(static_cast<size_t>(cap) * kv_dim);
  }
  capacity = cap;
}

void Attention(const AttentionArgs& a, ThreadPool& pool) {
  const int32_t hd = a.head_dim;
  const int64_t qd = static_cast<int64_t>(a.n_head) * hd;
  const int32_t group = a.n_head / a.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool.ParallelFor(a.n * a.n_head, 1, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scores;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / a.n_head;
      const int32_t h = static_cast<int32_t>(i % a.n_head);
      const int32_t kvh = h / group;
      const int32_t len = a.pos[t] + 1;
      CpuKvCache* cache = a.caches[t];
      const float* q = a.q + t * qd + h * hd;
      scores.resize(len);
      float mx = -INFINITY;
      for (int32_t p = 0; p < len; ++p) {
        scores[p] = DotF32(q, cache->K(a.layer, p) + kvh * hd, hd) * scale;
        mx = std::max(mx, scores[p]);
      }
      float sum = 0;
      for (int32_t p = 0; p < len; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      float* out = a.out + t * qd + h * hd;
      std::fill(out, out + hd, 0.0f);
      const float inv = 1.0f / sum;
      for (int32_t p = 0; p < len; ++p) AxpyF32(scores[p] * inv, cache->V(a.layer, p) + kvh * hd, out, hd);
    }
  });
}

void AttentionRef(const AttentionArgs& a) {
  const int32_t hd = a.head_dim;
  const int64_t qd = static_cast<int64_t>(a.n_head) * hd;
  const int32_t group = a.n_head / a.n_head_kv;
  for (int64_t t = 0; t < a.n; ++t) {
    const int32_t len = a.pos[t] + 1;
    for (int32_t h = 0; h < a.n_head; ++h) {
      const int32_t kvh = h / group;
      const float* q = a.q + t * qd + h * hd;
      std::vector<double> s(len);
      double mx = -INFINITY;
      for (int32_t p = 0; p < len; ++p) {
        const float* k = a.caches[t]->K(a.layer, p) + kvh * hd;
        double dot = 0;
        for (int32_t i = 0; i < hd; ++i) dot += static_cast<double>(q[i]) * k[i];
        s[p] = dot / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (int32_t p = 0; p < len; ++p) sum += (s[p] = std::exp(s[p] - mx));
      for (int32_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (int32_t p = 0; p < len; ++p) acc += s[p] / sum * a.caches[t]->V(a.layer, p)[kvh * hd + i];
        a.out[t * qd + h * hd + i] = static_cast<float>(acc);
      }
    }
  }
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace ingot::kernels
