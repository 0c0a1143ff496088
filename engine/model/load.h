// Loading a Llama-family model's weights (weights.h) from the files that hold them; the
// model (llama.h) is then built over the weights and placed on a device.
//
//   GGUF         load_gguf.cc        llama.cpp's names and metadata keys; every tensor a
//                                    view into the mapping (nothing copied)
//   checkpoint   load_checkpoint.cc  config.json + tensors named as transformers names
//                                    them; each linear layer from a layout row's reader
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/formats/layouts/linear_load.h"
#include "engine/model/weights.h"

namespace ingot {

// `progress(fraction, detail)` after each layer ("layer 3/30"); may be empty.
using WeightsProgress = std::function<void(double fraction, const std::string& detail)>;

// The weights over the file's mapping (not copied); takes ownership of the file.
// INVALID_ARGUMENT names a missing tensor or a shape mismatch (expected vs found);
// UNIMPLEMENTED names an unsupported architecture or type.
absl::StatusOr<LlamaWeights> LoadGgufWeights(std::unique_ptr<gguf::File> file, const WeightsProgress& progress);

// The weights of a Hugging Face style checkpoint: config.json gives the architecture
// (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, SmolLM3ForCausalLM), norms
// and embeddings are read here, each linear layer comes from `loader` (dense or in the
// checkpoint's quantized layout). INVALID_ARGUMENT names a missing config key or
// tensor; UNIMPLEMENTED an unsupported architecture.
absl::StatusOr<LlamaWeights> LoadCheckpointWeights(std::shared_ptr<const Checkpoint> checkpoint,
                                                   const LinearLoader& loader, const WeightsProgress& progress);

}  // namespace ingot
