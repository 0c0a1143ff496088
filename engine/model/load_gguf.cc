// LoadGgufWeights (load.h): a model's weights from GGUF metadata and tensors, as views
// into the mapping (nothing copied).
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/gguf.h"
#include "engine/model/load.h"

namespace ingot {
namespace {

// Architectures of the llama family this forward pass runs, and how they differ.
struct ArchRow {
  const char* name;
  RopeStyle rope_style;
  bool attn_bias;
};
constexpr ArchRow kArchitectures[] = {
    {"llama", RopeStyle::kNormal, false},
    {"mistral", RopeStyle::kNormal, false},
    {"qwen2", RopeStyle::kNeox, true},
    {"smollm3", RopeStyle::kNormal, false},
};

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

class Builder {
 public:
  explicit Builder(const gguf::File& f) : f_(f) {}

  // A 2-D weight (ne = [cols, rows]) usable by the dot kernels.
  absl::StatusOr<kernels::WeightMatrix> Matrix(const std::string& name, int64_t rows, int64_t cols,
                                               const std::string& kind) {
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": missing tensor '", name, "'"));
    }
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          f_.path(), ": tensor '", name, "' has shape ", DimsString(t->dims), ", expected [",
          cols, ", ", rows, "]"));
    }
    const auto& traits = GetGgmlTypeTraits(t->type);
    if (!traits.supported || !kernels::DotSupported(t->type)) {
      return absl::UnimplementedError(absl::StrCat(f_.path(), ": tensor '", name, "' has type ",
                                                   traits.name, " which this build cannot compute with"));
    }
    if (cols % traits.block_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' row of ", cols,
                                                     " is not a multiple of the ", traits.name,
                                                     " block size ", traits.block_size));
    }
    kernels::WeightMatrix w;
    w.type = t->type;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = GgmlRowSize(t->type, cols);
    w.data = t->data;
    return w;
  }

  // A 1-D tensor of `n` values as f32 (norm weights, biases); empty if optional and absent.
  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n, bool optional,
                                            const std::string& kind) {
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return std::vector<float>();
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": missing tensor '", name, "'"));
    }
    if (t->NumElements() != n) {
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' has shape ",
                                                     DimsString(t->dims), ", expected [", n, "]"));
    }
    const auto& traits = GetGgmlTypeTraits(t->type);
    if (!traits.supported || n % traits.block_size != 0) {
      return absl::UnimplementedError(
          absl::StrCat(f_.path(), ": tensor '", name, "' has unsupported type ", traits.name));
    }
    std::vector<float> out(n);
    traits.dequantize(t->data, out.data(), n);
    return out;
  }

 private:
  const gguf::File& f_;
};

absl::StatusOr<int32_t> RequiredInt(const gguf::File& f, const std::string& key) {
  auto v = f.GetInt(key);
  if (!v.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": metadata key '", key,
                                                   "' is required: ", v.status().message()));
  }
  if (*v <= 0 || *v > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": metadata key '", key, "' = ", *v,
                                                   " is out of range"));
  }
  return static_cast<int32_t>(*v);
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadGgufWeights(std::unique_ptr<gguf::File> file, const WeightsProgress& progress) {
  const gguf::File& f = *file;
  ASSIGN_OR_RETURN(std::string arch, f.GetString("general.architecture"));
  const ArchRow* row = nullptr;
  for (const auto& r : kArchitectures) {
    if (arch == r.name) row = &r;
  }
  if (row == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        f.path(), ": architecture '", arch, "' is not supported (supported: llama, mistral, qwen2, smollm3)"));
  }
  LlamaWeights weights;
  LlamaConfig& c = weights.config;
  c.architecture = arch;
  c.rope_style = row->rope_style;
  const std::string p = arch + ".";
  ASSIGN_OR_RETURN(c.n_layer, RequiredInt(f, p + "block_count"));
  ASSIGN_OR_RETURN(c.n_embd, RequiredInt(f, p + "embedding_length"));
  ASSIGN_OR_RETURN(c.n_ff, RequiredInt(f, p + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.n_head, RequiredInt(f, p + "attention.head_count"));
  c.n_head_kv = static_cast<int32_t>(f.GetIntOr(p + "attention.head_count_kv", c.n_head));
  c.context_length = static_cast<int32_t>(f.GetIntOr(p + "context_length", 2048));
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": head_count ", c.n_head,
                                                   " is not a multiple of head_count_kv ", c.n_head_kv));
  }
  c.head_dim = static_cast<int32_t>(f.GetIntOr(p + "attention.key_length", c.n_embd / c.n_head));
  c.rope_dim = static_cast<int32_t>(f.GetIntOr(p + "rope.dimension_count", c.head_dim));
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0 || c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": rope.dimension_count ", c.rope_dim,
                                                   " does not fit head size ", c.head_dim));
  }
  c.rope_base = static_cast<float>(f.GetFloatOr(p + "rope.freq_base", 10000.0));
  c.rms_eps = static_cast<float>(f.GetFloatOr(p + "attention.layer_norm_rms_epsilon", 1e-5));
  const std::string scaling = f.GetStringOr(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_linear_factor = static_cast<float>(f.GetFloatOr(p + "rope.scaling.factor", 1.0));
    if (!(c.rope_linear_factor > 0)) c.rope_linear_factor = 1.0f;
  } else if (scaling != "none") {
    return absl::UnimplementedError(absl::StrCat(f.path(), ": rope scaling '", scaling,
                                                 "' is not supported (none, linear)"));
  }

  if (arch == "smollm3") {
    // llama.cpp writes no key for SmolLM3's NoPE layers: it fixes the step at 4 (layers
    // with (il + 1) % 4 == 0 skip RoPE), and so does ingot.
    c.nope_layers = NopeLayersEvery(c.n_layer, kSmolLm3NopeStep);
  }

  Builder b(f);
  const gguf::TensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr || embd->dims.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": missing 2-D tensor 'token_embd.weight'"));
  }
  c.vocab_size = static_cast<int32_t>(embd->dims[1]);
  ASSIGN_OR_RETURN(weights.token_embd, b.Matrix("token_embd.weight", c.vocab_size, c.n_embd, "embedding"));
  ASSIGN_OR_RETURN(weights.output_norm, b.Vector("output_norm.weight", c.n_embd, false, "norm"));
  auto as_linear = [](const kernels::WeightMatrix& w) {
    kernels::Linear lin;
    lin.kind = kernels::LinearKind::kGgml;
    lin.ggml = w;
    return lin;
  };
  auto repr = [](const kernels::WeightMatrix& w) {
    return std::string(GetGgmlTypeTraits(w.type).name);
  };
  auto bytes = [](const kernels::WeightMatrix& w) { return static_cast<int64_t>(w.row_bytes) * w.rows; };
  {
    kernels::WeightMatrix out_w = weights.token_embd;
    if (f.FindTensor("output.weight") != nullptr) {
      ASSIGN_OR_RETURN(out_w, b.Matrix("output.weight", c.vocab_size, c.n_embd, "output"));
    } else {
      c.tied_output = true;
    }
    weights.output = as_linear(out_w);
    weights.output_repr = repr(out_w);
    weights.output_bytes = bytes(out_w);
  }
  ASSIGN_OR_RETURN(std::vector<float> freq_factors,
                   b.Vector("rope_freqs.weight", c.rope_dim / 2, true, "norm"));
  weights.rope_freqs = freq_factors;
  weights.inv_freq.resize(c.rope_dim / 2);
  for (int32_t i = 0; i < c.rope_dim / 2; ++i) {
    float inv = std::pow(c.rope_base, -2.0f * static_cast<float>(i) / static_cast<float>(c.rope_dim));
    if (!freq_factors.empty()) inv /= freq_factors[i];
    weights.inv_freq[i] = inv;
  }

  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  weights.layers.resize(c.n_layer);
  for (int32_t l = 0; l < c.n_layer; ++l) {
    LlamaLayer& L = weights.layers[l];
    const std::string n = absl::StrCat("blk.", l, ".");
    ASSIGN_OR_RETURN(L.attn_norm, b.Vector(n + "attn_norm.weight", d, false, "norm"));
    const int64_t shapes[kLinearSlots][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd},
                                             {c.n_ff, d}, {c.n_ff, d}, {d, c.n_ff}};
    for (int s = 0; s < kLinearSlots; ++s) {
      ASSIGN_OR_RETURN(kernels::WeightMatrix w,
                       b.Matrix(absl::StrCat(n, kGgufLinearNames[s], ".weight"), shapes[s][0], shapes[s][1],
                                s <= static_cast<int>(LinearSlot::kO) ? "attention" : "mlp"));
      L.w[s] = as_linear(w);
      L.repr[s] = repr(w);
      L.bytes[s] = bytes(w);
    }
    ASSIGN_OR_RETURN(L.bq, b.Vector(n + "attn_q.bias", qd, !row->attn_bias, "attention"));
    ASSIGN_OR_RETURN(L.bk, b.Vector(n + "attn_k.bias", kvd, !row->attn_bias, "attention"));
    ASSIGN_OR_RETURN(L.bv, b.Vector(n + "attn_v.bias", kvd, !row->attn_bias, "attention"));
    c.attn_bias = c.attn_bias || !L.bq.empty();
    ASSIGN_OR_RETURN(L.ffn_norm, b.Vector(n + "ffn_norm.weight", d, false, "norm"));
    if (progress) progress(static_cast<double>(l + 1) / c.n_layer, absl::StrCat("layer ", l + 1, "/", c.n_layer));
  }
  weights.gguf = std::move(file);
  weights.RefreshSummary();
  return weights;
}

}  // namespace ingot
