// Chat-template lexer: splits a Jinja template into text and tag tokens, applying the
// whitespace rules transformers renders with (trim_blocks, lstrip_blocks, the '-' and
// '+' modifiers, keep_trailing_newline=False, newlines normalized to \n), and lexes the
// expressions inside {{ }} and {% %} tags.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ingot::jinja {

enum class TokenKind {
  kText,        // literal output (already whitespace-processed)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifiers and keywords (if, for, and, not, is, true, none, ...)
  kString,      // a string literal, escapes already decoded
  kInt,
  kFloat,
  kOperator,    // + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
  kEof,
};

struct Token {
  TokenKind kind;
  size_t offset;       // byte offset in the template, for error messages
  std::string text;    // kText data, kName / kOperator spelling, kString value
  int64_t int_value = 0;
  double float_value = 0;
};

// The tokens of `src`, ending with kEof. INVALID_ARGUMENT for unterminated tags,
// comments and strings, unbalanced brackets inside a tag and unexpected characters.
absl::StatusOr<std::vector<Token>> Lex(std::string_view src);

// INVALID_ARGUMENT "<message> at offset <offset>", the form every chat-template error
// takes so a template author can find the construct.
absl::Status ErrorAt(size_t offset, std::string_view message);

}  // namespace ingot::jinja
