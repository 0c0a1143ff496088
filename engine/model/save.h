// Writing a Llama-family model's weights (weights.h) to files other tools read; the
// model (llama.h) never writes itself.
//
//   GGUF         export_gguf.cc      llama.cpp's names and keys, weights in their GGML types
//   checkpoint   save_checkpoint.cc  an HF-style directory in a layout row's form
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/weights.h"

namespace ingot {

struct VocabSpec;

// Writes the weights as a GGUF file llama.cpp reads (llama/mistral/qwen2/smollm3 keys,
// the tokenizer as tokenizer.ggml.*). FAILED_PRECONDITION names a linear layer whose
// representation has no GGUF type.
absl::Status ExportGguf(const LlamaWeights& weights, const VocabSpec& vocab, const std::string& path);

// Writes a Hugging Face style checkpoint directory `dir` (created if needed;
// save_checkpoint.cc describes the layouts): "ingot", every layer in its in-memory
// representation, which loads back (LoadCheckpointWeights) to identical logits; or
// "bitsandbytes" / "mlx" / "gptq" / "hqq", those tools' own layouts. Returns the files
// written. FAILED_PRECONDITION names a module (or the architecture, or the vocabulary)
// with no form in the layout.
absl::StatusOr<std::vector<std::string>> SaveCheckpoint(const LlamaWeights& weights, const VocabSpec& vocab,
                                                        const std::string& dir, const std::string& layout);

}  // namespace ingot
