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
//
// The same directory in other tools' layouts, where each layer's representation has
// an exact form there (anything else is FAILED_PRECONDITION naming the module):
//   bitsandbytes  transformers' serialization: NF4/FP4 blocks (double quant kept as the
//                 nested absmax) or LLM.int8 rows (int8 weight + SCB); dense modules
//                 listed in llm_int8_skip_modules
//   mlx           mlx-lm's: affine groups with bias (2/4/8 bits, groups of 32/64/128) as
//                 uint32 words + scales + biases; config.json "quantization"
//   gptq          AutoGPTQ's v1 layout (llama_save_gptq.cc): affine zero groups with
//                 integer zeros (GPTQ, RTN-style methods; 2/3/4/8 bits) as qweight /
//                 qzeros (zero - 1) / scales / g_idx + quantize_config.json; every
//                 decoder linear quantized, lm_head dense
//   hqq           transformers' HqqConfig layout (llama_save_hqq.cc): affine zero
//                 groups, float zeros (HQQ, and the integer-zero methods; 1/2/4/8 bits)
//                 as W_q packed hqq's way + scale/zero + encoded meta; dense linears in
//                 skip_modules
// All of them read q/k rows in transformers' order: a GGUF model's interleaved rows are
// put back (nested absmax is then expanded to f32, as rows move across its groups), and
// an embedding in GGML blocks is written dequantized to f32.
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/safetensors.h"
#include "engine/model/checkpoint.h"
#include "engine/model/llama.h"
#include "engine/model/qk_rows.h"
#include "engine/model/llama_save_layout.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;
using formats::DType;
using formats::TensorView;
using save::IsFloatType;
using save::IsFloatWeight;
using save::LayoutWriter;
using save::NoForm;
using save::NothingQuantized;

const char* HfArchitecture(const std::string& arch) {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  if (arch == "smollm3") return "SmolLM3ForCausalLM";
  return nullptr;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace

namespace save {

void LayoutWriter::AddLinear(const std::string& name, const kernels::Linear& w, const std::string& repr) {
  Json spec = {{"representation", repr}};
  const std::string weight = name + ".weight";
  switch (w.kind) {
    case kernels::LinearKind::kGgml: {
      const kernels::WeightMatrix& m = w.ggml;
      if (IsFloatType(m.type)) {
        AddDense(name, m);
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
      if (w.input_order != nullptr) {
        Add(name + ".input_order", DType::kI32, {a.cols}, w.input_order);
        spec["input_order"] = true;
      }
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

}  // namespace save

namespace {

// A float as the shortest decimal that reads back to it (1e-05, not 9.99999974e-06).
double Shortest(float v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::strtod(std::string(buf, end).c_str(), nullptr);
}

// `w` with row r taken from row from[r], in storage kept by `keep`. A nested codebook
// absmax comes out expanded to f32 (its groups of blocks straddle rows).
kernels::Linear PermuteRows(const kernels::Linear& w, const std::vector<int64_t>& from, LayoutWriter& keep) {
  kernels::Linear out = w;
  auto rows_of = [&](const uint8_t* src, size_t row_bytes) { return keep.Keep(GatherRows(src, row_bytes, from)); };
  switch (w.kind) {
    case kernels::LinearKind::kGgml:
      out.ggml.data = rows_of(w.ggml.data, w.ggml.row_bytes);
      break;
    case kernels::LinearKind::kAffine: {
      const size_t g = static_cast<size_t>(w.affine.groups_per_row()) * 2;
      out.affine.q = rows_of(w.affine.q, w.affine.row_bytes);
      out.affine.scale = reinterpret_cast<const uint16_t*>(rows_of(reinterpret_cast<const uint8_t*>(w.affine.scale), g));
      if (w.affine.zero != nullptr) {
        out.affine.zero = reinterpret_cast<const uint16_t*>(rows_of(reinterpret_cast<const uint8_t*>(w.affine.zero), g));
      }
      break;
    }
    case kernels::LinearKind::kCodebook: {
      const kernels::CodebookMatrix& c = w.codebook;
      const int64_t blocks = c.rows * c.cols / c.block;
      const float* absmax = c.absmax;
      if (c.absmax_code != nullptr) {
        float* expanded = keep.KeepArray<float>(blocks);
        for (int64_t b = 0; b < blocks; ++b) expanded[b] = kernels::CodebookBlockAbsmax(c, b);
        absmax = expanded;
      }
      out.codebook.codes = rows_of(c.codes, static_cast<size_t>(c.cols / 2));
      out.codebook.absmax = reinterpret_cast<const float*>(
          rows_of(reinterpret_cast<const uint8_t*>(absmax), static_cast<size_t>(c.cols / c.block) * 4));
      out.codebook.absmax_code = nullptr;
      out.codebook.absmax_scale = nullptr;
      out.codebook.absmax_offset = 0;
      break;
    }
  }
  return out;
}

// bitsandbytes as transformers serializes it.
class BnbLayout {
 public:
  absl::Status Add(LayoutWriter& w, const std::string& name, const kernels::Linear& lin, const std::string& repr) {
    const std::string weight = name + ".weight";
    constexpr const char* kHow = "quantize it with -m bitsandbytes (nf4, fp4 or 8-bit) first";
    if (IsFloatWeight(lin)) {
      w.AddDense(name, lin.ggml);
      skip_.push_back(name);
      return absl::OkStatus();
    }
    if (lin.kind == kernels::LinearKind::kCodebook) {
      const kernels::CodebookMatrix& c = lin.codebook;
      const char* type = c.book == kernels::Codebook::kNF4 ? "nf4" : "fp4";
      RETURN_IF_ERROR(Mode(name, type));
      const int64_t n = c.rows * c.cols, blocks = n / c.block;
      w.Add(weight, DType::kU8, {n / 2, 1}, c.codes);
      w.Add(weight + ".quant_map", DType::kF32, {16}, kernels::CodebookValues(c.book));
      Json state = {{"quant_type", type}, {"blocksize", c.block}, {"dtype", "float32"}, {"shape", {c.rows, c.cols}}};
      if (c.absmax_code != nullptr) {
        w.Add(weight + ".absmax", DType::kU8, {blocks}, c.absmax_code);
        w.Add(weight + ".nested_absmax", DType::kF32, {(blocks + c.absmax_block - 1) / c.absmax_block}, c.absmax_scale);
        w.Add(weight + ".nested_quant_map", DType::kF32, {256}, kernels::DynamicMap());
        state["nested_blocksize"] = c.absmax_block;
        state["nested_dtype"] = "float32";
        state["nested_offset"] = c.absmax_offset;
        double_quant_ = true;
      } else {
        w.Add(weight + ".absmax", DType::kF32, {blocks}, c.absmax);
      }
      const std::string blob = state.dump();
      w.Add(absl::StrCat(weight, ".quant_state.bitsandbytes__", type), DType::kU8,
            {static_cast<int64_t>(blob.size())}, w.Keep(blob));
      return absl::OkStatus();
    }
    if (lin.kind == kernels::LinearKind::kAffine) {
      // LLM.int8 rows: (q - 128) * scale, scale = SCB / 127.
      const kernels::AffineMatrix& a = lin.affine;
      bool rows_of_128 = a.bits == 8 && a.group == a.cols && a.zero_kind == kernels::ZeroKind::kZero && a.zero != nullptr;
      for (int64_t r = 0; rows_of_128 && r < a.rows; ++r) rows_of_128 = Fp16ToFp32(a.zero[r]) == 128.0f;
      if (!rows_of_128) return NoForm(name, repr, "bitsandbytes", kHow);
      RETURN_IF_ERROR(Mode(name, "int8"));
      int8_t* q = w.KeepArray<int8_t>(static_cast<size_t>(a.rows * a.cols));
      float* scb = w.KeepArray<float>(static_cast<size_t>(a.rows));
      for (int64_t r = 0; r < a.rows; ++r) {
        for (int64_t i = 0; i < a.cols; ++i) q[r * a.cols + i] = static_cast<int8_t>(a.q[r * a.row_bytes + i] - 128);
        scb[r] = Fp16ToFp32(a.scale[r]) * 127.0f;
      }
      w.Add(weight, DType::kI8, {a.rows, a.cols}, q);
      w.Add(name + ".SCB", DType::kF32, {a.rows}, scb);
      static const uint8_t kRowFormat = 0;
      w.Add(name + ".weight_format", DType::kU8, {}, &kRowFormat);
      if (any_int8_ && threshold_ != lin.outlier_threshold) {
        return absl::FailedPreconditionError(absl::StrCat("'", name, "' has LLM.int8 outlier threshold ",
                                                          lin.outlier_threshold, ", earlier modules ", threshold_,
                                                          "; a bitsandbytes checkpoint has one"));
      }
      threshold_ = lin.outlier_threshold;
      any_int8_ = true;
      return absl::OkStatus();
    }
    return NoForm(name, repr, "bitsandbytes", kHow);
  }

  absl::StatusOr<Json> Config() const {
    if (mode_.empty()) return NothingQuantized();
    const bool int8 = mode_ == "int8";
    Json skip = Json::array();
    for (const std::string& s : skip_) skip.push_back(s);
    return Json{{"quant_method", "bitsandbytes"},
                {"load_in_4bit", !int8},
                {"load_in_8bit", int8},
                {"bnb_4bit_quant_type", int8 ? "fp4" : mode_},
                {"bnb_4bit_use_double_quant", double_quant_},
                {"bnb_4bit_compute_dtype", "float32"},
                {"bnb_4bit_quant_storage", "uint8"},
                {"llm_int8_threshold", int8 ? threshold_ : 6.0f},  // transformers' default for 4-bit
                {"llm_int8_has_fp16_weight", false},
                {"llm_int8_skip_modules", skip_.empty() ? Json(nullptr) : skip}};
  }

 private:
  // One quantization per checkpoint, as transformers' config describes it.
  absl::Status Mode(const std::string& name, const std::string& mode) {
    if (mode_.empty()) mode_ = mode;
    if (mode_ != mode) {
      return absl::FailedPreconditionError(absl::StrCat("'", name, "' is ", mode, " but earlier modules are ", mode_,
                                                        "; a bitsandbytes checkpoint has one quantization"));
    }
    return absl::OkStatus();
  }
  std::string mode_;
  bool double_quant_ = false;
  float threshold_ = 0.0f;
  bool any_int8_ = false;
  std::vector<std::string> skip_;
};

// mlx-lm's layout.
class MlxLayout {
 public:
  absl::Status Add(LayoutWriter& w, const std::string& name, const kernels::Linear& lin, const std::string& repr) {
    if (IsFloatWeight(lin)) {
      w.AddDense(name, lin.ggml);
      return absl::OkStatus();
    }
    const kernels::AffineMatrix& a = lin.affine;
    if (lin.kind != kernels::LinearKind::kAffine || a.zero_kind != kernels::ZeroKind::kBias || a.zero == nullptr ||
        (a.bits != 2 && a.bits != 4 && a.bits != 8) || (a.group != 32 && a.group != 64 && a.group != 128)) {
      return NoForm(name, repr, "MLX", "quantize it with -m mlx (2, 4 or 8 bits, groups of 32, 64 or 128) first");
    }
    const int64_t g = a.groups_per_row();
    w.Add(name + ".weight", DType::kU32, {a.rows, a.cols * a.bits / 32}, a.q);
    w.Add(name + ".scales", DType::kF16, {a.rows, g}, a.scale);
    w.Add(name + ".biases", DType::kF16, {a.rows, g}, a.zero);
    const Json q = {{"group_size", a.group}, {"bits", a.bits}};
    if (global_.is_null()) global_ = q;
    if (q != global_) per_module_[name] = q;
    return absl::OkStatus();
  }
  absl::StatusOr<Json> Config() const {
    if (global_.is_null()) return NothingQuantized();
    Json q = global_;
    q["mode"] = "affine";
    for (const auto& [name, v] : per_module_.items()) q[name] = v;
    return q;
  }

 private:
  Json global_;
  Json per_module_ = Json::object();
};

}  // namespace

absl::StatusOr<std::vector<std::string>> LlamaModel::SaveCheckpoint(const VocabSpec& vocab, const std::string& dir,
                                                                    const std::string& layout) const {
  const LlamaConfig& c = config_;
  const bool ingot = layout == "ingot", bnb = layout == "bitsandbytes", mlx = layout == "mlx";
  const bool gptq = layout == "gptq", hqq = layout == "hqq";
  if (!ingot && !bnb && !mlx && !gptq && !hqq) {
    return absl::InvalidArgumentError(
        absl::StrCat("layout '", layout, "' is not ingot, bitsandbytes, mlx, gptq or hqq"));
  }
  const char* arch = HfArchitecture(c.architecture);
  if (arch == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("architecture '", c.architecture, "' has no Hugging Face config form in ingot"));
  }
  if (c.rope_dim != c.head_dim) {
    return absl::FailedPreconditionError(absl::StrCat("partial rotary (", c.rope_dim, " of ", c.head_dim,
                                                      " features) has no config form"));
  }
  if (!ingot && !rope_freqs_.empty()) {
    return absl::FailedPreconditionError("per-dimension rope frequencies have no transformers config form here");
  }
  // The tokenizer first: it is what can fail, before anything is written.
  std::map<std::string, std::string> files;
  if (checkpoint_ != nullptr && !checkpoint_->ReadSibling("tokenizer.json").empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                          "special_tokens_map.json", "chat_template.jinja"}) {
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
              {"rope_theta", Shortest(c.rope_base)},
              {"rms_norm_eps", Shortest(c.rms_eps)},
              {"attention_bias", c.attn_bias},
              {"tie_word_embeddings", c.tied_output},
              {"hidden_act", "silu"},
              {"torch_dtype", "float32"}};
  if (c.rope_linear_factor != 1.0f) cfg["rope_scaling"] = {{"type", "linear"}, {"factor", c.rope_linear_factor}};
  if (!c.nope_layers.empty()) {
    if (c.architecture != "smollm3") {
      return absl::FailedPreconditionError(
          absl::StrCat("architecture '", c.architecture, "' has layers without RoPE, which its config cannot say"));
    }
    std::vector<int> rope_layers;  // transformers' sense: 1 = the layer uses RoPE
    for (uint8_t nope : c.nope_layers) rope_layers.push_back(nope ? 0 : 1);
    cfg["no_rope_layers"] = rope_layers;
    cfg["use_sliding_window"] = false;
  }
  // ingot keeps a GGUF model's rows; the other tools get transformers' order back.
  const bool unpermute = !ingot && c.rope_style == RopeStyle::kNormal;
  if (ingot && c.rope_style == RopeStyle::kNormal) cfg["ingot_rope_interleaved"] = true;
  if (vocab.bos_id >= 0) cfg["bos_token_id"] = vocab.bos_id;
  if (vocab.eos_id >= 0) cfg["eos_token_id"] = vocab.eos_id;

  LayoutWriter w;
  BnbLayout bnb_layout;
  MlxLayout mlx_layout;
  save::GptqLayout gptq_layout;
  save::HqqLayout hqq_layout;
  // `block`: a decoder layer's linear; `has_bias`: its bias is written with the layer.
  auto add_linear = [&](const std::string& name, const kernels::Linear& lin, const std::string& repr,
                        int64_t permute_heads, bool block, bool has_bias) -> absl::Status {
    if (ingot) {
      w.AddLinear(name, lin, repr);
      return absl::OkStatus();
    }
    if (lin.input_order != nullptr) {
      return NoForm(name, repr, layout, "its columns are regrouped (GPTQ act-order); save it as ingot");
    }
    const kernels::Linear l = permute_heads > 0 ? PermuteRows(lin, QkRowOrder(permute_heads, c.head_dim, /*to_pairs=*/false), w) : lin;
    if (bnb) return bnb_layout.Add(w, name, l, repr);
    if (mlx) return mlx_layout.Add(w, name, l, repr);
    if (gptq) return gptq_layout.Add(w, name, l, repr, block, has_bias);
    return hqq_layout.Add(w, name, l, repr);
  };
  {
    kernels::Linear embd;
    embd.kind = kernels::LinearKind::kGgml;
    embd.ggml = token_embd_;
    if (ingot) {
      w.AddLinear("model.embed_tokens", embd, GetGgmlTypeTraits(token_embd_.type).name);
    } else if (IsFloatType(token_embd_.type)) {
      w.AddDense("model.embed_tokens", token_embd_);
    } else {
      // GGML blocks have no form in these layouts: the values, exactly, in f32.
      float* e = w.KeepArray<float>(static_cast<size_t>(token_embd_.rows * token_embd_.cols));
      const GgmlTypeTraits& t = GetGgmlTypeTraits(token_embd_.type);
      for (int64_t r = 0; r < token_embd_.rows; ++r) t.dequantize(token_embd_.Row(r), e + r * token_embd_.cols, token_embd_.cols);
      w.Add("model.embed_tokens.weight", DType::kF32, {token_embd_.rows, token_embd_.cols}, e);
    }
  }
  w.AddVector("model.norm.weight", output_norm_);
  if (!c.tied_output) RETURN_IF_ERROR(add_linear("lm_head", output_, output_repr_, 0, false, false));
  if (ingot) {
    w.AddVector("ingot.rope.inv_freq", inv_freq_);
    w.AddVector("ingot.rope.freqs", rope_freqs_);
  }
  for (int32_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    w.AddVector(p + "input_layernorm.weight", L.attn_norm);
    w.AddVector(p + "post_attention_layernorm.weight", L.ffn_norm);
    for (int s = 0; s < kLinearSlots; ++s) {
      int64_t heads = 0;
      if (unpermute && s == static_cast<int>(LinearSlot::kQ)) heads = c.n_head;
      if (unpermute && s == static_cast<int>(LinearSlot::kK)) heads = c.n_head_kv;
      const std::vector<float>* bias = s == static_cast<int>(LinearSlot::kQ)   ? &L.bq
                                       : s == static_cast<int>(LinearSlot::kK) ? &L.bk
                                       : s == static_cast<int>(LinearSlot::kV) ? &L.bv
                                                                               : nullptr;
      RETURN_IF_ERROR(add_linear(p + kHfLinearNames[s], L.w[s], L.repr[s], heads, true, bias != nullptr && !bias->empty()));
    }
    // q/k biases follow their rows back to transformers' order.
    auto add_bias = [&](const std::string& name, const std::vector<float>& v, int64_t heads) {
      if (v.empty() || !unpermute || heads == 0) {
        w.AddVector(name, v);
        return;
      }
      const std::vector<int64_t> from = QkRowOrder(heads, c.head_dim, /*to_pairs=*/false);
      float* out = w.KeepArray<float>(v.size());
      for (size_t r = 0; r < from.size(); ++r) out[r] = v[from[r]];
      w.Add(name, DType::kF32, {static_cast<int64_t>(v.size())}, out);
    };
    add_bias(p + "self_attn.q_proj.bias", L.bq, c.n_head);
    add_bias(p + "self_attn.k_proj.bias", L.bk, c.n_head_kv);
    add_bias(p + "self_attn.v_proj.bias", L.bv, 0);
  }
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"writer", "ingot"}};
  if (bnb) {
    ASSIGN_OR_RETURN(cfg["quantization_config"], bnb_layout.Config());
  } else if (mlx) {
    ASSIGN_OR_RETURN(cfg["quantization"], mlx_layout.Config());
    cfg["quantization_config"] = cfg["quantization"];
    metadata["format"] = "mlx";
  } else if (gptq) {
    ASSIGN_OR_RETURN(cfg["quantization_config"], gptq_layout.Config());
    // auto-gptq reads quantize_config.json; transformers the config.json entry.
    files["quantize_config.json"] = cfg["quantization_config"].dump(2);
  } else if (hqq) {
    ASSIGN_OR_RETURN(cfg["quantization_config"], hqq_layout.Config());
  }

  files["config.json"] = cfg.dump(2);
  if (ingot && !w.modules().empty()) {
    files["quantization_config.json"] = Json{{"quant_method", "ingot"}, {"version", 1}, {"modules", w.modules()}}.dump(1);
  }

  // Everything goes into a fresh directory beside `dir`, renamed into place at the end:
  // no half-written directory, and nothing of an older one (shards, other tools'
  // configs) left to be read with the new files.
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string parent = fs::path(dir).parent_path().string();
  const std::string tmp = dir + ".ingot-partial", old = dir + ".ingot-replaced";
  fs::remove_all(tmp, ec);
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    return absl::InternalError(absl::StrCat("creating ", tmp, ": ", ec ? ec.message() : "exists"));
  }
  auto write_all = [&]() -> absl::Status {
    RETURN_IF_ERROR(formats::WriteSafetensors(tmp + "/model.safetensors", w.tensors(), metadata));
    for (const auto& [name, text] : files) RETURN_IF_ERROR(WriteText(tmp + "/" + name, text));
    return absl::OkStatus();
  };
  if (absl::Status s = write_all(); !s.ok()) {
    fs::remove_all(tmp, ec);
    return s;
  }
  fs::remove_all(old, ec);
  const bool replacing = fs::exists(dir, ec);
  if (replacing) fs::rename(dir, old, ec);
  if (!ec) fs::rename(tmp, dir, ec);
  if (ec) {
    const std::string why = ec.message();
    if (replacing && !fs::exists(dir)) fs::rename(old, dir, ec);
    fs::remove_all(tmp, ec);
    return absl::InternalError(absl::StrCat("moving the saved checkpoint into ", dir, ": ", why));
  }
  fs::remove_all(old, ec);
  std::vector<std::string> written = {dir + "/model.safetensors"};
  for (const auto& [name, text] : files) written.push_back(dir + "/" + name);
  return written;
}

}  // namespace ingot
