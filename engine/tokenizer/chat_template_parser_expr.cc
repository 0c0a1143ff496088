// Expression parser for the Jinja subset, following Jinja's own grammar and operator
// precedence (loosest first): `x if c else y`, or, and, not, comparisons and `in`,
// + -, ~, * / // %, ** (left-associative, as in Jinja), unary - +, then postfix
// . [] () with filters `|` and tests `is` binding tighter than any binary operator.
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_parser.h"

namespace ingot::jinja {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

class ExprParser {
 public:
  explicit ExprParser(TokenStream* ts) : ts_(ts) {}

  bool AtTupleEnd() const {
    const TokenKind k = Peek().kind;
    return k == TokenKind::kVarEnd || k == TokenKind::kBlockEnd || k == TokenKind::kEof ||
           AtOp(")") || AtName("if") || AtName("recursive");
  }

  // `a, b, c` without parentheses is a tuple (in {{ }}, set values, for iterables).
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr) {
    const size_t offset = Peek().offset;
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(with_condexpr));
    if (!AtOp(",")) return first;
    std::vector<ExprPtr> items;
    items.push_back(std::move(first));
    while (AtOp(",")) {
      Next();
      if (AtTupleEnd()) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
      items.push_back(std::move(item));
    }
    return Make(ExprKind::kTuple, offset, std::move(items));
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    TokenStream::Nesting guard(ts_);
    RETURN_IF_ERROR(guard.Check(Peek().offset));
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (with_condexpr && AtName("if")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (AtName("else")) {
        Next();
        ASSIGN_OR_RETURN(otherwise, ParseExpression(/*with_condexpr=*/true));
      }
      std::vector<ExprPtr> args;
      args.push_back(std::move(cond));
      args.push_back(std::move(expr));
      args.push_back(std::move(otherwise));
      ASSIGN_OR_RETURN(expr, Make(ExprKind::kCondExpr, offset, std::move(args)));
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (AtName("or")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      ASSIGN_OR_RETURN(left, Make2(ExprKind::kOr, offset, std::move(left), std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (AtName("and")) {
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      ASSIGN_OR_RETURN(left, Make2(ExprKind::kAnd, offset, std::move(left), std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!AtName("not")) return ParseCompare();
    TokenStream::Nesting guard(ts_);
    const size_t offset = Next().offset;
    RETURN_IF_ERROR(guard.Check(offset));
    ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    std::vector<ExprPtr> args;
    args.push_back(std::move(operand));
    return Make(ExprKind::kNot, offset, std::move(args));
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const size_t offset = Peek().offset;
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    std::vector<ExprPtr> operands;
    std::vector<std::string> ops;
    operands.push_back(std::move(first));
    while (true) {
      std::string op;
      if (Peek().kind == TokenKind::kOperator &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" ||
           Peek().text == "<=" || Peek().text == ">" || Peek().text == ">=")) {
        op = Next().text;
      } else if (AtName("in")) {
        Next();
        op = "in";
      } else if (AtName("not") && AtName("in", 1)) {
        Next(), Next();
        op = "not in";
      } else {
        break;
      }
      ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      operands.push_back(std::move(operand));
      ops.push_back(std::move(op));
    }
    if (ops.empty()) return std::move(operands[0]);
    ASSIGN_OR_RETURN(ExprPtr e, Make(ExprKind::kCompare, offset, std::move(operands)));
    e->ops = std::move(ops);
    return e;
  }

  // One left-associative binary level: operands from `next`, operators from `ops`.
  template <typename NextFn>
  absl::StatusOr<ExprPtr> ParseBinary(std::initializer_list<std::string_view> ops, NextFn next) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (true) {
      std::string op;
      for (std::string_view candidate : ops) {
        if (AtOp(candidate)) op = candidate;
      }
      if (op.empty()) return left;
      const size_t offset = Next().offset;
      ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      ASSIGN_OR_RETURN(left, Make2(ExprKind::kBinary, offset, std::move(left), std::move(right)));
      left->name = op;
    }
  }
  absl::StatusOr<ExprPtr> ParseMath1() { return ParseBinary({"+", "-"}, &ExprParser::ParseConcat); }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinary({"~"}, &ExprParser::ParseMath2); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseBinary({"*", "/", "//", "%"}, &ExprParser::ParsePow);
  }
  absl::StatusOr<ExprPtr> ParsePow() { return ParseBinary({"**"}, &ExprParser::ParseUnaryFiltered); }
  absl::StatusOr<ExprPtr> ParseUnaryFiltered() { return ParseUnary(/*with_filter=*/true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    ExprPtr node;
    if (AtOp("-") || AtOp("+")) {
      TokenStream::Nesting guard(ts_);
      const Token& sign = Next();
      RETURN_IF_ERROR(guard.Check(sign.offset));
      const ExprKind kind = sign.text == "-" ? ExprKind::kNeg : ExprKind::kPos;
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
      std::vector<ExprPtr> args;
      args.push_back(std::move(operand));
      ASSIGN_OR_RETURN(node, Make(kind, sign.offset, std::move(args)));
    } else {
      ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) return ParseFilterExpr(std::move(node));
    return node;
  }

  absl::StatusOr<ExprPtr> Literal(size_t offset, Value v) {
    ASSIGN_OR_RETURN(ExprPtr e, Make(ExprKind::kLiteral, offset, {}));
    e->literal = std::move(v);
    return e;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    const size_t offset = t.offset;
    switch (t.kind) {
      case TokenKind::kName: {
        const std::string name = Next().text;
        if (name == "true" || name == "True") return Literal(offset, Value::Bool(true));
        if (name == "false" || name == "False") return Literal(offset, Value::Bool(false));
        if (name == "none" || name == "None") return Literal(offset, Value::None());
        ASSIGN_OR_RETURN(ExprPtr e, Make(ExprKind::kName, offset, {}));
        e->name = name;
        return e;
      }
      case TokenKind::kString: {
        std::string s;
        while (Peek().kind == TokenKind::kString) s += Next().text;  // 'a' 'b' is 'ab'
        return Literal(offset, Value::String(std::move(s)));
      }
      case TokenKind::kInt: return Literal(offset, Value::Int(Next().int_value));
      case TokenKind::kFloat: return Literal(offset, Value::Float(Next().float_value));
      case TokenKind::kOperator:
        if (t.text == "(") return ParseParenthesized();
        if (t.text == "[") return ParseListOrDict(/*dict=*/false);
        if (t.text == "{") return ParseListOrDict(/*dict=*/true);
        break;
      default: break;
    }
    return ErrorAt(offset, absl::StrCat("expected an expression, got ", Describe(t)));
  }

  absl::StatusOr<ExprPtr> ParseParenthesized() {
    const size_t offset = Next().offset;
    if (AtOp(")")) {
      Next();
      return Make(ExprKind::kTuple, offset, {});
    }
    TokenStream::Nesting guard(ts_);
    RETURN_IF_ERROR(guard.Check(offset));
    ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(/*with_condexpr=*/true));
    RETURN_IF_ERROR(Expect(")"));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseListOrDict(bool dict) {
    const size_t offset = Next().offset;
    const std::string_view close = dict ? "}" : "]";
    std::vector<ExprPtr> items;
    while (!AtOp(close)) {
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(/*with_condexpr=*/true));
      items.push_back(std::move(item));
      if (dict) {
        RETURN_IF_ERROR(Expect(":"));
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
        items.push_back(std::move(value));
      }
      if (!AtOp(",")) break;
      Next();
    }
    RETURN_IF_ERROR(Expect(close));
    return Make(dict ? ExprKind::kDict : ExprKind::kList, offset, std::move(items));
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (AtOp(".")) {
        const size_t offset = Next().offset;
        if (Peek().kind == TokenKind::kInt) {  // messages.0 is messages[0]
          ASSIGN_OR_RETURN(ExprPtr index, Literal(Peek().offset, Value::Int(Next().int_value)));
          ASSIGN_OR_RETURN(node, Make2(ExprKind::kGetItem, offset, std::move(node), std::move(index)));
          continue;
        }
        ASSIGN_OR_RETURN(std::string attr, ExpectName("an attribute name after '.'"));
        std::vector<ExprPtr> args;
        args.push_back(std::move(node));
        ASSIGN_OR_RETURN(node, Make(ExprKind::kGetAttr, offset, std::move(args)));
        node->name = std::move(attr);
      } else if (AtOp("[")) {
        ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (AtOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(ExprKind::kCall, "", std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    const size_t offset = Next().offset;
    TokenStream::Nesting guard(ts_);
    RETURN_IF_ERROR(guard.Check(offset));
    ExprPtr parts[3];
    if (!AtOp(":")) {
      ASSIGN_OR_RETURN(parts[0], ParseExpression(/*with_condexpr=*/true));
      if (AtOp("]")) {
        Next();
        return Make2(ExprKind::kGetItem, offset, std::move(node), std::move(parts[0]));
      }
    }
    RETURN_IF_ERROR(Expect(":"));
    if (!AtOp("]") && !AtOp(":")) {
      ASSIGN_OR_RETURN(parts[1], ParseExpression(/*with_condexpr=*/true));
    }
    if (AtOp(":")) {
      Next();
      if (!AtOp("]")) {
        ASSIGN_OR_RETURN(parts[2], ParseExpression(/*with_condexpr=*/true));
      }
    }
    RETURN_IF_ERROR(Expect("]"));
    std::vector<ExprPtr> args;
    args.push_back(std::move(node));
    for (ExprPtr& p : parts) args.push_back(std::move(p));
    return Make(ExprKind::kSlice, offset, std::move(args));
  }

  // `(args, kw=value)` after a callee, a filter or a test; args[0] is `subject`.
  absl::StatusOr<ExprPtr> ParseCall(ExprKind kind, std::string name, ExprPtr subject) {
    const size_t offset = subject->offset;
    std::vector<ExprPtr> args;
    args.push_back(std::move(subject));
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    if (AtOp("(")) {
      Next();
      TokenStream::Nesting guard(ts_);
      RETURN_IF_ERROR(guard.Check(offset));
      while (!AtOp(")")) {
        if (AtOp("*") || AtOp("**")) {
          return ErrorAt(Peek().offset, "unsupported *args / **kwargs in a call");
        }
        if (Peek().kind == TokenKind::kName && AtOp("=", 1)) {
          std::string key = Next().text;
          Next();
          ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
          kwargs.emplace_back(std::move(key), std::move(value));
        } else {
          if (!kwargs.empty()) {
            return ErrorAt(Peek().offset, "positional argument after a keyword argument");
          }
          ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
          args.push_back(std::move(value));
        }
        if (!AtOp(",")) break;
        Next();
      }
      RETURN_IF_ERROR(Expect(")"));
    }
    for (auto& [key, value] : kwargs) args.push_back(std::move(value));  // depth only
    ASSIGN_OR_RETURN(ExprPtr e, Make(kind, offset, std::move(args)));
    // Move the keyword values back out of args into kwargs.
    for (size_t i = kwargs.size(); i > 0; --i) {
      kwargs[i - 1].second = std::move(e->args.back());
      e->args.pop_back();
    }
    e->kwargs = std::move(kwargs);
    e->name = std::move(name);
    return e;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (AtOp("|")) {
        Next();
        const size_t offset = Peek().offset;
        ASSIGN_OR_RETURN(std::string name, ExpectName("a filter name after '|'"));
        if (!IsKnownFilter(name)) return ErrorAt(offset, absl::StrCat("unsupported filter '", name, "'"));
        ASSIGN_OR_RETURN(node, ParseCall(ExprKind::kFilter, name, std::move(node)));
        node->offset = offset;
      } else if (AtName("is")) {
        Next();
        const bool negated = AtName("not");
        if (negated) Next();
        const size_t offset = Peek().offset;
        ASSIGN_OR_RETURN(std::string name, ExpectName("a test name after 'is'"));
        if (!IsKnownTest(name)) return ErrorAt(offset, absl::StrCat("unsupported test '", name, "'"));
        if (AtOp("(")) {
          ASSIGN_OR_RETURN(node, ParseCall(ExprKind::kTest, name, std::move(node)));
        } else {
          // One bare argument, as in `x is divisibleby 3`.
          const Token& t = Peek();
          const bool arg_follows =
              (t.kind == TokenKind::kName && t.text != "else" && t.text != "or" &&
               t.text != "and") ||
              t.kind == TokenKind::kString || t.kind == TokenKind::kInt ||
              t.kind == TokenKind::kFloat || AtOp("[") || AtOp("{");
          std::vector<ExprPtr> args;
          args.push_back(std::move(node));
          if (arg_follows) {
            if (AtName("is")) return ErrorAt(t.offset, "tests cannot be chained with 'is'");
            ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
            ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
            args.push_back(std::move(arg));
          }
          ASSIGN_OR_RETURN(node, Make(ExprKind::kTest, offset, std::move(args)));
          node->name = std::move(name);
        }
        node->offset = offset;
        node->negated = negated;
      } else if (AtOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(ExprKind::kCall, "", std::move(node)));
      } else {
        return node;
      }
    }
  }


 private:
  const Token& Peek(size_t ahead = 0) const { return ts_->Peek(ahead); }
  const Token& Next() { return ts_->Next(); }
  bool AtOp(std::string_view op, size_t ahead = 0) const { return ts_->AtOp(op, ahead); }
  bool AtName(std::string_view name, size_t ahead = 0) const { return ts_->AtName(name, ahead); }
  absl::Status Expect(std::string_view op) { return ts_->Expect(op); }
  absl::StatusOr<std::string> ExpectName(std::string_view what) { return ts_->ExpectName(what); }

  // Builds a node and bounds the height of the tree (left-deep chains like a+b+c+...
  // nest without recursing in the parser, but would in the evaluator).
  static absl::StatusOr<ExprPtr> Make(ExprKind kind, size_t offset, std::vector<ExprPtr> args) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    e->args = std::move(args);
    for (const ExprPtr& a : e->args) {
      if (a) e->depth = std::max(e->depth, a->depth + 1);
    }
    if (e->depth > kMaxExprDepth) return ErrorAt(offset, "expression nests too deeply");
    return e;
  }
  static absl::StatusOr<ExprPtr> Make2(ExprKind kind, size_t offset, ExprPtr a, ExprPtr b) {
    std::vector<ExprPtr> args;
    args.push_back(std::move(a));
    args.push_back(std::move(b));
    return Make(kind, offset, std::move(args));
  }


  TokenStream* ts_;
};

}  // namespace

absl::StatusOr<ExprPtr> ParseTupleExpr(TokenStream* ts, bool with_condexpr) {
  return ExprParser(ts).ParseTuple(with_condexpr);
}

absl::StatusOr<ExprPtr> ParseExpr(TokenStream* ts, bool with_condexpr) {
  return ExprParser(ts).ParseExpression(with_condexpr);
}

}  // namespace ingot::jinja
