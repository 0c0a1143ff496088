// SentencePiece-style ("llama") vocabularies: a hand-built one whose merges can be
// worked out by hand, and spm_tiny.gguf (trained by tests/reference/gen_tokenizer.py)
// against llama.cpp. Also VocabSpecFromGguf's errors and special-token matching.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

constexpr int32_t kNormal = static_cast<int32_t>(TokenType::kNormal);

// <unk> <s> </s>, byte tokens 3..258, then pieces. Scores make "▁he" + "llo" the
// path to "▁hello": ll(-1) > ▁h(-2) > ▁he(-3) > llo(-4) > ▁hello(-5) > lo(-6).
VocabSpec HandBuiltSpm() {
  VocabSpec spec;
  spec.model = "llama";
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    spec.tokens.push_back(name);
    spec.token_types.push_back(static_cast<int32_t>(TokenType::kByte));
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"▁", -10}, {"h", -11}, {"e", -12}, {"l", -13}, {"o", -14}, {"w", -15},
      {"ll", -1}, {"▁h", -2}, {"▁he", -3}, {"llo", -4}, {"▁hello", -5}, {"lo", -6},
      {"é", -16}};
  spec.scores.assign(spec.tokens.size(), 0.0f);
  for (const auto& [text, score] : pieces) {
    spec.tokens.push_back(text);
    spec.scores.push_back(score);
    spec.token_types.push_back(kNormal);
  }
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.unk_id = 0;
  spec.add_bos = true;
  spec.add_space_prefix = true;
  return spec;
}

int32_t Id(const Tokenizer& tok, const std::string& text) {
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.TokenText(id) == text) return id;
  }
  return -1;
}

TEST(SpmTest, HandBuiltMergesByScore) {
  auto tok = Tokenizer::Create(HandBuiltSpm());
  ASSERT_OK(tok);
  const Tokenizer& t = **tok;
  EXPECT_THAT(t.Encode("hello", true, true), ElementsAre(1, Id(t, "▁hello")));
  EXPECT_THAT(t.Encode("hello", false, true), ElementsAre(Id(t, "▁hello")));
  // "▁ h e l l o": ll, then ▁h, ▁he, llo, and last ▁hello.
  EXPECT_THAT(t.Encode("hello hello", false, true),
              ElementsAre(Id(t, "▁hello"), Id(t, "▁hello")));
  // "lo" alone: l,o merge as "lo" (no "ll" competing).
  EXPECT_THAT(t.Encode("lo", false, true), ElementsAre(Id(t, "▁"), Id(t, "lo")));
  // Leading spaces stay "▁" pieces; "w" is a piece, "x" falls back to its byte.
  EXPECT_THAT(t.Encode(" wx", false, true),
              ElementsAre(Id(t, "▁"), Id(t, "▁"), Id(t, "w"), 3 + 'x'));
  // A character without a token falls back to its UTF-8 bytes: "ü" is C3 BC.
  EXPECT_THAT(t.Encode("ü", false, true), ElementsAre(Id(t, "▁"), 3 + 0xC3, 3 + 0xBC));
  EXPECT_THAT(t.Encode("é", false, true), ElementsAre(Id(t, "▁"), Id(t, "é")));
  // Decoding turns "▁" back into spaces and drops the one prefix space.
  EXPECT_EQ(t.Decode(t.Encode("hello wü", true, true), false), "hello wü");
  EXPECT_EQ(t.TokenBytes(3 + 0xC3, false), "\xC3");
  EXPECT_EQ(t.TokenBytes(1, true), "<s>");
  EXPECT_EQ(t.TokenBytes(1, false), "");
  EXPECT_TRUE(t.IsEndOfGeneration(2));
}

TEST(SpmTest, NoSpacePrefix) {
  VocabSpec spec = HandBuiltSpm();
  spec.add_space_prefix = false;
  auto tok = Tokenizer::Create(spec);
  ASSERT_OK(tok);
  const Tokenizer& t = **tok;
  EXPECT_THAT(t.Encode("hello", false, true),
              ElementsAre(Id(t, "h"), Id(t, "e"), Id(t, "llo")));
  EXPECT_EQ(t.Decode(t.Encode(" hello", false, true), false), " hello");
}

// spm_tiny.gguf through the GGUF reader, compared with llama.cpp.
TEST(SpmTest, TinyVocabularyMatchesLlamaCpp) {
  auto file = gguf::File::Open(SourcePath("tests/data/tokenizer/spm_tiny.gguf"));
  ASSERT_OK(file);
  auto spec = VocabSpecFromGguf(**file);
  ASSERT_OK(spec);
  EXPECT_EQ(spec->model, "llama");
  EXPECT_TRUE(spec->add_bos);
  EXPECT_TRUE(spec->add_space_prefix);
  auto tok = Tokenizer::Create(*spec);
  ASSERT_OK(tok);
  const Tokenizer& t = **tok;
  std::ifstream in(SourcePath("tests/data/tokenizer/spm_tiny.json"));
  const nlohmann::json golden = nlohmann::json::parse(in);
  if (golden["llama_cpp_version"].is_null()) GTEST_SKIP() << "made without llama.cpp";
  int matched = 0, total = 0;
  for (const auto& c : golden["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(c["name"].get<std::string>());
    const Ids ids = t.Encode(text, /*add_special=*/true, /*parse_special=*/true);
    const Ids plain = t.Encode(text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, c["llama_cpp"].get<Ids>());
    EXPECT_EQ(plain, c["llama_cpp_plain"].get<Ids>());
    ++total;
    matched += ids == c["llama_cpp"].get<Ids>() && plain == c["llama_cpp_plain"].get<Ids>();
    // llama.cpp's per-token pieces keep the prefix space; Decode drops it.
    std::string pieces;
    for (size_t i = 1; i < ids.size(); ++i) pieces += t.TokenBytes(ids[i], false);
    EXPECT_EQ(pieces, c["llama_cpp_detokenized"].get<std::string>());
    // Without special tokens (which take prefix spaces after them) it round-trips.
    const bool has_special = std::any_of(ids.begin() + 1, ids.end(), [&](int32_t id) {
      return spec->token_types[id] == static_cast<int32_t>(TokenType::kControl) ||
             spec->token_types[id] == static_cast<int32_t>(TokenType::kUserDefined);
    });
    if (!has_special) EXPECT_EQ(t.Decode(ids, false), text);
  }
  std::printf("spm_tiny: %d/%d texts match llama.cpp\n", matched, total);
}

TEST(SpecialTokenMatcherTest, LongestFirstAndControlOnlyWhenParsed) {
  VocabSpec spec;
  spec.tokens = {"<a>", "<a><b>", "<b>", "<u>", "x"};
  spec.token_types = {3, 3, 3, 4, 1};
  tokenizer_internal::SpecialTokenMatcher matcher(spec);
  std::vector<std::string> parts;
  auto split = [&](std::string_view text, bool parse_control) {
    parts.clear();
    matcher.Split(
        text, parse_control, [&](std::string_view run) { parts.emplace_back(run); },
        [&](int32_t id) { parts.push_back("#" + std::to_string(id)); });
    return parts;
  };
  EXPECT_THAT(split("<a><b><b>x<a>", true), ElementsAre("#1", "#2", "x", "#0"));
  EXPECT_THAT(split("x<a><u>y", false), ElementsAre("x<a>", "#3", "y"));
  EXPECT_THAT(split("", true), ElementsAre());
}

std::string WriteGguf(const std::string& name, const gguf::Writer& w) {
  const std::string path = ::testing::TempDir() + "tokenizer_" + name + ".gguf";
  EXPECT_OK(w.WriteTo(path));
  return path;
}

absl::StatusOr<VocabSpec> SpecFrom(const std::string& name, const gguf::Writer& w) {
  auto file = gguf::File::Open(WriteGguf(name, w));
  if (!file.ok()) return file.status();
  return VocabSpecFromGguf(**file);
}

TEST(VocabSpecFromGgufTest, NamesTheBadKey) {
  gguf::Writer none;
  none.AddString("general.architecture", "llama");
  EXPECT_THAT(SpecFrom("no_model", none),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer.ggml.model")));

  gguf::Writer no_tokens;
  no_tokens.AddString("tokenizer.ggml.model", "llama");
  EXPECT_THAT(SpecFrom("no_tokens", no_tokens),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer.ggml.tokens")));

  gguf::Writer bad_types;
  bad_types.AddString("tokenizer.ggml.model", "llama");
  bad_types.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
  gguf::Value types;
  types.type = gguf::ValueType::kArray;
  types.elem_type = gguf::ValueType::kInt32;
  types.ints = {1};
  bad_types.Add("tokenizer.ggml.token_type", types);
  EXPECT_THAT(SpecFrom("bad_types", bad_types),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokenizer.ggml.token_type")));

  gguf::Writer bad_id;
  bad_id.AddString("tokenizer.ggml.model", "llama");
  bad_id.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
  bad_id.AddUint32("tokenizer.ggml.eos_token_id", 7);
  EXPECT_THAT(SpecFrom("bad_id", bad_id),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokenizer.ggml.eos_token_id")));

  gguf::Writer no_merges;
  no_merges.AddString("tokenizer.ggml.model", "gpt2");
  no_merges.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
  EXPECT_THAT(SpecFrom("no_merges", no_merges),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer.ggml.merges")));

  gguf::Writer ok;
  ok.AddString("tokenizer.ggml.model", "llama");
  ok.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  ok.AddUint32("tokenizer.ggml.bos_token_id", 1);
  auto spec = SpecFrom("ok", ok);
  ASSERT_OK(spec);
  EXPECT_EQ(spec->bos_id, 1);
  EXPECT_EQ(spec->eos_id, -1);
  EXPECT_TRUE(spec->add_bos);            // SentencePiece default, as llama.cpp
  EXPECT_TRUE(spec->add_space_prefix);
  EXPECT_TRUE(spec->scores.empty());
}

}  // namespace
}  // namespace ingot
