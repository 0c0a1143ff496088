// Operators, subscripts and attribute access with Python's semantics, the way a Jinja
// template running on CPython sees them (int floor division and modulo round toward
// negative infinity, `/` is always float, str * int repeats, ...). Python ints are
// unbounded; here they are int64 and overflow is an error rather than a wrong answer.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_eval.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace ingot::jinja {
namespace {

absl::Status TypeError(std::string_view op, const Value& a, const Value& b) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand types for ", std::string(op),
                                                 ": '", TypeName(a), "' and '", TypeName(b), "'"));
}

absl::Status Overflow() { return absl::InvalidArgumentError("integer overflow"); }

absl::StatusOr<Value> Repeat(Renderer& r, const Value& seq, int64_t n) {
  const bool empty = seq.is_string() ? seq.str().empty() : seq.items().empty();
  if (n <= 0 || empty) {
    if (seq.is_string()) return Value::String("");
    return seq.kind() == ValueKind::kTuple ? Value::Tuple({}) : Value::List({});
  }
  if (seq.is_string()) {
    if (static_cast<uint64_t>(n) > kMaxStringBytes / seq.str().size()) {
      return absl::InvalidArgumentError(absl::StrCat("string repetition exceeds ", kMaxStringBytes, " bytes"));
    }
    std::string out;
    out.reserve(seq.str().size() * n);
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value::String(std::move(out));
  }
  const ValueList& items = seq.items();
  if (static_cast<uint64_t>(n) > kMaxListItems / items.size()) {
    return absl::InvalidArgumentError(absl::StrCat("list repetition exceeds ", kMaxListItems, " items"));
  }
  RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(items.size()) * n));
  ValueList out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.kind() == ValueKind::kTuple ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
}

absl::StatusOr<Value> IntPow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
  }
  return Value::Int(result);
}

absl::StatusOr<Value> Arithmetic(Renderer& r, std::string_view op, const Value& a, const Value& b) {
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(CheckStringSize(a.str().size() + b.str().size()));
      return Value::String(a.str() + b.str());
    }
    if (a.is_sequence() && a.kind() == b.kind()) {
      RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(a.items().size() + b.items().size())));
      if (a.items().size() + b.items().size() > kMaxListItems) {
        return absl::InvalidArgumentError(absl::StrCat("list exceeds ", kMaxListItems, " items"));
      }
      ValueList out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return a.kind() == ValueKind::kTuple ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
    }
    if (a.is_string() && !b.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "can only concatenate str (not \"", TypeName(b), "\") to str; use ~ to join as text"));
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_sequence()) && b.is_integral()) return Repeat(r, a, b.int_value());
    if (a.is_integral() && (b.is_string() || b.is_sequence())) return Repeat(r, b, a.int_value());
  }
  if (op == "%" && a.is_string()) {
    return absl::InvalidArgumentError("unsupported printf-style '%' formatting of a string");
  }
  if (!a.is_number() || !b.is_number()) return TypeError(op, a, b);

  if (a.is_integral() && b.is_integral()) {
    const int64_t x = a.int_value(), y = b.int_value();
    int64_t z;
    if (op == "+") return __builtin_add_overflow(x, y, &z) ? Overflow() : absl::StatusOr<Value>(Value::Int(z));
    if (op == "-") return __builtin_sub_overflow(x, y, &z) ? Overflow() : absl::StatusOr<Value>(Value::Int(z));
    if (op == "*") return __builtin_mul_overflow(x, y, &z) ? Overflow() : absl::StatusOr<Value>(Value::Int(z));
    if (op == "//" || op == "%") {
      if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) return Overflow();
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;  // round toward -infinity
      return Value::Int(op == "//" ? q : m);
    }
    if (op == "**" && y >= 0) return IntPow(x, y);
  }
  const double x = a.float_value(), y = b.float_value();
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") {
    if (y == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(x / y);
  }
  if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("float division or modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (op == "%") return Value::Float(m);
    return Value::Float(std::floor((x - m) / y + 0.5));  // (x - m) / y is integral up to rounding
  }
  if (op == "**") {
    if (x == 0 && y < 0) return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    return Value::Float(std::pow(x, y));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown operator '", std::string(op), "'"));
}

bool IsBlockedListMethod(std::string_view name) {
  for (std::string_view m : {"append", "extend", "insert", "pop", "remove", "clear", "sort",
                             "reverse", "update", "setdefault", "popitem"}) {
    if (name == m) return true;
  }
  return false;
}

Value BoundMethod(const Value& self, const std::string& name) {
  auto fn = std::make_shared<Callable>();
  fn->kind = Callable::Kind::kMethod;
  fn->name = name;
  fn->self = self;
  return Value::Function(std::move(fn));
}

Value NoAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined(
      absl::StrCat("'", TypeName(obj), " object' has no attribute '", std::string(name), "'"));
}

// Python's slice.indices(): clamps start/stop for `len` items and the step's direction.
absl::Status SliceIndices(const Value& start, const Value& stop, const Value& step, int64_t len,
                          int64_t* lo, int64_t* hi, int64_t* st) {
  auto is_default = [](const Value& v) { return v.is_undefined() || v.is_none(); };
  for (const Value* v : {&start, &stop, &step}) {
    if (!is_default(*v) && !v->is_integral()) {
      return absl::InvalidArgumentError("slice indices must be integers or none");
    }
  }
  *st = is_default(step) ? 1 : step.int_value();
  if (*st == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  const int64_t lower = *st > 0 ? 0 : -1;
  const int64_t upper = *st > 0 ? len : len - 1;
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (is_default(v)) return dflt;
    int64_t i = v.int_value();
    if (i < 0) i += len;
    return i < lower ? lower : i > upper ? upper : i;
  };
  *lo = clamp(start, *st > 0 ? 0 : len - 1);
  *hi = clamp(stop, *st > 0 ? len : -1);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStringSize(size_t bytes) {
  if (bytes > kMaxStringBytes) {
    return absl::InvalidArgumentError(absl::StrCat("string exceeds ", kMaxStringBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> BinaryOp(Renderer& r, std::string_view op, const Value& a, const Value& b) {
  if (op == "~") {  // text join: str() of both sides, Undefined as ""
    ASSIGN_OR_RETURN(std::string x, ToPyStr(a));
    ASSIGN_OR_RETURN(std::string y, ToPyStr(b));
    RETURN_IF_ERROR(CheckStringSize(x.size() + y.size()));
    return Value::String(x + y);
  }
  if (a.is_undefined()) return absl::InvalidArgumentError(a.str());
  if (b.is_undefined()) return absl::InvalidArgumentError(b.str());
  return Arithmetic(r, op, a, b);
}

absl::StatusOr<Value> Negate(const Value& v, bool minus) {
  if (v.is_undefined()) return absl::InvalidArgumentError(v.str());
  if (v.is_integral()) {
    if (!minus) return Value::Int(v.int_value());
    if (v.int_value() == INT64_MIN) return Overflow();
    return Value::Int(-v.int_value());
  }
  if (v.kind() == ValueKind::kFloat) return Value::Float(minus ? -v.float_value() : v.float_value());
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for unary ", minus ? "-" : "+", ": '", TypeName(v), "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case ValueKind::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'in <string>' requires a string as left operand, not ", TypeName(item)));
      }
      return container.str().find(item.str()) != std::string::npos;
    case ValueKind::kList:
    case ValueKind::kTuple:
      for (const Value& v : container.items()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case ValueKind::kDict: return container.dict().Find(item) != nullptr;
    case ValueKind::kUndefined: return false;  // Undefined iterates as empty
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "not in") {
    ASSIGN_OR_RETURN(bool in, Contains(b, a));
    return !in;
  }
  absl::StatusOr<int> c = Compare(a, b);
  if (!c.ok()) {
    if (a.is_undefined() || b.is_undefined()) return c.status();
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(op),
                                                   "' not supported between '", TypeName(a),
                                                   "' and '", TypeName(b), "'"));
  }
  if (op == "<") return *c < 0;
  if (op == "<=") return *c <= 0;
  if (op == ">") return *c > 0;
  if (op == ">=") return *c >= 0;
  return absl::InvalidArgumentError(absl::StrCat("unknown comparison '", std::string(op), "'"));
}

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case ValueKind::kUndefined: return absl::InvalidArgumentError(obj.str());
    case ValueKind::kDict: {
      // Python looks up attributes (methods) before keys: message.items is the method.
      if (HasMethod(obj, name)) return BoundMethod(obj, name);
      const Value* v = obj.dict().Find(name);
      return v ? *v : NoAttribute(obj, name);
    }
    case ValueKind::kNamespace: {
      const Value* v = obj.ns()->attrs.Find(name);
      return v ? *v : NoAttribute(obj, name);
    }
    case ValueKind::kList:
    case ValueKind::kTuple:
      if (IsBlockedListMethod(name)) {
        return Value::Undefined(absl::StrCat("'", TypeName(obj), ".", name,
                                             "' is not allowed: templates cannot modify values"));
      }
      return NoAttribute(obj, name);
    default:
      if (HasMethod(obj, name)) return BoundMethod(obj, name);
      return NoAttribute(obj, name);
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case ValueKind::kUndefined: return absl::InvalidArgumentError(obj.str());
    case ValueKind::kList:
    case ValueKind::kTuple: {
      if (!key.is_integral()) break;
      int64_t i = key.int_value();
      const auto n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) {
        return Value::Undefined(absl::StrCat("index ", key.int_value(), " is out of range for a ",
                                             TypeName(obj), " of ", n));
      }
      return obj.items()[i];
    }
    case ValueKind::kString: {
      if (!key.is_integral()) break;
      std::vector<std::string_view> cps = CodePoints(obj.str());
      int64_t i = key.int_value();
      const auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("string index out of range");
      return Value::String(std::string(cps[i]));
    }
    case ValueKind::kDict: {
      if (const Value* v = obj.dict().Find(key)) return *v;
      break;
    }
    case ValueKind::kNamespace: {
      if (const Value* v = obj.ns()->attrs.Find(key)) return *v;
      break;
    }
    default: break;
  }
  // Jinja falls back to the attribute for a string subscript: message['items'].
  if (key.is_string() && obj.kind() != ValueKind::kNamespace) return GetAttr(obj, key.str());
  ASSIGN_OR_RETURN(std::string k, ToPyRepr(key));
  return Value::Undefined(absl::StrCat("'", TypeName(obj), " object' has no item ", k));
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step) {
  if (obj.is_undefined()) return absl::InvalidArgumentError(obj.str());
  if (!obj.is_string() && !obj.is_sequence()) {
    return Value::Undefined(absl::StrCat("a ", TypeName(obj), " cannot be sliced"));
  }
  std::vector<std::string_view> cps;
  if (obj.is_string()) cps = CodePoints(obj.str());
  const auto len = static_cast<int64_t>(obj.is_string() ? cps.size() : obj.items().size());
  int64_t lo = 0, hi = 0, st = 1;
  RETURN_IF_ERROR(SliceIndices(start, stop, step, len, &lo, &hi, &st));
  std::string s;
  ValueList items;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
    if (obj.is_string()) {
      s.append(cps[i]);
    } else {
      items.push_back(obj.items()[i]);
    }
  }
  if (obj.is_string()) return Value::String(std::move(s));
  return obj.kind() == ValueKind::kTuple ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
}

absl::StatusOr<ValueList> Iterate(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return ValueList{};
    case ValueKind::kList:
    case ValueKind::kTuple: return v.items();
    case ValueKind::kDict: {
      ValueList keys;
      for (const auto& [key, value] : v.dict().items) keys.push_back(key);
      return keys;
    }
    case ValueKind::kString: {
      ValueList chars;
      for (std::string_view c : CodePoints(v.str())) chars.push_back(Value::String(std::string(c)));
      return chars;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

}  // namespace ingot::jinja
