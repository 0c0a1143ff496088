// The Llama family forward pass (Llama 2/3, SmolLM, Mistral; Qwen2 with attention
// biases): RMSNorm, RoPE, grouped-query attention over a per-sequence KV cache, SwiGLU
// MLP, tied or separate output head. Written once against a backend row
// (kernels/backend.h): the model is placed on a device through a backend (Place); the
// native row reads the weights in their representations in place, others upload them.
//
// One Forward call runs a batch of tokens that may belong to different sequences
// (a prompt's tokens, or one decode token per running sequence): the linear layers see
// all of them at once, attention runs per token against its own sequence's cache.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/kv_cache.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot {

namespace gguf { class File; }
class Checkpoint;
struct VocabSpec;

// One linear layer as a checkpoint loader produced it (see LlamaModel::FromCheckpoint).
struct LinearLoad {
  kernels::Linear w;
  std::string representation;  // "bf16", "nf4/b64+dq", "affine4/g128", ...
  int64_t bytes = 0;
  std::shared_ptr<const void> owner;  // storage the view points into (null: the checkpoint's)
};
// Builds the linear module `name` (HF naming: "model.layers.3.self_attn.q_proj",
// "lm_head") of shape rows x cols from a checkpoint's tensors.
using LinearLoader =
    std::function<absl::StatusOr<LinearLoad>(const std::string& name, int64_t rows, int64_t cols)>;

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

// The linear layers of a block, in the order LinearModules() lists them.
enum class LinearSlot : int8_t { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr int kLinearSlots = 7;
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

// A linear module as quantization and users name it.
struct LinearModuleRef {
  std::string name;       // HF style: "model.layers.3.self_attn.q_proj", "lm_head"
  std::string gguf_name;  // "blk.3.attn_q", "output"
  std::string kind;       // "attention", "mlp", "output"
  int32_t layer = -1;     // -1 for the output head
  LinearSlot slot = LinearSlot::kQ;
  int64_t rows = 0, cols = 0;
};

// Where a linear layer's input is observed during Forward (calibration for GPTQ/AWQ).
enum class LinearInput : int8_t {
  kAttnIn,   // normed hidden state: q, k, v
  kAttnOut,  // attention output: o
  kMlpIn,    // normed hidden state: gate, up
  kMlpDown,  // SiLU(gate) * up: down
};
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // x holds n_tok rows of `cols` floats.
  virtual void OnLinearInput(int32_t layer, LinearInput site, const float* x, int64_t n_tok,
                             int64_t cols) = 0;
  // The forward pass may stop after this layer (no logits then): an observer that only
  // wants the first layers' inputs saves the rest. -1: run to the end.
  virtual int32_t StopAfterLayer() const { return -1; }
};

struct BatchToken {
  int32_t token = 0;
  int32_t pos = 0;           // position in its sequence
  KvCache* cache = nullptr;  // the sequence's cache (capacity > pos; positions < pos filled)
  bool want_logits = false;
};

// Scratch reused across steps (one per scheduler thread): the backend's step buffers
// and the host-side inputs of a step.
struct ForwardWorkspace {
  kernels::BackendWorkspace backend;
  std::vector<float> x;                   // (n_tokens, n_embd) embeddings
  std::vector<float> rope_cos, rope_sin;  // (n_tokens, rope_dim / 2)
  std::vector<kernels::StepToken> tokens;
};

// Where a model's weights live: its backend row, device, and per tensor the device
// form (representation, bytes, why it differs from the host form).
struct Placement {
  const kernels::Backend* backend = nullptr;  // null: native on cpu, nothing uploaded
  kernels::Device device;
  struct Layer {
    kernels::Placed w[7];  // by LinearSlot
    kernels::Placed attn_norm, ffn_norm, bq, bk, bv;
  };
  std::vector<Layer> layers;
  kernels::Placed output, output_norm;
  int64_t bytes = 0;  // everything uploaded to the device
};

struct TensorSummary {
  std::string kind;            // "attention", "mlp", "embedding", "output", "norm"
  std::string representation;  // GGML type names, '+'-joined when mixed
  int64_t tensors = 0, parameters = 0, bytes = 0;
};

class LlamaModel {
 public:
  // Builds the model over the file's mapping (weights are not copied); takes ownership
  // of the file. INVALID_ARGUMENT names a missing tensor or a shape mismatch
  // (expected vs found); UNIMPLEMENTED names an unsupported architecture or type.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromGguf(
      std::unique_ptr<gguf::File> file,
      const std::function<void(double fraction, const std::string& detail)>& progress);
  // Builds the model from a Hugging Face style checkpoint: config.json gives the
  // architecture (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), norms and
  // embeddings are read here, each linear layer comes from `loader` (dense or in the
  // checkpoint's quantized layout). INVALID_ARGUMENT names a missing config key or
  // tensor; UNIMPLEMENTED an unsupported architecture.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromCheckpoint(
      std::shared_ptr<const Checkpoint> checkpoint, const LinearLoader& loader,
      const std::function<void(double fraction, const std::string& detail)>& progress);
  ~LlamaModel();

  const LlamaConfig& config() const { return config_; }
  int64_t parameter_count() const { return parameter_count_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  const std::vector<TensorSummary>& tensor_summary() const { return summary_; }
  // The GGUF file the model was built from; null for other checkpoints.
  const gguf::File* gguf_file() const { return file_.get(); }

  // The linear modules: per layer q, k, v, o, gate, up, down; then the output head.
  std::vector<LinearModuleRef> LinearModules() const;
  const kernels::Linear& linear(const LinearModuleRef& m) const;

  // A copy sharing the file mapping and every owned weight buffer; the copy's linear
  // layers and norms can then be replaced (quantization) without touching this model.
  std::unique_ptr<LlamaModel> Clone() const;
  // Replaces one linear module; `owner` keeps its storage alive; `bytes` is its size.
  // Replacing the output head of a tied model unties it.
  void SetLinear(const LinearModuleRef& m, const kernels::Linear& w, std::string representation,
                 int64_t bytes, std::shared_ptr<const void> owner);
  // attn_norm (ffn = false) or ffn_norm of a layer, for folding AWQ scales.
  std::vector<float>* MutableNorm(int32_t layer, bool ffn);
  // Recomputes tensor_summary(), parameter_count() and weight_bytes().
  void RefreshSummary();

  // Writes the model as a GGUF file llama.cpp reads (llama/mistral/qwen2 keys, the
  // tokenizer as tokenizer.ggml.*). FAILED_PRECONDITION names a linear layer whose
  // representation has no GGUF type.
  absl::Status ExportGguf(const VocabSpec& vocab, const std::string& path) const;

  // Writes a Hugging Face style checkpoint directory `dir` (created if needed;
  // llama_save.cc describes the layouts): "ingot", every layer in its in-memory
  // representation, which loads back (FromCheckpoint) to identical logits; or
  // "bitsandbytes" / "mlx" / "gptq" / "hqq", those tools' own layouts. Returns the files
  // written.
  // FAILED_PRECONDITION names a module (or the architecture, or the vocabulary) with
  // no form in the layout.
  absl::StatusOr<std::vector<std::string>> SaveCheckpoint(const VocabSpec& vocab, const std::string& dir,
                                                          const std::string& layout) const;

  // Places the model on `device` through `backend`: uploads every linear layer, norm
  // and bias the row needs (nothing for native on cpu). FAILED_PRECONDITION names an
  // unavailable device or a weight the row cannot hold. Replacing a weight afterwards
  // (SetLinear, MutableNorm) puts the model back on native cpu until placed again.
  absl::Status Place(const kernels::Backend& backend, const kernels::Device& device);
  const kernels::Backend& backend() const;
  const kernels::Device& device() const { return placement_.device; }
  const Placement& placement() const { return placement_; }
  // The KV shape of this model in `dtype` (blocks of block_tokens positions).
  kernels::KvSpec KvShape(kernels::KvDtype dtype, int32_t block_tokens = 16) const;
  // A pool of n_blocks KV blocks on the model's backend and device (0: growable).
  absl::StatusOr<std::shared_ptr<KvPool>> NewKvPool(kernels::KvDtype dtype, int32_t n_blocks,
                                                    int32_t block_tokens = 16) const;
  // A KV cache for one sequence over a private growable pool on the model's backend
  // and device (f32: exactly the values the forward computed).
  std::unique_ptr<KvCache> NewKvCache() const;

  // Runs the batch; sets `logits` to vocab_size logits for every token with
  // want_logits, in batch order. Caches must have capacity for each pos and belong to
  // this model's backend. `observer`, when set, sees every linear layer's input (on the
  // host). Errors come from the backend (a device out of memory, an ATen failure).
  absl::Status Forward(const std::vector<BatchToken>& batch, kernels::ThreadPool& pool,
                       ForwardWorkspace& ws, std::vector<float>* logits,
                       ForwardObserver* observer = nullptr) const;

 private:
  LlamaModel() = default;
  void Embed(int32_t token, float* out) const;

  std::shared_ptr<gguf::File> file_;
  std::shared_ptr<const Checkpoint> checkpoint_;
  std::vector<std::shared_ptr<const void>> owners_;  // storage of replaced weights
  LlamaConfig config_;
  kernels::WeightMatrix token_embd_;  // (vocab, n_embd)
  kernels::Linear output_;            // (vocab, n_embd); token_embd_ when tied
  std::string output_repr_;
  int64_t output_bytes_ = 0;
  std::vector<float> output_norm_;
  std::vector<float> rope_freqs_;     // (rope_dim / 2) when the file has them
  std::vector<float> inv_freq_;       // (rope_dim / 2) incl. per-dimension freq factors
  std::vector<LlamaLayer> layers_;
  int64_t parameter_count_ = 0;
  int64_t weight_bytes_ = 0;
  std::vector<TensorSummary> summary_;
  Placement placement_;
};

}  // namespace ingot
