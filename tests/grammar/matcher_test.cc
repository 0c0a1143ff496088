// Token masks over a toy byte-level vocabulary with the awkward cases: tokens that span
// several terminals (and rules), tokens that end or start inside a UTF-8 character,
// control tokens, end of generation, and a grammar the vocabulary cannot continue.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/gbnf.h"
#include "engine/grammar/matcher.h"
#include "gtest/gtest.h"
#include "tests/grammar/grammar_test_util.h"

namespace ingot::grammar {
namespace {

// "é" is C3 A9, "€" is E2 82 AC.
const std::vector<std::string> kVocab = {
    "",          // 0: a control token (no bytes)
    "</s>",      // 1: end of generation, given as bytes the grammar never allows
    "{\"",       // 2: two terminals
    "a",         // 3
    "\":",       // 4
    "\": 1}",    // 5: spans the key's end, the colon, the value and the brace
    "1",         // 6
    "}",         // 7
    "\xC3",      // 8: first byte of é
    "\xA9",      // 9: second byte of é
    "\xC3\xA9",  // 10: é whole
    "\xE2\x82",  // 11: two of €'s three bytes
    "\xAC}",     // 12: €'s last byte then a brace
    "b",         // 13
    " ",         // 14
    "\xA9\"",    // 15: é's last byte and a quote
};
constexpr int32_t kEnd = 1;

TokenTrie Trie() { return TokenTrie(kVocab, {kEnd}); }

std::vector<int32_t> Allowed(Automaton& a, int32_t state, const TokenTrie& trie) {
  const auto& bits = a.Mask(state, trie);
  std::vector<int32_t> out;
  for (int32_t t = 0; t < trie.vocab_size(); ++t) {
    if ((bits[t >> 6] >> (t & 63)) & 1) out.push_back(t);
  }
  return out;
}

// The mask must say exactly which tokens keep the text a live prefix: checked
// against walking each token's bytes through a fresh automaton.
void ExpectMaskExact(const std::shared_ptr<const Grammar>& g, const std::string& prefix) {
  const TokenTrie trie = Trie();
  Automaton a(g);
  const int32_t s = a.Walk(a.Start(), prefix);
  ASSERT_NE(s, Automaton::kDead) << prefix;
  const std::vector<int32_t> allowed = Allowed(a, s, trie);
  for (int32_t t = 0; t < trie.vocab_size(); ++t) {
    bool expect;
    if (t == kEnd) {
      expect = Accepts(g, prefix);
    } else {
      expect = !kVocab[t].empty() && IsPrefix(g, prefix + kVocab[t]);
    }
    const bool got = std::find(allowed.begin(), allowed.end(), t) != allowed.end();
    EXPECT_EQ(got, expect) << "prefix '" << prefix << "' token " << t;
  }
}

TEST(MatcherTest, TokensSpanningSeveralTerminals) {
  auto g = MustParse(R"(root ::= "{" "\"" key "\"" ":" " "? value "}"
key ::= [a-z]+
value ::= [0-9]+
)");
  const TokenTrie trie = Trie();
  Automaton a(g);
  EXPECT_EQ(Allowed(a, a.Start(), trie), (std::vector<int32_t>{2}));
  const int32_t after_key = a.Walk(a.Start(), "{\"a");
  EXPECT_EQ(Allowed(a, after_key, trie), (std::vector<int32_t>{3, 4, 5, 13}));
  for (const char* p : {"", "{\"", "{\"a", "{\"ab\":", "{\"a\": 1", "{\"a\": 1}"}) ExpectMaskExact(g, p);
}

TEST(MatcherTest, PartialUtf8AcrossTokens) {
  // Only é or € may appear between the quotes.
  auto g = MustParse("root ::= \"\\\"\" [é€]+ \"\\\"\" | \"{\" [€] \"}\"\n");
  const TokenTrie trie = Trie();
  Automaton a(g);
  const int32_t open = a.Walk(a.Start(), "\"");
  ASSERT_NE(open, Automaton::kDead);
  // 8 (C3) begins é; 10 is é; 11 (E2 82) begins €; 9 alone is a stray continuation.
  auto allowed = Allowed(a, open, trie);
  EXPECT_EQ(allowed, (std::vector<int32_t>{8, 10, 11}));
  const int32_t half = a.Walk(open, "\xC3");
  EXPECT_EQ(Allowed(a, half, trie), (std::vector<int32_t>{9, 15}));  // A9, A9 + quote
  // After "{" E2 82, the last byte and the brace finish it in one token.
  const int32_t euro = a.Walk(a.Walk(a.Start(), "{"), "\xE2\x82");
  EXPECT_EQ(Allowed(a, euro, trie), (std::vector<int32_t>{12}));
  EXPECT_TRUE(a.CanEnd(a.Walk(euro, "\xAC}")));
  for (const char* p : {"\"", "\"\xC3", "\"\xC3\xA9", "{", "{\xE2", "{\xE2\x82"}) ExpectMaskExact(g, p);
}

TEST(MatcherTest, PartialCharacterTheGrammarCannotTakeIsRefused) {
  // [a-z] only: no multi-byte lead byte may start.
  auto g = MustParse("root ::= [a-z]+\n");
  const TokenTrie trie = Trie();
  Automaton a(g);
  EXPECT_EQ(Allowed(a, a.Start(), trie), (std::vector<int32_t>{3, 13}));
  // é's lead byte C3 covers U+00C0-U+00FF: allowed only when the grammar can take one.
  auto g2 = MustParse("root ::= [\\u00FF]\n");
  Automaton a2(g2);
  EXPECT_EQ(Allowed(a2, a2.Start(), trie), (std::vector<int32_t>{8}));
}

TEST(MatcherTest, EndOfGenerationOnlyWhereTheTextMayEnd) {
  auto g = MustParse("root ::= \"a\" \"b\"?\n");
  const TokenTrie trie = Trie();
  Automaton a(g);
  EXPECT_EQ(Allowed(a, a.Start(), trie), (std::vector<int32_t>{3}));
  EXPECT_EQ(Allowed(a, a.Walk(a.Start(), "a"), trie), (std::vector<int32_t>{kEnd, 13}));
  EXPECT_EQ(Allowed(a, a.Walk(a.Start(), "ab"), trie), (std::vector<int32_t>{kEnd}));
}

TEST(MatcherTest, ApplyMasksLogitsAndReportsADeadEnd) {
  const TokenTrie trie = Trie();
  // The vocabulary has no "z": after "a" nothing can follow, and the text may not end.
  auto g = MustParse("root ::= \"a\" \"z\"\n");
  Automaton a(g);
  std::vector<float> logits(kVocab.size() + 2, 1.0f);  // the model's rows may be padded
  EXPECT_TRUE(a.Apply(a.Start(), trie, absl::MakeSpan(logits)));
  for (size_t t = 0; t < logits.size(); ++t) EXPECT_EQ(std::isinf(logits[t]), t != 3) << t;
  std::vector<float> again(kVocab.size(), 1.0f);
  EXPECT_FALSE(a.Apply(a.Walk(a.Start(), "a"), trie, absl::MakeSpan(again)));
}

TEST(MatcherTest, RandomWalksAgreeWithBytewiseMatching) {
  // A JSON-ish grammar; tokens drawn only from the mask must always leave a live
  // prefix, and a walk that ends with the end token is a complete match.
  auto g = MustParse(R"(root ::= "{\"" [a-b]+ "\":" " "? ("1" | "é")+ "}"
)");
  const TokenTrie trie = Trie();
  Automaton a(g);
  std::mt19937 rng(7);
  int completed = 0;
  for (int walk = 0; walk < 200; ++walk) {
    int32_t s = a.Start();
    std::string text;
    for (int step = 0; step < 30; ++step) {
      const auto allowed = Allowed(a, s, trie);
      ASSERT_FALSE(allowed.empty()) << text;
      const int32_t t = allowed[rng() % allowed.size()];
      if (t == kEnd) {
        EXPECT_TRUE(Accepts(g, text)) << text;
        ++completed;
        break;
      }
      text += kVocab[t];
      s = a.Walk(s, kVocab[t]);
      ASSERT_NE(s, Automaton::kDead) << text;
      ASSERT_TRUE(IsPrefix(g, text)) << text;
    }
  }
  EXPECT_GT(completed, 0);
}

}  // namespace
}  // namespace ingot::grammar
