// Tokenizer::Create (validation and the model table), decoding, end-of-generation
// ids, streaming detokenization and the special-token splitting both models share.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace ingot {
namespace {

using tokenizer_internal::TypeOf;

struct ModelRow {
  const char* name;
  absl::StatusOr<std::unique_ptr<Tokenizer>> (*create)(VocabSpec spec);
};
constexpr ModelRow kModels[] = {
    {"gpt2", tokenizer_internal::CreateBpeTokenizer},   // byte-level BPE
    {"llama", tokenizer_internal::CreateSpmTokenizer},  // SentencePiece BPE by score
};

// Control tokens that end a turn in the chat formats we know; llama.cpp keeps a
// similar list for files whose metadata names only one of them.
constexpr std::string_view kEndOfGenerationNames[] = {
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
    "</s>",       "<|eom_id|>",
};

absl::Status CheckSpec(const VocabSpec& spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("vocabulary has no tokens");
  if (!spec.scores.empty() && spec.scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary has ", spec.scores.size(), " scores for ", n, " tokens"));
  }
  if (!spec.token_types.empty() && spec.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary has ", spec.token_types.size(), " token types for ", n, " tokens"));
  }
  for (size_t i = 0; i < spec.token_types.size(); ++i) {
    if (spec.token_types[i] < 0 || spec.token_types[i] > 6) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", i, " has unknown type ", spec.token_types[i]));
    }
  }
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", spec.bos_id}, {"eos", spec.eos_id}, {"eot", spec.eot_id},
      {"unk", spec.unk_id}, {"pad", spec.pad_id}};
  for (const auto& [what, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " token id ", id, " is outside the vocabulary of ", n));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(VocabSpec spec) {
  for (const ModelRow& row : kModels) {
    if (spec.model != row.name) continue;
    if (absl::Status s = CheckSpec(spec); !s.ok()) return s;
    return row.create(std::move(spec));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown tokenizer model '", spec.model, "' (known: gpt2, llama)"));
}

Tokenizer::Tokenizer(VocabSpec spec) : spec_(std::move(spec)) {
  auto add = [this](int32_t id) {
    if (id >= 0 && std::find(eog_ids_.begin(), eog_ids_.end(), id) == eog_ids_.end()) {
      eog_ids_.push_back(id);
    }
  };
  add(spec_.eos_id);
  add(spec_.eot_id);
  for (int32_t id = 0; id < vocab_size(); ++id) {
    const TokenType type = TypeOf(spec_, id);
    if (type != TokenType::kControl && !spec_.token_types.empty()) continue;
    for (std::string_view name : kEndOfGenerationNames) {
      if (spec_.tokens[id] == name) add(id);
    }
  }
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += TokenBytes(id, render_special);
  // SentencePiece marks the start of the text with the "▁" it added; HF's Strip
  // decoder and llama.cpp's detokenizer both drop that one space again.
  if (spec_.model == "llama" && spec_.add_space_prefix && !out.empty() && out[0] == ' ') {
    out.erase(0, 1);
  }
  return out;
}

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tokenizer_.TokenBytes(id, render_special_);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const unicode::Utf8Step step = unicode::ScanUtf8(pending_, pos);
    if (step.kind == unicode::Utf8Kind::kIncomplete) break;  // wait for the next token
    if (step.kind == unicode::Utf8Kind::kComplete) {
      out.append(pending_, pos, step.len);
    } else {
      out.append(unicode::kReplacementChar);  // can never become a character
    }
    pos += step.len;
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = unicode::ToValidUtf8(pending_);
  pending_.clear();
  return out;
}

namespace tokenizer_internal {

SpecialTokenMatcher::SpecialTokenMatcher(const VocabSpec& spec) {
  for (int32_t id = 0; id < static_cast<int32_t>(spec.tokens.size()); ++id) {
    const TokenType type = TypeOf(spec, id);
    if (type != TokenType::kControl && type != TokenType::kUserDefined) continue;
    const std::string& text = spec.tokens[id];
    if (text.empty()) continue;
    by_first_byte_[static_cast<uint8_t>(text[0])].push_back(
        {text, id, type == TokenType::kControl});
  }
  for (auto& entries : by_first_byte_) {
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.text.size() > b.text.size();
    });
  }
}

void SpecialTokenMatcher::Split(std::string_view text, bool parse_control,
                                absl::FunctionRef<void(std::string_view)> on_text,
                                absl::FunctionRef<void(int32_t)> on_token) const {
  size_t run_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const Entry* found = nullptr;
    for (const Entry& e : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      if ((parse_control || !e.control) && text.compare(pos, e.text.size(), e.text) == 0) {
        found = &e;
        break;
      }
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    if (pos > run_start) on_text(text.substr(run_start, pos - run_start));
    on_token(found->id);
    pos += found->text.size();
    run_start = pos;
  }
  if (run_start < text.size()) on_text(text.substr(run_start));
}

std::vector<int32_t> EncodeWithSpecials(
    const VocabSpec& spec, const SpecialTokenMatcher& matcher, std::string_view text,
    bool add_special, bool parse_special,
    absl::FunctionRef<void(std::string_view, bool, std::vector<int32_t>*)> encode_text) {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && spec.add_bos && spec.bos_id >= 0) out.push_back(spec.bos_id);
  bool after_special = true;
  matcher.Split(
      text, parse_special,
      [&](std::string_view run) {
        encode_text(run, after_special, &out);
        after_special = false;
      },
      [&](int32_t id) {
        out.push_back(id);
        after_special = true;
      });
  if (add_special && spec.add_eos && spec.eos_id >= 0) out.push_back(spec.eos_id);
  return out;
}

}  // namespace tokenizer_internal
}  // namespace ingot
