// ExportGguf (save.h): llama.cpp's tensor names and metadata keys, the tokenizer as
// tokenizer.ggml.*, weights in their GGML types as they are in memory. Models read
// from Hugging Face layouts rotate q/k halves (NEOX); llama.cpp's llama architecture
// expects the interleaved order, so those rows are permuted as convert_hf_to_gguf does.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/gguf.h"
#include "engine/model/save.h"
#include "engine/model/qk_rows.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot {
namespace {

// Rows of a (n_head * head_dim, cols) matrix reordered from halves to pairs.
std::string PermuteRows(const uint8_t* data, size_t row_bytes, int64_t n_head, int64_t head_dim) {
  return GatherRows(data, row_bytes, QkRowOrder(n_head, head_dim, /*to_pairs=*/true));
}

std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

}  // namespace

absl::Status ExportGguf(const LlamaWeights& weights, const VocabSpec& vocab, const std::string& path) {
  const LlamaConfig& c = weights.config;
  const bool permute = c.rope_style == RopeStyle::kNeox && c.architecture != "qwen2";
  if (c.rope_style == RopeStyle::kNormal && c.architecture == "qwen2") {
    return absl::FailedPreconditionError("qwen2 with interleaved rope cannot be written as GGUF");
  }
  if (!c.nope_layers.empty()) {
    // GGUF carries no NoPE pattern: llama.cpp's smollm3 assumes every 4th layer.
    if (c.architecture != "smollm3" || c.nope_layers != NopeLayersEvery(c.n_layer, kSmolLm3NopeStep)) {
      return absl::FailedPreconditionError(
          "this model's NoPE layers are not every 4th layer, the only pattern GGUF (llama.cpp's smollm3) can express");
    }
  }
  gguf::Writer w;
  const std::string a = c.architecture;
  w.AddString("general.architecture", a);
  w.AddString("general.name", "ingot export");
  w.AddUint32("general.quantization_version", 2);
  w.AddUint32(a + ".block_count", c.n_layer);
  w.AddUint32(a + ".context_length", c.context_length);
  w.AddUint32(a + ".embedding_length", c.n_embd);
  w.AddUint32(a + ".feed_forward_length", c.n_ff);
  w.AddUint32(a + ".attention.head_count", c.n_head);
  w.AddUint32(a + ".attention.head_count_kv", c.n_head_kv);
  w.AddUint32(a + ".attention.key_length", c.head_dim);
  w.AddUint32(a + ".attention.value_length", c.head_dim);
  w.AddUint32(a + ".rope.dimension_count", c.rope_dim);
  w.AddFloat32(a + ".rope.freq_base", c.rope_base);
  w.AddFloat32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.AddUint32(a + ".vocab_size", c.vocab_size);
  if (c.rope_linear_factor != 1.0f) {
    w.AddString(a + ".rope.scaling.type", "linear");
    w.AddFloat32(a + ".rope.scaling.factor", c.rope_linear_factor);
  }
  // Tokenizer.
  w.AddString("tokenizer.ggml.model", vocab.model);
  if (!vocab.pre.empty()) {
    // llama.cpp's spelling of the pre-tokenizers ingot names after the HF file.
    std::string pre = vocab.pre;
    if (pre == "gpt2") pre = "gpt-2";
    if (pre == "llama3") pre = "llama-bpe";
    w.AddString("tokenizer.ggml.pre", pre);
  }
  std::vector<std::string> tokens = vocab.tokens;
  std::vector<int32_t> types = vocab.token_types;
  if (types.empty()) types.assign(tokens.size(), static_cast<int32_t>(TokenType::kNormal));
  // llama.cpp wants one entry per embedding row.
  for (int32_t i = static_cast<int32_t>(tokens.size()); i < c.vocab_size; ++i) {
    tokens.push_back(absl::StrCat("[PAD", i, "]"));
    types.push_back(static_cast<int32_t>(TokenType::kUnused));
  }
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  {
    gguf::Value v;
    v.type = gguf::ValueType::kArray;
    v.elem_type = gguf::ValueType::kInt32;
    v.ints.assign(types.begin(), types.end());
    w.Add("tokenizer.ggml.token_type", v);
  }
  if (!vocab.scores.empty()) {
    gguf::Value v;
    v.type = gguf::ValueType::kArray;
    v.elem_type = gguf::ValueType::kFloat32;
    for (size_t i = 0; i < tokens.size(); ++i) v.floats.push_back(i < vocab.scores.size() ? vocab.scores[i] : 0.0f);
    w.Add("tokenizer.ggml.scores", v);
  }
  if (!vocab.merges.empty()) w.AddStringArray("tokenizer.ggml.merges", vocab.merges);
  auto add_id = [&](const char* key, int32_t id) {
    if (id >= 0) w.AddUint32(absl::StrCat("tokenizer.ggml.", key, "_token_id"), static_cast<uint32_t>(id));
  };
  add_id("bos", vocab.bos_id);
  add_id("eos", vocab.eos_id);
  add_id("eot", vocab.eot_id);
  add_id("unknown", vocab.unk_id);
  add_id("padding", vocab.pad_id);
  w.AddBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.AddBool("tokenizer.ggml.add_eos_token", vocab.add_eos);
  if (vocab.model == "llama") w.AddBool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix);
  if (!vocab.chat_template.empty()) w.AddString("tokenizer.chat_template", vocab.chat_template);

  // Tensors.
  auto add_matrix = [&](const std::string& name, const kernels::WeightMatrix& m, int64_t permute_heads) {
    const size_t bytes = m.row_bytes * static_cast<size_t>(m.rows);
    std::string data = permute_heads > 0 ? PermuteRows(m.data, m.row_bytes, permute_heads, c.head_dim)
                                         : std::string(reinterpret_cast<const char*>(m.data), bytes);
    w.AddTensor(name, m.type, {m.cols, m.rows}, std::move(data));
  };
  auto add_linear = [&](const std::string& name, const kernels::Linear& lin, const std::string& repr,
                        int64_t permute_heads) -> absl::Status {
    if (lin.kind != kernels::LinearKind::kGgml) {
      return absl::FailedPreconditionError(absl::StrCat(
          "'", name, "' is stored as ", repr, ", which has no GGUF type; quantize the model to a GGUF type "
          "first (ingot quantize -m gguf --quant-type q4_0|q8_0|...) or load it unquantized"));
    }
    add_matrix(name, lin.ggml, permute_heads);
    return absl::OkStatus();
  };
  auto add_vector = [&](const std::string& name, const std::vector<float>& v, int64_t permute_heads) {
    std::string data = permute_heads > 0
                           ? PermuteRows(reinterpret_cast<const uint8_t*>(v.data()), sizeof(float), permute_heads, c.head_dim)
                           : Floats(v);
    w.AddTensor(name, GgmlType::kF32, {static_cast<int64_t>(v.size())}, std::move(data));
  };
  add_matrix("token_embd.weight", weights.token_embd, 0);
  add_vector("output_norm.weight", weights.output_norm, 0);
  if (!c.tied_output) RETURN_IF_ERROR(add_linear("output.weight", weights.output, weights.output_repr, 0));
  if (!weights.rope_freqs.empty()) add_vector("rope_freqs.weight", weights.rope_freqs, 0);
  for (int32_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = weights.layers[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    add_vector(p + "attn_norm.weight", L.attn_norm, 0);
    add_vector(p + "ffn_norm.weight", L.ffn_norm, 0);
    for (int s = 0; s < kLinearSlots; ++s) {
      int64_t heads = 0;
      if (permute && s == static_cast<int>(LinearSlot::kQ)) heads = c.n_head;
      if (permute && s == static_cast<int>(LinearSlot::kK)) heads = c.n_head_kv;
      RETURN_IF_ERROR(add_linear(absl::StrCat(p, kGgufLinearNames[s], ".weight"), L.w[s], L.repr[s], heads));
    }
    if (!L.bq.empty()) add_vector(p + "attn_q.bias", L.bq, permute ? c.n_head : 0);
    if (!L.bk.empty()) add_vector(p + "attn_k.bias", L.bk, permute ? c.n_head_kv : 0);
    if (!L.bv.empty()) add_vector(p + "attn_v.bias", L.bv, 0);
  }
  return w.WriteTo(path);
}

}  // namespace ingot
