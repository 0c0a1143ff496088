// The forward pass, once, against a backend row (kernels/backend.h). Per layer: norm,
// q/k/v in one linear call (shared input), rope, attention (stores k/v), o, residual
// add, norm, gate/up in one call, SwiGLU, down, residual add. Embeddings are read on
// the host (one row per token) and rope angles computed there (n x rope_dim/2 floats).
#include "engine/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"

namespace ingot {

using kernels::Buf;
using kernels::Linear;
using kernels::LinearJob;
using kernels::ThreadPool;

LlamaModel::LlamaModel(LlamaWeights weights) : weights_(std::move(weights)) {}

LlamaModel::~LlamaModel() = default;

LlamaWeights& LlamaModel::mutable_weights() {
  placement_ = Placement{};  // the uploaded copies would be stale
  return weights_;
}

const kernels::Backend& LlamaModel::backend() const {
  return placement_.backend != nullptr ? *placement_.backend : kernels::NativeBackend();
}

kernels::KvSpec LlamaModel::KvShape(kernels::KvDtype dtype, int32_t block_tokens) const {
  kernels::KvSpec spec;
  spec.n_layer = weights_.config.n_layer;
  spec.kv_dim = weights_.config.kv_dim();
  spec.head_dim = weights_.config.head_dim;
  spec.block_tokens = block_tokens;
  spec.dtype = dtype;
  return spec;
}

absl::StatusOr<std::shared_ptr<KvPool>> LlamaModel::NewKvPool(kernels::KvDtype dtype, int32_t n_blocks,
                                                              int32_t block_tokens) const {
  return KvPool::Create(backend(), placement_.device, KvShape(dtype, block_tokens), n_blocks);
}

std::unique_ptr<KvCache> LlamaModel::NewKvCache() const {
  absl::StatusOr<std::shared_ptr<KvPool>> pool = NewKvPool(kernels::KvDtype::kF32, 0);
  // An f32 growable pool makes no device allocation yet; only a row that cannot serve
  // the device at all fails here, and Place checked that.
  return std::make_unique<KvCache>(*std::move(pool));
}

absl::Status LlamaModel::Place(const kernels::Backend& backend, const kernels::Device& device) {
  RETURN_IF_ERROR(backend.available(device));
  Placement p;
  p.backend = &backend;
  p.device = device;
  auto vec = [&](const std::vector<float>& v, kernels::Placed* out) -> absl::Status {
    if (v.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(*out, backend.upload_vector(device, v.data(), static_cast<int64_t>(v.size())));
    p.bytes += out->bytes;
    return absl::OkStatus();
  };
  auto lin = [&](const Linear& w, const std::string& name, kernels::Placed* out) -> absl::Status {
    absl::StatusOr<kernels::Placed> placed = backend.upload_linear(device, w);
    if (!placed.ok()) {
      return absl::Status(placed.status().code(), absl::StrCat(name, ": ", placed.status().message()));
    }
    *out = *std::move(placed);
    p.bytes += out->bytes;
    return absl::OkStatus();
  };
  p.layers.resize(weights_.layers.size());
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LlamaLayer& L = weights_.layers[l];
    Placement::Layer& P = p.layers[l];
    for (int s = 0; s < kLinearSlots; ++s) {
      RETURN_IF_ERROR(lin(L.w[s], absl::StrCat("model.layers.", l, ".", kHfLinearNames[s]), &P.w[s]));
    }
    RETURN_IF_ERROR(vec(L.attn_norm, &P.attn_norm));
    RETURN_IF_ERROR(vec(L.ffn_norm, &P.ffn_norm));
    RETURN_IF_ERROR(vec(L.bq, &P.bq));
    RETURN_IF_ERROR(vec(L.bk, &P.bk));
    RETURN_IF_ERROR(vec(L.bv, &P.bv));
  }
  RETURN_IF_ERROR(lin(weights_.output, "lm_head", &p.output));
  RETURN_IF_ERROR(vec(weights_.output_norm, &p.output_norm));
  placement_ = std::move(p);
  return absl::OkStatus();
}

void LlamaModel::Embed(int32_t token, float* out) const {
  const auto& traits = GetGgmlTypeTraits(weights_.token_embd.type);
  traits.dequantize(weights_.token_embd.Row(token), out, weights_.token_embd.cols);
}

absl::Status LlamaModel::Forward(const std::vector<BatchToken>& batch, ThreadPool& pool, ForwardWorkspace& ws,
                                 std::vector<float>* logits, ForwardObserver* observer) const {
  const LlamaConfig& c = weights_.config;
  const kernels::Backend& be = backend();
  const bool placed = placement_.backend != nullptr;
  const int64_t n = static_cast<int64_t>(batch.size());
  const int64_t d = c.n_embd;
  const int32_t half = c.rope_dim / 2;
  kernels::StepShape shape;
  shape.n_embd = c.n_embd;
  shape.n_head = c.n_head;
  shape.n_head_kv = c.n_head_kv;
  shape.head_dim = c.head_dim;
  shape.n_ff = c.n_ff;
  shape.vocab = c.vocab_size;
  shape.rope_dim = c.rope_dim;
  shape.rope_neox = c.rope_style == RopeStyle::kNeox;

  ws.x.resize(n * d);
  ws.rope_cos.resize(n * half);
  ws.rope_sin.resize(n * half);
  ws.tokens.resize(n);
  for (int64_t t = 0; t < n; ++t) {
    if (&batch[t].cache->backend() != &be) {
      return absl::InternalError(absl::StrCat("KV cache of backend ", batch[t].cache->backend().name,
                                              " used with a model on backend ", be.name));
    }
    Embed(batch[t].token, ws.x.data() + t * d);
    const float pos = static_cast<float>(batch[t].pos) / c.rope_linear_factor;
    for (int32_t i = 0; i < half; ++i) {
      const float theta = pos * weights_.inv_freq[i];
      ws.rope_cos[t * half + i] = std::cos(theta);
      ws.rope_sin[t * half + i] = std::sin(theta);
    }
    if (batch[t].pos >= batch[t].cache->capacity()) {
      return absl::InternalError(absl::StrCat("KV cache holds ", batch[t].cache->capacity(),
                                              " positions; position ", batch[t].pos, " was not reserved"));
    }
    ws.tokens[t] = kernels::StepToken{batch[t].pos, batch[t].cache->store(), batch[t].cache->blocks().data()};
  }
  void* w = ws.backend.For(be, placement_.device);
  RETURN_IF_ERROR(be.begin(w, shape, ws.x.data(), ws.rope_cos.data(), ws.rope_sin.data(), ws.tokens.data(), n));
  // Without an observer no host read comes between the layers: the row may record them
  // (CUDA graphs) and replay the recording; if that fails it ran nothing, and the
  // layers run again from begin without it.
  const bool record = observer == nullptr && be.layers_begin != nullptr;
  if (record) RETURN_IF_ERROR(be.layers_begin(w));
  auto observe = [&](int32_t l, LinearInput site, Buf b, int64_t cols) -> absl::Status {
    if (observer == nullptr) return absl::OkStatus();
    ASSIGN_OR_RETURN(const float* x, be.read_rows(w, b, n, &ws.backend.scratch()));
    observer->OnLinearInput(l, site, x, n, cols);
    return absl::OkStatus();
  };
  static const Placement::Layer kNoLayer;
  // kX += kProj, then kXn = RMSNorm(kX) with `norm`: one op where the backend fuses them.
  auto add_norm = [&](const std::vector<float>& norm, const kernels::Placed& norm_placed) -> absl::Status {
    if (be.add_rms_norm != nullptr) {
      return be.add_rms_norm(w, Buf::kX, Buf::kProj, n, Buf::kXn, norm.data(), norm_placed.handle.get(), c.rms_eps);
    }
    RETURN_IF_ERROR(be.add(w, Buf::kX, Buf::kProj, n));
    return be.rms_norm(w, Buf::kX, Buf::kXn, n, norm.data(), norm_placed.handle.get(), c.rms_eps);
  };
  bool stopped = false;  // the observer stopped the pass after a layer
  auto run_layers = [&]() -> absl::Status {
    for (int32_t l = 0; l < c.n_layer; ++l) {
      const LlamaLayer& L = weights_.layers[l];
      const Placement::Layer& P = placed ? placement_.layers[l] : kNoLayer;
      auto job = [&](int s, Buf in, Buf out, const std::vector<float>* bias = nullptr,
                     const kernels::Placed* bias_placed = nullptr) {
        LinearJob j;
        j.w = &L.w[s];
        j.placed = P.w[s].handle.get();
        j.bias = bias != nullptr && !bias->empty() ? bias->data() : nullptr;
        j.bias_placed = j.bias != nullptr ? bias_placed->handle.get() : nullptr;
        j.in = in;
        j.out = out;
        return j;
      };
      constexpr int kQ = 0, kK = 1, kV = 2, kO = 3, kGate = 4, kUp = 5, kDown = 6;
      // With a fused add_rms_norm, the previous layer's last add already normed kX here.
      if (l == 0 || be.add_rms_norm == nullptr) {
        RETURN_IF_ERROR(be.rms_norm(w, Buf::kX, Buf::kXn, n, L.attn_norm.data(), P.attn_norm.handle.get(), c.rms_eps));
      }
      RETURN_IF_ERROR(observe(l, LinearInput::kAttnIn, Buf::kXn, d));
      const LinearJob qkv[3] = {job(kQ, Buf::kXn, Buf::kQ, &L.bq, &P.bq), job(kK, Buf::kXn, Buf::kK, &L.bk, &P.bk),
                                job(kV, Buf::kXn, Buf::kV, &L.bv, &P.bv)};
      RETURN_IF_ERROR(be.linear(w, pool, qkv, 3, n));
      if (c.UsesRope(l)) RETURN_IF_ERROR(be.rope(w));
      RETURN_IF_ERROR(be.attention(w, pool, l));
      RETURN_IF_ERROR(observe(l, LinearInput::kAttnOut, Buf::kAttn, c.q_dim()));
      const LinearJob o = job(kO, Buf::kAttn, Buf::kProj);
      RETURN_IF_ERROR(be.linear(w, pool, &o, 1, n));
      RETURN_IF_ERROR(add_norm(L.ffn_norm, P.ffn_norm));
      RETURN_IF_ERROR(observe(l, LinearInput::kMlpIn, Buf::kXn, d));
      const LinearJob gate_up[2] = {job(kGate, Buf::kXn, Buf::kGate), job(kUp, Buf::kXn, Buf::kUp)};
      if (be.linear_swiglu != nullptr) {
        RETURN_IF_ERROR(be.linear_swiglu(w, pool, gate_up, n));
      } else {
        RETURN_IF_ERROR(be.linear(w, pool, gate_up, 2, n));
        RETURN_IF_ERROR(be.swiglu(w));
      }
      RETURN_IF_ERROR(observe(l, LinearInput::kMlpDown, Buf::kGate, c.n_ff));
      const LinearJob down = job(kDown, Buf::kGate, Buf::kProj);
      RETURN_IF_ERROR(be.linear(w, pool, &down, 1, n));
      if (be.add_rms_norm != nullptr && l + 1 < c.n_layer) {  // the next layer's attention norm
        RETURN_IF_ERROR(add_norm(weights_.layers[l + 1].attn_norm,
                                 placed ? placement_.layers[l + 1].attn_norm : kNoLayer.attn_norm));
      } else {
        RETURN_IF_ERROR(be.add(w, Buf::kX, Buf::kProj, n));
      }
      if (observer != nullptr && observer->StopAfterLayer() == l) {
        stopped = true;
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(run_layers());
  if (record) {
    if (absl::Status s = be.layers_end(w); absl::IsAborted(s)) {
      RETURN_IF_ERROR(be.begin(w, shape, ws.x.data(), ws.rope_cos.data(), ws.rope_sin.data(), ws.tokens.data(), n));
      RETURN_IF_ERROR(run_layers());
    } else {
      RETURN_IF_ERROR(s);
    }
  }
  if (stopped) {
    logits->clear();
    return absl::OkStatus();
  }

  // Logits only for the tokens that want them (the last prompt token, decode tokens).
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < n; ++t) {
    if (batch[t].want_logits) rows.push_back(t);
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  logits->resize(static_cast<size_t>(m) * c.vocab_size);
  if (m == 0) return absl::OkStatus();
  RETURN_IF_ERROR(be.gather_rows(w, Buf::kX, Buf::kHidden, rows.data(), m));
  RETURN_IF_ERROR(be.rms_norm(w, Buf::kHidden, Buf::kHidden, m, weights_.output_norm.data(),
                              placement_.output_norm.handle.get(), c.rms_eps));
  LinearJob head;
  head.w = &weights_.output;
  head.placed = placement_.output.handle.get();
  head.in = Buf::kHidden;
  head.out = Buf::kLogits;
  RETURN_IF_ERROR(be.linear(w, pool, &head, 1, m));
  ASSIGN_OR_RETURN(const float* out, be.read_rows(w, Buf::kLogits, m, &ws.backend.scratch()));
  std::memcpy(logits->data(), out, sizeof(float) * m * c.vocab_size);
  return absl::OkStatus();
}

}  // namespace ingot
