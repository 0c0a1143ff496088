// Hugging Face tokenizer files from a VocabSpec, for ingot's own checkpoint layout when
// the model did not come with them (a GGUF): tokenizer.json in the `tokenizers`
// serialization (byte-level BPE, the pre-tokenizer ingot implements under the spec's
// name, added tokens for control and user-defined ids), tokenizer_config.json (special
// tokens, add_bos_token, chat template) and generation_config.json (bos/eos ids).
// VocabSpecFromHf reads them back to the same tokenization.
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;

Json ByteLevel(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// The pattern `tokenizers` serializes for Llama 3 / Qwen2; they differ in how many
// digits one piece takes.
Json Llama3StyleSplit(const char* digits) {
  const std::string regex =
      absl::StrCat("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|", digits,
                   "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

// The pre_tokenizer for ingot's (or llama.cpp's) pre-tokenizer name; null if none.
Json PreTokenizer(const std::string& pre) {
  if (pre.empty() || pre == "gpt2" || pre == "gpt-2" || pre == "default") return ByteLevel(true);
  if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    return {{"type", "Sequence"},
            {"pretokenizers", Json::array({{{"type", "Digits"}, {"individual_digits", true}}, ByteLevel(true)})}};
  }
  if (pre == "llama3" || pre == "llama-bpe" || pre == "qwen2") {
    const char* digits = pre == "qwen2" ? "\\p{N}" : "\\p{N}{1,3}";
    return {{"type", "Sequence"}, {"pretokenizers", Json::array({Llama3StyleSplit(digits), ByteLevel(false)})}};
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<HfTokenizerFiles> VocabSpecToHf(const VocabSpec& spec) {
  if (spec.model != "gpt2") {
    return absl::FailedPreconditionError(absl::StrCat(
        "the '", spec.model, "' vocabulary has no tokenizer.json form in ingot (byte-level BPE only)"));
  }
  const Json pre = PreTokenizer(spec.pre);
  if (pre.is_null()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pre-tokenizer '", spec.pre, "' has no tokenizer.json form in ingot"));
  }
  const int32_t n = static_cast<int32_t>(spec.tokens.size());
  auto type_of = [&](int32_t i) {
    return i < static_cast<int32_t>(spec.token_types.size()) ? static_cast<TokenType>(spec.token_types[i])
                                                             : TokenType::kNormal;
  };
  Json vocab = Json::object(), added = Json::array();
  for (int32_t i = 0; i < n; ++i) {
    if (vocab.contains(spec.tokens[i])) {
      return absl::FailedPreconditionError(absl::StrCat("token '", spec.tokens[i], "' appears twice (ids ",
                                                        vocab[spec.tokens[i]].get<int32_t>(), " and ", i,
                                                        "); tokenizer.json maps each string to one id"));
    }
    vocab[spec.tokens[i]] = i;
    const TokenType t = type_of(i);
    if (t == TokenType::kControl || t == TokenType::kUserDefined) {
      added.push_back({{"id", i},
                       {"content", spec.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", t != TokenType::kControl},
                       {"special", t == TokenType::kControl}});
    }
  }
  Json merges = Json::array();
  for (const std::string& m : spec.merges) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat("merge '", m, "' is not two tokens"));
    }
    merges.push_back(Json::array({m.substr(0, sp), m.substr(sp + 1)}));
  }
  const bool ignore_merges = spec.pre == "llama3" || spec.pre == "llama-bpe";
  Json tj = {{"version", "1.0"},
             {"truncation", nullptr},
             {"padding", nullptr},
             {"added_tokens", added},
             {"normalizer", nullptr},
             {"pre_tokenizer", pre},
             {"post_processor", ByteLevel(true)},
             {"decoder", ByteLevel(true)},
             {"model",
              {{"type", "BPE"},
               {"dropout", nullptr},
               {"unk_token", nullptr},
               {"continuing_subword_prefix", nullptr},
               {"end_of_word_suffix", nullptr},
               {"fuse_unk", false},
               {"byte_fallback", false},
               {"ignore_merges", ignore_merges},
               {"vocab", vocab},
               {"merges", merges}}}};
  if (spec.add_bos && spec.bos_id >= 0) {
    // The post-processor is how `tokenizers` itself adds BOS.
    const std::string bos = spec.tokens[spec.bos_id];
    tj["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", Json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", Json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", Json::array({spec.bos_id})}, {"tokens", Json::array({bos})}}}}}};
  }
  auto token = [&](int32_t id) -> Json { return id >= 0 && id < n ? Json(spec.tokens[id]) : Json(nullptr); };
  Json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
             {"add_bos_token", spec.add_bos},
             {"add_eos_token", spec.add_eos},
             {"bos_token", token(spec.bos_id)},
             {"eos_token", token(spec.eos_id)},
             {"unk_token", token(spec.unk_id)},
             {"pad_token", token(spec.pad_id)},
             {"clean_up_tokenization_spaces", false}};
  if (!spec.chat_template.empty()) tc["chat_template"] = spec.chat_template;
  Json gc = Json::object();
  if (spec.bos_id >= 0) gc["bos_token_id"] = spec.bos_id;
  if (spec.eos_id >= 0) {
    gc["eos_token_id"] = spec.eot_id >= 0 && spec.eot_id != spec.eos_id ? Json::array({spec.eos_id, spec.eot_id})
                                                                        : Json(spec.eos_id);
  }
  if (spec.pad_id >= 0) gc["pad_token_id"] = spec.pad_id;
  HfTokenizerFiles out;
  out.tokenizer_json = tj.dump(1);
  out.tokenizer_config = tc.dump(2);
  out.generation_config = gc.dump(2);
  return out;
}

}  // namespace ingot
