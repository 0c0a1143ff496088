// VocabSpec from Hugging Face tokenizer files: tokenizer.json (the `tokenizers`
// serialization: BPE model, added tokens, pre-tokenizer), tokenizer_config.json (special
// tokens, add_bos_token, chat template) and generation_config.json (eos ids). The
// pre-tokenizer is matched to one of the named pre-tokenizers ingot implements
// (pretokenize.cc); anything else is refused naming it rather than tokenized wrongly.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
using Json = nlohmann::json;

absl::StatusOr<Json> ParseObject(std::string_view text, const std::string& where) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  return j;
}

// A special token entry: "text" or {"content": "text", ...}.
std::string TokenContent(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

// Which ingot pre-tokenizer a tokenizer.json pre_tokenizer is; "" if none fits.
std::string PreTokenizerName(const Json& pre, std::string* describe) {
  if (pre.is_null()) {
    *describe = "none";
    return "";
  }
  *describe = pre.dump().substr(0, 200);
  // ByteLevel with add_prefix_space puts a space before the text: not implemented, so
  // such a tokenizer is refused rather than tokenized without it.
  auto prefix_space = [](const Json& j) {
    return j.is_object() && j.value("type", "") == "ByteLevel" && j.contains("add_prefix_space") &&
           j["add_prefix_space"].is_boolean() && j["add_prefix_space"].get<bool>();
  };
  if (prefix_space(pre)) return "";
  if (pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const Json& step : pre["pretokenizers"]) {
      if (prefix_space(step)) return "";
    }
  }
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel" && pre.value("use_regex", true)) return "gpt2";
  if (type == "Metaspace") return "spm";
  if (type != "Sequence" || !pre.contains("pretokenizers") || !pre["pretokenizers"].is_array()) return "";
  const Json& seq = pre["pretokenizers"];
  if (seq.size() == 2 && seq[0].value("type", "") == "Digits" && seq[0].value("individual_digits", false) &&
      seq[1].value("type", "") == "ByteLevel" && seq[1].value("use_regex", true)) {
    return "smollm";
  }
  if (seq.size() >= 2 && seq[0].value("type", "") == "Split" && seq[1].value("type", "") == "ByteLevel" &&
      !seq[1].value("use_regex", true)) {
    std::string regex;
    if (seq[0].contains("pattern") && seq[0]["pattern"].is_object()) regex = seq[0]["pattern"].value("Regex", "");
    const bool llama3_style = absl::StrContains(regex, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+") &&
                              absl::StrContains(regex, "\\s+(?!\\S)");
    if (llama3_style && absl::StrContains(regex, "\\p{N}{1,3}")) return "llama3";
    if (llama3_style && absl::StrContains(regex, "|\\p{N}|")) return "qwen2";
  }
  return "";
}

}  // namespace

absl::StatusOr<VocabSpec> VocabSpecFromHf(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                          std::string_view generation_config, const std::string& dir) {
  if (tokenizer_json.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": tokenizer.json is missing (sentencepiece "
                                                   "tokenizer.model alone is not supported)"));
  }
  const std::string where = dir + "/tokenizer.json";
  Json tj;
  {
    auto p = ParseObject(tokenizer_json, where);
    if (!p.ok()) return p.status();
    tj = std::move(*p);
  }
  Json tc = Json::object(), gc = Json::object();
  if (!tokenizer_config.empty()) {
    auto p = ParseObject(tokenizer_config, dir + "/tokenizer_config.json");
    if (!p.ok()) return p.status();
    tc = std::move(*p);
  }
  if (!generation_config.empty()) {
    auto p = ParseObject(generation_config, dir + "/generation_config.json");
    if (!p.ok()) return p.status();
    gc = std::move(*p);
  }
  if (!tj.contains("model") || !tj["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": 'model' is missing"));
  }
  const Json& model = tj["model"];
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(where, ": tokenizer model '", type, "' is not supported (BPE)"));
  }
  VocabSpec spec;
  std::string describe;
  const std::string pre = PreTokenizerName(tj.value("pre_tokenizer", Json()), &describe);
  const bool byte_fallback = model.value("byte_fallback", false);
  if (pre == "spm" || (pre.empty() && byte_fallback)) {
    // Llama 2 style: "▁" for spaces, byte fallback, merges in score order.
    spec.model = "llama";
    spec.add_space_prefix = true;
    if (tj.contains("pre_tokenizer") && tj["pre_tokenizer"].is_object()) {
      spec.add_space_prefix = tj["pre_tokenizer"].value("prepend_scheme", std::string("always")) != "never";
    }
  } else if (!pre.empty()) {
    spec.model = "gpt2";
    spec.pre = pre;
  } else {
    return absl::UnimplementedError(absl::StrCat(where, ": pre_tokenizer ", describe,
                                                 " is not one ingot implements (ByteLevel, SmolLM digits + "
                                                 "ByteLevel, Llama 3 / Qwen2 split + ByteLevel, Metaspace)"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": model.vocab is missing"));
  }
  int32_t n = 0;
  for (const auto& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": model.vocab['", tok, "'] is not a valid id"));
    }
    n = std::max(n, id.get<int32_t>() + 1);
  }
  const Json added = tj.value("added_tokens", Json::array());
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() >= (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": added_tokens entry ", a.dump(), " has no valid id"));
    }
    n = std::max(n, a["id"].get<int32_t>() + 1);
  }
  spec.tokens.assign(n, "");
  spec.token_types.assign(n, static_cast<int32_t>(TokenType::kUnused));
  for (const auto& [tok, id] : model["vocab"].items()) {
    const int32_t i = id.get<int32_t>();
    spec.tokens[i] = tok;
    const bool byte = spec.model == "llama" && tok.size() == 6 && absl::StartsWith(tok, "<0x") && tok[5] == '>';
    spec.token_types[i] = static_cast<int32_t>(byte ? TokenType::kByte : TokenType::kNormal);
  }
  for (const auto& a : added) {
    const int32_t i = a["id"].get<int32_t>();
    spec.tokens[i] = a.value("content", "");
    spec.token_types[i] = static_cast<int32_t>(a.value("special", false) ? TokenType::kControl : TokenType::kUserDefined);
  }
  for (int32_t i = 0; i < n; ++i) {
    if (spec.tokens[i].empty()) spec.tokens[i] = absl::StrCat("[UNUSED_", i, "]");
  }
  // Merges: "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs.
  const Json merges = model.value("merges", Json::array());
  spec.merges.reserve(merges.size());
  for (const auto& m : merges) {
    if (m.is_string()) {
      spec.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": merge ", m.dump(), " is neither \"a b\" nor [a, b]"));
    }
  }
  if (spec.model == "llama") {
    // SentencePiece BPE merges the pair whose result scores highest; tokenizer.json
    // keeps the merges in that order, so the rank is the score.
    spec.scores.assign(n, 0.0f);
    for (size_t r = 0; r < spec.merges.size(); ++r) {
      const std::string& m = spec.merges[r];
      const size_t sp = m.find(' ');
      auto it = model["vocab"].find(m.substr(0, sp) + m.substr(sp + 1));
      if (it != model["vocab"].end()) spec.scores[it->get<int32_t>()] = -static_cast<float>(r + 1);
    }
  }
  auto id_of = [&](const std::string& text) -> int32_t {
    if (text.empty()) return -1;
    for (int32_t i = 0; i < n; ++i) {
      if (spec.tokens[i] == text) return i;
    }
    return -1;
  };
  spec.bos_id = id_of(TokenContent(tc.value("bos_token", Json())));
  spec.eos_id = id_of(TokenContent(tc.value("eos_token", Json())));
  spec.unk_id = id_of(TokenContent(tc.value("unk_token", Json())));
  spec.pad_id = id_of(TokenContent(tc.value("pad_token", Json())));
  if (const Json e = gc.value("eos_token_id", Json()); e.is_number_integer() && spec.eos_id < 0) {
    spec.eos_id = e.get<int32_t>();
  } else if (e.is_array()) {
    // Several end ids (Llama 3: <|end_of_text|>, <|eot_id|>): the first not already EOS is EOT.
    for (const auto& v : e) {
      if (!v.is_number_integer()) continue;
      if (spec.eos_id < 0) spec.eos_id = v.get<int32_t>();
      else if (v.get<int32_t>() != spec.eos_id && spec.eot_id < 0) spec.eot_id = v.get<int32_t>();
    }
  }
  if (spec.bos_id < 0) {
    if (const Json b = gc.value("bos_token_id", Json()); b.is_number_integer()) spec.bos_id = b.get<int32_t>();
  }
  for (int32_t* id : {&spec.bos_id, &spec.eos_id, &spec.eot_id, &spec.unk_id, &spec.pad_id}) {
    if (*id >= n) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": special token id ", *id, " is outside the vocabulary of ", n));
    }
  }
  // BOS: tokenizer_config's add_bos_token, else whether the post-processor adds it.
  if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) {
    spec.add_bos = tc["add_bos_token"].get<bool>();
  } else if (tj.contains("post_processor") && tj["post_processor"].is_object() && spec.bos_id >= 0) {
    spec.add_bos = absl::StrContains(tj["post_processor"].dump(), "\"" + spec.tokens[spec.bos_id] + "\"");
  } else {
    spec.add_bos = spec.model == "llama" && spec.bos_id >= 0;
  }
  spec.add_eos = tc.value("add_eos_token", false);
  if (const Json ct = tc.value("chat_template", Json()); ct.is_string()) {
    spec.chat_template = ct.get<std::string>();
  } else if (ct.is_array()) {
    for (const auto& t : ct) {
      if (t.is_object() && t.value("name", "") == "default") spec.chat_template = t.value("template", "");
    }
  }
  return spec;
}

absl::StatusOr<VocabSpec> VocabSpecFromHfDir(const std::function<std::string(const char*)>& read_sibling,
                                             const std::string& dir) {
  ASSIGN_OR_RETURN(VocabSpec spec, VocabSpecFromHf(read_sibling("tokenizer.json"), read_sibling("tokenizer_config.json"),
                                                   read_sibling("generation_config.json"), dir));
  if (std::string tmpl = read_sibling("chat_template.jinja"); !tmpl.empty()) spec.chat_template = std::move(tmpl);
  return spec;
}

}  // namespace ingot
