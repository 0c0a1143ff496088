#include "engine/tokenizer/chat_template_lexer.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace ingot::jinja {
namespace {

enum class TagKind { kVar, kBlock, kComment };

bool IsNewline(char c) { return c == '\n' || c == '\r'; }
bool IsAsciiSpace(char c) { return c == ' ' || c == '\t' || IsNewline(c) || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

// Jinja normalizes \r\n and \r to \n before lexing; text keeps offsets into the
// original template by normalizing only what it emits.
std::string NormalizeNewlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Index after the Python whitespace that starts at `i`.
size_t SkipPySpace(std::string_view s, size_t i) {
  while (i < s.size()) {
    char32_t cp;
    const size_t next = Utf8Next(s, i, &cp);
    if (!IsPySpace(cp)) break;
    i = next;
  }
  return i;
}

// Index after one newline at `i` (trim_blocks), or `i`.
size_t SkipOneNewline(std::string_view s, size_t i) {
  if (i < s.size() && s[i] == '\r') return i + 1 < s.size() && s[i + 1] == '\n' ? i + 2 : i + 1;
  if (i < s.size() && s[i] == '\n') return i + 1;
  return i;
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {
    // keep_trailing_newline=False: one trailing newline of the template is dropped.
    if (src_.ends_with("\r\n")) {
      src_.remove_suffix(2);
    } else if (src_.ends_with('\n') || src_.ends_with('\r')) {
      src_.remove_suffix(1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      const size_t tag = FindTagStart(pos_);
      if (tag == std::string_view::npos) {
        EmitText(pos_, src_.substr(pos_));
        break;
      }
      const char c = src_[tag + 1];
      const TagKind kind = c == '{' ? TagKind::kVar : c == '%' ? TagKind::kBlock : TagKind::kComment;
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      const bool has_sign = sign == '-' || sign == '+';
      EmitText(pos_, StripBeforeTag(src_.substr(pos_, tag - pos_), kind, has_sign ? sign : '\0'));
      pos_ = tag + 2 + (has_sign ? 1 : 0);
      absl::Status status;
      if (kind == TagKind::kComment) {
        status = LexComment(tag);
      } else if (kind == TagKind::kBlock && IsRawStart()) {
        status = LexRaw(tag);
      } else {
        status = LexTag(tag, kind);
      }
      if (!status.ok()) return status;
    }
    tokens_.push_back({TokenKind::kEof, src_.size(), ""});
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string_view::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string_view::npos;
  }

  // The '-' modifier strips all whitespace before the tag; otherwise lstrip_blocks
  // strips the spaces between the line start and a block or comment tag.
  std::string_view StripBeforeTag(std::string_view text, TagKind kind, char sign) const {
    if (sign == '-') return PyStrip(text, /*left=*/false, /*right=*/true);
    if (sign == '+' || kind == TagKind::kVar) return text;
    size_t line_start = text.find_last_of("\n\r");
    line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
    if (line_start == 0 && !line_starting_) return text;
    std::string_view tail = text.substr(line_start);
    if (!tail.empty() && SkipPySpace(tail, 0) == tail.size()) return text.substr(0, line_start);
    return text;
  }

  void EmitText(size_t offset, std::string_view text) {
    if (text.empty()) return;
    tokens_.push_back({TokenKind::kText, offset, NormalizeNewlines(text)});
  }

  // Records where the consumed input ended, which the next lstrip_blocks decision needs.
  void Consumed(size_t new_pos) {
    line_starting_ = new_pos > 0 && IsNewline(src_[new_pos - 1]);
    pos_ = new_pos;
  }

  absl::Status LexComment(size_t tag) {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string_view::npos) return ErrorAt(tag, "unterminated comment '{#'");
    const bool strip = close > pos_ && src_[close - 1] == '-';
    const size_t after = close + 2;
    Consumed(strip ? SkipPySpace(src_, after) : SkipOneNewline(src_, after));
    return absl::OkStatus();
  }

  // `{% raw %}`, with the sign already consumed: whitespace, "raw", whitespace, "%}".
  bool IsRawStart() const {
    size_t i = pos_;
    while (i < src_.size() && IsAsciiSpace(src_[i])) ++i;
    if (src_.compare(i, 3, "raw") != 0 || (i + 3 < src_.size() && IsNameChar(src_[i + 3]))) {
      return false;
    }
    return true;
  }

  absl::Status LexRaw(size_t tag) {
    size_t i = pos_;
    while (IsAsciiSpace(src_[i])) ++i;
    i += 3;
    while (i < src_.size() && IsAsciiSpace(src_[i])) ++i;
    // Jinja applies no trim_blocks after the opening raw tag, only '-'.
    if (src_.compare(i, 3, "-%}") == 0) {
      Consumed(SkipPySpace(src_, i + 3));
    } else if (src_.compare(i, 2, "%}") == 0) {
      Consumed(i + 2);
    } else {
      return ErrorAt(tag, "malformed '{% raw %}' tag");
    }
    for (size_t at = src_.find("{%", pos_); at != std::string_view::npos;
         at = src_.find("{%", at + 1)) {
      size_t j = at + 2;
      const char sign = j < src_.size() && (src_[j] == '-' || src_[j] == '+') ? src_[j++] : '\0';
      while (j < src_.size() && IsAsciiSpace(src_[j])) ++j;
      if (src_.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src_.size() && IsAsciiSpace(src_[j])) ++j;
      size_t after;
      if (src_.compare(j, 3, "-%}") == 0) {
        after = SkipPySpace(src_, j + 3);
      } else if (src_.compare(j, 3, "+%}") == 0) {
        after = j + 3;
      } else if (src_.compare(j, 2, "%}") == 0) {
        after = SkipOneNewline(src_, j + 2);
      } else {
        continue;
      }
      EmitText(pos_, StripBeforeTag(src_.substr(pos_, at - pos_), TagKind::kBlock, sign));
      Consumed(after);
      return absl::OkStatus();
    }
    return ErrorAt(tag, "unterminated '{% raw %}' (no '{% endraw %}')");
  }

  absl::Status LexTag(size_t tag, TagKind kind) {
    tokens_.push_back({kind == TagKind::kVar ? TokenKind::kVarBegin : TokenKind::kBlockBegin, tag,
                       kind == TagKind::kVar ? "{{" : "{%"});
    std::vector<std::pair<char, size_t>> brackets;  // open bracket and its offset
    size_t i = pos_;
    while (true) {
      while (i < src_.size() && IsAsciiSpace(src_[i])) ++i;
      if (i >= src_.size()) {
        return ErrorAt(tag, kind == TagKind::kVar ? "unterminated '{{' (no matching '}}')"
                                                  : "unterminated '{%' (no matching '%}')");
      }
      // End tags count only outside brackets, so `{{ {'a': {}}}` closes at the end.
      if (brackets.empty()) {
        std::string_view rest = src_.substr(i);
        if (kind == TagKind::kVar && (rest.starts_with("}}") || rest.starts_with("-}}"))) {
          const bool strip = rest[0] == '-';
          tokens_.push_back({TokenKind::kVarEnd, i, "}}"});
          const size_t after = i + (strip ? 3 : 2);
          Consumed(strip ? SkipPySpace(src_, after) : after);
          return absl::OkStatus();
        }
        if (kind == TagKind::kBlock &&
            (rest.starts_with("%}") || rest.starts_with("-%}") || rest.starts_with("+%}"))) {
          tokens_.push_back({TokenKind::kBlockEnd, i, "%}"});
          if (rest[0] == '-') {
            Consumed(SkipPySpace(src_, i + 3));
          } else if (rest[0] == '+') {
            Consumed(i + 3);
          } else {
            Consumed(SkipOneNewline(src_, i + 2));  // trim_blocks
          }
          return absl::OkStatus();
        }
      }
      absl::StatusOr<size_t> next = LexExprToken(i, &brackets);
      if (!next.ok()) return next.status();
      i = *next;
    }
  }

  absl::StatusOr<size_t> LexExprToken(size_t i, std::vector<std::pair<char, size_t>>* brackets) {
    const char c = src_[i];
    if (IsNameStart(c)) {
      size_t j = i;
      while (j < src_.size() && IsNameChar(src_[j])) ++j;
      tokens_.push_back({TokenKind::kName, i, std::string(src_.substr(i, j - i))});
      return j;
    }
    if (IsDigit(c)) return LexNumber(i);
    if (c == '\'' || c == '"') return LexString(i);
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (src_.substr(i, 2) == op) {
        tokens_.push_back({TokenKind::kOperator, i, std::string(op)});
        return i + 2;
      }
    }
    if (std::string_view("+-*/%~[](){}<>=.:|,;").find(c) == std::string_view::npos) {
      char32_t cp;
      const size_t next = Utf8Next(src_, i, &cp);
      return ErrorAt(i, absl::StrCat("unexpected character '", std::string(src_.substr(i, next - i)),
                                     "' in tag"));
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets->push_back({c, i});
    } else if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (brackets->empty() || brackets->back().first != want) {
        return ErrorAt(i, absl::StrCat("unbalanced '", std::string(1, c), "'"));
      }
      brackets->pop_back();
    }
    tokens_.push_back({TokenKind::kOperator, i, std::string(1, c)});
    return i + 1;
  }

  // Digits with single underscores between them ("1_000").
  size_t ScanDigits(size_t j, std::string* digits) const {
    while (j < src_.size() && IsDigit(src_[j])) {
      digits->push_back(src_[j++]);
      if (j + 1 < src_.size() && src_[j] == '_' && IsDigit(src_[j + 1])) ++j;
    }
    return j;
  }

  absl::StatusOr<size_t> LexNumber(size_t i) {
    std::string text;
    size_t j = ScanDigits(i, &text);
    // After a '.', as in messages.0.role, Jinja lexes integers only.
    const bool after_dot = i > 0 && src_[i - 1] == '.';
    bool is_float = false;
    if (!after_dot && j + 1 < src_.size() && src_[j] == '.' && IsDigit(src_[j + 1])) {
      text.push_back('.');
      j = ScanDigits(j + 1, &text);
      is_float = true;
    }
    if (!after_dot && j < src_.size() && (src_[j] == 'e' || src_[j] == 'E')) {
      size_t k = j + 1;
      std::string exp = "e";
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) exp.push_back(src_[k++]);
      if (k < src_.size() && IsDigit(src_[k])) {
        j = ScanDigits(k, &exp);
        text += exp;
        is_float = true;
      }
    }
    Token tok{is_float ? TokenKind::kFloat : TokenKind::kInt, i, text};
    if (is_float) {
      tok.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      const auto res = std::from_chars(text.data(), text.data() + text.size(), tok.int_value);
      if (res.ec != std::errc()) return ErrorAt(i, "integer literal out of the 64-bit range");
    }
    tokens_.push_back(std::move(tok));
    return j;
  }

  // Decodes a string literal the way Jinja does (Python's unicode-escape): \n \t \xhh
  // \uXXXX and friends; an unknown escape keeps its backslash.
  absl::StatusOr<size_t> LexString(size_t i) {
    const char quote = src_[i];
    std::string raw;
    size_t j = i + 1;
    for (; j < src_.size() && src_[j] != quote; ++j) {
      if (src_[j] == '\\' && j + 1 < src_.size()) raw.push_back(src_[j++]);
      raw.push_back(src_[j]);
    }
    if (j >= src_.size()) return ErrorAt(i, "unterminated string literal");
    raw = NormalizeNewlines(raw);
    std::string value;
    for (size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] != '\\' || k + 1 >= raw.size()) {
        value.push_back(raw[k]);
        continue;
      }
      const char e = raw[++k];
      // The n hex digits after the escape letter at raw[k].
      auto hex = [&](int n) -> std::optional<char32_t> {
        if (k + n >= raw.size()) return std::nullopt;
        char32_t cp = 0;
        for (int d = 1; d <= n; ++d) {
          const char h = raw[k + d];
          if (!std::isxdigit(static_cast<unsigned char>(h))) return std::nullopt;
          cp = cp * 16 + (IsDigit(h) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        return cp;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': value.push_back('\\'); break;
        case '\'': value.push_back('\''); break;
        case '"': value.push_back('"'); break;
        case 'a': value.push_back('\a'); break;
        case 'b': value.push_back('\b'); break;
        case 'f': value.push_back('\f'); break;
        case 'n': value.push_back('\n'); break;
        case 'r': value.push_back('\r'); break;
        case 't': value.push_back('\t'); break;
        case 'v': value.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          std::optional<char32_t> cp = hex(n);
          if (!cp || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
            return ErrorAt(i, absl::StrCat("malformed \\", std::string(1, e),
                                           " escape in string literal"));
          }
          AppendUtf8(*cp, &value);
          k += n;
          break;
        }
        case 'N': return ErrorAt(i, "unsupported \\N{...} escape in string literal");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = 0;
            int n = 0;
            while (n < 3 && k < raw.size() && raw[k] >= '0' && raw[k] <= '7') {
              cp = cp * 8 + (raw[k++] - '0');
              ++n;
            }
            --k;
            AppendUtf8(cp, &value);
          } else {
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    tokens_.push_back({TokenKind::kString, i, std::move(value)});
    return j + 1;
  }

  std::string_view src_;
  size_t pos_ = 0;
  bool line_starting_ = true;  // the consumed input so far ends a line
  std::vector<Token> tokens_;
};

}  // namespace

absl::Status ErrorAt(size_t offset, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(message), " at offset ", offset));
}

absl::StatusOr<std::vector<Token>> Lex(std::string_view src) { return Lexer(src).Run(); }

}  // namespace ingot::jinja
