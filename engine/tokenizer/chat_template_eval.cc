#include "engine/tokenizer/chat_template_eval.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_lexer.h"

namespace ingot::jinja {
namespace {

// Appends the offset to a helper's message; helpers never add one themselves.
absl::Status At(const absl::Status& s, size_t offset) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), " at offset ", offset));
}

template <typename T>
absl::StatusOr<T> At(absl::StatusOr<T> v, size_t offset) {
  if (v.ok()) return v;
  return At(v.status(), offset);
}

Value LoopCycle(int64_t index0) {
  auto fn = std::make_shared<Callable>();
  fn->kind = Callable::Kind::kMethod;
  fn->name = "loop.cycle";
  fn->self = Value::Int(index0);
  return Value::Function(std::move(fn));
}

// Jinja's `loop` variable for pass `i` of `items`.
Value LoopInfo(const ValueList& items, size_t i) {
  const auto n = static_cast<int64_t>(items.size());
  const auto k = static_cast<int64_t>(i);
  Dict d;
  d.items.reserve(12);
  auto add = [&d](const char* key, Value v) { d.items.emplace_back(Value::String(key), std::move(v)); };
  add("index", Value::Int(k + 1));
  add("index0", Value::Int(k));
  add("revindex", Value::Int(n - k));
  add("revindex0", Value::Int(n - k - 1));
  add("first", Value::Bool(k == 0));
  add("last", Value::Bool(k == n - 1));
  add("length", Value::Int(n));
  add("depth", Value::Int(1));
  add("depth0", Value::Int(0));
  if (i > 0) add("previtem", items[i - 1]);  // undefined on the first pass
  if (i + 1 < items.size()) add("nextitem", items[i + 1]);
  add("cycle", LoopCycle(k));
  return Value::MakeDict(std::move(d));
}

}  // namespace

class Renderer::DepthGuard {
 public:
  explicit DepthGuard(Renderer* r) : r_(r) { ++r_->depth_; }
  ~DepthGuard() { --r_->depth_; }
  absl::Status Check(size_t offset) const {
    if (r_->depth_ > kMaxEvalDepth) {
      return ErrorAt(offset, "template recursion is too deep (recursive macro?)");
    }
    return absl::OkStatus();
  }

 private:
  Renderer* r_;
};

Renderer::Renderer(std::vector<std::pair<std::string, Value>> globals) {
  frames_.emplace_back();
  for (auto& [name, value] : globals) frames_[0][name] = std::move(value);
}

absl::StatusOr<std::string> Renderer::Render(const Body& body) {
  std::string out;
  RETURN_IF_ERROR(ExecBody(body, &out));
  return out;
}

absl::Status Renderer::Charge(int64_t units) {
  work_ += units;
  if (work_ > kMaxWork) {
    return absl::InvalidArgumentError(
        absl::StrCat("template exceeds the work limit (", kMaxWork, " steps)"));
  }
  return absl::OkStatus();
}

Value Renderer::NewNamespace(Dict attrs) {
  namespaces_.push_back(Namespace{std::move(attrs)});
  return Value::NamespaceRef(&namespaces_.back());
}

absl::Status Renderer::Append(std::string_view text, size_t offset, std::string* out) {
  if (out->size() + text.size() > kMaxStringBytes) {
    return ErrorAt(offset, absl::StrCat("template output exceeds ", kMaxStringBytes, " bytes"));
  }
  out->append(text);
  return absl::OkStatus();
}

absl::Status Renderer::ExecBody(const Body& body, std::string* out) {
  for (const auto& s : body) {
    RETURN_IF_ERROR(Exec(*s, out));
    if (flow_ != Flow::kNormal) break;
  }
  return absl::OkStatus();
}

absl::Status Renderer::Exec(const Stmt& s, std::string* out) {
  DepthGuard guard(this);
  RETURN_IF_ERROR(guard.Check(s.offset));
  RETURN_IF_ERROR(At(Charge(1), s.offset));
  switch (s.kind) {
    case StmtKind::kText: return Append(s.text, s.offset, out);
    case StmtKind::kOutput: {
      ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
      if (v.is_string()) return Append(v.str(), s.offset, out);
      ASSIGN_OR_RETURN(std::string text, At(ToPyStr(v), s.expr->offset));
      return Append(text, s.offset, out);
    }
    case StmtKind::kIf: return ExecIf(s, out);
    case StmtKind::kFor: return ExecFor(s, out);
    case StmtKind::kSet: return ExecSet(s);
    case StmtKind::kSetBlock: {
      std::string text;
      RETURN_IF_ERROR(ExecBody(s.bodies[0], &text));
      frames_.back()[s.targets[0]] = Value::String(std::move(text));
      return absl::OkStatus();
    }
    case StmtKind::kMacro: {
      auto fn = std::make_shared<Callable>();
      fn->kind = Callable::Kind::kMacro;
      fn->name = s.name;
      fn->macro = &s;
      frames_.back()[s.name] = Value::Function(std::move(fn));
      return absl::OkStatus();
    }
    case StmtKind::kBreak: flow_ = Flow::kBreak; return absl::OkStatus();
    case StmtKind::kContinue: flow_ = Flow::kContinue; return absl::OkStatus();
    case StmtKind::kGeneration: return ExecBody(s.bodies[0], out);
  }
  return absl::InternalError("unhandled statement kind");
}

absl::Status Renderer::ExecIf(const Stmt& s, std::string* out) {
  for (size_t i = 0; i < s.conditions.size(); ++i) {
    ASSIGN_OR_RETURN(Value cond, Eval(*s.conditions[i]));
    if (Truthy(cond)) return ExecBody(s.bodies[i], out);
  }
  if (s.bodies.size() > s.conditions.size()) return ExecBody(s.bodies.back(), out);
  return absl::OkStatus();
}

absl::Status Renderer::ExecFor(const Stmt& s, std::string* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr));
  ASSIGN_OR_RETURN(ValueList items, At(Iterate(iterable), s.expr->offset));
  if (s.filter) {  // `for x in xs if cond`: loop.* counts only the kept items
    ValueList kept;
    for (Value& item : items) {
      frames_.emplace_back();
      absl::Status bound = At(Bind(s.targets, item, &frames_.back()), s.offset);
      absl::StatusOr<Value> keep = bound.ok() ? Eval(*s.filter) : absl::StatusOr<Value>(bound);
      frames_.pop_back();
      if (!keep.ok()) return keep.status();
      if (Truthy(*keep)) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  // A fresh scope per pass: a `set` inside the body does not outlive the pass. The
  // frame is cleared rather than rebuilt, keeping its allocation.
  frames_.emplace_back();
  const size_t frame = frames_.size() - 1;
  absl::Status status;
  for (size_t i = 0; i < items.size() && status.ok(); ++i) {
    status = At(Charge(1), s.offset);
    if (!status.ok()) break;
    frames_[frame].clear();
    status = At(Bind(s.targets, items[i], &frames_[frame]), s.offset);
    if (status.ok()) {
      if (s.uses_loop) frames_[frame]["loop"] = LoopInfo(items, i);
      status = ExecBody(s.bodies[0], out);
    }
    const Flow flow = flow_;
    flow_ = Flow::kNormal;
    if (flow == Flow::kBreak) break;
  }
  frames_.pop_back();
  RETURN_IF_ERROR(status);
  if (items.empty() && s.bodies.size() > 1) return ExecBody(s.bodies[1], out);
  return absl::OkStatus();
}

absl::Status Renderer::ExecSet(const Stmt& s) {
  ASSIGN_OR_RETURN(Value value, Eval(*s.expr));
  if (!s.attr.empty()) {
    Value target = Lookup(s.targets[0]);
    if (target.kind() != ValueKind::kNamespace) {
      return ErrorAt(s.offset, absl::StrCat("cannot set attribute '", s.attr, "' on '",
                                            s.targets[0], "': not a namespace()"));
    }
    target.ns()->attrs.Set(Value::String(s.attr), std::move(value));
    return absl::OkStatus();
  }
  return At(Bind(s.targets, value, &frames_.back()), s.offset);
}

absl::Status Renderer::Bind(const std::vector<std::string>& targets, const Value& value,
                            Frame* frame) {
  if (targets.size() == 1) {
    (*frame)[targets[0]] = value;
    return absl::OkStatus();
  }
  if (!value.is_sequence()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot unpack a ", TypeName(value), " into ",
                                                   targets.size(), " variables"));
  }
  if (value.items().size() != targets.size()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot unpack ", value.items().size(),
                                                   " values into ", targets.size(), " variables"));
  }
  for (size_t i = 0; i < targets.size(); ++i) (*frame)[targets[i]] = value.items()[i];
  return absl::OkStatus();
}

Value Renderer::Lookup(const std::string& name) const {
  for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
    auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  if (IsGlobalFunction(name)) {
    auto fn = std::make_shared<Callable>();
    fn->kind = Callable::Kind::kGlobal;
    fn->name = name;
    return Value::Function(std::move(fn));
  }
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

absl::StatusOr<Value> Renderer::Eval(const Expr& e) {
  DepthGuard guard(this);
  RETURN_IF_ERROR(guard.Check(e.offset));
  absl::StatusOr<Value> v = EvalNode(e);
  if (v.ok() && v->depth() > kMaxValueDepth) {
    return ErrorAt(e.offset, absl::StrCat("value nests deeper than ", kMaxValueDepth, " levels"));
  }
  return v;
}

absl::StatusOr<Value> Renderer::EvalNode(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kLiteral: return e.literal;
    case ExprKind::kName: return Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) {
        ASSIGN_OR_RETURN(Value v, Eval(*a));
        items.push_back(std::move(v));
      }
      return e.kind == ExprKind::kList ? Value::List(std::move(items))
                                       : Value::Tuple(std::move(items));
    }
    case ExprKind::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*e.args[i]));
        ASSIGN_OR_RETURN(Value value, Eval(*e.args[i + 1]));
        d.Set(std::move(key), std::move(value));
      }
      return Value::MakeDict(std::move(d));
    }
    case ExprKind::kGetAttr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      return At(GetAttr(obj, e.name), e.offset);
    }
    case ExprKind::kGetItem: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
      return At(GetItem(obj, key), e.offset);
    }
    case ExprKind::kSlice: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      Value parts[3];
      for (int i = 0; i < 3; ++i) {
        if (e.args[i + 1]) {
          ASSIGN_OR_RETURN(parts[i], Eval(*e.args[i + 1]));
        }
      }
      return At(GetSlice(obj, parts[0], parts[1], parts[2]), e.offset);
    }
    case ExprKind::kCall: {
      ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e));
      return Call(fn, std::move(args), e.offset);
    }
    case ExprKind::kFilter: {
      ASSIGN_OR_RETURN(Value input, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e));
      return At(CallFilter(*this, e.name, input, args), e.offset);
    }
    case ExprKind::kTest: {
      ASSIGN_OR_RETURN(Value value, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e));
      ASSIGN_OR_RETURN(bool result, At(CallTest(*this, e.name, value, args), e.offset));
      return Value::Bool(result != e.negated);
    }
    case ExprKind::kNot: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
      return Value::Bool(!Truthy(v));
    }
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
      return At(Negate(v, e.kind == ExprKind::kNeg), e.offset);
    }
    case ExprKind::kBinary: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
      return At(BinaryOp(*this, e.name, a, b), e.offset);
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // Python returns the deciding operand, not a bool.
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      if (Truthy(a) == (e.kind == ExprKind::kOr)) return a;
      return Eval(*e.args[1]);
    }
    case ExprKind::kCompare: return EvalCompare(e);
    case ExprKind::kCondExpr: {
      ASSIGN_OR_RETURN(Value cond, Eval(*e.args[0]));
      if (Truthy(cond)) return Eval(*e.args[1]);
      if (e.args[2]) return Eval(*e.args[2]);
      return Value::Undefined("the inline if-expression has no else branch");
    }
  }
  return absl::InternalError("unhandled expression kind");
}

absl::StatusOr<Value> Renderer::EvalCompare(const Expr& e) {
  ASSIGN_OR_RETURN(Value left, Eval(*e.args[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    ASSIGN_OR_RETURN(Value right, Eval(*e.args[i + 1]));
    ASSIGN_OR_RETURN(bool holds, At(CompareOp(e.ops[i], left, right), e.offset));
    if (!holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<CallArgs> Renderer::EvalArgs(const Expr& e) {
  CallArgs args;
  for (size_t i = 1; i < e.args.size(); ++i) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[i]));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, expr] : e.kwargs) {
    ASSIGN_OR_RETURN(Value v, Eval(*expr));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Renderer::Call(const Value& fn, CallArgs args, size_t offset) {
  if (fn.kind() != ValueKind::kCallable) {
    if (fn.is_undefined()) return ErrorAt(offset, fn.str());
    return ErrorAt(offset, absl::StrCat("'", TypeName(fn), "' object is not callable"));
  }
  const Callable& c = fn.callable();
  switch (c.kind) {
    case Callable::Kind::kMacro: return CallMacro(c, std::move(args), offset);
    case Callable::Kind::kMethod:
      if (c.name == "loop.cycle") {
        if (args.positional.empty()) return ErrorAt(offset, "loop.cycle() needs arguments");
        return args.positional[c.self.int_value() % args.positional.size()];
      }
      return At(CallMethod(*this, c.self, c.name, args), offset);
    case Callable::Kind::kGlobal:
      if (c.name == "raise_exception") {
        // The template's own message leads, so callers can show it as is.
        std::string message;
        if (!args.positional.empty()) {
          ASSIGN_OR_RETURN(message, At(ToPyStr(args.positional[0]), offset));
        }
        return absl::InvalidArgumentError(
            absl::StrCat(message, " (raise_exception at offset ", offset, ")"));
      }
      return At(CallGlobal(*this, c.name, args), offset);
  }
  return absl::InternalError("unhandled callable kind");
}

absl::StatusOr<Value> Renderer::CallMacro(const Callable& fn, CallArgs args, size_t offset) {
  DepthGuard guard(this);
  RETURN_IF_ERROR(guard.Check(offset));
  RETURN_IF_ERROR(At(Charge(1), offset));
  const Stmt& m = *fn.macro;
  if (args.positional.size() > m.targets.size()) {
    return ErrorAt(offset, absl::StrCat("macro '", m.name, "' takes ", m.targets.size(),
                                        " arguments, got ", args.positional.size()));
  }
  // A macro sees the top-level scope and its parameters, not the caller's locals.
  std::vector<Frame> caller_frames(std::make_move_iterator(frames_.begin() + 1),
                                   std::make_move_iterator(frames_.end()));
  frames_.resize(1);
  frames_.emplace_back();
  absl::Status status;
  for (size_t i = 0; i < m.targets.size() && status.ok(); ++i) {
    Value v = Value::Undefined(absl::StrCat("macro parameter '", m.targets[i], "' was not passed"));
    bool passed = i < args.positional.size();
    if (passed) v = args.positional[i];
    for (auto& [key, value] : args.keyword) {
      if (key == m.targets[i]) v = value, passed = true;
    }
    if (!passed && m.defaults[i]) {
      absl::StatusOr<Value> d = Eval(*m.defaults[i]);
      if (d.ok()) v = *std::move(d);
      status = d.status();
    }
    frames_.back()[m.targets[i]] = std::move(v);
  }
  for (const auto& [key, value] : args.keyword) {
    bool known = false;
    for (const std::string& t : m.targets) known = known || t == key;
    if (!known && status.ok()) {
      status = ErrorAt(offset, absl::StrCat("macro '", m.name, "' has no parameter '", key, "'"));
    }
  }
  std::string out;
  if (status.ok()) status = ExecBody(m.bodies[0], &out);
  frames_.resize(1);
  for (Frame& f : caller_frames) frames_.push_back(std::move(f));
  RETURN_IF_ERROR(status);
  return Value::String(std::move(out));
}

}  // namespace ingot::jinja
