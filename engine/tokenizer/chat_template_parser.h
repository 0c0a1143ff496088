// Internals shared by the statement parser (chat_template_parser.cc) and the
// expression parser (chat_template_parser_expr.cc): a token cursor with the recursion
// counter both sides bump, so nesting is bounded across blocks and brackets alike.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_lexer.h"

namespace ingot::jinja {

// A token as error messages name it ("'}}'", "end of template", "'foo'").
std::string Describe(const Token& t);

class TokenStream {
 public:
  explicit TokenStream(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  // Peeking past the end yields the final kEof token.
  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& t = Peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool AtOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool AtName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  absl::Status Expect(std::string_view op) {
    if (!AtOp(op)) {
      return ErrorAt(Peek().offset, absl::StrCat("expected '", std::string(op), "', got ",
                                                 Describe(Peek())));
    }
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName(std::string_view what) {
    if (Peek().kind != TokenKind::kName) {
      return ErrorAt(Peek().offset, absl::StrCat("expected ", std::string(what), ", got ",
                                                 Describe(Peek())));
    }
    return Next().text;
  }

  size_t position() const { return pos_; }
  const Token& token(size_t i) const { return tokens_[i]; }

  // Counts one level of recursion (a block, a bracket, a unary operator) for its scope;
  // Check() fails past kMaxParseNesting, before the C++ stack is at risk.
  class Nesting {
   public:
    explicit Nesting(TokenStream* ts) : ts_(ts) { ++ts_->nesting_; }
    ~Nesting() { --ts_->nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    absl::Status Check(size_t offset) const {
      if (ts_->nesting_ > kMaxParseNesting) return ErrorAt(offset, "template nests too deeply");
      return absl::OkStatus();
    }

   private:
    TokenStream* ts_;
  };

 private:
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

// `a, b` without parentheses is a tuple: {{ }} bodies, set values, for iterables.
absl::StatusOr<std::unique_ptr<Expr>> ParseTupleExpr(TokenStream* ts, bool with_condexpr);
// A single expression; `with_condexpr` allows a trailing `x if c else y`.
absl::StatusOr<std::unique_ptr<Expr>> ParseExpr(TokenStream* ts, bool with_condexpr);

}  // namespace ingot::jinja
