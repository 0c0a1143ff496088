// LoadCheckpointWeights (load.h): a model's weights from a Hugging Face style checkpoint
// (config.json + tensors named as transformers names them). Dense embeddings in
// f32/f16/bf16 stay in the mapping; every linear layer comes from the caller's
// LinearLoader (a layout row's reader).
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/checkpoint.h"
#include "engine/model/load.h"
#include "kernels/ggml_types.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;
using formats::DType;
using formats::TensorView;

struct HfArch {
  const char* architecture;  // config.json "architectures"[0]
  const char* model_type;    // config.json "model_type"
  const char* name;          // ingot's (= GGUF's) architecture name
  bool attn_bias;            // q/k/v biases always present
};
constexpr HfArch kHfArchitectures[] = {
    {"LlamaForCausalLM", "llama", "llama", false},
    {"MistralForCausalLM", "mistral", "mistral", false},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", true},
    {"SmolLM3ForCausalLM", "smollm3", "smollm3", false},
};

// SmolLM3's NoPE layers as transformers reads them: `no_rope_layers[l]` is 1 where layer l
// uses RoPE and 0 where it does not; without the list, every `no_rope_layer_interval`-th
// layer (default 4: layers 3, 7, ...) skips it. Its sliding window is refused while
// `use_sliding_window` is set (the checkpoints SmolLM3 ships leave it off).
absl::Status SmolLm3Layers(const std::string& dir, const Json& cfg, LlamaConfig* c) {
  c->nope_layers.assign(static_cast<size_t>(c->n_layer), 0);
  if (auto it = cfg.find("no_rope_layers"); it != cfg.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != static_cast<size_t>(c->n_layer)) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: no_rope_layers must list ", c->n_layer,
                                                     " layers (1 = RoPE, 0 = none)"));
    }
    for (size_t l = 0; l < it->size(); ++l) {
      const Json& v = (*it)[l];
      if (!v.is_number_integer() || (v.get<int64_t>() != 0 && v.get<int64_t>() != 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir, "/config.json: no_rope_layers[", l, "] must be 0 or 1"));
      }
      c->nope_layers[l] = v.get<int64_t>() == 0 ? 1 : 0;
    }
  } else {
    int64_t interval = 4;
    if (auto iv = cfg.find("no_rope_layer_interval"); iv != cfg.end() && !iv->is_null()) {
      interval = iv->is_number_integer() ? iv->get<int64_t>() : 0;
    }
    if (interval <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: no_rope_layer_interval ", interval,
                                                     " must be positive"));
    }
    c->nope_layers = NopeLayersEvery(c->n_layer, interval);
  }
  if (auto sw = cfg.find("use_sliding_window"); sw != cfg.end() && sw->is_boolean() && sw->get<bool>()) {
    return absl::UnimplementedError(
        absl::StrCat(dir, "/config.json: use_sliding_window is set; ingot runs SmolLM3 with full attention only"));
  }
  return absl::OkStatus();
}

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

class HfBuilder {
 public:
  HfBuilder(const Checkpoint& ck, const Json& cfg) : ck_(ck), cfg_(cfg) {}

  absl::StatusOr<int32_t> Int(const char* key) const {
    auto it = cfg_.find(key);
    if (it == cfg_.end() || !it->is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(ck_.dir(), "/config.json: required key '", key,
                                                     "' is missing or not an integer"));
    }
    const int64_t v = it->get<int64_t>();
    if (v <= 0 || v > (1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(ck_.dir(), "/config.json: '", key, "' = ", v, " is out of range"));
    }
    return static_cast<int32_t>(v);
  }
  int64_t IntOr(const char* key, int64_t def) const {
    auto it = cfg_.find(key);
    return it != cfg_.end() && it->is_number_integer() ? it->get<int64_t>() : def;
  }
  double FloatOr(const char* key, double def) const {
    auto it = cfg_.find(key);
    return it != cfg_.end() && it->is_number() ? it->get<double>() : def;
  }
  bool BoolOr(const char* key, bool def) const {
    auto it = cfg_.find(key);
    return it != cfg_.end() && it->is_boolean() ? it->get<bool>() : def;
  }

  absl::StatusOr<const TensorView*> Tensor(const std::string& name, std::vector<int64_t> shape,
                                           bool optional) const {
    const TensorView* t = ck_.Find(name);
    if (t == nullptr) {
      if (optional) return nullptr;
      return absl::InvalidArgumentError(absl::StrCat(ck_.path(), ": missing tensor '", name, "'"));
    }
    if (t->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(ck_.path(), ": tensor '", name, "' has shape ",
                                                     Shape(t->shape), ", expected ", Shape(shape)));
    }
    if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(ck_.path(), ": tensor '", name, "' has dtype ",
                                                     formats::DTypeName(t->dtype),
                                                     ", expected F32, F16 or BF16"));
    }
    return t;
  }

  // A 1-D tensor as f32 (norms, biases); empty when optional and absent.
  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n, bool optional) const {
    ASSIGN_OR_RETURN(const TensorView* t, Tensor(name, {n}, optional));
    std::vector<float> out;
    if (t == nullptr) return out;
    out.resize(n);
    ToFloat(*t, out.data());
    return out;
  }

  static void ToFloat(const TensorView& t, float* out) {
    const int64_t n = t.numel();
    if (t.dtype == DType::kF32) {
      std::memcpy(out, t.data, static_cast<size_t>(n) * 4);
    } else {
      const auto* h = reinterpret_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + i, 2);  // the data may be unaligned
        out[i] = t.dtype == DType::kF16 ? Fp16ToFp32(v) : Bf16ToFp32(v);
      }
    }
  }

 private:
  const Checkpoint& ck_;
  const Json& cfg_;
};

GgmlType GgmlOf(DType d) {
  return d == DType::kF32 ? GgmlType::kF32 : d == DType::kF16 ? GgmlType::kF16 : GgmlType::kBF16;
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadCheckpointWeights(std::shared_ptr<const Checkpoint> checkpoint,
                                                   const LinearLoader& loader, const WeightsProgress& progress) {
  const Checkpoint& ck = *checkpoint;
  if (ck.config_json().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir(), ": config.json is missing"));
  }
  const Json cfg = Json::parse(ck.config_json(), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir(), "/config.json: not a JSON object"));
  }
  std::string arch_name, model_type;
  if (auto it = cfg.find("architectures"); it != cfg.end() && it->is_array() && !it->empty() &&
                                          (*it)[0].is_string()) {
    arch_name = (*it)[0].get<std::string>();
  }
  if (auto it = cfg.find("model_type"); it != cfg.end() && it->is_string()) model_type = it->get<std::string>();
  const HfArch* arch = nullptr;
  for (const HfArch& a : kHfArchitectures) {
    if (arch_name == a.architecture || (arch_name.empty() && model_type == a.model_type)) arch = &a;
  }
  if (arch == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        ck.dir(), "/config.json: architecture '", arch_name.empty() ? model_type : arch_name,
        "' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, SmolLM3ForCausalLM)"));
  }
  HfBuilder b(ck, cfg);
  LlamaWeights weights;
  LlamaConfig& c = weights.config;
  c.architecture = arch->name;
  c.rope_style = RopeStyle::kNeox;  // transformers keeps q/k unpermuted: rotate halves
  ASSIGN_OR_RETURN(c.n_layer, b.Int("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.n_embd, b.Int("hidden_size"));
  ASSIGN_OR_RETURN(c.n_ff, b.Int("intermediate_size"));
  ASSIGN_OR_RETURN(c.n_head, b.Int("num_attention_heads"));
  ASSIGN_OR_RETURN(c.vocab_size, b.Int("vocab_size"));
  c.n_head_kv = static_cast<int32_t>(b.IntOr("num_key_value_heads", c.n_head));
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir(), "/config.json: num_attention_heads ", c.n_head,
                                                   " is not a multiple of num_key_value_heads ", c.n_head_kv));
  }
  c.head_dim = static_cast<int32_t>(b.IntOr("head_dim", c.n_embd / c.n_head));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir(), "/config.json: head_dim ", c.head_dim,
                                                   " must be even and positive"));
  }
  c.rope_dim = c.head_dim;
  c.context_length = static_cast<int32_t>(b.IntOr("max_position_embeddings", 2048));
  // transformers 5 writes rope_parameters {rope_theta, rope_type, factor...} in place of
  // rope_theta and rope_scaling; 4.x checkpoints have the two keys.
  const Json* rope_params = nullptr;
  if (auto it = cfg.find("rope_parameters"); it != cfg.end() && it->is_object()) rope_params = &*it;
  c.rope_base = static_cast<float>(b.FloatOr("rope_theta", 10000.0));
  if (rope_params != nullptr) {
    if (auto t = rope_params->find("rope_theta"); t != rope_params->end() && t->is_number()) {
      c.rope_base = t->get<float>();
    }
  }
  c.rms_eps = static_cast<float>(b.FloatOr("rms_norm_eps", 1e-6));
  c.attn_bias = arch->attn_bias || b.BoolOr("attention_bias", false);
  // ingot's own layout keeps a GGUF model's q/k rows as they were (pairs interleaved).
  if (b.BoolOr("ingot_rope_interleaved", false)) c.rope_style = RopeStyle::kNormal;
  if (c.architecture == "smollm3") RETURN_IF_ERROR(SmolLm3Layers(ck.dir(), cfg, &c));
  // Sliding-window attention (Mistral v0.1's 4096; Qwen2 when use_sliding_window is on)
  // equals full attention while a sequence fits the window, so ingot serves such a model
  // with its context capped at the window rather than attend past it wrongly.
  if (auto sw = cfg.find("sliding_window"); sw != cfg.end() && sw->is_number_integer() && sw->get<int64_t>() > 0) {
    const bool on = c.architecture == "mistral" ||
                    (c.architecture == "qwen2" && b.BoolOr("use_sliding_window", false));
    if (on && sw->get<int64_t>() < c.context_length) c.context_length = static_cast<int32_t>(sw->get<int64_t>());
  }

  weights.inv_freq.resize(c.rope_dim / 2);
  for (int32_t i = 0; i < c.rope_dim / 2; ++i) {
    weights.inv_freq[i] = std::pow(c.rope_base, -2.0f * static_cast<float>(i) / static_cast<float>(c.rope_dim));
  }
  const Json* scaling = rope_params;
  if (auto it = cfg.find("rope_scaling"); scaling == nullptr && it != cfg.end() && it->is_object()) scaling = &*it;
  if (scaling != nullptr) {
    const Json& rs = *scaling;
    auto num = [&rs](const char* key, double def) {
      auto it = rs.find(key);
      return it != rs.end() && it->is_number() ? it->get<double>() : def;
    };
    auto str = [&rs](const char* key) {
      auto it = rs.find(key);
      return it != rs.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string type = str("rope_type");
    if (type.empty()) type = str("type");
    if (type.empty()) type = "default";
    const double factor = num("factor", 1.0);
    if (type == "linear") {
      c.rope_linear_factor = factor > 0 ? static_cast<float>(factor) : 1.0f;
    } else if (type == "llama3") {
      // Llama 3.1: long wavelengths slowed by `factor`, short ones kept, a smooth ramp
      // between (transformers' _compute_llama3_parameters).
      const double lo = num("low_freq_factor", 1.0), hi = num("high_freq_factor", 4.0);
      const double old_ctx = num("original_max_position_embeddings", 8192.0);
      const double lo_wl = old_ctx / lo, hi_wl = old_ctx / hi;
      weights.rope_freqs.resize(c.rope_dim / 2);
      for (int32_t i = 0; i < c.rope_dim / 2; ++i) {
        const double f = weights.inv_freq[i], wl = 2 * M_PI / f;
        double scaled = f;
        if (wl > lo_wl) {
          scaled = f / factor;
        } else if (wl >= hi_wl) {
          const double smooth = (old_ctx / wl - lo) / (hi - lo);
          scaled = (1 - smooth) * f / factor + smooth * f;
        }
        weights.rope_freqs[i] = static_cast<float>(f / scaled);
        weights.inv_freq[i] = static_cast<float>(scaled);
      }
    } else if (type != "default") {
      return absl::UnimplementedError(absl::StrCat(ck.dir(), "/config.json: rope_scaling type '", type,
                                                   "' is not supported (linear, llama3)"));
    }
  }

  // ingot's own layout saves the rotary frequencies as they were computed.
  if (ck.Find("ingot.rope.inv_freq") != nullptr) {
    ASSIGN_OR_RETURN(weights.inv_freq, b.Vector("ingot.rope.inv_freq", c.rope_dim / 2, false));
    ASSIGN_OR_RETURN(weights.rope_freqs, b.Vector("ingot.rope.freqs", c.rope_dim / 2, true));
  }

  // Embedding: a dense (vocab, n_embd) matrix the GGML row kernels read in place. A
  // quantized one (MLX quantizes embeddings too) is expanded to f16 for lookups; its
  // quantized form still serves as a tied output head.
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  LinearLoad quantized_embd;
  {
    const TensorView* e = ck.Find("model.embed_tokens.weight");
    const bool dense = e != nullptr && (e->dtype == DType::kF32 || e->dtype == DType::kF16 ||
                                        e->dtype == DType::kBF16);
    if (dense) {
      if (e->shape.size() != 2 || e->shape[1] != d || e->shape[0] < c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": tensor 'model.embed_tokens.weight' has shape ",
                                                       Shape(e->shape), ", expected [", c.vocab_size, ", ", d, "]"));
      }
      c.vocab_size = static_cast<int32_t>(e->shape[0]);  // padded vocabularies count
      kernels::WeightMatrix& w = weights.token_embd;
      w.type = GgmlOf(e->dtype);
      w.rows = c.vocab_size;
      w.cols = d;
      w.row_bytes = static_cast<size_t>(d) * formats::DTypeSize(e->dtype);
      w.data = e->data;
    } else {
      ASSIGN_OR_RETURN(quantized_embd, loader("model.embed_tokens", c.vocab_size, d));
    }
    if (!dense && quantized_embd.w.kind == kernels::LinearKind::kGgml) {
      // GGML blocks (ingot's layout of a GGUF model): looked up in place, as from GGUF.
      weights.token_embd = quantized_embd.w.ggml;
      if (quantized_embd.owner) weights.owners.push_back(std::move(quantized_embd.owner));
      quantized_embd = LinearLoad();
    } else if (!dense) {
      auto storage = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(c.vocab_size) * d);
      std::vector<float> row(d);
      for (int64_t r = 0; r < c.vocab_size; ++r) {
        kernels::LinearDequantizeRow(quantized_embd.w, r, row.data());
        for (int64_t i = 0; i < d; ++i) (*storage)[r * d + i] = Fp32ToFp16(row[i]);
      }
      kernels::WeightMatrix& w = weights.token_embd;
      w.type = GgmlType::kF16;
      w.rows = c.vocab_size;
      w.cols = d;
      w.row_bytes = static_cast<size_t>(d) * 2;
      w.data = reinterpret_cast<const uint8_t*>(storage->data());
      weights.owners.push_back(std::move(storage));
    }
  }
  ASSIGN_OR_RETURN(weights.output_norm, b.Vector("model.norm.weight", d, false));
  const bool tie = b.BoolOr("tie_word_embeddings", false);
  const bool has_head = ck.Find("lm_head.weight") != nullptr || ck.Find("lm_head.qweight") != nullptr ||
                        ck.Find("lm_head.W_q") != nullptr || ck.Find("lm_head.weight._data") != nullptr;
  // As transformers does: tie_word_embeddings=true makes the head the embedding even
  // when the file also holds an lm_head.
  if (!has_head || tie) {
    if (!tie && cfg.contains("tie_word_embeddings")) {
      return absl::InvalidArgumentError(absl::StrCat(
          ck.path(), ": missing tensor 'lm_head.weight' and config.json says tie_word_embeddings=false"));
    }
    c.tied_output = true;
    if (quantized_embd.bytes > 0) {
      c.tied_output = false;  // the head keeps its own (quantized) storage
      weights.output = quantized_embd.w;
      weights.output_repr = quantized_embd.representation;
      weights.output_bytes = quantized_embd.bytes;
      if (quantized_embd.owner) weights.owners.push_back(std::move(quantized_embd.owner));
    } else {
      weights.output.kind = kernels::LinearKind::kGgml;
      weights.output.ggml = weights.token_embd;
      weights.output_repr = GetGgmlTypeTraits(weights.token_embd.type).name;
      weights.output_bytes = static_cast<int64_t>(weights.token_embd.row_bytes) * weights.token_embd.rows;
    }
  } else {
    ASSIGN_OR_RETURN(LinearLoad head, loader("lm_head", c.vocab_size, d));
    weights.output = head.w;
    weights.output_repr = head.representation;
    weights.output_bytes = head.bytes;
    if (head.owner) weights.owners.push_back(std::move(head.owner));
  }

  const int64_t shapes[kLinearSlots][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd},
                                           {c.n_ff, d}, {c.n_ff, d}, {d, c.n_ff}};
  weights.layers.resize(c.n_layer);
  for (int32_t l = 0; l < c.n_layer; ++l) {
    LlamaLayer& L = weights.layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    ASSIGN_OR_RETURN(L.attn_norm, b.Vector(p + "input_layernorm.weight", d, false));
    ASSIGN_OR_RETURN(L.ffn_norm, b.Vector(p + "post_attention_layernorm.weight", d, false));
    for (int s = 0; s < kLinearSlots; ++s) {
      ASSIGN_OR_RETURN(LinearLoad lin, loader(p + kHfLinearNames[s], shapes[s][0], shapes[s][1]));
      if (lin.w.rows() != shapes[s][0] || lin.w.cols() != shapes[s][1]) {
        return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, kHfLinearNames[s], "' loads as ",
                                                       lin.w.rows(), " x ", lin.w.cols(), ", expected ",
                                                       shapes[s][0], " x ", shapes[s][1]));
      }
      L.w[s] = lin.w;
      L.repr[s] = std::move(lin.representation);
      L.bytes[s] = lin.bytes;
      if (lin.owner) weights.owners.push_back(std::move(lin.owner));
    }
    ASSIGN_OR_RETURN(L.bq, b.Vector(p + "self_attn.q_proj.bias", qd, !c.attn_bias));
    ASSIGN_OR_RETURN(L.bk, b.Vector(p + "self_attn.k_proj.bias", kvd, !c.attn_bias));
    ASSIGN_OR_RETURN(L.bv, b.Vector(p + "self_attn.v_proj.bias", kvd, !c.attn_bias));
    if (progress) progress(static_cast<double>(l + 1) / c.n_layer, absl::StrCat("layer ", l + 1, "/", c.n_layer));
  }
  weights.checkpoint = std::move(checkpoint);
  weights.RefreshSummary();
  return weights;
}

}  // namespace ingot
