// The Llama family forward pass (Llama 2/3, SmolLM, Mistral; Qwen2 with attention
// biases): RMSNorm, RoPE, grouped-query attention over a per-sequence KV cache, SwiGLU
// MLP, tied or separate output head. Written once against a backend row
// (kernels/backend.h): the model is placed on a device through a backend (Place); the
// native row reads the weights in their representations in place, others upload them.
//
// One Forward call runs a batch of tokens that may belong to different sequences
// (a prompt's tokens, or one decode token per running sequence): the linear layers see
// all of them at once, attention runs per token against its own sequence's cache.
//
// The model is the math only: its weights (weights.h) are loaded and saved by free
// functions beside it (load.h, save.h, residency.h), never by the model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/kv_cache.h"
#include "engine/model/weights.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot {

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

class LlamaModel {
 public:
  // The model over `weights` (from LoadGgufWeights / LoadCheckpointWeights in load.h,
  // or a quantized copy), on native cpu until placed.
  explicit LlamaModel(LlamaWeights weights);
  ~LlamaModel();

  const LlamaWeights& weights() const { return weights_; }
  // For edits after construction (the residency copy, tests): the uploaded copies go
  // stale, so the model is back on native cpu until placed again.
  LlamaWeights& mutable_weights();
  const LlamaConfig& config() const { return weights_.config; }

  // Places the model on `device` through `backend`: uploads every linear layer, norm
  // and bias the row needs (nothing for native on cpu). FAILED_PRECONDITION names an
  // unavailable device or a weight the row cannot hold. Replacing a weight afterwards
  // (mutable_weights) puts the model back on native cpu until placed again.
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
  void Embed(int32_t token, float* out) const;

  LlamaWeights weights_;
  Placement placement_;
};

}  // namespace ingot
