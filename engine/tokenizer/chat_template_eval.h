// Evaluator of a parsed chat template: the Renderer walks the syntax tree with a stack
// of scopes; operators, filters, tests, methods and global functions are free functions
// over Values (chat_template_ops.cc, chat_template_builtins.cc, chat_template_methods.cc).
//
// Errors are INVALID_ARGUMENT. Helpers return plain messages; the Renderer appends the
// offset of the expression that failed (ErrorAt), so each error names its place once.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/chat_template_ast.h"
#include "engine/tokenizer/chat_template_value.h"

namespace ingot::jinja {

// A template is code from a model file, so rendering is bounded: output and any string
// it builds, list sizes, work (statements, loop iterations, copied elements) and
// recursion. Real chat templates stay orders of magnitude below each.
inline constexpr size_t kMaxStringBytes = size_t{64} << 20;
inline constexpr size_t kMaxListItems = size_t{1} << 20;
inline constexpr int64_t kMaxRange = 100000;  // Jinja's sandbox caps range() the same
inline constexpr int64_t kMaxWork = 10'000'000;
inline constexpr int kMaxEvalDepth = 400;
inline constexpr int kMaxValueDepth = 100;  // lists in lists; CPython's repr stops near 1000

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Renderer {
 public:
  // `globals` are the template's context variables (messages, bos_token, ...).
  explicit Renderer(std::vector<std::pair<std::string, Value>> globals);

  absl::StatusOr<std::string> Render(const Body& body);

  // Counts `units` of work against kMaxWork.
  absl::Status Charge(int64_t units);
  // A fresh namespace() object, owned by this renderer.
  Value NewNamespace(Dict attrs);
  // strftime_now's clock: seconds since the epoch, read as UTC; -1 = the system clock
  // in local time (what transformers does).
  void set_now(int64_t unix_seconds) { now_unix_seconds_ = unix_seconds; }
  int64_t now_unix_seconds() const { return now_unix_seconds_; }

 private:
  using Frame = absl::flat_hash_map<std::string, Value>;
  enum class Flow { kNormal, kBreak, kContinue };

  class DepthGuard;

  absl::Status ExecBody(const Body& body, std::string* out);
  absl::Status Exec(const Stmt& s, std::string* out);
  absl::Status ExecIf(const Stmt& s, std::string* out);
  absl::Status ExecFor(const Stmt& s, std::string* out);
  absl::Status ExecSet(const Stmt& s);
  absl::Status Append(std::string_view text, size_t offset, std::string* out);

  // EvalNode, then rejects values nested deeper than kMaxValueDepth.
  absl::StatusOr<Value> Eval(const Expr& e);
  absl::StatusOr<Value> EvalNode(const Expr& e);
  absl::StatusOr<Value> EvalCompare(const Expr& e);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e);
  absl::StatusOr<Value> Call(const Value& fn, CallArgs args, size_t offset);
  absl::StatusOr<Value> CallMacro(const Callable& fn, CallArgs args, size_t offset);

  Value Lookup(const std::string& name) const;
  // Binds `targets` to `value`, unpacking a sequence when there are several.
  absl::Status Bind(const std::vector<std::string>& targets, const Value& value, Frame* frame);

  std::vector<Frame> frames_;      // [0]: globals and top-level sets; one per loop pass
  std::deque<Namespace> namespaces_;
  Flow flow_ = Flow::kNormal;
  int depth_ = 0;
  int64_t now_unix_seconds_ = -1;
  int64_t work_ = 0;
};

// ---- chat_template_ops.cc: operators and subscripts, with Python semantics. --------

// op: + - * / // % ** ~
absl::StatusOr<Value> BinaryOp(Renderer& r, std::string_view op, const Value& a, const Value& b);
// op: == != < <= > >= in, not in
absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b);
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
absl::StatusOr<Value> Negate(const Value& v, bool minus);
// obj.name: a dict key, a namespace attribute or a bound method; Undefined if absent.
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
// obj[key]: Undefined when absent or out of range, as in Jinja.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step);
// The items a for loop visits: list/tuple items, dict keys, string code points;
// Undefined is empty.
absl::StatusOr<ValueList> Iterate(const Value& v);

// ---- chat_template_builtins.cc: filters and tests. ---------------------------------

absl::StatusOr<Value> CallFilter(Renderer& r, std::string_view name, const Value& input,
                                 const CallArgs& args);
absl::StatusOr<bool> CallTest(Renderer& r, std::string_view name, const Value& value,
                              const CallArgs& args);

// ---- chat_template_methods.cc: str/dict methods and global functions. --------------

bool HasMethod(const Value& self, std::string_view name);
absl::StatusOr<Value> CallMethod(Renderer& r, const Value& self, std::string_view name,
                                 const CallArgs& args);
bool IsGlobalFunction(std::string_view name);
// Global functions except raise_exception, which the Renderer handles itself.
absl::StatusOr<Value> CallGlobal(Renderer& r, std::string_view name, const CallArgs& args);

// Reads a builtin's arguments by position or keyword and rejects leftovers, so a typo
// in a template argument fails instead of being ignored.
class ArgReader {
 public:
  ArgReader(std::string_view function, const CallArgs& args) : fn_(function), args_(args) {}
  // Positional `index` or keyword `name`, else `fallback`.
  Value Get(size_t index, std::string_view name, Value fallback = Value());
  // Keyword-only argument `name`, else `fallback`.
  Value Keyword(std::string_view name, Value fallback = Value());
  // Positional arguments from `index` on (for map/select's pass-through arguments).
  std::vector<Value> Rest(size_t index);
  absl::Status Done() const;

 private:
  std::string_view fn_;
  const CallArgs& args_;
  size_t positional_used_ = 0;
  std::vector<std::string> keywords_used_;
};

absl::Status CheckStringSize(size_t bytes);

}  // namespace ingot::jinja
