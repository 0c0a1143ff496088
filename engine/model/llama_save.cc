// ingot's own checkpoint layout: a Hugging Face style directory that loads back into
// the same in-memory model, byte for byte, whatever each layer's representation is.
//
//   config.json               transformers' keys for the architecture, plus
//                             "ingot_rope_interleaved" when q/k rows are in GGUF order
//   model.safetensors         norms and biases (F32); each linear module's tensors under
//                             its HF name, in the representation it has in memory:
//                               dense     NAME.weight  F32/F16/BF16 (rows, cols)
//                               ggml      NAME.weight  U8 (rows, row_bytes), GGML blocks
//                               affine    NAME.weight  U8 (rows, row_bytes) code bitstream,
//                                         NAME.scales / NAME.zeros  F16 (rows, groups)
//                               codebook  NAME.weight  U8 (rows * cols / 2),
//                                         NAME.absmax F32, or NAME.absmax_code U8 +
//                                         NAME.absmax_scale F32 (double quant)
//                             the embedding likewise (model.embed_tokens); the rotary
//                             frequencies as ingot.rope.inv_freq (+ ingot.rope.freqs)
//   quantization_config.json  {"quant_method": "ingot", "version": 1, "modules": {NAME:
//                             {"kind", "representation", and the kind's parameters}}},
//                             written when any module is not plain F32/F16/BF16
//   tokenizer files           the checkpoint's own when the model came with them, else
//                             made from the vocabulary (VocabSpecToHf)
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/safetensors.h"
#include "engine/model/checkpoint.h"
#include "engine/model/llama.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/cpu/ggml_types.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;
using formats::DType;
using formats::TensorView;

const char* HfArchitecture(const std::string& arch) {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  return nullptr;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

class LayoutWriter {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
    TensorView t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = static_cast<const uint8_t*>(data);
    t.nbytes = static_cast<size_t>(t.numel()) * formats::DTypeSize(dtype);
    tensors_.push_back(std::move(t));
  }
  void AddVector(const std::string& name, const std::vector<float>& v) {
    if (!v.empty()) Add(name, DType::kF32, {static_cast<int64_t>(v.size())}, v.data());
  }

  // A linear module (or the embedding) in its in-memory representation.
  void AddLinear(const std::string& name, const kernels::Linear& w, const std::string& repr) {
    Json spec = {{"representation", repr}};
    const std::string weight = name + ".weight";
    switch (w.kind) {
      case kernels::LinearKind::kGgml: {
        const kernels::WeightMatrix& m = w.ggml;
        if (m.type == GgmlType::kF32 || m.type == GgmlType::kF16 || m.type == GgmlType::kBF16) {
          const DType d = m.type == GgmlType::kF32 ? DType::kF32 : m.type == GgmlType::kF16 ? DType::kF16 : DType::kBF16;
          Add(weight, d, {m.rows, m.cols}, m.data);
          // A plain HF tensor: an entry only to keep a representation name the dense
          // loader would not give it.
          if (repr != GetGgmlTypeTraits(m.type).name) modules_[name] = {{"representation", repr}};
          return;
        }
        Add(weight, DType::kU8, {m.rows, static_cast<int64_t>(m.row_bytes)}, m.data);
        spec["kind"] = "ggml";
        spec["type"] = GetGgmlTypeTraits(m.type).name;
        spec["type_id"] = static_cast<int>(m.type);
        break;
      }
      case kernels::LinearKind::kAffine: {
        const kernels::AffineMatrix& a = w.affine;
        const int64_t g = a.groups_per_row();
        Add(weight, DType::kU8, {a.rows, static_cast<int64_t>(a.row_bytes)}, a.q);
        Add(name + ".scales", DType::kF16, {a.rows, g}, a.scale);
        if (a.zero != nullptr) Add(name + ".zeros", DType::kF16, {a.rows, g}, a.zero);
        spec["kind"] = "affine";
        spec["bits"] = a.bits;
        spec["cols"] = a.cols;
        spec["group_size"] = a.group;
        spec["zero"] = a.zero_kind == kernels::ZeroKind::kZero ? "zero" : "bias";
        if (w.outlier_threshold > 0) spec["outlier_threshold"] = w.outlier_threshold;
        break;
      }
      case kernels::LinearKind::kCodebook: {
        const kernels::CodebookMatrix& c = w.codebook;
        const int64_t n = c.rows * c.cols, blocks = n / c.block;
        Add(weight, DType::kU8, {n / 2}, c.codes);
        spec["kind"] = "codebook";
        spec["book"] = c.book == kernels::Codebook::kNF4 ? "nf4" : "fp4";
        spec["rows"] = c.rows;
        spec["cols"] = c.cols;
        spec["block"] = c.block;
        if (c.absmax_code == nullptr) {
          Add(name + ".absmax", DType::kF32, {blocks}, c.absmax);
        } else {
          Add(name + ".absmax_code", DType::kU8, {blocks}, c.absmax_code);
          Add(name + ".absmax_scale", DType::kF32, {(blocks + c.absmax_block - 1) / c.absmax_block}, c.absmax_scale);
          spec["absmax_block"] = c.absmax_block;
          spec["absmax_offset"] = c.absmax_offset;
        }
        break;
      }
    }
    modules_[name] = std::move(spec);
  }

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const Json& modules() const { return modules_; }

 private:
  std::vector<TensorView> tensors_;
  Json modules_ = Json::object();
};

}  // namespace

absl::StatusOr<std::vector<std::string>> LlamaModel::SaveIngot(const VocabSpec& vocab, const std::string& dir) const {
  const LlamaConfig& c = config_;
  const char* arch = HfArchitecture(c.architecture);
  if (arch == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("architecture '", c.architecture, "' has no Hugging Face config form in ingot"));
  }
  // The tokenizer first: it is what can fail, before anything is written.
  std::map<std::string, std::string> files;
  if (checkpoint_ != nullptr && !checkpoint_->ReadSibling("tokenizer.json").empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                          "special_tokens_map.json"}) {
      std::string text = checkpoint_->ReadSibling(f);
      if (!text.empty()) files[f] = std::move(text);
    }
  } else {
    ASSIGN_OR_RETURN(HfTokenizerFiles tok, VocabSpecToHf(vocab));
    files["tokenizer.json"] = std::move(tok.tokenizer_json);
    files["tokenizer_config.json"] = std::move(tok.tokenizer_config);
    files["generation_config.json"] = std::move(tok.generation_config);
  }

  Json cfg = {{"architectures", {arch}},
              {"model_type", c.architecture},
              {"hidden_size", c.n_embd},
              {"intermediate_size", c.n_ff},
              {"num_hidden_layers", c.n_layer},
              {"num_attention_heads", c.n_head},
              {"num_key_value_heads", c.n_head_kv},
              {"head_dim", c.head_dim},
              {"vocab_size", c.vocab_size},
              {"max_position_embeddings", c.context_length},
              {"rope_theta", c.rope_base},
              {"rms_norm_eps", c.rms_eps},
              {"attention_bias", c.attn_bias},
              {"tie_word_embeddings", c.tied_output},
              {"hidden_act", "silu"},
              {"torch_dtype", "float32"}};
  if (c.rope_linear_factor != 1.0f) cfg["rope_scaling"] = {{"type", "linear"}, {"factor", c.rope_linear_factor}};
  if (c.rope_dim != c.head_dim) {
    return absl::FailedPreconditionError(absl::StrCat("partial rotary (", c.rope_dim, " of ", c.head_dim,
                                                      " features) has no config form in ingot's layout"));
  }
  if (c.rope_style == RopeStyle::kNormal) cfg["ingot_rope_interleaved"] = true;
  if (vocab.bos_id >= 0) cfg["bos_token_id"] = vocab.bos_id;
  if (vocab.eos_id >= 0) cfg["eos_token_id"] = vocab.eos_id;

  LayoutWriter w;
  {
    kernels::Linear embd;
    embd.kind = kernels::LinearKind::kGgml;
    embd.ggml = token_embd_;
    w.AddLinear("model.embed_tokens", embd, GetGgmlTypeTraits(token_embd_.type).name);
  }
  w.AddVector("model.norm.weight", output_norm_);
  if (!c.tied_output) w.AddLinear("lm_head", output_, output_repr_);
  w.AddVector("ingot.rope.inv_freq", inv_freq_);
  w.AddVector("ingot.rope.freqs", rope_freqs_);
  static constexpr const char* kNames[kLinearSlots] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                       "mlp.down_proj"};
  for (int32_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    w.AddVector(p + "input_layernorm.weight", L.attn_norm);
    w.AddVector(p + "post_attention_layernorm.weight", L.ffn_norm);
    for (int s = 0; s < kLinearSlots; ++s) w.AddLinear(p + kNames[s], L.w[s], L.repr[s]);
    w.AddVector(p + "self_attn.q_proj.bias", L.bq);
    w.AddVector(p + "self_attn.k_proj.bias", L.bk);
    w.AddVector(p + "self_attn.v_proj.bias", L.bv);
  }

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  std::vector<std::string> written;
  const std::string weights = dir + "/model.safetensors";
  RETURN_IF_ERROR(formats::WriteSafetensors(weights, w.tensors(), {{"format", "pt"}, {"writer", "ingot"}}));
  written.push_back(weights);
  files["config.json"] = cfg.dump(2);
  const std::string qcfg_path = dir + "/quantization_config.json";
  if (!w.modules().empty()) {
    files["quantization_config.json"] = Json{{"quant_method", "ingot"}, {"version", 1}, {"modules", w.modules()}}.dump(1);
  } else {
    std::filesystem::remove(qcfg_path, ec);  // a dense save over an older quantized one
  }
  for (const auto& [name, text] : files) {
    RETURN_IF_ERROR(WriteText(dir + "/" + name, text));
    written.push_back(dir + "/" + name);
  }
  return written;
}

}  // namespace ingot
