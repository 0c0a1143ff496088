// GBNF text -> rules (gbnf.h). A recursive descent over the text that follows
// llama.cpp's grammar syntax; written from its grammars/README.md.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/grammar/gbnf.h"

namespace ingot::grammar {
namespace {

// Most helper rules one repetition may make ({m,n} makes n - m of them), and rules
// in all (nested repetitions multiply).
constexpr int kMaxRepetitionRules = 4096;
constexpr size_t kMaxRules = 65536;
// Deepest nesting of groups (the parser recurses once per level).
constexpr int kMaxDepth = 256;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::Status Parse(Grammar& g) {
    g_ = &g;
    SkipSpace(true);
    while (!AtEnd()) {
      RETURN_IF_ERROR(ParseRule());
    }
    for (const auto& [name, id] : ids_) {
      if (!defined_[id]) {
        return Error(first_use_[id], absl::StrCat("rule '", name, "' is used but never defined"));
      }
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) return absl::InvalidArgumentError("grammar has no 'root' rule (root ::= ...)");
    g.root = root->second;
    return absl::OkStatus();
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

  absl::Status Error(size_t at, absl::string_view what) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat("grammar ", line, ":", col, ": ", what));
  }
  absl::Status Error(absl::string_view what) const { return Error(pos_, what); }

  // Spaces, tabs and # comments; newlines too when `newlines`.
  void SkipSpace(bool newlines) {
    while (!AtEnd()) {
      const char c = Peek();
      if (c == ' ' || c == '\t') {
        ++pos_;
      } else if (c == '#') {
        while (!AtEnd() && Peek() != '\n') ++pos_;
      } else if (newlines && (c == '\n' || c == '\r')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  int32_t RuleId(const std::string& name, size_t at) {
    auto [it, inserted] = ids_.try_emplace(name, static_cast<int32_t>(g_->rules.size()));
    if (inserted) {
      g_->rules.push_back(Rule{name, {}});
      defined_.push_back(false);
      first_use_.push_back(at);
    }
    return it->second;
  }

  int32_t NewHelperRule(int32_t parent) {
    const std::string& base = g_->rules[parent].name;
    std::string name;
    do {
      name = absl::StrCat(base, "-", ++helper_count_);
    } while (ids_.contains(name));
    const int32_t id = RuleId(name, pos_);
    defined_[id] = true;
    return id;
  }

  absl::Status ParseRule() {
    const size_t start = pos_;
    std::string name;
    while (!AtEnd() && IsNameChar(Peek())) name += text_[pos_++];
    if (name.empty()) return Error("expected a rule name");
    SkipSpace(false);
    if (text_.substr(pos_, 3) != "::=") return Error(absl::StrCat("expected '::=' after rule name '", name, "'"));
    pos_ += 3;
    const int32_t id = RuleId(name, start);
    if (defined_[id]) return Error(start, absl::StrCat("rule '", name, "' is defined twice"));
    defined_[id] = true;
    SkipSpace(true);
    RETURN_IF_ERROR(ParseAlternatives(id, /*nested=*/false));
    if (!AtEnd()) {
      if (Peek() == '\r') ++pos_;
      if (Peek() != '\n') return Error(absl::StrCat("unexpected '", std::string(1, Peek()), "'"));
      ++pos_;
    }
    SkipSpace(true);
    return absl::OkStatus();
  }

  absl::Status ParseAlternatives(int32_t rule, bool nested) {
    std::vector<std::vector<Element>> alts;
    std::vector<Element> seq;
    RETURN_IF_ERROR(ParseSequence(rule, nested, &seq));
    alts.push_back(std::move(seq));
    while (Peek() == '|') {
      ++pos_;
      SkipSpace(true);
      seq.clear();
      RETURN_IF_ERROR(ParseSequence(rule, nested, &seq));
      alts.push_back(std::move(seq));
    }
    g_->rules[rule].alternatives = std::move(alts);
    return absl::OkStatus();
  }

  // One code point of a literal or class: UTF-8 or an escape.
  absl::StatusOr<uint32_t> ParseChar() {
    if (AtEnd()) return Error("unexpected end of grammar");
    const unsigned char c = static_cast<unsigned char>(text_[pos_]);
    if (c == '\\') {
      const char e = Peek(1);
      pos_ += 2;
      int digits = 0;
      switch (e) {
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        case 'n': return uint32_t{'\n'};
        case 'r': return uint32_t{'\r'};
        case 't': return uint32_t{'\t'};
        case '\\': case '"': case '[': case ']': case '-': case '^': return static_cast<uint32_t>(e);
        default:
          pos_ -= 2;
          return Error(absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
      }
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        const int h = HexValue(Peek());
        if (h < 0) return Error(absl::StrCat("expected ", digits, " hex digits after '\\", std::string(1, e), "'"));
        v = v * 16 + static_cast<uint32_t>(h);
        ++pos_;
      }
      if (v > kMaxCodePoint) return Error(pos_ - digits - 2, "code point above U+10FFFF");
      return v;
    }
    // UTF-8 in the grammar text itself.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + len > text_.size()) return Error("invalid UTF-8 in grammar");
    uint32_t v = len == 1 ? c : c & (0x7F >> len);
    for (int i = 1; i < len; ++i) {
      const unsigned char cc = static_cast<unsigned char>(text_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) return Error("invalid UTF-8 in grammar");
      v = (v << 6) | (cc & 0x3F);
    }
    pos_ += len;
    return v;
  }

  static Element Chars(std::vector<CharRange> ranges, bool negated) {
    Element e;
    e.kind = Element::Kind::kChars;
    e.negated = negated;
    std::sort(ranges.begin(), ranges.end(), [](CharRange a, CharRange b) { return a.lo < b.lo; });
    for (const CharRange& r : ranges) {  // merge overlapping and touching ranges
      if (!e.ranges.empty() && r.lo <= e.ranges.back().hi + 1) {
        e.ranges.back().hi = std::max(e.ranges.back().hi, r.hi);
      } else {
        e.ranges.push_back(r);
      }
    }
    return e;
  }

  static Element Ref(int32_t rule) {
    Element e;
    e.kind = Element::Kind::kRule;
    e.rule = rule;
    return e;
  }

  absl::Status ParseClass(std::vector<Element>* seq) {
    ++pos_;  // '['
    bool negated = false;
    if (Peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CharRange> ranges;
    while (Peek() != ']') {
      if (AtEnd()) return Error("unterminated character class (missing ']')");
      ASSIGN_OR_RETURN(uint32_t lo, ParseChar());
      uint32_t hi = lo;
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < text_.size()) {
        ++pos_;
        const size_t at = pos_;
        ASSIGN_OR_RETURN(hi, ParseChar());
        if (hi < lo) return Error(at, "character range is reversed (end below start)");
      }
      ranges.push_back({lo, hi});
    }
    ++pos_;  // ']'
    seq->push_back(Chars(std::move(ranges), negated));
    return absl::OkStatus();
  }

  // Repeats seq[from, end) `min` to `max` times (max < 0: no bound).
  absl::Status Repeat(int32_t rule, std::vector<Element>* seq, size_t from, int min, int max, size_t at) {
    if (from >= seq->size()) return Error(at, "repetition operator with nothing before it");
    if (max >= 0 && max < min) return Error(at, "repetition {m,n} with n < m");
    if (min > kMaxRepetitionRules || (max >= 0 && max - min > kMaxRepetitionRules)) {
      return Error(at, absl::StrCat("repetition count above ", kMaxRepetitionRules));
    }
    std::vector<Element> item(seq->begin() + static_cast<std::ptrdiff_t>(from), seq->end());
    seq->resize(from);
    if (item.size() > 1) {  // a literal of several characters repeats as a whole
      const int32_t sub = NewHelperRule(rule);
      g_->rules[sub].alternatives = {std::move(item)};
      item = {Ref(sub)};
    }
    if (g_->rules.size() + static_cast<size_t>(std::max(max, 1) - min) > kMaxRules ||
        seq->size() + static_cast<size_t>(min) > kMaxRules) {
      return Error(at, absl::StrCat("grammar grows past ", kMaxRules, " rules or elements (nested repetitions?)"));
    }
    for (int i = 0; i < min; ++i) seq->push_back(item[0]);
    if (max < 0) {
      // tail ::= item tail |
      const int32_t tail = NewHelperRule(rule);
      g_->rules[tail].alternatives = {{item[0], Ref(tail)}, {}};
      seq->push_back(Ref(tail));
    } else if (max > min) {
      // opt_k ::= item opt_{k-1} |   (opt_1 ::= item |)
      int32_t inner = -1;
      for (int k = 0; k < max - min; ++k) {
        const int32_t opt = NewHelperRule(rule);
        std::vector<Element> body = {item[0]};
        if (inner >= 0) body.push_back(Ref(inner));
        g_->rules[opt].alternatives = {std::move(body), {}};
        inner = opt;
      }
      seq->push_back(Ref(inner));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> ParseInt() {
    int v = 0;
    bool any = false;
    while (Peek() >= '0' && Peek() <= '9') {
      v = std::min(v * 10 + (Peek() - '0'), 1 << 24);
      ++pos_;
      any = true;
    }
    if (!any) return Error("expected a number in {m,n}");
    return v;
  }

  absl::Status ParseSequence(int32_t rule, bool nested, std::vector<Element>* seq) {
    size_t last_start = seq->size();  // the last symbol, for a repetition operator
    bool have_last = false;
    while (!AtEnd()) {
      const char c = Peek();
      const size_t at = pos_;
      if (c == '"') {
        ++pos_;
        last_start = seq->size();
        while (Peek() != '"') {
          if (AtEnd() || Peek() == '\n') return Error(at, "unterminated string literal");
          ASSIGN_OR_RETURN(uint32_t cp, ParseChar());
          seq->push_back(Chars({{cp, cp}}, false));
        }
        ++pos_;
        have_last = seq->size() > last_start;
        if (!have_last) {  // "" matches the empty string: nothing to add
          have_last = false;
        }
      } else if (c == '[') {
        last_start = seq->size();
        RETURN_IF_ERROR(ParseClass(seq));
        have_last = true;
      } else if (c == '.') {
        ++pos_;
        last_start = seq->size();
        seq->push_back(Chars({}, /*negated=*/true));
        have_last = true;
      } else if (IsNameChar(c)) {
        std::string name;
        while (!AtEnd() && IsNameChar(Peek())) name += text_[pos_++];
        // A name followed by ::= starts the next rule (only after a newline, which
        // ends this sequence first; here it is an error).
        size_t save = pos_;
        SkipSpace(false);
        if (text_.substr(pos_, 3) == "::=") return Error(at, "missing newline before the next rule");
        pos_ = save;
        last_start = seq->size();
        seq->push_back(Ref(RuleId(name, at)));
        have_last = true;
      } else if (c == '(') {
        if (++depth_ > kMaxDepth) return Error(at, absl::StrCat("groups nested deeper than ", kMaxDepth));
        ++pos_;
        SkipSpace(true);
        const int32_t sub = NewHelperRule(rule);
        RETURN_IF_ERROR(ParseAlternatives(sub, /*nested=*/true));
        if (Peek() != ')') return Error(at, "unclosed '(' (missing ')')");
        ++pos_;
        --depth_;
        last_start = seq->size();
        seq->push_back(Ref(sub));
        have_last = true;
      } else if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        if (!have_last) return Error(at, absl::StrCat("'", std::string(1, c), "' with nothing before it"));
        const int min = c == '+' ? 1 : 0;
        const int max = c == '?' ? 1 : -1;
        RETURN_IF_ERROR(Repeat(rule, seq, last_start, min, max, at));
        have_last = false;
      } else if (c == '{') {
        ++pos_;
        if (!have_last) return Error(at, "'{' repetition with nothing before it");
        SkipSpace(nested);
        ASSIGN_OR_RETURN(int min, ParseInt());
        SkipSpace(nested);
        int max = min;
        if (Peek() == ',') {
          ++pos_;
          SkipSpace(nested);
          if (Peek() == '}') {
            max = -1;
          } else {
            ASSIGN_OR_RETURN(max, ParseInt());
            SkipSpace(nested);
          }
        }
        if (Peek() != '}') return Error("expected '}' closing the repetition {m,n}");
        ++pos_;
        RETURN_IF_ERROR(Repeat(rule, seq, last_start, min, max, at));
        have_last = false;
      } else if (c == '<') {
        return Error("token references (<...>) are not supported; write the text as a literal");
      } else {
        break;  // '|', ')', newline, or an error the caller reports
      }
      SkipSpace(nested);
    }
    if (!nested && !AtEnd() && Peek() != '\n' && Peek() != '\r' && Peek() != '|') {
      return Error(absl::StrCat("unexpected '", std::string(1, Peek()), "'"));
    }
    if (nested && !AtEnd() && Peek() != ')' && Peek() != '|') {
      return Error(absl::StrCat("unexpected '", std::string(1, Peek()), "'"));
    }
    return absl::OkStatus();
  }

  std::string_view text_;
  size_t pos_ = 0;
  Grammar* g_ = nullptr;
  absl::flat_hash_map<std::string, int32_t> ids_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;
  int helper_count_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> ParseGbnf(std::string_view text) {
  auto g = std::make_shared<Grammar>();
  Parser parser(text);
  RETURN_IF_ERROR(parser.Parse(*g));
  RETURN_IF_ERROR(FinishGrammar(*g));
  return std::shared_ptr<const Grammar>(std::move(g));
}

}  // namespace ingot::grammar
