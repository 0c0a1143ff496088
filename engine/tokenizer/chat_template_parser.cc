// Statement parser for the Jinja subset: text, {{ }} and the {% %} tags (if, for, set,
// macro, break/continue, generation), each body parsed until its end tag. Expressions
// are parsed in chat_template_parser_expr.cc.
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_parser.h"

namespace ingot::jinja {

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

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : ts_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    Body body;
    RETURN_IF_ERROR(ParseBody(&body, {"", 0, {}}).status());
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return ts_.Peek(ahead); }
  const Token& Next() { return ts_.Next(); }
  bool AtOp(std::string_view op, size_t ahead = 0) const { return ts_.AtOp(op, ahead); }
  bool AtName(std::string_view name, size_t ahead = 0) const { return ts_.AtName(name, ahead); }
  absl::Status Expect(std::string_view op) { return ts_.Expect(op); }
  absl::StatusOr<std::string> ExpectName(std::string_view what) { return ts_.ExpectName(what); }
  absl::Status ExpectBlockEnd(std::string_view tag) {
    if (Peek().kind != TokenKind::kBlockEnd) {
      return ErrorAt(Peek().offset, absl::StrCat("expected '%}' to end '{% ", std::string(tag),
                                                 " %}', got ", Describe(Peek())));
    }
    Next();
    return absl::OkStatus();
  }

  // ---- statements ---------------------------------------------------------------

  // Parses until one of block.end_tags; consumes `{% tag` and returns the tag. At the top
  // level (no end tags) parses to the end and returns "".
  absl::StatusOr<std::string> ParseBody(Body* body, const OpenBlock& block) {
    TokenStream::Nesting guard(&ts_);
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
          ASSIGN_OR_RETURN(s->expr, ParseTupleExpr(&ts_, /*with_condexpr=*/true));
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
    absl::StatusOr<std::string> end = std::string("elif");
    while (*end == "elif") {
      ASSIGN_OR_RETURN(ExprPtr cond, ParseTupleExpr(&ts_, /*with_condexpr=*/false));
      s->conditions.push_back(std::move(cond));
      RETURN_IF_ERROR(ExpectBlockEnd("if"));
      s->bodies.emplace_back();
      end = ParseBody(&s->bodies.back(), {"if", offset, {"elif", "else", "endif"}});
      if (!end.ok()) return end.status();
    }
    if (*end == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd("else"));
      s->bodies.emplace_back();
      RETURN_IF_ERROR(ParseBody(&s->bodies.back(), {"if", offset, {"endif"}}).status());
    }
    return ExpectBlockEnd("endif");
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
    ASSIGN_OR_RETURN(s->expr, ParseTupleExpr(&ts_, /*with_condexpr=*/false));
    if (AtName("if")) {
      Next();
      ASSIGN_OR_RETURN(s->filter, ParseExpr(&ts_, /*with_condexpr=*/true));
    }
    if (AtName("recursive")) return ErrorAt(Peek().offset, "unsupported recursive for loop");
    RETURN_IF_ERROR(ExpectBlockEnd("for"));
    s->bodies.emplace_back();
    ++loop_depth_;
    const size_t body_start = ts_.position();
    absl::StatusOr<std::string> end = ParseBody(&s->bodies[0], {"for", s->offset, {"else", "endfor"}});
    --loop_depth_;
    if (!end.ok()) return end.status();
    // Building `loop` for every pass is most of a loop's cost; skip it when unused.
    for (size_t i = body_start; i < ts_.position() && !s->uses_loop; ++i) {
      s->uses_loop = ts_.token(i).kind == TokenKind::kName && ts_.token(i).text == "loop";
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
      ASSIGN_OR_RETURN(s->expr, ParseTupleExpr(&ts_, /*with_condexpr=*/true));
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
        ASSIGN_OR_RETURN(dflt, ParseExpr(&ts_, /*with_condexpr=*/true));
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


  TokenStream ts_;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view src) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(src));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace ingot::jinja
