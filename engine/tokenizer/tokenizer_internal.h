// Pieces shared by the tokenizer implementations (bpe.cc, spm.cc, tokenizer.cc).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot::tokenizer_internal {

// Debian's Abseil has its own string_view (StrCat, hash-map lookups take it); the
// public API uses std::string_view.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// Finds control and user-defined tokens spelled out in text. User-defined tokens
// are always matched (HF added tokens that are not special, llama.cpp likewise);
// control tokens only when the caller parses special tokens.
class SpecialTokenMatcher {
 public:
  explicit SpecialTokenMatcher(const VocabSpec& spec);

  // Calls `on_text` for each run of ordinary text and `on_token` for each special
  // token, in order. At each position the longest token spelled there wins.
  void Split(std::string_view text, bool parse_control,
             absl::FunctionRef<void(std::string_view)> on_text,
             absl::FunctionRef<void(int32_t)> on_token) const;

 private:
  struct Entry {
    std::string text;
    int32_t id;
    bool control;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;  // longest first
};

inline TokenType TypeOf(const VocabSpec& spec, int32_t id) {
  return spec.token_types.empty() ? TokenType::kNormal
                                  : static_cast<TokenType>(spec.token_types[id]);
}

// Encode's frame, shared by both models: BOS, special tokens and text runs (handed
// to `encode_text` with whether a special token or the start precedes them), EOS.
std::vector<int32_t> EncodeWithSpecials(
    const VocabSpec& spec, const SpecialTokenMatcher& matcher, std::string_view text,
    bool add_special, bool parse_special,
    absl::FunctionRef<void(std::string_view text, bool after_special,
                           std::vector<int32_t>* out)> encode_text);

// Implementations, chosen by VocabSpec::model in Tokenizer::Create. The spec is
// already checked for sizes and id ranges.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(VocabSpec spec);
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(VocabSpec spec);

}  // namespace ingot::tokenizer_internal
