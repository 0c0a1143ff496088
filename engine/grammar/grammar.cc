// Grammar checks, pruning and flattening (gbnf.h), and printing back to GBNF.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/grammar/gbnf.h"
#include "engine/tokenizer/unicode.h"

namespace ingot::grammar {

bool Element::Matches(uint32_t cp) const {
  bool in = false;
  for (const CharRange& r : ranges) {
    if (cp < r.lo) break;
    if (cp <= r.hi) {
      in = true;
      break;
    }
  }
  return in != negated;
}

bool Element::MatchesAnyIn(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const CharRange& r : ranges) {
      if (r.lo <= hi && lo <= r.hi) return true;
    }
    return false;
  }
  // Negated: some point of [lo, hi] lies outside every range. Ranges are sorted and
  // disjoint, so walk them covering [lo, ...].
  uint32_t next = lo;
  for (const CharRange& r : ranges) {
    if (r.hi < next) continue;
    if (r.lo > next) return true;
    if (r.hi >= hi) return false;
    next = r.hi + 1;
  }
  return next <= hi;
}

bool Element::Empty() const { return kind == Kind::kChars && !MatchesAnyIn(0, kMaxCodePoint); }

namespace {

// Fixed point of "some alternative has every element satisfying `ok`", where a rule
// reference is ok when its rule is marked; `chars_ok` says whether a character set is.
// A worklist (each reference counted down once), so a long chain of rules costs
// linear time.
std::vector<bool> RulesWhereSomeAlternative(const Grammar& g, bool (*chars_ok)(const Element&)) {
  std::vector<bool> mark(g.rules.size(), false);
  struct Alt {
    int32_t rule;
    int32_t pending;  // references to rules not marked yet
  };
  std::vector<Alt> alts;
  std::vector<std::vector<int32_t>> users(g.rules.size());  // rule -> alts referring to it
  std::vector<int32_t> ready;                               // rules to mark
  for (size_t r = 0; r < g.rules.size(); ++r) {
    for (const auto& alt : g.rules[r].alternatives) {
      const bool chars = std::all_of(alt.begin(), alt.end(), [&](const Element& e) {
        return e.kind == Element::Kind::kRule || chars_ok(e);
      });
      if (!chars) continue;  // never satisfied
      const int32_t id = static_cast<int32_t>(alts.size());
      alts.push_back({static_cast<int32_t>(r), 0});
      for (const Element& e : alt) {
        if (e.kind != Element::Kind::kRule) continue;
        ++alts[id].pending;
        users[e.rule].push_back(id);
      }
      if (alts[id].pending == 0) ready.push_back(static_cast<int32_t>(r));
    }
  }
  while (!ready.empty()) {
    const int32_t r = ready.back();
    ready.pop_back();
    if (mark[r]) continue;
    mark[r] = true;
    for (int32_t id : users[r]) {
      if (--alts[id].pending == 0) ready.push_back(alts[id].rule);
    }
  }
  return mark;
}

void AppendCodePoint(uint32_t cp, bool in_class, std::string* out) {
  if (cp == '"' || cp == '\\' || (in_class && (cp == ']' || cp == '-' || cp == '^' || cp == '['))) {
    out->push_back('\\');
    out->push_back(static_cast<char>(cp));
  } else if (cp == '\n') {
    *out += "\\n";
  } else if (cp == '\r') {
    *out += "\\r";
  } else if (cp == '\t') {
    *out += "\\t";
  } else if (cp < 0x20 || cp == 0x7F) {
    *out += absl::StrFormat("\\x%02X", cp);
  } else if (cp >= 0xD800 && cp <= 0xDFFF) {
    *out += absl::StrFormat("\\u%04X", cp);
  } else {
    unicode::AppendUtf8(cp, out);
  }
}

}  // namespace

absl::Status FinishGrammar(Grammar& g) {
  // Prune alternatives that can never finish (an empty character set, or a rule that
  // never finishes), so the matcher never walks into a dead branch.
  const std::vector<bool> finishes = RulesWhereSomeAlternative(g, [](const Element& e) { return !e.Empty(); });
  if (!finishes[g.root]) {
    return absl::InvalidArgumentError("grammar can never finish: rule 'root' matches no complete text");
  }
  for (size_t r = 0; r < g.rules.size(); ++r) {
    auto& alts = g.rules[r].alternatives;
    alts.erase(std::remove_if(alts.begin(), alts.end(),
                              [&](const std::vector<Element>& alt) {
                                return std::any_of(alt.begin(), alt.end(), [&](const Element& e) {
                                  return e.kind == Element::Kind::kRule ? !finishes[e.rule] : e.Empty();
                                });
                              }),
               alts.end());
  }
  // Identical alternatives of a rule (e.g. "a" | "a", or several empty ones) are one.
  for (Rule& rule : g.rules) {
    std::vector<std::vector<Element>> unique;
    for (auto& alt : rule.alternatives) {
      const bool dup = std::any_of(unique.begin(), unique.end(), [&](const std::vector<Element>& u) {
        return u.size() == alt.size() && std::equal(u.begin(), u.end(), alt.begin(), [](const Element& a, const Element& b) {
                 return a.kind == b.kind && a.negated == b.negated && a.rule == b.rule && a.ranges.size() == b.ranges.size() &&
                        std::equal(a.ranges.begin(), a.ranges.end(), b.ranges.begin(),
                                   [](CharRange x, CharRange y) { return x.lo == y.lo && x.hi == y.hi; });
               });
      });
      if (!dup) unique.push_back(std::move(alt));
    }
    rule.alternatives = std::move(unique);
  }
    // Left recursion: a rule that can reach itself before reading a character would
  // expand forever.
  const std::vector<bool> nullable = RulesWhereSomeAlternative(g, [](const Element&) { return false; });
  std::vector<std::vector<int32_t>> leads(g.rules.size());
  for (size_t r = 0; r < g.rules.size(); ++r) {
    for (const auto& alt : g.rules[r].alternatives) {
      for (const Element& e : alt) {
        if (e.kind != Element::Kind::kRule) break;
        leads[r].push_back(e.rule);
        if (!nullable[e.rule]) break;
      }
    }
  }
  std::vector<int> color(g.rules.size(), 0);  // 0 new, 1 on the path, 2 done
  std::vector<std::pair<int32_t, size_t>> stack;
  for (size_t start = 0; start < g.rules.size(); ++start) {
    if (color[start]) continue;
    stack.push_back({static_cast<int32_t>(start), 0});
    color[start] = 1;
    while (!stack.empty()) {
      auto& [r, i] = stack.back();
      if (i == leads[r].size()) {
        color[r] = 2;
        stack.pop_back();
        continue;
      }
      const int32_t next = leads[r][i++];
      if (color[next] == 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "grammar rule '", g.rules[next].name,
            "' is left-recursive (it can reach itself before matching any character; a repetition of something "
            "that may be empty does this too)"));
      }
      if (color[next] == 0) {
        color[next] = 1;
        stack.push_back({next, 0});
      }
    }
  }
  g.program.clear();
  g.alt_starts.assign(g.rules.size(), {});
  for (size_t r = 0; r < g.rules.size(); ++r) {
    for (const auto& alt : g.rules[r].alternatives) {
      g.alt_starts[r].push_back(static_cast<uint32_t>(g.program.size()));
      g.program.insert(g.program.end(), alt.begin(), alt.end());
      g.program.push_back(Element{});
    }
  }
  return absl::OkStatus();
}

std::string ToGbnf(const Grammar& g) {
  std::string out;
  for (const Rule& rule : g.rules) {
    if (rule.alternatives.empty()) continue;  // pruned: never finishes, nothing refers to it
    absl::StrAppend(&out, rule.name, " ::=");
    for (size_t a = 0; a < rule.alternatives.size(); ++a) {
      if (a > 0) out += " |";
      // An empty alternative is written "" (a bare trailing | would take the next line).
      if (rule.alternatives[a].empty()) out += " \"\"";
      for (const Element& e : rule.alternatives[a]) {
        out += ' ';
        if (e.kind == Element::Kind::kRule) {
          out += g.rules[e.rule].name;
        } else if (!e.negated && e.ranges.size() == 1 && e.ranges[0].lo == e.ranges[0].hi) {
          out += '"';
          AppendCodePoint(e.ranges[0].lo, false, &out);
          out += '"';
        } else if (e.negated && e.ranges.empty()) {
          out += '.';
        } else {
          out += e.negated ? "[^" : "[";
          for (const CharRange& r : e.ranges) {
            AppendCodePoint(r.lo, true, &out);
            if (r.hi != r.lo) {
              out += '-';
              AppendCodePoint(r.hi, true, &out);
            }
          }
          out += ']';
        }
      }
    }
    out += '\n';
  }
  return out;
}

}  // namespace ingot::grammar
