// VocabSpec from GGUF metadata: tokenizer.ggml.* and tokenizer.chat_template.
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"

namespace ingot {
namespace {

// An array value of `key`: nullptr when absent (optional arrays), INVALID_ARGUMENT
// when present with another element kind or length.
absl::StatusOr<const gguf::Value*> FindArray(const gguf::File& file, std::string_view key,
                                             bool strings, size_t expected_size) {
  const gguf::Value* v = file.Find(key);
  if (v == nullptr) return nullptr;
  const bool is_string = v->elem_type == gguf::ValueType::kString;
  if (v->type != gguf::ValueType::kArray || is_string != strings) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_internal::AbslView(key), ": expected an array of ", strings ? "strings" : "numbers"));
  }
  const size_t size = strings ? v->strings.size()
                              : (v->elem_type == gguf::ValueType::kFloat32 ||
                                 v->elem_type == gguf::ValueType::kFloat64)
                                    ? v->floats.size()
                                    : v->ints.size();
  if (expected_size != 0 && size != expected_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer_internal::AbslView(key), " has ", size, " entries for ", expected_size, " tokens"));
  }
  return v;
}

// tokenizer.ggml.<name>_token_id, -1 when absent; INVALID_ARGUMENT outside the vocab.
absl::StatusOr<int32_t> TokenId(const gguf::File& file, const char* name, size_t n) {
  const std::string key = absl::StrCat("tokenizer.ggml.", name, "_token_id");
  if (file.Find(key) == nullptr) return -1;
  ASSIGN_OR_RETURN(const int64_t id, file.GetInt(key));
  if (id < 0 || id >= static_cast<int64_t>(n)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " = ", id, " is outside the vocabulary of ", n));
  }
  return static_cast<int32_t>(id);
}

}  // namespace

absl::StatusOr<VocabSpec> VocabSpecFromGguf(const gguf::File& file) {
  VocabSpec spec;
  auto model = file.GetString("tokenizer.ggml.model");
  if (!model.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.ggml.model: ", model.status().message()));
  }
  spec.model = *std::move(model);
  spec.pre = file.GetStringOr("tokenizer.ggml.pre", "");

  ASSIGN_OR_RETURN(const gguf::Value* tokens,
                   FindArray(file, "tokenizer.ggml.tokens", /*strings=*/true, 0));
  if (tokens == nullptr || tokens->strings.empty()) {
    return absl::InvalidArgumentError("tokenizer.ggml.tokens: missing or empty");
  }
  spec.tokens = tokens->strings;
  const size_t n = spec.tokens.size();

  ASSIGN_OR_RETURN(const gguf::Value* scores,
                   FindArray(file, "tokenizer.ggml.scores", /*strings=*/false, n));
  if (scores != nullptr) {
    if (scores->floats.size() == n) {
      spec.scores.assign(scores->floats.begin(), scores->floats.end());
    } else {
      spec.scores.assign(scores->ints.begin(), scores->ints.end());
    }
  }
  ASSIGN_OR_RETURN(const gguf::Value* types,
                   FindArray(file, "tokenizer.ggml.token_type", /*strings=*/false, n));
  if (types != nullptr) {
    if (types->ints.size() != n) {
      return absl::InvalidArgumentError("tokenizer.ggml.token_type: expected integers");
    }
    spec.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = types->ints[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tokenizer.ggml.token_type[", i, "] = ", t, " is not a token type"));
      }
      spec.token_types.push_back(static_cast<int32_t>(t));
    }
  }
  ASSIGN_OR_RETURN(const gguf::Value* merges,
                   FindArray(file, "tokenizer.ggml.merges", /*strings=*/true, 0));
  if (merges != nullptr) spec.merges = merges->strings;
  if (spec.model == "gpt2" && spec.merges.empty()) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.merges: missing or empty for a gpt2 (BPE) vocabulary");
  }

  ASSIGN_OR_RETURN(spec.bos_id, TokenId(file, "bos", n));
  ASSIGN_OR_RETURN(spec.eos_id, TokenId(file, "eos", n));
  ASSIGN_OR_RETURN(spec.eot_id, TokenId(file, "eot", n));
  ASSIGN_OR_RETURN(spec.unk_id, TokenId(file, "unknown", n));
  ASSIGN_OR_RETURN(spec.pad_id, TokenId(file, "padding", n));

  // llama.cpp's defaults when the flags are absent: SentencePiece vocabularies add
  // BOS and the prefix space, byte-level BPE ones neither.
  const bool spm = spec.model == "llama";
  spec.add_bos = file.GetBoolOr("tokenizer.ggml.add_bos_token", spm);
  spec.add_eos = file.GetBoolOr("tokenizer.ggml.add_eos_token", false);
  spec.add_space_prefix = file.GetBoolOr("tokenizer.ggml.add_space_prefix", spm);
  spec.chat_template = file.GetStringOr("tokenizer.chat_template", "");
  return spec;
}

}  // namespace ingot
