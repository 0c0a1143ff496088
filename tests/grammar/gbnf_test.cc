#include <fstream>
#include <sstream>
#include <string>

#include "engine/grammar/gbnf.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/grammar/grammar_test_util.h"

namespace ingot::grammar {
namespace {

using ::testing::HasSubstr;

TEST(GbnfTest, ArithmeticFromLlamaCppReadme) {
  auto g = MustParse(R"(root  ::= (expr "=" term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= [0-9]+
)");
  EXPECT_TRUE(Accepts(g, "1+2=3\n"));
  EXPECT_TRUE(Accepts(g, "12*3-4=32\n7=7\n"));
  EXPECT_FALSE(Accepts(g, "1+2=3"));   // the newline is required
  EXPECT_FALSE(Accepts(g, "1++2=3\n"));
  EXPECT_TRUE(IsPrefix(g, "1+"));
  EXPECT_FALSE(IsPrefix(g, "a"));
}

TEST(GbnfTest, MultiLineRulesGroupsCommentsAndAlternativesAfterBar) {
  auto g = MustParse(R"(# a comment line
root ::=
  "{" ws (   # groups may span lines
    pair ("," ws pair)*
  )? "}"
pair ::= [a-z]+ ":" ws value   # trailing comment
value ::= "true" |
  "false" | [0-9]+
ws ::= [ \t\n]*
)");
  EXPECT_TRUE(Accepts(g, "{}"));
  EXPECT_TRUE(Accepts(g, "{a: true, bc:12}"));
  EXPECT_FALSE(Accepts(g, "{a: maybe}"));
}

TEST(GbnfTest, RepetitionCounts) {
  auto g = MustParse("root ::= [0-9]{4} \"-\" [0-9]{2} \"-\" [0-9]{2} \" \"? x{0,2} y{2,} \"ab\"{1,2}\n"
                     "x ::= \"x\"\ny ::= \"y\"\n");
  EXPECT_TRUE(Accepts(g, "2024-01-31 yyab"));
  EXPECT_TRUE(Accepts(g, "2024-01-31xxyyyyyabab"));
  EXPECT_FALSE(Accepts(g, "2024-01-31xxxyyab"));   // x at most twice
  EXPECT_FALSE(Accepts(g, "2024-01-31yab"));       // y at least twice
  EXPECT_FALSE(Accepts(g, "2024-01-31yyababab"));  // "ab" at most twice (as a whole)
  EXPECT_FALSE(Accepts(g, "224-01-31yyab"));
}

TEST(GbnfTest, ClassesEscapesNegationAndDot) {
  auto g = MustParse(R"(root ::= [^"\\\x00-\x1F]* "\"" [\u00e9-\u00ea\-] . "\x41\u00DF\U0001F600" [\]\[]
)");
  EXPECT_TRUE(Accepts(g, "ab c\"éxAß😀]"));
  EXPECT_TRUE(Accepts(g, "\"-\nAß😀["));
  EXPECT_FALSE(Accepts(g, "a\\b\"éxAß😀]"));  // backslash is excluded before the quote
  EXPECT_FALSE(Accepts(g, "\"exAß😀]"));
}

TEST(GbnfTest, Utf8LiteralsInTheGrammarText) {
  auto g = MustParse("root ::= \"héllo \" [α-ω]+\n");
  EXPECT_TRUE(Accepts(g, "héllo αβγ"));
  EXPECT_FALSE(Accepts(g, "hello αβγ"));
  EXPECT_FALSE(Accepts(g, "héllo abc"));
}

TEST(GbnfTest, PrunesBranchesThatCannotFinish) {
  auto g = MustParse("root ::= \"a\" | \"b\" never\nnever ::= \"x\" never\n");
  EXPECT_TRUE(Accepts(g, "a"));
  EXPECT_FALSE(IsPrefix(g, "b"));  // pruned: no text after "b" could finish
}

TEST(GbnfTest, PrintsBackToGbnfThatParsesTheSame) {
  auto g = MustParse("root ::= (\"a\" | [b-d\\]])+ \"\\n\"\n");
  auto again = MustParse(ToGbnf(*g));
  for (const char* t : {"a\n", "ab]d\n", "\n", "e\n"}) EXPECT_EQ(Accepts(g, t), Accepts(again, t)) << t;
}

TEST(GbnfTest, LlamaCppJsonGrammarAsIs) {
  // llama.cpp's json.gbnf shape (multi-line groups, an empty alternative first, \x
  // escapes in a negated class), kept in tests/data/grammar (also a fuzzer seed).
  std::ifstream f(std::string(INGOT_SOURCE_DIR) + "/tests/data/grammar/json.gbnf");
  std::stringstream text;
  text << f.rdbuf();
  auto g = MustParse(text.str());
  EXPECT_TRUE(Accepts(g, "{\"a\": [1, -2.5e3, {\"b\": null}],\n  \"c\": \"d\\u00e9\"}"));
  EXPECT_FALSE(Accepts(g, "{\"a\": [1,]}"));
}

TEST(GbnfTest, ManyEmptyAlternativesStayCheap) {
  // Found by the fuzzer: a repeated group with a hundred empty alternatives expanded
  // 100^4 stacks before they were deduplicated.
  std::string alts;
  for (int i = 0; i < 100; ++i) alts += " |";
  auto g = MustParse("root ::= \"x\" (\",\"" + alts + " \"y\"){0,4}\n");
  EXPECT_TRUE(Accepts(g, "x,y,"));
  EXPECT_FALSE(Accepts(g, "x,y,y,y,y"));
}

TEST(GbnfTest, PrintedGrammarOmitsPrunedRulesAndSpellsEmptyAlternatives) {
  auto g = MustParse("root ::= [0-9]{2} (\"0\" [])* (\"a\" |)\n");
  auto again = MustParse(ToGbnf(*g));
  for (const char* t : {"12", "12a", "120", ""}) EXPECT_EQ(Accepts(g, t), Accepts(again, t)) << t;
}

// 17 optional repetitions of up to 4,000: 68,000 helper rules.
const char* ManyRepetitions() {
  static const std::string text = [] {
    std::string t = "root ::=";
    for (int i = 0; i < 17; ++i) t += " \"a\"{0,4000}";
    return t + "\n";
  }();
  return text.c_str();
}

TEST(GbnfTest, LongChainsOfRulesExpandWithoutRecursion) {
  // r0 ::= r1, r1 ::= r2, ... : expanding r0 walks the whole chain before a character.
  std::string text = "root ::= r0\n";
  constexpr int kRules = 50000;
  for (int i = 0; i < kRules; ++i) text += "r" + std::to_string(i) + " ::= r" + std::to_string(i + 1) + " | \"x\"\n";
  text += "r" + std::to_string(kRules) + " ::= \"y\"\n";
  auto g = MustParse(text);
  EXPECT_TRUE(Accepts(g, "y"));
  EXPECT_TRUE(Accepts(g, "x"));
  EXPECT_FALSE(Accepts(g, "z"));
  // The same chain with no way out before its end, numbered against the order the
  // checks visit rules (each check is a worklist, not a pass per rule).
  std::string chain = "root ::= r0\n";
  for (int i = 0; i < kRules; ++i) chain += "r" + std::to_string(i) + " ::= \"-\" r" + std::to_string(i + 1) + "\n";
  chain += "r" + std::to_string(kRules) + " ::= \"y\"\n";
  auto c = MustParse(chain);
  EXPECT_TRUE(IsPrefix(c, "---"));
}

struct BadGrammar {
  const char* text;
  const char* message;
};

class GbnfErrorTest : public ::testing::TestWithParam<BadGrammar> {};

TEST_P(GbnfErrorTest, RefusedWithPositionOrRule) {
  auto g = ParseGbnf(GetParam().text);
  ASSERT_FALSE(g.ok()) << GetParam().text;
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(g.status().message()), HasSubstr(GetParam().message)) << g.status();
}

INSTANTIATE_TEST_SUITE_P(
    Bad, GbnfErrorTest,
    ::testing::Values(
        BadGrammar{"root ::= \"abc\n", "grammar 1:10: unterminated string literal"},
        BadGrammar{"root ::= [a-z\n", "unterminated character class"},
        BadGrammar{"root ::= ( \"a\" \n", "grammar 1:10: unclosed '('"},
        BadGrammar{"root ::= \"a\"\nfoo = \"b\"\n", "grammar 2:5: expected '::='"},
        BadGrammar{"root ::= item\n", "rule 'item' is used but never defined"},
        BadGrammar{"expr ::= \"a\"\n", "no 'root' rule"},
        BadGrammar{"root ::= \"a\"\nroot ::= \"b\"\n", "grammar 2:1: rule 'root' is defined twice"},
        BadGrammar{"root ::= root \"a\" | \"b\"\n", "rule 'root' is left-recursive"},
        BadGrammar{"root ::= (\"a\"?)*\n", "left-recursive"},
        BadGrammar{"root ::= \"a\" \\q\n", "grammar 1:14: unexpected '\\'"},
        BadGrammar{"root ::= \"\\q\"\n", "unknown escape '\\q'"},
        BadGrammar{"root ::= [z-a]\n", "reversed"},
        BadGrammar{"root ::= \"a\"{3,1}\n", "n < m"},
        BadGrammar{"root ::= * \"a\"\n", "'*' with nothing before it"},
        BadGrammar{"root ::= x\nx ::= \"a\" x\n", "can never finish"},
        BadGrammar{"root ::= []\n", "can never finish"},
        BadGrammar{"root ::= <[1000]>\n", "token references"},
        BadGrammar{"root ::= \"a\" next ::= \"b\"\n", "missing newline before the next rule"},
        BadGrammar{ManyRepetitions(), "grows past 65536 rules"}));

}  // namespace
}  // namespace ingot::grammar
