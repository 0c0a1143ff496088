// Recursive-descent parser for the Jinja subset, following Jinja's own grammar and
// operator precedence (loosest first): `x if c else y`, or, and, not, comparisons and
// `in`, + -, ~, * / // %, **, unary - +, then postfix . [] () with filters `|` and
// tests `is` binding tighter than any binary operator.
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_lexer.h"

namespace ingot::jinja {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

// Tags Jinja has that this interpreter leaves out; named in the error.
constexpr std::string_view kUnsupportedTags[] = {
    "call", "filter", "include", "import", "from", "extends", "block",
    "with", "autoescape", "do",     "trans",  "pluralize", "print"};

// The block being parsed, for "not closed" and "unexpected end tag" messages.
struct OpenBlock {
  std::string_view tag;  // "if", "for", ...; empty at the top level
  size_t offset;
  std::initializer_list<std::string_view> end_tags;
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case TokenKind::kEof: return "end of template";
    case TokenKind::kVarEnd: return "'}}'";
    case TokenKind::kBlockEnd: return "'%}'";
    case TokenKind::kText: return "text";
    case TokenKind::kString: return "a string";
    default: return absl::StrCat("'", t.text, "'");
  }
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    Body body;
    ASSIGN_OR_RETURN(std::string end, ParseBody(&body, {"", 0, {}}));
    (void)end;
    return body;
  }

 private:
  // Counts recursion (blocks, brackets, unary chains) so a hostile template cannot
  // overflow the stack.
  class NestingGuard {
   public:
    explicit NestingGuard(Parser* p) : p_(p) { ++p_->nesting_; }
    ~NestingGuard() { --p_->nesting_; }
    absl::Status Check(size_t offset) const {
      if (p_->nesting_ > kMaxParseNesting) return ErrorAt(offset, "template nests too deeply");
      return absl::OkStatus();
    }

   private:
    Parser* p_;
  };

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
  absl::Status ExpectBlockEnd(std::string_view tag) {
    if (Peek().kind != TokenKind::kBlockEnd) {
      return ErrorAt(Peek().offset, absl::StrCat("expected '%}' to end '{% ", std::string(tag),
                                                 " %}', got ", Describe(Peek())));
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

  // ---- statements ---------------------------------------------------------------

  // Parses until one of block.end_tags; consumes `{% tag` and returns the tag. At the top
  // level (no end tags) parses to the end and returns "".
  absl::StatusOr<std::string> ParseBody(Body* body, const OpenBlock& block) {
    NestingGuard guard(this);
    RETURN_IF_ERROR(guard.Check(Peek().offset));
    while (true) {
      const Token& t = Peek();
      switch (t.kind) {
        case TokenKind::kEof:
          if (block.tag.empty()) return std::string();
          return ErrorAt(block.offset, absl::StrCat("'{% ", std::string(block.tag),
                                                    " %}' is never closed (expected ",
                                                    EndTagList(block), ")"));
        case TokenKind::kText: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kText;
          s->offset = t.offset;
          s->text = Next().text;
          body->push_back(std::move(s));
          break;
        }
        case TokenKind::kVarBegin: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kOutput;
          s->offset = Next().offset;
          ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/true));
          if (Peek().kind != TokenKind::kVarEnd) {
            return ErrorAt(Peek().offset, absl::StrCat("expected '}}', got ", Describe(Peek())));
          }
          Next();
          body->push_back(std::move(s));
          break;
        }
        case TokenKind::kBlockBegin: {
          const size_t offset = Next().offset;
          ASSIGN_OR_RETURN(std::string tag, ExpectName("a tag name after '{%'"));
          for (std::string_view end : block.end_tags) {
            if (tag == end) return tag;
          }
          ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s, ParseStatement(tag, offset, block));
          body->push_back(std::move(s));
          break;
        }
        default:
          return ErrorAt(t.offset, absl::StrCat("unexpected ", Describe(t)));
      }
    }
  }

  static std::string EndTagList(const OpenBlock& block) {
    std::vector<std::string> names;
    for (std::string_view end : block.end_tags) names.push_back(absl::StrCat("'", std::string(end), "'"));
    return absl::StrJoin(names, " or ");
  }

  absl::StatusOr<std::unique_ptr<Stmt>> ParseStatement(const std::string& tag, size_t offset,
                                                       const OpenBlock& block) {
    auto s = std::make_unique<Stmt>();
    s->offset = offset;
    if (tag == "if") {
      RETURN_IF_ERROR(ParseIf(s.get()));
    } else if (tag == "for") {
      RETURN_IF_ERROR(ParseFor(s.get()));
    } else if (tag == "set") {
      RETURN_IF_ERROR(ParseSet(s.get()));
    } else if (tag == "macro") {
      RETURN_IF_ERROR(ParseMacro(s.get()));
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return ErrorAt(offset, absl::StrCat("'{% ", tag, " %}' outside a loop"));
      s->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      RETURN_IF_ERROR(ExpectBlockEnd(tag));
    } else if (tag == "generation") {
      s->kind = StmtKind::kGeneration;
      RETURN_IF_ERROR(ExpectBlockEnd(tag));
      s->bodies.emplace_back();
      RETURN_IF_ERROR(ParseBody(&s->bodies[0], {"generation", offset, {"endgeneration"}}).status());
      RETURN_IF_ERROR(ExpectBlockEnd("endgeneration"));
    } else {
      for (std::string_view unsupported : kUnsupportedTags) {
        if (tag == unsupported) {
          return ErrorAt(offset, absl::StrCat("unsupported tag '{% ", tag, " %}'"));
        }
      }
      if (tag.starts_with("end") || tag == "else" || tag == "elif") {
        std::string msg = absl::StrCat("unexpected '{% ", tag, " %}'");
        if (!block.tag.empty()) {
          absl::StrAppend(&msg, " (expected ", EndTagList(block), " to close '{% ",
                          std::string(block.tag), " %}' at offset ", block.offset, ")");
        }
        return ErrorAt(offset, msg);
      }
      return ErrorAt(offset, absl::StrCat("unknown tag '{% ", tag, " %}'"));
    }
    return s;
  }

  absl::Status ParseIf(Stmt* s) {
    s->kind = StmtKind::kIf;
    const size_t offset = s->offset;
    while (true) {
      ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(/*with_condexpr=*/false));
      s->conditions.push_back(std::move(cond));
      RETURN_IF_ERROR(ExpectBlockEnd("if"));
      s->bodies.emplace_back();
      ASSIGN_OR_RETURN(std::string end,
                       ParseBody(&s->bodies.back(), {"if", offset, {"elif", "else", "endif"}}));
      if (end == "elif") continue;
      if (end == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd("else"));
        s->bodies.emplace_back();
        RETURN_IF_ERROR(ParseBody(&s->bodies.back(), {"if", offset, {"endif"}}).status());
      }
      return ExpectBlockEnd("endif");
    }
  }

  absl::Status ParseFor(Stmt* s) {
    s->kind = StmtKind::kFor;
    do {
      ASSIGN_OR_RETURN(std::string target, ExpectName("a loop variable"));
      s->targets.push_back(std::move(target));
    } while (AtOp(",") && (Next(), true));
    if (!AtName("in")) {
      return ErrorAt(Peek().offset, absl::StrCat("expected 'in' in '{% for %}', got ", Describe(Peek())));
    }
    Next();
    ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/false));
    if (AtName("if")) {
      Next();
      ASSIGN_OR_RETURN(s->filter, ParseExpression(/*with_condexpr=*/true));
    }
    if (AtName("recursive")) return ErrorAt(Peek().offset, "unsupported recursive for loop");
    RETURN_IF_ERROR(ExpectBlockEnd("for"));
    s->bodies.emplace_back();
    ++loop_depth_;
    const size_t body_start = pos_;
    absl::StatusOr<std::string> end = ParseBody(&s->bodies[0], {"for", s->offset, {"else", "endfor"}});
    --loop_depth_;
    if (!end.ok()) return end.status();
    // Building `loop` for every pass is most of a loop's cost; skip it when unused.
    for (size_t i = body_start; i < pos_ && !s->uses_loop; ++i) {
      s->uses_loop = tokens_[i].kind == TokenKind::kName && tokens_[i].text == "loop";
    }
    if (*end == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd("else"));
      s->bodies.emplace_back();
      RETURN_IF_ERROR(ParseBody(&s->bodies[1], {"for", s->offset, {"endfor"}}).status());
    }
    return ExpectBlockEnd("endfor");
  }

  absl::Status ParseSet(Stmt* s) {
    s->kind = StmtKind::kSet;
    ASSIGN_OR_RETURN(std::string target, ExpectName("a variable name"));
    s->targets.push_back(std::move(target));
    if (AtOp(".")) {
      Next();
      ASSIGN_OR_RETURN(s->attr, ExpectName("an attribute name"));
    } else {
      while (AtOp(",")) {
        Next();
        ASSIGN_OR_RETURN(std::string more, ExpectName("a variable name"));
        s->targets.push_back(std::move(more));
      }
    }
    if (AtOp("=")) {
      Next();
      ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/true));
      return ExpectBlockEnd("set");
    }
    if (Peek().kind == TokenKind::kBlockEnd && s->targets.size() == 1 && s->attr.empty()) {
      Next();
      s->kind = StmtKind::kSetBlock;
      s->bodies.emplace_back();
      RETURN_IF_ERROR(ParseBody(&s->bodies[0], {"set", s->offset, {"endset"}}).status());
      return ExpectBlockEnd("endset");
    }
    if (AtOp("|")) return ErrorAt(Peek().offset, "unsupported filtered block '{% set x | filter %}'");
    return ErrorAt(Peek().offset, absl::StrCat("expected '=' in '{% set %}', got ", Describe(Peek())));
  }

  absl::Status ParseMacro(Stmt* s) {
    s->kind = StmtKind::kMacro;
    ASSIGN_OR_RETURN(s->name, ExpectName("a macro name"));
    RETURN_IF_ERROR(Expect("("));
    while (!AtOp(")")) {
      ASSIGN_OR_RETURN(std::string param, ExpectName("a macro parameter"));
      s->targets.push_back(std::move(param));
      ExprPtr dflt;
      if (AtOp("=")) {
        Next();
        ASSIGN_OR_RETURN(dflt, ParseExpression(/*with_condexpr=*/true));
      } else if (!s->defaults.empty() && s->defaults.back()) {
        return ErrorAt(Peek().offset, "macro parameter without a default after one with a default");
      }
      s->defaults.push_back(std::move(dflt));
      if (!AtOp(",")) break;
      Next();
    }
    RETURN_IF_ERROR(Expect(")"));
    RETURN_IF_ERROR(ExpectBlockEnd("macro"));
    s->bodies.emplace_back();
    // break/continue inside a macro body do not reach an enclosing loop.
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    absl::StatusOr<std::string> end = ParseBody(&s->bodies[0], {"macro", s->offset, {"endmacro"}});
    loop_depth_ = saved_loops;
    if (!end.ok()) return end.status();
    return ExpectBlockEnd("endmacro");
  }

  // ---- expressions --------------------------------------------------------------

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
    NestingGuard guard(this);
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
    NestingGuard guard(this);
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
  absl::StatusOr<ExprPtr> ParseMath1() { return ParseBinary({"+", "-"}, &Parser::ParseConcat); }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinary({"~"}, &Parser::ParseMath2); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseBinary({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  absl::StatusOr<ExprPtr> ParsePow() { return ParseBinary({"**"}, &Parser::ParseUnaryFiltered); }
  absl::StatusOr<ExprPtr> ParseUnaryFiltered() { return ParseUnary(/*with_filter=*/true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    ExprPtr node;
    if (AtOp("-") || AtOp("+")) {
      NestingGuard guard(this);
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
    NestingGuard guard(this);
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
    NestingGuard guard(this);
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
      NestingGuard guard(this);
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

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view src) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(src));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace ingot::jinja
