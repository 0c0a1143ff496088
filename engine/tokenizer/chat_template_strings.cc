#include "engine/tokenizer/chat_template_strings.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/tokenizer/unicode.h"

namespace ingot::jinja {
namespace {

// Invalid bytes decode to kRawByteBase + byte, outside Unicode, so AppendUtf8 can write
// the original byte back: malformed text round-trips unchanged.
constexpr char32_t kRawByteBase = 0x110000;

bool InRange(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// Latin Extended-A alternates upper/lower in pairs; which parity is upper flips at
// U+0139 and again at U+014A and U+0179.
bool LatinExtAUpperIsEven(char32_t c) {
  return InRange(c, 0x100, 0x137) || InRange(c, 0x14A, 0x177);
}
bool LatinExtAUpperIsOdd(char32_t c) {
  return InRange(c, 0x139, 0x148) || InRange(c, 0x179, 0x17E);
}

char32_t UpperOf(char32_t c) {
  if (c < 0x80) return InRange(c, 'a', 'z') ? c - 32 : c;
  if (c == 0xB5) return 0x39C;  // micro sign -> Greek capital mu, as Python does
  if (InRange(c, 0xE0, 0xFE) && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0x131) return 'I';
  if (c == 0x17F) return 'S';
  if (LatinExtAUpperIsEven(c) && c % 2 == 1 && c != 0x131) return c - 1;
  if (LatinExtAUpperIsOdd(c) && c % 2 == 0) return c - 1;
  if (InRange(c, 0x3B1, 0x3CB) && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;  // final sigma
  if (c == 0x3AC) return 0x386;
  if (InRange(c, 0x3AD, 0x3AF)) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (InRange(c, 0x3CD, 0x3CE)) return c - 63;
  if (InRange(c, 0x430, 0x44F)) return c - 32;
  if (InRange(c, 0x450, 0x45F)) return c - 80;
  if (InRange(c, 0xFF41, 0xFF5A)) return c - 32;
  return c;
}

char32_t LowerOf(char32_t c) {
  if (c < 0x80) return InRange(c, 'A', 'Z') ? c + 32 : c;
  if (InRange(c, 0xC0, 0xDE) && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (LatinExtAUpperIsEven(c) && c % 2 == 0 && c != 0x130) return c + 1;
  if (LatinExtAUpperIsOdd(c) && c % 2 == 1) return c + 1;
  if (InRange(c, 0x391, 0x3AB) && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (InRange(c, 0x388, 0x38A)) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (InRange(c, 0x38E, 0x38F)) return c + 63;
  if (InRange(c, 0x410, 0x42F)) return c + 32;
  if (InRange(c, 0x400, 0x40F)) return c + 80;
  if (InRange(c, 0xFF21, 0xFF3A)) return c + 32;
  return c;
}

bool IsUpperCp(char32_t c) { return LowerOf(c) != c || c == 0x130; }
bool IsLowerCp(char32_t c) { return UpperOf(c) != c || c == 0xDF || c == 0x138 || c == 0x149; }
bool IsCased(char32_t c) { return IsUpperCp(c) || IsLowerCp(c); }

// The few mappings that produce more than one code point.
void AppendUpper(char32_t c, std::string* out) {
  if (c == 0xDF) {
    out->append("SS");
  } else if (c == 0x149) {
    out->append("\xCA\xBCN");  // U+02BC modifier apostrophe + N
  } else {
    AppendUtf8(UpperOf(c), out);
  }
}
void AppendTitle(char32_t c, std::string* out) {
  if (c == 0xDF) {
    out->append("Ss");
  } else if (c == 0x149) {
    out->append("\xCA\xBCN");
  } else {
    AppendUtf8(UpperOf(c), out);
  }
}
void AppendLower(char32_t c, std::string* out) {
  if (c == 0x130) {
    out->append("i\xCC\x87");  // i + combining dot above
  } else {
    AppendUtf8(LowerOf(c), out);
  }
}

// Code points Python's str.isprintable() rejects (controls, format characters,
// separators other than space, private use); repr() escapes them.
bool IsNonPrintable(char32_t c) {
  if (c < 0x20 || c == 0x7F || InRange(c, 0x80, 0xA0) || c == 0xAD) return true;
  if (c >= kRawByteBase) return true;
  return InRange(c, 0x600, 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F ||
         c == 0x1680 || c == 0x180E || InRange(c, 0x2000, 0x200F) ||
         InRange(c, 0x2028, 0x202F) || InRange(c, 0x205F, 0x2064) ||
         InRange(c, 0x2066, 0x206F) || c == 0x3000 || InRange(c, 0xD800, 0xF8FF) ||
         c == 0xFEFF || InRange(c, 0xFFF9, 0xFFFB) || c >= 0xF0000;
}

}  // namespace

size_t Utf8Next(std::string_view s, size_t i, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  char32_t value = 0;
  char32_t min_value = 0;
  if (b0 < 0x80) {
    *cp = b0;
    return i + 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, value = b0 & 0x1F, min_value = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, value = b0 & 0x0F, min_value = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, value = b0 & 0x07, min_value = 0x10000;
  }
  bool ok = len != 0 && i + len <= s.size();
  for (size_t k = 1; ok && k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    ok = (b & 0xC0) == 0x80;
    value = (value << 6) | (b & 0x3F);
  }
  ok = ok && value >= min_value && value <= 0x10FFFF && !InRange(value, 0xD800, 0xDFFF);
  if (!ok) {
    *cp = kRawByteBase + b0;
    return i + 1;
  }
  *cp = value;
  return i + len;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp >= kRawByteBase) {
    out->push_back(static_cast<char>(cp - kRawByteBase));  // a stray byte kept as is
  } else {
    unicode::AppendUtf8(static_cast<uint32_t>(cp), out);
  }
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  char32_t cp;
  for (size_t i = 0; i < s.size(); i = Utf8Next(s, i, &cp)) ++n;
  return n;
}

std::vector<std::string_view> CodePoints(std::string_view s) {
  std::vector<std::string_view> out;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t next = Utf8Next(s, i, &cp);
    out.push_back(s.substr(i, next - i));
    i = next;
  }
  return out;
}

bool IsPySpace(char32_t c) {
  return InRange(c, 0x09, 0x0D) || InRange(c, 0x1C, 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || InRange(c, 0x2000, 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string_view PyStrip(std::string_view s, bool left, bool right,
                         const std::optional<std::string>& chars) {
  std::vector<char32_t> set;
  if (chars) {
    char32_t cp;
    for (size_t i = 0; i < chars->size();) {
      i = Utf8Next(*chars, i, &cp);
      set.push_back(cp);
    }
  }
  auto strippable = [&](char32_t cp) {
    if (!chars) return IsPySpace(cp);
    for (char32_t c : set) {
      if (c == cp) return true;
    }
    return false;
  };
  std::vector<std::string_view> cps = CodePoints(s);
  size_t begin = 0, end = cps.size();
  char32_t cp;
  while (left && begin < end && (Utf8Next(cps[begin], 0, &cp), strippable(cp))) ++begin;
  while (right && end > begin && (Utf8Next(cps[end - 1], 0, &cp), strippable(cp))) --end;
  if (begin == end) return s.substr(0, 0);
  const size_t from = cps[begin].data() - s.data();
  const size_t to = cps[end - 1].data() + cps[end - 1].size() - s.data();
  return s.substr(from, to - from);
}

std::string PyUpper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    AppendUpper(cp, &out);
  }
  return out;
}

std::string PyLower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    AppendLower(cp, &out);
  }
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    if (!IsCased(cp)) {
      AppendUtf8(cp, &out);
      prev_cased = false;
    } else {
      prev_cased ? AppendLower(cp, &out) : AppendTitle(cp, &out);
      prev_cased = true;
    }
  }
  return out;
}

std::string PyCapitalize(std::string_view s) {
  std::string out;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const bool first = i == 0;
    i = Utf8Next(s, i, &cp);
    first ? AppendTitle(cp, &out) : AppendLower(cp, &out);
  }
  return out;
}

std::string JinjaTitle(std::string_view s) {
  // Jinja splits at runs of whitespace, '-', '(', '{', '[', '<' and upper-cases the first
  // character of each piece, lower-casing the rest.
  std::string out;
  bool word_start = true;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    if (IsPySpace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<') {
      AppendUtf8(cp, &out);
      word_start = true;
    } else {
      word_start ? AppendUpper(cp, &out) : AppendLower(cp, &out);
      word_start = false;
    }
  }
  return out;
}

bool PyIsLower(std::string_view s) {
  bool any_cased = false;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    if (IsUpperCp(cp)) return false;
    any_cased = any_cased || IsLowerCp(cp);
  }
  return any_cased;
}

bool PyIsUpper(std::string_view s) {
  bool any_cased = false;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    if (IsLowerCp(cp)) return false;
    any_cased = any_cased || IsUpperCp(cp);
  }
  return any_cased;
}

std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {  // the caller rejects an empty separator, as Python does
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  char32_t cp;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size()) {
      const size_t next = Utf8Next(s, i, &cp);
      if (!IsPySpace(cp)) break;
      i = next;
    }
  };
  skip_space();
  while (i < s.size()) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.emplace_back(s.substr(i));  // the remainder keeps its trailing whitespace
      break;
    }
    const size_t start = i;
    while (i < s.size()) {
      const size_t next = Utf8Next(s, i, &cp);
      if (IsPySpace(cp)) break;
      i = next;
    }
    out.emplace_back(s.substr(start, i - start));
    skip_space();
  }
  return out;
}

std::string PyReplace(std::string_view s, std::string_view from, std::string_view to,
                      int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` before every code point and at the end
    std::vector<std::string_view> cps = CodePoints(s);
    int64_t done = 0;
    for (std::string_view c : cps) {
      if (count < 0 || done < count) out.append(to), ++done;
      out.append(c);
    }
    if (count < 0 || done < count) out.append(to);
    return out;
  }
  size_t start = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    const size_t at = s.find(from, start);
    if (at == std::string_view::npos) break;
    out.append(s.substr(start, at - start));
    out.append(to);
    start = at + from.size();
  }
  out.append(s.substr(start));
  return out;
}

int64_t PyFind(std::string_view s, std::string_view sub) {
  const size_t at = s.find(sub);
  if (at == std::string_view::npos) return -1;
  return static_cast<int64_t>(CodePointCount(s.substr(0, at)));
}

int64_t PyCount(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(CodePointCount(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string_view::npos; at = s.find(sub, at + sub.size())) {
    ++n;
  }
  return n;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // to_chars without a precision gives the shortest round-trip digits, the same digits
  // Python's repr picks; only the layout differs.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);
  std::string out;
  if (sci[0] == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  const int exp = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int n = static_cast<int>(digits.size());
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (n <= exp + 1) {
      out += digits + std::string(exp + 1 - n, '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + exp_buf;
}

std::string PyStrRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t next = Utf8Next(s, i, &cp);
    char esc[16];
    if (cp == '\\' || cp == static_cast<char32_t>(quote)) {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (IsNonPrintable(cp)) {
      const char32_t v = cp >= kRawByteBase ? cp - kRawByteBase : cp;
      if (v < 0x100) {
        std::snprintf(esc, sizeof(esc), "\\x%02x", static_cast<unsigned>(v));
      } else if (v < 0x10000) {
        std::snprintf(esc, sizeof(esc), "\\u%04x", static_cast<unsigned>(v));
      } else {
        std::snprintf(esc, sizeof(esc), "\\U%08x", static_cast<unsigned>(v));
      }
      out += esc;
    } else {
      out.append(s.substr(i, next - i));
    }
    i = next;
  }
  out.push_back(quote);
  return out;
}

std::string JsonQuote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  char esc[16];
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    const size_t next = Utf8Next(s, i, &cp);
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F && cp < kRawByteBase)) {
          if (cp >= 0x10000) {  // UTF-16 surrogate pair
            const char32_t v = cp - 0x10000;
            std::snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                          static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
          } else {
            std::snprintf(esc, sizeof(esc), "\\u%04x", static_cast<unsigned>(cp));
          }
          out += esc;
        } else {
          out.append(s.substr(i, next - i));
        }
    }
    i = next;
  }
  out.push_back('"');
  return out;
}

}  // namespace ingot::jinja
