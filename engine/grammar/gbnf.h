// Grammars in llama.cpp's GBNF syntax (grammars/README.md there), accepted as is:
//   name ::= alternatives      a newline ends a rule, except inside ( ) or after | / ::=
//   "literal"  [a-z0-9_] [^"\\]  .  ( group )  x* x+ x? x{m} x{m,} x{m,n}  # comments
// Terminals are Unicode code points; the matcher (matcher.h) walks UTF-8 bytes.
//
// ParseGbnf turns the text into rules whose alternatives are flat sequences of
// character sets and rule references (groups and repetitions become helper rules
// named after their rule: `item-3`). It then refuses what the matcher cannot run
// (left recursion, an undefined rule, no `root`) and prunes the alternatives that can
// never finish, so a state the matcher keeps alive can always be completed (refused
// when `root` itself cannot finish: the grammar matches nothing).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ingot::grammar {

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

struct CharRange {
  uint32_t lo = 0, hi = 0;  // inclusive code points
};

struct Element {
  enum class Kind : uint8_t { kChars, kRule, kEnd };
  Kind kind = Kind::kEnd;
  bool negated = false;           // kChars: every code point outside `ranges`
  int32_t rule = -1;              // kRule
  std::vector<CharRange> ranges;  // kChars, sorted and disjoint
  bool Matches(uint32_t cp) const;
  // Some code point in [lo, hi] matches.
  bool MatchesAnyIn(uint32_t lo, uint32_t hi) const;
  bool Empty() const;  // kChars that matches nothing
};

struct Rule {
  std::string name;
  std::vector<std::vector<Element>> alternatives;  // each without a kEnd
};

struct Grammar {
  std::vector<Rule> rules;
  int32_t root = -1;
  // The matcher's program: every alternative of every rule flattened, each ending with
  // a kEnd element; alt_starts[rule] are the indices of its alternatives' first
  // elements. A position in the program is an index into `program`.
  std::vector<Element> program;
  std::vector<std::vector<uint32_t>> alt_starts;
};

// INVALID_ARGUMENT with "line:column" for syntax errors; names the rule for an
// undefined or left-recursive rule and for a grammar that cannot finish.
absl::StatusOr<std::shared_ptr<const Grammar>> ParseGbnf(std::string_view text);

// Checks, prunes and flattens parsed rules (ParseGbnf's second half).
absl::Status FinishGrammar(Grammar& g);

// The grammar back in GBNF (helper rules included), for messages and tests.
std::string ToGbnf(const Grammar& g);

}  // namespace ingot::grammar
