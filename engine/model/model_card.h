// The model card (README.md) SaveModel writes into every directory it makes, in the
// Hugging Face hub's form: YAML front matter (base_model, library_name, tags), then what
// the checkpoint is and how to load it with ingot and with the tool whose layout it is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ingot {

struct ModelCardInfo {
  std::string title;          // "SmolLM2-135M-Instruct (int4)"
  std::string base_model;     // where the weights came from (a path or a repository id)
  std::string architecture;   // "llama"
  std::string layout;         // ingot, bitsandbytes, mlx, gptq, hqq
  std::string quantization;   // "hqq bits=4 group_size=64"; empty: as loaded (dense)
  int32_t bits = 0;           // 0: unknown / dense
  int64_t group_size = 0;
  int64_t parameters = 0;
  int64_t weight_bytes = 0;   // in memory, all tensors
  int32_t context_length = 0;
  // Quality against the unquantized model, when measured (EvaluateModel's terms).
  bool has_quality = false;
  double perplexity = 0, base_perplexity = 0, mean_kl = 0, top1_agreement = 0;
  int64_t tokens_scored = 0;
  // A unified repository's root: its variants (subdirectory names) with one line each.
  std::vector<std::pair<std::string, std::string>> variants;
};

// README.md text for `info`.
std::string ModelCard(const ModelCardInfo& info);

}  // namespace ingot
