// Jinja's filters and tests as chat templates use them, with jinja2's semantics (and
// transformers' tojson). One table row per name: the parser checks names against the
// same tables, so an unknown filter fails when the template is parsed.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_eval.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace ingot::jinja {

Value ArgReader::Get(size_t index, std::string_view name, Value fallback) {
  positional_used_ = std::max(positional_used_, index + 1);
  for (const auto& [key, value] : args_.keyword) {
    if (key == name) {
      keywords_used_.emplace_back(name);
      return value;
    }
  }
  if (index < args_.positional.size()) return args_.positional[index];
  return fallback;
}

Value ArgReader::Keyword(std::string_view name, Value fallback) {
  for (const auto& [key, value] : args_.keyword) {
    if (key == name) {
      keywords_used_.emplace_back(name);
      return value;
    }
  }
  return fallback;
}

std::vector<Value> ArgReader::Rest(size_t index) {
  positional_used_ = std::max(positional_used_, args_.positional.size());
  if (index >= args_.positional.size()) return {};
  return {args_.positional.begin() + index, args_.positional.end()};
}

absl::Status ArgReader::Done() const {
  if (args_.positional.size() > positional_used_) {
    return absl::InvalidArgumentError(
        absl::StrCat("too many arguments to '", std::string(fn_), "'"));
  }
  for (const auto& [key, value] : args_.keyword) {
    if (std::find(keywords_used_.begin(), keywords_used_.end(), key) == keywords_used_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected keyword argument '", key,
                                                     "' to '", std::string(fn_), "'"));
    }
  }
  return absl::OkStatus();
}

namespace {

using FilterFn = absl::StatusOr<Value> (*)(Renderer&, const Value&, ArgReader&);
using TestFn = absl::StatusOr<bool> (*)(Renderer&, const Value&, ArgReader&);

absl::StatusOr<std::string> Text(const Value& v) { return ToPyStr(v); }

absl::StatusOr<std::optional<std::string>> OptionalText(const Value& v) {
  if (v.is_undefined() || v.is_none()) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, ToPyStr(v));
  return std::optional<std::string>(std::move(s));
}

// `attribute` arguments: "a.b" walks nested attributes, "0" indexes.
absl::StatusOr<Value> AttributePath(const Value& item, const std::string& path) {
  Value v = item;
  for (const std::string& part : std::vector<std::string>(absl::StrSplit(path, '.'))) {
    char* end = nullptr;
    const int64_t index = std::strtoll(part.c_str(), &end, 10);
    if (!part.empty() && end == part.c_str() + part.size()) {
      ASSIGN_OR_RETURN(v, GetItem(v, Value::Int(index)));
    } else {
      ASSIGN_OR_RETURN(v, GetItem(v, Value::String(part)));
    }
  }
  return v;
}

// Python's float(str): surrounding whitespace, underscores between digits, inf/nan.
std::optional<double> ParseFloat(std::string_view text) {
  std::string s(PyStrip(text, true, true));
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

std::optional<int64_t> ParseInt(std::string_view text, int base) {
  std::string s(PyStrip(text, true, true));
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, base);
  if (end != s.c_str() + s.size() || errno == ERANGE) return std::nullopt;
  return v;
}

// ---- filters ----------------------------------------------------------------------

absl::StatusOr<Value> FilterAbs(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  if (v.is_integral()) {
    if (v.int_value() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(std::llabs(v.int_value()));
  }
  if (v.kind() == ValueKind::kFloat) return Value::Float(std::fabs(v.float_value()));
  return absl::InvalidArgumentError(absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
}

absl::StatusOr<Value> FilterAttr(Renderer&, const Value& v, ArgReader& a) {
  ASSIGN_OR_RETURN(std::string name, Text(a.Get(0, "name")));
  RETURN_IF_ERROR(a.Done());
  // Unlike `.`, |attr never falls back to a dict key.
  if (v.is_dict() && !HasMethod(v, name)) {
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", name, "'"));
  }
  return GetAttr(v, name);
}

absl::StatusOr<Value> FilterCapitalize(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(PyCapitalize(s));
}

absl::StatusOr<Value> FilterLength(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  switch (v.kind()) {
    case ValueKind::kUndefined: return Value::Int(0);
    case ValueKind::kString: return Value::Int(static_cast<int64_t>(CodePointCount(v.str())));
    case ValueKind::kList:
    case ValueKind::kTuple: return Value::Int(static_cast<int64_t>(v.items().size()));
    case ValueKind::kDict: return Value::Int(static_cast<int64_t>(v.dict().items.size()));
    default:
      return absl::InvalidArgumentError(absl::StrCat("object of type '", TypeName(v), "' has no length"));
  }
}

absl::StatusOr<Value> FilterDefault(Renderer&, const Value& v, ArgReader& a) {
  const Value fallback = a.Get(0, "default_value", Value::String(""));
  const bool boolean = Truthy(a.Get(1, "boolean", Value::Bool(false)));
  RETURN_IF_ERROR(a.Done());
  if (v.is_undefined() || (boolean && !Truthy(v))) return fallback;
  return v;
}

absl::StatusOr<Value> FilterFirst(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("no first item, sequence was empty");
  return items.front();
}

absl::StatusOr<Value> FilterLast(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("no last item, sequence was empty");
  return items.back();
}

absl::StatusOr<Value> FilterFloat(Renderer&, const Value& v, ArgReader& a) {
  const Value fallback = a.Get(0, "default", Value::Float(0));
  RETURN_IF_ERROR(a.Done());
  if (v.is_undefined()) return absl::InvalidArgumentError(v.str());
  if (v.is_number()) return Value::Float(v.float_value());
  if (v.is_string()) {
    if (std::optional<double> d = ParseFloat(v.str())) return Value::Float(*d);
  }
  return fallback;
}

absl::StatusOr<Value> FilterInt(Renderer&, const Value& v, ArgReader& a) {
  const Value fallback = a.Get(0, "default", Value::Int(0));
  const Value base = a.Get(1, "base", Value::Int(10));
  RETURN_IF_ERROR(a.Done());
  if (v.is_undefined()) return absl::InvalidArgumentError(v.str());
  if (v.is_integral()) return Value::Int(v.int_value());
  if (v.kind() == ValueKind::kFloat) {
    const double d = std::trunc(v.float_value());
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    const int b = base.is_integral() ? static_cast<int>(base.int_value()) : 10;
    if (std::optional<int64_t> i = ParseInt(v.str(), b)) return Value::Int(*i);
    if (std::optional<double> d = ParseFloat(v.str())) {  // Jinja retries int(float(s))
      if (std::isfinite(*d) && std::fabs(*d) < 9.2e18) return Value::Int(static_cast<int64_t>(*d));
    }
  }
  return fallback;
}

absl::StatusOr<Value> FilterItems(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  if (v.is_undefined()) return Value::List({});
  if (!v.is_dict()) {
    return absl::InvalidArgumentError(absl::StrCat("items: expected a mapping, got ", TypeName(v)));
  }
  ValueList out;
  for (const auto& [key, value] : v.dict().items) out.push_back(Value::Tuple({key, value}));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> FilterJoin(Renderer& r, const Value& v, ArgReader& a) {
  ASSIGN_OR_RETURN(std::string sep, Text(a.Get(0, "d", Value::String(""))));
  ASSIGN_OR_RETURN(std::optional<std::string> attribute, OptionalText(a.Get(1, "attribute")));
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(items.size())));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (attribute) {
      ASSIGN_OR_RETURN(item, AttributePath(item, *attribute));
    }
    ASSIGN_OR_RETURN(std::string s, Text(item));
    if (i > 0) out += sep;
    out += s;
    RETURN_IF_ERROR(CheckStringSize(out.size()));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> FilterList(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> FilterLower(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(PyLower(s));
}

absl::StatusOr<Value> FilterUpper(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(PyUpper(s));
}

absl::StatusOr<Value> FilterTitle(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(JinjaTitle(s));
}

absl::StatusOr<Value> FilterTrim(Renderer&, const Value& v, ArgReader& a) {
  ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalText(a.Get(0, "chars")));
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(std::string(PyStrip(s, true, true, chars)));
}

absl::StatusOr<Value> FilterReplace(Renderer&, const Value& v, ArgReader& a) {
  ASSIGN_OR_RETURN(std::string from, Text(a.Get(0, "old")));
  ASSIGN_OR_RETURN(std::string to, Text(a.Get(1, "new")));
  const Value count = a.Get(2, "count", Value::None());
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  const size_t worst = from.empty() ? s.size() + (CodePointCount(s) + 1) * to.size()
                                    : s.size() / from.size() * to.size() + s.size();
  RETURN_IF_ERROR(CheckStringSize(worst));
  return Value::String(PyReplace(s, from, to, count.is_integral() ? count.int_value() : -1));
}

absl::StatusOr<Value> FilterReverse(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  if (v.is_string()) {
    std::vector<std::string_view> cps = CodePoints(v.str());
    std::string out;
    for (auto it = cps.rbegin(); it != cps.rend(); ++it) out.append(*it);
    return Value::String(std::move(out));
  }
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

absl::StatusOr<Value> FilterSafe(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  return v;  // no autoescaping, so marking text safe changes nothing
}

absl::StatusOr<Value> FilterString(Renderer&, const Value& v, ArgReader& a) {
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(std::string s, Text(v));
  return Value::String(std::move(s));
}

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False), which replaces Jinja's HTML-escaping one.
absl::StatusOr<Value> FilterToJson(Renderer&, const Value& v, ArgReader& a) {
  const Value ensure_ascii = a.Get(0, "ensure_ascii", Value::Bool(false));
  const Value indent = a.Get(1, "indent", Value::None());
  const Value separators = a.Get(2, "separators", Value::None());
  const Value sort_keys = a.Get(3, "sort_keys", Value::Bool(false));
  RETURN_IF_ERROR(a.Done());
  JsonOptions opt;
  opt.ensure_ascii = Truthy(ensure_ascii);
  if (indent.is_integral()) {
    opt.indent = std::string(std::max<int64_t>(0, std::min<int64_t>(indent.int_value(), 64)), ' ');
  } else if (indent.is_string()) {
    opt.indent = indent.str();
  } else if (!indent.is_none() && !indent.is_undefined()) {
    return absl::InvalidArgumentError("tojson: indent must be an int or a string");
  }
  if (opt.indent) opt.item_separator.resize(1);  // json.dumps uses "," with an indent
  if (!separators.is_none() && !separators.is_undefined()) {
    if (!separators.is_sequence() || separators.items().size() != 2 ||
        !separators.items()[0].is_string() || !separators.items()[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be two strings");
    }
    opt.item_separator = separators.items()[0].str();
    opt.key_separator = separators.items()[1].str();
  }
  opt.sort_keys = Truthy(sort_keys);
  ASSIGN_OR_RETURN(std::string json, ToJson(v, opt));
  RETURN_IF_ERROR(CheckStringSize(json.size()));
  return Value::String(std::move(json));
}

absl::StatusOr<Value> ApplyFilterByName(Renderer& r, std::string_view name, const Value& v,
                                        std::vector<Value> args);
absl::StatusOr<bool> ApplyTestByName(Renderer& r, std::string_view name, const Value& v,
                                     std::vector<Value> args);

// map(attribute='x', default=d) or map('filter', args...).
absl::StatusOr<Value> FilterMap(Renderer& r, const Value& v, ArgReader& a) {
  ASSIGN_OR_RETURN(std::optional<std::string> attribute, OptionalText(a.Keyword("attribute")));
  const Value fallback = a.Keyword("default");
  std::optional<std::string> filter;
  std::vector<Value> filter_args;
  if (!attribute) {
    ASSIGN_OR_RETURN(filter, OptionalText(a.Get(0, "")));
    if (!filter) return absl::InvalidArgumentError("map: needs a filter name or attribute=");
    filter_args = a.Rest(1);
  }
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(items.size())));
  ValueList out;
  for (const Value& item : items) {
    if (attribute) {
      ASSIGN_OR_RETURN(Value x, AttributePath(item, *attribute));
      out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
    } else {
      ASSIGN_OR_RETURN(Value x, ApplyFilterByName(r, *filter, item, filter_args));
      out.push_back(std::move(x));
    }
  }
  return Value::List(std::move(out));
}

// select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...).
absl::StatusOr<Value> SelectImpl(Renderer& r, const Value& v, ArgReader& a, bool by_attribute,
                                 bool keep_if) {
  std::optional<std::string> attribute;
  size_t next = 0;
  if (by_attribute) {
    ASSIGN_OR_RETURN(attribute, OptionalText(a.Get(0, "attribute")));
    if (!attribute) return absl::InvalidArgumentError("selectattr: needs an attribute");
    next = 1;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> test, OptionalText(a.Get(next, "")));
  std::vector<Value> test_args = a.Rest(next + 1);
  RETURN_IF_ERROR(a.Done());
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(items.size())));
  ValueList out;
  for (const Value& item : items) {
    Value subject = item;
    if (attribute) {
      ASSIGN_OR_RETURN(subject, AttributePath(item, *attribute));
    }
    bool pass = Truthy(subject);
    if (test) {
      ASSIGN_OR_RETURN(pass, ApplyTestByName(r, *test, subject, test_args));
    }
    if (pass == keep_if) out.push_back(item);
  }
  return Value::List(std::move(out));
}
absl::StatusOr<Value> FilterSelect(Renderer& r, const Value& v, ArgReader& a) {
  return SelectImpl(r, v, a, false, true);
}
absl::StatusOr<Value> FilterReject(Renderer& r, const Value& v, ArgReader& a) {
  return SelectImpl(r, v, a, false, false);
}
absl::StatusOr<Value> FilterSelectAttr(Renderer& r, const Value& v, ArgReader& a) {
  return SelectImpl(r, v, a, true, true);
}
absl::StatusOr<Value> FilterRejectAttr(Renderer& r, const Value& v, ArgReader& a) {
  return SelectImpl(r, v, a, true, false);
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};
constexpr FilterEntry kFilters[] = {
    {"abs", FilterAbs},         {"attr", FilterAttr},       {"capitalize", FilterCapitalize},
    {"count", FilterLength},    {"d", FilterDefault},       {"default", FilterDefault},
    {"first", FilterFirst},     {"float", FilterFloat},     {"int", FilterInt},
    {"items", FilterItems},     {"join", FilterJoin},       {"last", FilterLast},
    {"length", FilterLength},   {"list", FilterList},       {"lower", FilterLower},
    {"map", FilterMap},         {"reject", FilterReject},   {"rejectattr", FilterRejectAttr},
    {"replace", FilterReplace}, {"reverse", FilterReverse}, {"safe", FilterSafe},
    {"select", FilterSelect},   {"selectattr", FilterSelectAttr}, {"string", FilterString},
    {"title", FilterTitle},     {"tojson", FilterToJson},   {"trim", FilterTrim},
    {"upper", FilterUpper},
};

// ---- tests ------------------------------------------------------------------------

absl::StatusOr<bool> IntegerArg(const Value& v, const char* test) {
  if (!v.is_integral()) {
    return absl::InvalidArgumentError(absl::StrCat("test '", test, "' needs an integer, got ", TypeName(v)));
  }
  return true;
}

absl::StatusOr<bool> TestCompare(const Value& v, ArgReader& a, std::string_view op) {
  const Value other = a.Get(0, "other");
  RETURN_IF_ERROR(a.Done());
  return CompareOp(op, v, other);
}

absl::StatusOr<bool> CallTestImpl(Renderer& r, std::string_view name, const Value& v, ArgReader& a) {
  const ValueKind k = v.kind();
  if (name == "eq" || name == "equalto") return TestCompare(v, a, "==");
  if (name == "ne") return TestCompare(v, a, "!=");
  if (name == "lt" || name == "lessthan") return TestCompare(v, a, "<");
  if (name == "le") return TestCompare(v, a, "<=");
  if (name == "gt" || name == "greaterthan") return TestCompare(v, a, ">");
  if (name == "ge") return TestCompare(v, a, ">=");
  if (name == "in") {
    const Value seq = a.Get(0, "seq");
    RETURN_IF_ERROR(a.Done());
    return Contains(seq, v);
  }
  if (name == "sameas") {
    const Value other = a.Get(0, "other");
    RETURN_IF_ERROR(a.Done());
    // `is` identity: singletons and shared objects; equal scalars count as the same.
    return v.kind() == other.kind() && Equals(v, other);
  }
  if (name == "divisibleby") {
    const Value num = a.Get(0, "num");
    RETURN_IF_ERROR(a.Done());
    RETURN_IF_ERROR(IntegerArg(v, "divisibleby").status());
    RETURN_IF_ERROR(IntegerArg(num, "divisibleby").status());
    if (num.int_value() == 0) return absl::InvalidArgumentError("divisibleby(0)");
    return v.int_value() % num.int_value() == 0;
  }
  RETURN_IF_ERROR(a.Done());
  if (name == "defined") return k != ValueKind::kUndefined;
  if (name == "undefined") return k == ValueKind::kUndefined;
  if (name == "none") return k == ValueKind::kNone;
  if (name == "string") return k == ValueKind::kString;
  if (name == "number") return v.is_number();
  if (name == "integer") return k == ValueKind::kInt;
  if (name == "float") return k == ValueKind::kFloat;
  if (name == "boolean") return k == ValueKind::kBool;
  if (name == "true") return k == ValueKind::kBool && v.bool_value();
  if (name == "false") return k == ValueKind::kBool && !v.bool_value();
  if (name == "mapping") return k == ValueKind::kDict;
  if (name == "sequence") return k == ValueKind::kString || v.is_sequence() || k == ValueKind::kDict;
  if (name == "iterable") {
    return k == ValueKind::kString || v.is_sequence() || k == ValueKind::kDict ||
           k == ValueKind::kUndefined;
  }
  if (name == "callable") return k == ValueKind::kCallable;
  if (name == "even" || name == "odd") {
    RETURN_IF_ERROR(IntegerArg(v, "even/odd").status());
    return (v.int_value() % 2 == 0) == (name == "even");
  }
  if (name == "lower" || name == "upper") {
    ASSIGN_OR_RETURN(std::string s, ToPyStr(v));
    return name == "lower" ? PyIsLower(s) : PyIsUpper(s);
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported test '", std::string(name), "'"));
}

constexpr std::string_view kTests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq",       "equalto", "even",  "false",
    "float",   "ge",       "greaterthan", "gt",     "in",       "integer", "iterable", "le",
    "lessthan", "lower",   "lt",       "mapping",   "ne",       "none",    "number", "odd",
    "sameas",  "sequence", "string",   "true",      "undefined", "upper",
};

absl::StatusOr<Value> ApplyFilterByName(Renderer& r, std::string_view name, const Value& v,
                                        std::vector<Value> args) {
  CallArgs call;
  call.positional = std::move(args);
  return CallFilter(r, name, v, call);
}

absl::StatusOr<bool> ApplyTestByName(Renderer& r, std::string_view name, const Value& v,
                                     std::vector<Value> args) {
  CallArgs call;
  call.positional = std::move(args);
  return CallTest(r, name, v, call);
}

}  // namespace

bool IsKnownFilter(std::string_view name) {
  for (const FilterEntry& f : kFilters) {
    if (f.name == name) return true;
  }
  return false;
}

bool IsKnownTest(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

absl::StatusOr<Value> CallFilter(Renderer& r, std::string_view name, const Value& input,
                                 const CallArgs& args) {
  for (const FilterEntry& f : kFilters) {
    if (f.name != name) continue;
    ArgReader reader(name, args);
    return f.fn(r, input, reader);
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported filter '", std::string(name), "'"));
}

absl::StatusOr<bool> CallTest(Renderer& r, std::string_view name, const Value& value,
                              const CallArgs& args) {
  if (!IsKnownTest(name)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported test '", std::string(name), "'"));
  }
  ArgReader reader(name, args);
  return CallTestImpl(r, name, value, reader);
}

}  // namespace ingot::jinja
