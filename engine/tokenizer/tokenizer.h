// Tokenizers built from a vocabulary description (GGUF metadata today; HF
// tokenizer.json later): byte-level BPE ("gpt2") with the file's pre-tokenizer, and
// SentencePiece-style ("llama") vocabularies.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ingot {

namespace gguf { class File; }

// Token types as GGUF stores them (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4,
  kUnused = 5, kByte = 6,
};

struct VocabSpec {
  std::string model;                // "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;                  // pre-tokenizer name: "smollm", "llama-bpe", "qwen2", "gpt2", ...
  std::vector<std::string> tokens;  // id -> token text (byte-level encoded for gpt2)
  std::vector<float> scores;        // SentencePiece scores (may be empty for gpt2)
  std::vector<int32_t> token_types; // TokenType per id (may be empty: all normal)
  std::vector<std::string> merges;  // "a b" pairs in rank order (gpt2)
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;   // SentencePiece: prepend "▁" to the text
  std::string chat_template;       // tokenizer.chat_template, may be empty
};

// Reads tokenizer.ggml.* and tokenizer.chat_template. INVALID_ARGUMENT naming the key
// when required keys are missing or inconsistent (e.g. token_type size != tokens).
absl::StatusOr<VocabSpec> VocabSpecFromGguf(const gguf::File& file);

// Reads Hugging Face tokenizer files' texts (tokenizer.json required; the others may be
// empty). `dir` names them in messages. UNIMPLEMENTED names a tokenizer model or
// pre-tokenizer ingot does not implement.
absl::StatusOr<VocabSpec> VocabSpecFromHf(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                          std::string_view generation_config, const std::string& dir);
// The same from a checkpoint directory's files, read by `read_sibling` (a file name ->
// its contents, empty when absent): tokenizer.json, tokenizer_config.json,
// generation_config.json, and chat_template.jinja, which transformers 4.43+ writes beside
// tokenizer_config.json and which wins over the config's chat_template, as it does there.
absl::StatusOr<VocabSpec> VocabSpecFromHfDir(const std::function<std::string(const char*)>& read_sibling,
                                             const std::string& dir);

// Hugging Face tokenizer files for a byte-level BPE VocabSpec (model "gpt2" with a
// pre-tokenizer ingot implements), which VocabSpecFromHf reads back to the same
// tokenization. FAILED_PRECONDITION names a vocabulary or pre-tokenizer without one.
struct HfTokenizerFiles {
  std::string tokenizer_json, tokenizer_config, generation_config;
};
absl::StatusOr<HfTokenizerFiles> VocabSpecToHf(const VocabSpec& spec);

class Tokenizer {
 public:
  // INVALID_ARGUMENT for an unknown model or pre-tokenizer, naming it.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(VocabSpec spec);
  virtual ~Tokenizer() = default;

  // `add_special`: add BOS/EOS as the vocabulary says. `parse_special`: text that
  // spells a control/user-defined token ("<|im_start|>") becomes that token.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;
  // The bytes token `id` stands for (byte-level decoded; may be part of a UTF-8
  // character). Control tokens give their text when `render_special`, else "".
  virtual std::string TokenBytes(int32_t id, bool render_special) const = 0;
  std::string Decode(absl::Span<const int32_t> ids, bool render_special) const;

  const VocabSpec& spec() const { return spec_; }
  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  // End of generation: EOS, EOT, and control tokens such as <|im_end|>, <|endoftext|>,
  // <|eot_id|>, <|end|> present in the vocabulary.
  bool IsEndOfGeneration(int32_t id) const;
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_ids_; }
  // The token's text as stored in the vocabulary.
  const std::string& TokenText(int32_t id) const { return spec_.tokens[id]; }

 protected:
  explicit Tokenizer(VocabSpec spec);
  VocabSpec spec_;
  std::vector<int32_t> eog_ids_;
};

// Streaming detokenization: feeds token bytes and returns only complete UTF-8
// characters; the rest waits for the next token (or Flush at the end).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}
  std::string Push(int32_t id);
  // Whatever is pending, with incomplete sequences replaced by U+FFFD.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace ingot
