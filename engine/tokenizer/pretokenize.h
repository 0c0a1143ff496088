// Pre-tokenizers for byte-level BPE: the text is cut into pieces by a sequence of
// regular expressions (each applied to every piece the previous one produced), and
// BPE then runs on each piece alone. One table row per GGUF `tokenizer.ggml.pre`.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace re2 { class RE2; }

namespace ingot {

class PreTokenizer {
 public:
  // INVALID_ARGUMENT naming `name` when no row has it. An empty name (the GGUF has
  // no tokenizer.ggml.pre) and "default" get the GPT-2 regex, as llama.cpp does for
  // files converted before the key existed.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(std::string_view name);
  ~PreTokenizer();

  // Appends the pieces of `text` (views into it, in order, covering every byte).
  void Split(std::string_view text, std::vector<std::string_view>* pieces) const;

  // The BPE model looks a whole piece up in the vocabulary before merging (HF
  // BPE's ignore_merges; on for Llama 3).
  bool ignore_merges() const { return ignore_merges_; }
  const std::string& name() const { return name_; }

  // The names the table knows, for error messages and tests.
  static std::vector<std::string> KnownNames();

 private:
  PreTokenizer() = default;
  struct Step;
  std::string name_;
  bool ignore_merges_ = false;
  std::vector<Step> steps_;
};

}  // namespace ingot
