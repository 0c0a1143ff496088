// A Llama-family model's weights, device-neutral: the config, every tensor in its
// host representation (views into a file mapping or into storage kept by `owners`),
// and the summary ModelInfo reports. Plain data with the edits quantization needs.
//
// Who makes and reads them (each in its own file):
//   load_gguf.cc        LoadGgufWeights        GGUF (views into the mapping)
//   load_checkpoint.cc  LoadCheckpointWeights  HF-style checkpoints (a layout row reads
//                                              each linear layer)
//   export_gguf.cc      ExportGguf             GGUF for llama.cpp
//   save_checkpoint.cc  SaveCheckpoint         HF-style directory in a layout
//   residency.cc        MappedWeightBytes, CopyMappedWeights, PrefaultMappedWeights
//   llama.cc            LlamaModel: the forward pass over a backend, on these weights
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/module.h"
#include "kernels/linear.h"

namespace ingot {

namespace gguf { class File; }
class Checkpoint;

enum class RopeStyle {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]); GGUF llama (Q/K rows permuted at conversion)
  kNeox,    // rotate (x[i], x[i + rope_dim/2]); Qwen2, HF layout
};

// SmolLM3 in GGUF: llama.cpp fixes its NoPE step at 4 (no metadata key carries it).
inline constexpr int32_t kSmolLm3NopeStep = 4;

// The NoPE pattern "every `step`-th layer" (layers step-1, 2*step-1, ... skip RoPE), as
// SmolLM3's no_rope_layer_interval and llama.cpp's smollm3 define it.
inline std::vector<uint8_t> NopeLayersEvery(int32_t n_layer, int64_t step) {
  std::vector<uint8_t> nope(static_cast<size_t>(n_layer), 0);
  for (int32_t l = 0; l < n_layer; ++l) nope[static_cast<size_t>(l)] = (l + 1) % step == 0 ? 1 : 0;
  return nope;
}

struct LlamaConfig {
  std::string architecture;  // "llama", "qwen2", ...
  int32_t n_layer = 0;
  int32_t n_embd = 0;        // hidden size
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t head_dim = 0;
  int32_t n_ff = 0;          // MLP intermediate size
  int32_t vocab_size = 0;
  int32_t context_length = 0;  // trained context
  int32_t rope_dim = 0;        // rotated features per head
  float rope_base = 10000.0f;
  float rope_linear_factor = 1.0f;  // positions are divided by this (linear scaling)
  float rms_eps = 1e-5f;
  RopeStyle rope_style = RopeStyle::kNormal;
  bool attn_bias = false;    // Qwen2: q/k/v biases
  bool tied_output = false;  // output head shares token_embd
  // SmolLM3's NoPE layers: nope_layers[l] != 0 skips RoPE in layer l (queries and keys
  // attend by content only). Empty: every layer rotates.
  std::vector<uint8_t> nope_layers;
  bool UsesRope(int32_t layer) const {
    return nope_layers.empty() || nope_layers[static_cast<size_t>(layer)] == 0;
  }
  int32_t kv_dim() const { return n_head_kv * head_dim; }
  int32_t q_dim() const { return n_head * head_dim; }
};

constexpr int kLinearSlots = 7;  // LinearSlot's values (engine/model/module.h)
// Each slot's module name inside a layer, as transformers ("self_attn.q_proj") and as
// llama.cpp ("attn_q") name it.
inline constexpr const char* kHfLinearNames[kLinearSlots] = {"self_attn.q_proj", "self_attn.k_proj",
                                                             "self_attn.v_proj", "self_attn.o_proj",
                                                             "mlp.gate_proj",    "mlp.up_proj",
                                                             "mlp.down_proj"};
inline constexpr const char* kGgufLinearNames[kLinearSlots] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                               "ffn_gate", "ffn_up", "ffn_down"};

struct LlamaLayer {
  std::vector<float> attn_norm;  // (n_embd)
  // q (q_dim, n_embd), k/v (kv_dim, n_embd), o (n_embd, q_dim), gate/up (n_ff, n_embd),
  // down (n_embd, n_ff); indexed by LinearSlot.
  kernels::Linear w[kLinearSlots];
  std::string repr[kLinearSlots];  // representation names ("Q4_1", "nf4/b64+dq", ...)
  int64_t bytes[kLinearSlots] = {};
  std::vector<float> bq, bk, bv;  // empty unless attn_bias
  std::vector<float> ffn_norm;    // (n_embd)
};

// A copy shares the file mapping and every owned buffer (all held by shared_ptr) and
// copies the norms: quantization copies a model's weights and replaces modules in the
// copy (SetLinear, MutableNorm) without touching the original.
struct LlamaWeights {
  LlamaConfig config;
  kernels::WeightMatrix token_embd;  // (vocab, n_embd), looked up one row per token
  kernels::Linear output;            // (vocab, n_embd); token_embd when tied
  std::string output_repr;
  int64_t output_bytes = 0;
  std::vector<float> output_norm;  // (n_embd)
  std::vector<float> rope_freqs;   // (rope_dim / 2) per-dimension factors, when the file has them
  std::vector<float> inv_freq;     // (rope_dim / 2) rotary frequencies incl. those factors
  std::vector<LlamaLayer> layers;  // (n_layer)

  // What the views point into: the GGUF file (LoadGgufWeights) or the checkpoint
  // (LoadCheckpointWeights), and storage made since (dequantized, quantized, copied).
  std::shared_ptr<gguf::File> gguf;
  std::shared_ptr<const Checkpoint> checkpoint;
  std::vector<std::shared_ptr<const void>> owners;

  // Filled by RefreshSummary: per kind (sorted by kind), and the totals.
  std::vector<TensorKindInfo> summary;
  int64_t parameter_count = 0;
  int64_t weight_bytes = 0;

  // The linear modules: per layer q, k, v, o, gate, up, down; then the output head.
  std::vector<LinearModuleRef> LinearModules() const;
  const kernels::Linear& linear(const LinearModuleRef& m) const;
  // Replaces one linear module; `owner` keeps its storage alive; `bytes` is its size.
  // Replacing the output head of a tied model unties it.
  void SetLinear(const LinearModuleRef& m, const kernels::Linear& w, std::string representation,
                 int64_t bytes, std::shared_ptr<const void> owner);
  // attn_norm (ffn = false) or ffn_norm of a layer, for folding AWQ scales.
  std::vector<float>* MutableNorm(int32_t layer, bool ffn);
  // Recomputes summary, parameter_count and weight_bytes.
  void RefreshSummary();
};

}  // namespace ingot
