// The plain descriptions of a model's parts that the model (engine/model/weights.h),
// quantization (engine/quant: validation, planning, recommendation) and the API
// (engine/runtime/api.h: ModelInfo) share: a linear module as quantization and users
// name it, and one kind of tensor with its representation and bytes. No dependencies,
// so the API and the quantization config can include it without the model.
#pragma once

#include <cstdint>
#include <string>

namespace ingot {

// The linear layers of a block, in the order LlamaWeights::LinearModules() lists them.
enum class LinearSlot : int8_t { kQ, kK, kV, kO, kGate, kUp, kDown };

// A linear module as quantization and users name it.
struct LinearModuleRef {
  std::string name;       // HF style: "model.layers.3.self_attn.q_proj", "lm_head"
  std::string gguf_name;  // "blk.3.attn_q", "output"
  std::string kind;       // "attention", "mlp", "output"
  int64_t rows = 0, cols = 0;
  int32_t layer = -1;     // -1 for the output head
  LinearSlot slot = LinearSlot::kQ;
};

// The tensors of one kind ("attention", "mlp", "embedding", "output", "norm"): how many,
// their parameters and bytes, and their representation (type names such as "q4_1",
// "nf4/b64+dq", '+'-joined when mixed).
struct TensorKindInfo {
  std::string kind;
  std::string representation;
  int64_t tensors = 0;
  int64_t parameters = 0;
  int64_t bytes = 0;
};

}  // namespace ingot
