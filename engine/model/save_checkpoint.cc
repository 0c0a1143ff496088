// SaveCheckpoint (save.h): a Hugging Face style directory in one layout (a row of
// engine/formats/layouts/layout.h; each layout's encoder is in its codec file there).
// ingot's own layout loads back into the same in-memory model, byte for byte, whatever
// each layer's representation is (layouts/ingot.cc):
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
//   gptq          AutoGPTQ's v1 layout (layouts/gptq.cc): affine zero groups with
//                 integer zeros (GPTQ, RTN-style methods; 2/3/4/8 bits) as qweight /
//                 qzeros (zero - 1) / scales / g_idx + quantize_config.json; every
//                 decoder linear quantized, lm_head dense
//   hqq           transformers' HqqConfig layout (layouts/hqq.cc): affine zero
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
#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/layout.h"
#include "engine/model/save.h"
#include "engine/model/qk_rows.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;
using formats::DType;
using formats::TensorView;
using formats::IsFloatType;
using formats::Layout;
using formats::LayoutEncoder;
using formats::LayoutWriter;
using formats::LinearToSave;
using formats::NoForm;

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

}  // namespace

absl::StatusOr<std::vector<std::string>> SaveCheckpoint(const LlamaWeights& weights, const VocabSpec& vocab,
                                                        const std::string& dir, const std::string& layout) {
  const LlamaConfig& c = weights.config;
  const Layout* row = formats::FindSaveLayout(layout);
  if (row == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("layout '", layout, "' is not ", formats::SaveLayoutNames()));
  }
  const bool ingot = row->exact;
  const char* arch = HfArchitecture(c.architecture);
  if (arch == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("architecture '", c.architecture, "' has no Hugging Face config form in ingot"));
  }
  if (c.rope_dim != c.head_dim) {
    return absl::FailedPreconditionError(absl::StrCat("partial rotary (", c.rope_dim, " of ", c.head_dim,
                                                      " features) has no config form"));
  }
  if (!ingot && !weights.rope_freqs.empty()) {
    return absl::FailedPreconditionError("per-dimension rope frequencies have no transformers config form here");
  }
  // The tokenizer first: it is what can fail, before anything is written.
  std::map<std::string, std::string> files;
  if (weights.checkpoint != nullptr && !weights.checkpoint->ReadSibling("tokenizer.json").empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                          "special_tokens_map.json", "chat_template.jinja"}) {
      std::string text = weights.checkpoint->ReadSibling(f);
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
  std::unique_ptr<LayoutEncoder> encoder = row->new_encoder();
  // `block`: a decoder layer's linear; `has_bias`: its bias is written with the layer.
  auto add_linear = [&](const std::string& name, const kernels::Linear& lin, const std::string& repr,
                        int64_t permute_heads, bool block, bool has_bias) -> absl::Status {
    if (ingot) return encoder->Add(w, LinearToSave{.name = name, .lin = lin, .repr = repr});
    if (lin.input_order != nullptr) {
      return NoForm(name, repr, layout, "its columns are regrouped (GPTQ act-order); save it as ingot");
    }
    const kernels::Linear l = permute_heads > 0 ? PermuteRows(lin, QkRowOrder(permute_heads, c.head_dim, /*to_pairs=*/false), w) : lin;
    return encoder->Add(w, LinearToSave{.name = name, .lin = l, .repr = repr, .block = block, .has_bias = has_bias});
  };
  {
    const kernels::WeightMatrix& te = weights.token_embd;
    kernels::Linear embd;
    embd.kind = kernels::LinearKind::kGgml;
    embd.ggml = te;
    if (ingot) {
      const std::string embd_name = "model.embed_tokens", embd_repr = GetGgmlTypeTraits(te.type).name;
      RETURN_IF_ERROR(encoder->Add(w, LinearToSave{.name = embd_name, .lin = embd, .repr = embd_repr}));
    } else if (IsFloatType(te.type)) {
      w.AddDense("model.embed_tokens", te);
    } else {
      // GGML blocks have no form in these layouts: the values, exactly, in f32.
      float* e = w.KeepArray<float>(static_cast<size_t>(te.rows * te.cols));
      const GgmlTypeTraits& t = GetGgmlTypeTraits(te.type);
      for (int64_t r = 0; r < te.rows; ++r) t.dequantize(te.Row(r), e + r * te.cols, te.cols);
      w.Add("model.embed_tokens.weight", DType::kF32, {te.rows, te.cols}, e);
    }
  }
  w.AddVector("model.norm.weight", weights.output_norm);
  if (!c.tied_output) RETURN_IF_ERROR(add_linear("lm_head", weights.output, weights.output_repr, 0, false, false));
  if (ingot) {
    w.AddVector("ingot.rope.inv_freq", weights.inv_freq);
    w.AddVector("ingot.rope.freqs", weights.rope_freqs);
  }
  for (int32_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = weights.layers[l];
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
  RETURN_IF_ERROR(encoder->Finish(&cfg, &files, &metadata));
  files["config.json"] = cfg.dump(2);

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
