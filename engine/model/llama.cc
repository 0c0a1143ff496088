// The forward pass, once, against a backend row (kernels/backend.h). Per layer: norm,
// q/k/v in one linear call (shared input), rope, attention (stores k/v), o, residual
// add, norm, gate/up in one call, SwiGLU, down, residual add. Embeddings are read on
// the host (one row per token) and rope angles computed there (n x rope_dim/2 floats).
#include "engine/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/gguf.h"

namespace ingot {

using kernels::Buf;
using kernels::Linear;
using kernels::LinearJob;
using kernels::ThreadPool;

LlamaModel::~LlamaModel() = default;

const kernels::Backend& LlamaModel::backend() const {
  return placement_.backend != nullptr ? *placement_.backend : kernels::NativeBackend();
}

kernels::KvSpec LlamaModel::KvShape(kernels::KvDtype dtype, int32_t block_tokens) const {
  kernels::KvSpec spec;
  spec.n_layer = config_.n_layer;
  spec.kv_dim = config_.kv_dim();
  spec.head_dim = config_.head_dim;
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
  p.layers.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LlamaLayer& L = layers_[l];
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
  RETURN_IF_ERROR(lin(output_, "lm_head", &p.output));
  RETURN_IF_ERROR(vec(output_norm_, &p.output_norm));
  placement_ = std::move(p);
  return absl::OkStatus();
}

void LlamaModel::Embed(int32_t token, float* out) const {
  const auto& traits = GetGgmlTypeTraits(token_embd_.type);
  traits.dequantize(token_embd_.Row(token), out, token_embd_.cols);
}

absl::Status LlamaModel::Forward(const std::vector<BatchToken>& batch, ThreadPool& pool, ForwardWorkspace& ws,
                                 std::vector<float>* logits, ForwardObserver* observer) const {
  const LlamaConfig& c = config_;
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
      const float theta = pos * inv_freq_[i];
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
  bool stopped = false;  // the observer stopped the pass after a layer
  auto run_layers = [&]() -> absl::Status {
    for (int32_t l = 0; l < c.n_layer; ++l) {
      const LlamaLayer& L = layers_[l];
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
      RETURN_IF_ERROR(be.rms_norm(w, Buf::kX, Buf::kXn, n, L.attn_norm.data(), P.attn_norm.handle.get(), c.rms_eps));
      RETURN_IF_ERROR(observe(l, LinearInput::kAttnIn, Buf::kXn, d));
      const LinearJob qkv[3] = {job(kQ, Buf::kXn, Buf::kQ, &L.bq, &P.bq), job(kK, Buf::kXn, Buf::kK, &L.bk, &P.bk),
                                job(kV, Buf::kXn, Buf::kV, &L.bv, &P.bv)};
      RETURN_IF_ERROR(be.linear(w, pool, qkv, 3, n));
      if (c.UsesRope(l)) RETURN_IF_ERROR(be.rope(w));
      RETURN_IF_ERROR(be.attention(w, pool, l));
      RETURN_IF_ERROR(observe(l, LinearInput::kAttnOut, Buf::kAttn, c.q_dim()));
      const LinearJob o = job(kO, Buf::kAttn, Buf::kProj);
      RETURN_IF_ERROR(be.linear(w, pool, &o, 1, n));
      RETURN_IF_ERROR(be.add(w, Buf::kX, Buf::kProj, n));

      RETURN_IF_ERROR(be.rms_norm(w, Buf::kX, Buf::kXn, n, L.ffn_norm.data(), P.ffn_norm.handle.get(), c.rms_eps));
      RETURN_IF_ERROR(observe(l, LinearInput::kMlpIn, Buf::kXn, d));
      const LinearJob gate_up[2] = {job(kGate, Buf::kXn, Buf::kGate), job(kUp, Buf::kXn, Buf::kUp)};
      RETURN_IF_ERROR(be.linear(w, pool, gate_up, 2, n));
      RETURN_IF_ERROR(be.swiglu(w));
      RETURN_IF_ERROR(observe(l, LinearInput::kMlpDown, Buf::kGate, c.n_ff));
      const LinearJob down = job(kDown, Buf::kGate, Buf::kProj);
      RETURN_IF_ERROR(be.linear(w, pool, &down, 1, n));
      RETURN_IF_ERROR(be.add(w, Buf::kX, Buf::kProj, n));
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
  RETURN_IF_ERROR(be.rms_norm(w, Buf::kHidden, Buf::kHidden, m, output_norm_.data(),
                              placement_.output_norm.handle.get(), c.rms_eps));
  LinearJob head;
  head.w = &output_;
  head.placed = placement_.output.handle.get();
  head.in = Buf::kHidden;
  head.out = Buf::kLogits;
  RETURN_IF_ERROR(be.linear(w, pool, &head, 1, m));
  ASSIGN_OR_RETURN(const float* out, be.read_rows(w, Buf::kLogits, m, &ws.backend.scratch()));
  std::memcpy(logits->data(), out, sizeof(float) * m * c.vocab_size);
  return absl::OkStatus();
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
  copy->placement_ = placement_;
  return copy;
}

void LlamaModel::SetLinear(const LinearModuleRef& m, const Linear& w, std::string representation,
                           int64_t bytes, std::shared_ptr<const void> owner) {
  if (owner) owners_.push_back(std::move(owner));
  placement_ = Placement{};  // the uploaded copy is stale: back to native until placed again
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
  placement_ = Placement{};
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
