// JSON Schema `pattern` (ECMA-262 regular expressions, a subset) -> the GBNF body of a
// JSON string. Characters JSON must escape are generated escaped when written as
// literals and left out of classes and '.'.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/common/status.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema_terms.h"
#include "engine/tokenizer/unicode.h"

namespace ingot::grammar {
namespace {

using Ranges = std::vector<CharRange>;

Ranges Normalize(Ranges r) {
  std::sort(r.begin(), r.end(), [](CharRange a, CharRange b) { return a.lo < b.lo; });
  Ranges out;
  for (const CharRange& x : r) {
    if (!out.empty() && x.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, x.hi);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

Ranges Complement(const Ranges& r) {
  Ranges out;
  uint32_t next = 0;
  for (const CharRange& x : Normalize(r)) {
    if (x.lo > next) out.push_back({next, x.lo - 1});
    next = x.hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

// What a class may generate inside a JSON string: no control characters, '"', '\\'.
Ranges Unescaped(const Ranges& r) {
  Ranges banned = Complement({{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}, {0xD800, 0xDFFF}});
  Ranges out;
  for (const CharRange& x : Normalize(r)) {
    for (const CharRange& a : banned) {
      const uint32_t lo = std::max(x.lo, a.lo), hi = std::min(x.hi, a.hi);
      if (lo <= hi) out.push_back({lo, hi});
    }
  }
  return out;
}

void AppendClassChar(uint32_t cp, std::string* out) {
  if (cp == ']' || cp == '[' || cp == '-' || cp == '^' || cp == '\\' || cp == '"') {
    out->push_back('\\');
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x20 || cp == 0x7F) {
    *out += absl::StrFormat("\\x%02X", cp);
  } else {
    unicode::AppendUtf8(cp, out);
  }
}

std::string ClassGbnf(const Ranges& r) {
  std::string out = "[";
  for (const CharRange& x : r) {
    AppendClassChar(x.lo, &out);
    if (x.hi != x.lo) {
      out += '-';
      AppendClassChar(x.hi, &out);
    }
  }
  return out + "]";
}

// A literal character inside a JSON string: escaped the way JSON spells it.
std::string LiteralChar(uint32_t cp) {
  std::string s;
  switch (cp) {
    case '"': s = "\\\""; break;
    case '\\': s = "\\\\"; break;
    case '\n': s = "\\n"; break;
    case '\t': s = "\\t"; break;
    case '\r': s = "\\r"; break;
    default:
      if (cp < 0x20) {
        s = absl::StrFormat("\\u%04x", cp);
      } else {
        unicode::AppendUtf8(cp, &s);
      }
  }
  return GbnfLiteral(s);
}

class PatternParser {
 public:
  explicit PatternParser(const std::string& p) : p_(p) {}

  absl::StatusOr<std::string> Parse() {
    if (pos_ < p_.size() && p_[pos_] == '^') ++pos_;
    ASSIGN_OR_RETURN(std::string body, Alternation());
    if (pos_ < p_.size()) return Error(absl::StrCat("unexpected '", std::string(1, p_[pos_]), "'"));
    return body;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern '", p_, "' at offset ", pos_, ": ", what,
                     " (supported: literals, [classes], ., (groups), |, ? * + {m,n}, \\d \\w \\s, ^ and $ at the ends)"));
  }

  absl::StatusOr<std::string> Alternation() {
    std::vector<std::string> alts;
    while (true) {
      ASSIGN_OR_RETURN(std::string seq, Sequence());
      alts.push_back(seq.empty() ? "\"\"" : seq);
      if (pos_ < p_.size() && p_[pos_] == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t i = 0; i < alts.size(); ++i) absl::StrAppend(&out, i ? " | " : "", alts[i]);
    return out + ")";
  }

  absl::StatusOr<uint32_t> Char() {
    const unsigned char c = static_cast<unsigned char>(p_[pos_]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + len > p_.size()) return Error("invalid UTF-8");
    uint32_t v = len == 1 ? c : c & (0x7F >> len);
    for (int i = 1; i < len; ++i) v = (v << 6) | (static_cast<unsigned char>(p_[pos_ + i]) & 0x3F);
    pos_ += len;
    return v;
  }

  // After a backslash: a class shorthand (ranges, negated) or one character.
  absl::StatusOr<std::pair<Ranges, bool>> Escape() {
    if (pos_ >= p_.size()) return Error("pattern ends with '\\'");
    const char e = p_[pos_++];
    static const Ranges kDigit = {{'0', '9'}};
    static const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}};
    switch (e) {
      case 'd': return std::make_pair(kDigit, false);
      case 'D': return std::make_pair(kDigit, true);
      case 'w': return std::make_pair(kWord, false);
      case 'W': return std::make_pair(kWord, true);
      case 's': return std::make_pair(kSpace, false);
      case 'S': return std::make_pair(kSpace, true);
      case 'n': return std::make_pair(Ranges{{'\n', '\n'}}, false);
      case 't': return std::make_pair(Ranges{{'\t', '\t'}}, false);
      case 'r': return std::make_pair(Ranges{{'\r', '\r'}}, false);
      default:
        if ((e >= '0' && e <= '9') || e == 'b' || e == 'B' || e == 'k' || e == 'p' || e == 'P' || e == 'u' ||
            e == 'x' || e == 'c') {
          --pos_;
          return Error(absl::StrCat("escape '\\", std::string(1, e), "' is not supported"));
        }
        return std::make_pair(Ranges{{static_cast<uint32_t>(static_cast<unsigned char>(e)),
                                      static_cast<uint32_t>(static_cast<unsigned char>(e))}},
                              false);
    }
  }

  absl::StatusOr<std::string> Class() {
    ++pos_;  // '['
    bool negated = false;
    if (pos_ < p_.size() && p_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    Ranges ranges;
    bool first = true;
    while (pos_ < p_.size() && (p_[pos_] != ']' || first)) {
      first = false;
      uint32_t lo;
      if (p_[pos_] == '\\') {
        ++pos_;
        ASSIGN_OR_RETURN(auto esc, Escape());
        if (esc.second || esc.first.size() != 1 || esc.first[0].lo != esc.first[0].hi) {
          const Ranges add = esc.second ? Complement(esc.first) : esc.first;
          ranges.insert(ranges.end(), add.begin(), add.end());
          continue;
        }
        lo = esc.first[0].lo;
      } else {
        ASSIGN_OR_RETURN(lo, Char());
      }
      uint32_t hi = lo;
      if (pos_ + 1 < p_.size() && p_[pos_] == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        if (p_[pos_] == '\\') {
          ++pos_;
          ASSIGN_OR_RETURN(auto esc, Escape());
          if (esc.second || esc.first.size() != 1) return Error("a class shorthand cannot end a range");
          hi = esc.first[0].lo;
        } else {
          ASSIGN_OR_RETURN(hi, Char());
        }
        if (hi < lo) return Error("reversed range in a class");
      }
      ranges.push_back({lo, hi});
    }
    if (pos_ >= p_.size()) return Error("unterminated class (missing ']')");
    ++pos_;
    return ClassOf(negated ? Complement(ranges) : ranges);
  }

  absl::StatusOr<std::string> ClassOf(const Ranges& r) {
    const Ranges ok = Unescaped(r);
    if (ok.empty()) return Error("a class with no character that can be written unescaped in JSON");
    return ClassGbnf(ok);
  }

  absl::StatusOr<std::string> Atom() {
    const char c = p_[pos_];
    if (c == '(') {
      ++pos_;
      if (pos_ < p_.size() && p_[pos_] == '?') {
        if (pos_ + 1 < p_.size() && p_[pos_ + 1] == ':') {
          pos_ += 2;
        } else {
          return Error("lookarounds and named groups are not supported");
        }
      }
      ASSIGN_OR_RETURN(std::string inner, Alternation());
      if (pos_ >= p_.size() || p_[pos_] != ')') return Error("missing ')'");
      ++pos_;
      return absl::StrCat("(", inner, ")");
    }
    if (c == '[') return Class();
    if (c == '.') {
      ++pos_;
      return ClassOf(Complement({{'\n', '\n'}, {'\r', '\r'}}));
    }
    if (c == '\\') {
      ++pos_;
      ASSIGN_OR_RETURN(auto esc, Escape());
      if (!esc.second && esc.first.size() == 1 && esc.first[0].lo == esc.first[0].hi) return LiteralChar(esc.first[0].lo);
      return ClassOf(esc.second ? Complement(esc.first) : esc.first);
    }
    if (c == '^' || c == '$') return Error("anchors are supported only at the pattern's ends");
    if (c == '*' || c == '+' || c == '?' || c == '{') return Error("quantifier with nothing before it");
    ASSIGN_OR_RETURN(uint32_t cp, Char());
    return LiteralChar(cp);
  }

  absl::StatusOr<std::string> Sequence() {
    std::string out;
    while (pos_ < p_.size() && p_[pos_] != '|' && p_[pos_] != ')') {
      if (p_[pos_] == '$' && pos_ + 1 == p_.size()) {
        ++pos_;
        break;
      }
      ASSIGN_OR_RETURN(std::string atom, Atom());
      std::string quant;
      if (pos_ < p_.size()) {
        const char q = p_[pos_];
        if (q == '*' || q == '+' || q == '?') {
          quant = std::string(1, q);
          ++pos_;
        } else if (q == '{') {
          const size_t close = p_.find('}', pos_);
          if (close == std::string::npos) return Error("missing '}'");
          quant = p_.substr(pos_, close - pos_ + 1);
          for (char d : quant.substr(1, quant.size() - 2)) {
            if (!(d >= '0' && d <= '9') && d != ',') return Error("malformed {m,n}");
          }
          pos_ = close + 1;
        }
        if (!quant.empty() && pos_ < p_.size() && (p_[pos_] == '?' || p_[pos_] == '+')) ++pos_;  // lazy/possessive: same language
      }
      if (!out.empty()) out += ' ';
      absl::StrAppend(&out, quant.empty() ? atom : absl::StrCat("(", atom, ")", quant));
    }
    return out;
  }

  const std::string& p_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::string> PatternGbnf(const std::string& pattern) { return PatternParser(pattern).Parse(); }

}  // namespace ingot::grammar
