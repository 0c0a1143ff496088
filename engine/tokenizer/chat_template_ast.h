// Syntax tree of a chat template and the parser that builds it. One node struct for
// expressions and one for statements; which fields a node uses is listed per kind.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/chat_template_value.h"

namespace ingot::jinja {

// Bounds that keep a hostile template from exhausting the stack: nested blocks and
// brackets, and the depth of any expression tree (a + b + c + ... nests too).
inline constexpr int kMaxParseNesting = 64;
inline constexpr int kMaxExprDepth = 256;

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // args: items
  kTuple,     // args: items
  kDict,      // args: key0, value0, key1, value1, ...
  kGetAttr,   // args[0].name
  kGetItem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]], absent parts null
  kCall,      // args[0](args[1..], kwargs)
  kFilter,    // args[0] | name(args[1..], kwargs)
  kTest,      // args[0] is [not] name(args[1..]); negated for `is not`
  kNot,       // not args[0]
  kNeg,       // -args[0]
  kPos,       // +args[0]
  kBinary,    // args[0] op args[1]; op: + - * / // % ** ~
  kAnd,       // args[0] and args[1]
  kOr,        // args[0] or args[1]
  kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in, not in
  kCondExpr,  // args[1] if args[0] else args[2] (args[2] null without else)
};

struct Expr {
  ExprKind kind;
  size_t offset = 0;
  int depth = 1;  // height of this subtree, bounded by kMaxExprDepth
  Value literal;
  std::string name;  // kName, kGetAttr, kFilter, kTest; the operator of kBinary
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> ops;  // kCompare
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  bool negated = false;
};

enum class StmtKind {
  kText,        // text
  kOutput,      // {{ expr }}
  kIf,          // if conditions[0] bodies[0] elif conditions[1] bodies[1] ... [else bodies.back()]
  kFor,         // for targets in expr [if filter] bodies[0] [else bodies[1]]
  kSet,         // set targets = expr, or set targets[0].attr = expr (attr non-empty)
  kSetBlock,    // set targets[0] %} bodies[0] {% endset
  kMacro,       // macro name(targets = defaults) bodies[0]
  kBreak,
  kContinue,
  kGeneration,  // transformers' {% generation %} bodies[0] {% endgeneration %}: renders as is
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  StmtKind kind;
  size_t offset = 0;
  std::string text;                  // kText
  std::string name;                  // kMacro
  std::string attr;                  // kSet on a namespace attribute
  std::unique_ptr<Expr> expr;        // kOutput, kSet value, kFor iterable
  std::unique_ptr<Expr> filter;      // kFor `if`
  std::vector<std::string> targets;  // kFor / kSet names, kMacro parameters
  std::vector<std::unique_ptr<Expr>> defaults;  // kMacro, null where none
  std::vector<std::unique_ptr<Expr>> conditions;  // kIf
  std::vector<Body> bodies;
  bool uses_loop = false;  // kFor: the body mentions `loop`, so the renderer builds it
};

// Parses a whole template. INVALID_ARGUMENT, naming the construct and its offset, for
// syntax errors and for Jinja features this interpreter does not implement.
absl::StatusOr<Body> ParseTemplate(std::string_view src);

// Names the evaluator implements; the parser rejects others up front, as Jinja does at
// compile time, so an unsupported template fails before rendering anything.
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

}  // namespace ingot::jinja
