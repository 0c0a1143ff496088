// Forward pass. Per layer: 5 parallel regions (QKV, attention, O, gate+up, down);
// norms, RoPE and the residual adds are cheap (n_embd = 576 floats per token) and run
// on the calling thread.
#include "engine/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/formats/gguf.h"

namespace ingot {

using kernels::ActivationSpec;
using kernels::Linear;
using kernels::ThreadPool;

void KvCache::Reserve(int32_t tokens) {
  if (tokens <= capacity_) return;
  int32_t cap = std::max<int32_t>(64, capacity_);
  while (cap < tokens) cap *= 2;
  for (int32_t l = 0; l < n_layer_; ++l) {
    k_[l].resize(static_cast<size_t>(cap) * kv_dim_);
    v_[l].resize(static_cast<size_t>(cap) * kv_dim_);
  }
  capacity_ = cap;
}

LlamaModel::~LlamaModel() = default;

namespace {

// x (n, d) -> out (n, d): out = x / rms(x) * w.
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

// One linear layer applied to n tokens: y (n, w.rows) = x (n, w.cols) . w^T.
struct MatMulJob {
  const Linear* w;
  const float* x;
  float* y;
  const float* bias = nullptr;  // (w.rows) or null
};

// Runs several linear layers over the same tokens in one parallel region: activations
// are prepared once per (input, activation type), then rows are handed out in chunks.
// Chunk-outer, token-inner keeps a chunk of weight rows in L1 across the batch.
void MatMul(ThreadPool& pool, std::initializer_list<MatMulJob> jobs_list, int64_t n,
            std::vector<uint8_t>& act_buf) {
  constexpr int64_t kGrain = 16;  // rows per chunk
  std::vector<MatMulJob> jobs(jobs_list);
  const size_t nj = jobs.size();
  std::vector<const uint8_t*> act(nj);
  std::vector<size_t> act_row_bytes(nj);
  // Size the buffer first so pointers stay valid.
  size_t total = 0;
  std::vector<size_t> offset(nj);
  std::vector<ActivationSpec> spec(nj);
  for (size_t j = 0; j < nj; ++j) spec[j] = kernels::LinearActivation(*jobs[j].w);
  for (size_t j = 0; j < nj; ++j) {
    size_t shared = SIZE_MAX;
    for (size_t i = 0; i < j; ++i) {
      if (jobs[i].x == jobs[j].x && jobs[i].w->cols() == jobs[j].w->cols() && spec[i] == spec[j]) {
        shared = i;
        break;
      }
    }
    act_row_bytes[j] = kernels::LinearActivationBytes(spec[j], jobs[j].w->cols());
    if (shared != SIZE_MAX) {
      offset[j] = offset[shared];
    } else {
      offset[j] = total;
      total += act_row_bytes[j] * static_cast<size_t>(n);
    }
  }
  if (act_buf.size() < total) act_buf.resize(total);
  std::vector<bool> prepared(nj, false);
  for (size_t j = 0; j < nj; ++j) {
    act[j] = act_buf.data() + offset[j];
    bool done = false;
    for (size_t i = 0; i < j; ++i) done |= prepared[i] && offset[i] == offset[j];
    if (!done) {
      const int64_t cols = jobs[j].w->cols();
      for (int64_t t = 0; t < n; ++t) {
        kernels::LinearPrepare(spec[j], jobs[j].x + t * cols, cols,
                               act_buf.data() + offset[j] + t * act_row_bytes[j]);
      }
    }
    prepared[j] = true;
  }
  // Chunks of all jobs in one index space.
  std::vector<int64_t> chunk_start(nj + 1, 0);
  for (size_t j = 0; j < nj; ++j) {
    chunk_start[j + 1] = chunk_start[j] + (jobs[j].w->rows() + kGrain - 1) / kGrain;
  }
  // Each claim costs a cache-line transfer between cores (~100-200 ns): hand out about
  // eight claims per thread, never less than one chunk.
  const int64_t claim = std::max<int64_t>(1, chunk_start[nj] / (8 * pool.size()));
  pool.ParallelFor(chunk_start[nj], claim, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      size_t j = 0;
      while (chunk_start[j + 1] <= c) ++j;
      const MatMulJob& job = jobs[j];
      const int64_t r0 = (c - chunk_start[j]) * kGrain;
      const int64_t rows = job.w->rows();
      const int64_t r1 = std::min(rows, r0 + kGrain);
      kernels::LinearDotRowsTokens(*job.w, act[j], act_row_bytes[j], n, job.y, rows, r0, r1);
      if (job.bias != nullptr) {
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = r0; r < r1; ++r) job.y[t * rows + r] += job.bias[r];
        }
      }
    }
  });
}

// Rotates one head's features in place; cos/sin hold rope_dim/2 angles.
void ApplyRope(float* v, const float* cos, const float* sin, int32_t rope_dim, RopeStyle style) {
  const int32_t half = rope_dim / 2;
  if (style == RopeStyle::kNormal) {
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

void LlamaModel::Embed(int32_t token, float* out) const {
  const auto& traits = GetGgmlTypeTraits(token_embd_.type);
  traits.dequantize(token_embd_.Row(token), out, token_embd_.cols);
}

void LlamaModel::Forward(const std::vector<BatchToken>& batch, ThreadPool& pool,
                         ForwardWorkspace& ws, std::vector<float>* logits,
                         ForwardObserver* observer) const {
  const LlamaConfig& c = config_;
  const int64_t n = static_cast<int64_t>(batch.size());
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim;
  const int32_t half = c.rope_dim / 2;
  ws.x.resize(n * d);
  ws.xn.resize(n * d);
  ws.q.resize(n * qd);
  ws.k.resize(n * kvd);
  ws.v.resize(n * kvd);
  ws.attn.resize(n * qd);
  ws.gate.resize(n * c.n_ff);
  ws.up.resize(n * c.n_ff);
  ws.proj.resize(n * d);
  ws.rope_cos.resize(n * half);
  ws.rope_sin.resize(n * half);

  for (int64_t t = 0; t < n; ++t) {
    Embed(batch[t].token, ws.x.data() + t * d);
    const float pos = static_cast<float>(batch[t].pos) / c.rope_linear_factor;
    for (int32_t i = 0; i < half; ++i) {
      const float theta = pos * inv_freq_[i];
      ws.rope_cos[t * half + i] = std::cos(theta);
      ws.rope_sin[t * half + i] = std::sin(theta);
    }
  }
  const float attn_scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int32_t group = c.n_head / c.n_head_kv;

  for (int32_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    const Linear* w = L.w;
    constexpr int kQ = 0, kK = 1, kV = 2, kO = 3, kGate = 4, kUp = 5, kDown = 6;
    RmsNorm(ws.x.data(), L.attn_norm.data(), ws.xn.data(), n, d, c.rms_eps);
    if (observer) observer->OnLinearInput(l, LinearInput::kAttnIn, ws.xn.data(), n, d);
    MatMul(pool,
           {{&w[kQ], ws.xn.data(), ws.q.data(), L.bq.empty() ? nullptr : L.bq.data()},
            {&w[kK], ws.xn.data(), ws.k.data(), L.bk.empty() ? nullptr : L.bk.data()},
            {&w[kV], ws.xn.data(), ws.v.data(), L.bv.empty() ? nullptr : L.bv.data()}},
           n, ws.act);
    for (int64_t t = 0; t < n; ++t) {
      const float* cs = ws.rope_cos.data() + t * half;
      const float* sn = ws.rope_sin.data() + t * half;
      for (int32_t h = 0; h < c.n_head; ++h) ApplyRope(ws.q.data() + t * qd + h * hd, cs, sn, c.rope_dim, c.rope_style);
      for (int32_t h = 0; h < c.n_head_kv; ++h) ApplyRope(ws.k.data() + t * kvd + h * hd, cs, sn, c.rope_dim, c.rope_style);
      std::memcpy(batch[t].cache->K(l, batch[t].pos), ws.k.data() + t * kvd, kvd * sizeof(float));
      std::memcpy(batch[t].cache->V(l, batch[t].pos), ws.v.data() + t * kvd, kvd * sizeof(float));
    }
    // Attention: one (token, head) pair per work item; causal by construction since a
    // token reads positions 0..pos of its own sequence.
    pool.ParallelFor(n * c.n_head, 1, [&](int64_t i0, int64_t i1) {
      thread_local std::vector<float> scores;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t t = i / c.n_head;
        const int32_t h = static_cast<int32_t>(i % c.n_head);
        const int32_t kvh = h / group;
        const int32_t len = batch[t].pos + 1;
        KvCache* cache = batch[t].cache;
        const float* q = ws.q.data() + t * qd + h * hd;
        scores.resize(len);
        float mx = -INFINITY;
        for (int32_t p = 0; p < len; ++p) {
          scores[p] = kernels::DotF32(q, cache->K(l, p) + kvh * hd, hd) * attn_scale;
          mx = std::max(mx, scores[p]);
        }
        float sum = 0;
        for (int32_t p = 0; p < len; ++p) {
          scores[p] = std::exp(scores[p] - mx);
          sum += scores[p];
        }
        float* out = ws.attn.data() + t * qd + h * hd;
        std::fill(out, out + hd, 0.0f);
        const float inv = 1.0f / sum;
        for (int32_t p = 0; p < len; ++p) {
          kernels::AxpyF32(scores[p] * inv, cache->V(l, p) + kvh * hd, out, hd);
        }
      }
    });
    if (observer) observer->OnLinearInput(l, LinearInput::kAttnOut, ws.attn.data(), n, qd);
    MatMul(pool, {{&w[kO], ws.attn.data(), ws.proj.data()}}, n, ws.act);
    for (int64_t i = 0; i < n * d; ++i) ws.x[i] += ws.proj[i];

    RmsNorm(ws.x.data(), L.ffn_norm.data(), ws.xn.data(), n, d, c.rms_eps);
    if (observer) observer->OnLinearInput(l, LinearInput::kMlpIn, ws.xn.data(), n, d);
    MatMul(pool, {{&w[kGate], ws.xn.data(), ws.gate.data()}, {&w[kUp], ws.xn.data(), ws.up.data()}},
           n, ws.act);
    for (int64_t i = 0; i < n * c.n_ff; ++i) {
      const float g = ws.gate[i];
      ws.gate[i] = g / (1.0f + std::exp(-g)) * ws.up[i];  // SiLU(gate) * up
    }
    if (observer) observer->OnLinearInput(l, LinearInput::kMlpDown, ws.gate.data(), n, c.n_ff);
    MatMul(pool, {{&w[kDown], ws.gate.data(), ws.proj.data()}}, n, ws.act);
    for (int64_t i = 0; i < n * d; ++i) ws.x[i] += ws.proj[i];
  }

  // Logits only for the tokens that want them (the last prompt token, decode tokens).
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < n; ++t) {
    if (batch[t].want_logits) rows.push_back(t);
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  std::vector<float> hidden(m * d);
  for (int64_t i = 0; i < m; ++i) {
    RmsNorm(ws.x.data() + rows[i] * d, output_norm_.data(), hidden.data() + i * d, 1, d, c.rms_eps);
  }
  logits->resize(static_cast<size_t>(m) * c.vocab_size);
  if (m > 0) MatMul(pool, {{&output_, hidden.data(), logits->data()}}, m, ws.act);
}

std::vector<LinearModuleRef> LlamaModel::LinearModules() const {
  std::vector<LinearModuleRef> out;
  for (int32_t l = 0; l < config_.n_layer; ++l) {
    for (int s = 0; s < kLinearSlots; ++s) {
      LinearModuleRef m;
      m.name = absl::StrCat("model.layers.", l, ".", kHfLinearNames[s]);
      m.gguf_name = absl::StrCat("blk.", l, ".", kGgufLinearNames[s]);
      m.kind = s <= static_cast<int>(LinearSlot::kO) ? "attention" : "mlp";
      m.layer = l;
      m.slot = static_cast<LinearSlot>(s);
      m.rows = layers_[l].w[s].rows();
      m.cols = layers_[l].w[s].cols();
      out.push_back(std::move(m));
    }
  }
  LinearModuleRef head;
  head.name = "lm_head";
  head.gguf_name = "output";
  head.kind = "output";
  head.rows = output_.rows();
  head.cols = output_.cols();
  out.push_back(std::move(head));
  return out;
}

const Linear& LlamaModel::linear(const LinearModuleRef& m) const {
  if (m.layer < 0) return output_;
  return layers_[m.layer].w[static_cast<int>(m.slot)];
}

std::unique_ptr<LlamaModel> LlamaModel::Clone() const {
  std::unique_ptr<LlamaModel> copy(new LlamaModel());
  copy->file_ = file_;
  copy->checkpoint_ = checkpoint_;
  copy->owners_ = owners_;
  copy->config_ = config_;
  copy->token_embd_ = token_embd_;
  copy->output_ = output_;
  copy->output_repr_ = output_repr_;
  copy->output_bytes_ = output_bytes_;
  copy->output_norm_ = output_norm_;
  copy->rope_freqs_ = rope_freqs_;
  copy->inv_freq_ = inv_freq_;
  copy->layers_ = layers_;
  copy->parameter_count_ = parameter_count_;
  copy->weight_bytes_ = weight_bytes_;
  copy->summary_ = summary_;
  return copy;
}

void LlamaModel::SetLinear(const LinearModuleRef& m, const Linear& w, std::string representation,
                           int64_t bytes, std::shared_ptr<const void> owner) {
  if (owner) owners_.push_back(std::move(owner));
  if (m.layer < 0) {
    output_ = w;
    output_repr_ = std::move(representation);
    output_bytes_ = bytes;
    config_.tied_output = false;
    return;
  }
  LlamaLayer& L = layers_[m.layer];
  const int s = static_cast<int>(m.slot);
  L.w[s] = w;
  L.repr[s] = std::move(representation);
  L.bytes[s] = bytes;
}

std::vector<float>* LlamaModel::MutableNorm(int32_t layer, bool ffn) {
  return ffn ? &layers_[layer].ffn_norm : &layers_[layer].attn_norm;
}

void LlamaModel::RefreshSummary() {
  struct Acc {
    TensorSummary s;
    std::vector<std::string> reprs;
  };
  std::vector<Acc> kinds;
  auto add = [&](const std::string& kind, const std::string& repr, int64_t params, int64_t bytes) {
    Acc* acc = nullptr;
    for (Acc& a : kinds) {
      if (a.s.kind == kind) acc = &a;
    }
    if (acc == nullptr) {
      kinds.push_back({});
      acc = &kinds.back();
      acc->s.kind = kind;
    }
    acc->s.tensors += 1;
    acc->s.parameters += params;
    acc->s.bytes += bytes;
    if (std::find(acc->reprs.begin(), acc->reprs.end(), repr) == acc->reprs.end()) acc->reprs.push_back(repr);
  };
  const int64_t embd_params = token_embd_.rows * token_embd_.cols;
  add("embedding", GetGgmlTypeTraits(token_embd_.type).name, embd_params,
      static_cast<int64_t>(token_embd_.row_bytes) * token_embd_.rows);
  if (!config_.tied_output) add("output", output_repr_, output_.rows() * output_.cols(), output_bytes_);
  auto add_vec = [&](const std::string& kind, const std::vector<float>& v) {
    if (!v.empty()) add(kind, "f32", static_cast<int64_t>(v.size()), static_cast<int64_t>(v.size()) * 4);
  };
  add_vec("norm", output_norm_);
  add_vec("norm", rope_freqs_);
  for (const LlamaLayer& L : layers_) {
    add_vec("norm", L.attn_norm);
    add_vec("norm", L.ffn_norm);
    add_vec("attention", L.bq);
    add_vec("attention", L.bk);
    add_vec("attention", L.bv);
    for (int s = 0; s < kLinearSlots; ++s) {
      add(s <= static_cast<int>(LinearSlot::kO) ? "attention" : "mlp", L.repr[s],
          L.w[s].rows() * L.w[s].cols(), L.bytes[s]);
    }
  }
  summary_.clear();
  parameter_count_ = 0;
  weight_bytes_ = 0;
  for (Acc& a : kinds) {
    // "f32" for biases is noise next to the weights' representation.
    if (a.reprs.size() > 1) a.reprs.erase(std::remove(a.reprs.begin(), a.reprs.end(), "f32"), a.reprs.end());
    a.s.representation = absl::StrJoin(a.reprs, "+");
    parameter_count_ += a.s.parameters;
    weight_bytes_ += a.s.bytes;
    summary_.push_back(a.s);
  }
  std::sort(summary_.begin(), summary_.end(),
            [](const TensorSummary& a, const TensorSummary& b) { return a.kind < b.kind; });
}

}  // namespace ingot
