// The Python methods templates call on strings and dicts (message.content.strip(),
// message.get('tool_calls')), and the global functions transformers' environment
// provides (namespace, range, dict, strftime_now; raise_exception is in the Renderer).
// The sandbox forbids mutating methods, so none are offered.
#include <algorithm>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_eval.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace ingot::jinja {
namespace {

constexpr std::string_view kStringMethods[] = {
    "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "upper", "lower", "title",
    "capitalize", "replace", "find", "count", "join", "isspace", "isdigit", "isalpha",
    "islower", "isupper"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};

template <size_t N>
bool In(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

absl::StatusOr<std::string> StrArg(const Value& v, std::string_view method) {
  if (!v.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("str.", std::string(method),
                                                   "() needs a string argument, got ", TypeName(v)));
  }
  return v.str();
}

absl::StatusOr<std::optional<std::string>> OptionalStrArg(const Value& v, std::string_view method) {
  if (v.is_none() || v.is_undefined()) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, StrArg(v, method));
  return std::optional<std::string>(std::move(s));
}

// startswith/endswith take a string or a tuple of strings.
absl::StatusOr<bool> AffixMatch(const std::string& s, const Value& affix, bool prefix) {
  auto match = [&](const std::string& a) {
    return prefix ? std::string_view(s).starts_with(a) : std::string_view(s).ends_with(a);
  };
  if (affix.is_string()) return match(affix.str());
  if (affix.kind() == ValueKind::kTuple) {
    for (const Value& a : affix.items()) {
      ASSIGN_OR_RETURN(std::string text, StrArg(a, prefix ? "startswith" : "endswith"));
      if (match(text)) return true;
    }
    return false;
  }
  return absl::InvalidArgumentError("startswith/endswith need a string or a tuple of strings");
}

bool AllCodePoints(std::string_view s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    i = Utf8Next(s, i, &cp);
    if (!pred(cp)) return false;
  }
  return true;
}

absl::StatusOr<Value> StringMethod(Renderer& r, const std::string& s, std::string_view name,
                                   const CallArgs& args) {
  ArgReader a(name, args);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalStrArg(a.Get(0, "chars"), name));
    RETURN_IF_ERROR(a.Done());
    return Value::String(std::string(PyStrip(s, name != "rstrip", name != "lstrip", chars)));
  }
  if (name == "startswith" || name == "endswith") {
    const Value affix = a.Get(0, "prefix");
    RETURN_IF_ERROR(a.Done());
    ASSIGN_OR_RETURN(bool match, AffixMatch(s, affix, name == "startswith"));
    return Value::Bool(match);
  }
  if (name == "split") {
    ASSIGN_OR_RETURN(std::optional<std::string> sep, OptionalStrArg(a.Get(0, "sep"), name));
    const Value maxsplit = a.Get(1, "maxsplit", Value::Int(-1));
    RETURN_IF_ERROR(a.Done());
    if (sep && sep->empty()) return absl::InvalidArgumentError("str.split(): empty separator");
    if (!maxsplit.is_integral()) return absl::InvalidArgumentError("str.split(): maxsplit must be an int");
    ValueList parts;
    for (std::string& p : PySplit(s, sep, maxsplit.int_value())) parts.push_back(Value::String(std::move(p)));
    RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(parts.size())));
    return Value::List(std::move(parts));
  }
  if (name == "replace") {
    ASSIGN_OR_RETURN(std::string from, StrArg(a.Get(0, "old"), name));
    ASSIGN_OR_RETURN(std::string to, StrArg(a.Get(1, "new"), name));
    const Value count = a.Get(2, "count", Value::Int(-1));
    RETURN_IF_ERROR(a.Done());
    const size_t worst = from.empty() ? s.size() + (CodePointCount(s) + 1) * to.size()
                                      : s.size() / from.size() * to.size() + s.size();
    RETURN_IF_ERROR(CheckStringSize(worst));
    return Value::String(PyReplace(s, from, to, count.is_integral() ? count.int_value() : -1));
  }
  if (name == "find" || name == "count") {
    ASSIGN_OR_RETURN(std::string sub, StrArg(a.Get(0, "sub"), name));
    RETURN_IF_ERROR(a.Done());
    return Value::Int(name == "find" ? PyFind(s, sub) : PyCount(s, sub));
  }
  if (name == "join") {
    const Value iterable = a.Get(0, "iterable");
    RETURN_IF_ERROR(a.Done());
    ASSIGN_OR_RETURN(ValueList items, Iterate(iterable));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      ASSIGN_OR_RETURN(std::string item, StrArg(items[i], name));
      if (i > 0) out += s;
      out += item;
      RETURN_IF_ERROR(CheckStringSize(out.size()));
    }
    return Value::String(std::move(out));
  }
  RETURN_IF_ERROR(a.Done());
  if (name == "upper") return Value::String(PyUpper(s));
  if (name == "lower") return Value::String(PyLower(s));
  if (name == "title") return Value::String(PyTitle(s));
  if (name == "capitalize") return Value::String(PyCapitalize(s));
  if (name == "islower") return Value::Bool(PyIsLower(s));
  if (name == "isupper") return Value::Bool(PyIsUpper(s));
  if (name == "isspace") return Value::Bool(AllCodePoints(s, IsPySpace));
  // ASCII digits and letters only (Python also accepts other scripts' digits/letters).
  if (name == "isdigit") {
    return Value::Bool(AllCodePoints(s, [](char32_t c) { return c >= '0' && c <= '9'; }));
  }
  if (name == "isalpha") {
    return Value::Bool(AllCodePoints(s, [](char32_t c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
    }));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported method str.", std::string(name), "()"));
}

absl::StatusOr<Value> DictMethod(const Dict& d, std::string_view name, const CallArgs& args) {
  ArgReader a(name, args);
  if (name == "get") {
    const Value key = a.Get(0, "key");
    const Value fallback = a.Get(1, "default", Value::None());
    RETURN_IF_ERROR(a.Done());
    const Value* v = d.Find(key);
    return v ? *v : fallback;
  }
  RETURN_IF_ERROR(a.Done());
  ValueList out;
  for (const auto& [key, value] : d.items) {
    if (name == "items") {
      out.push_back(Value::Tuple({key, value}));
    } else {
      out.push_back(name == "keys" ? key : value);
    }
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Range(Renderer& r, const CallArgs& args) {
  if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
    return absl::InvalidArgumentError("range() takes 1 to 3 positional arguments");
  }
  for (const Value& v : args.positional) {
    if (!v.is_integral()) return absl::InvalidArgumentError("range() arguments must be integers");
  }
  const auto& p = args.positional;
  const int64_t start = p.size() == 1 ? 0 : p[0].int_value();
  const int64_t stop = p.size() == 1 ? p[0].int_value() : p[1].int_value();
  const int64_t step = p.size() == 3 ? p[2].int_value() : 1;
  if (step == 0) return absl::InvalidArgumentError("range() step must not be zero");
  // Counted in 128 bits so bounds near the int64 limits cannot overflow.
  const __int128 span = static_cast<__int128>(stop) - start;
  const __int128 n = (span > 0) == (step > 0) && span != 0 ? (span - (step > 0 ? 1 : -1)) / step + 1 : 0;
  if (n > kMaxRange) {
    return absl::InvalidArgumentError(absl::StrCat("range() longer than ", kMaxRange, " items"));
  }
  RETURN_IF_ERROR(r.Charge(static_cast<int64_t>(n)));
  ValueList out;
  for (int64_t k = 0; k < static_cast<int64_t>(n); ++k) out.push_back(Value::Int(start + k * step));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> StrftimeNow(const Renderer& r, const CallArgs& args) {
  ArgReader a("strftime_now", args);
  const Value format = a.Get(0, "format");
  RETURN_IF_ERROR(a.Done());
  if (!format.is_string() || format.str().size() > 256) {
    return absl::InvalidArgumentError("strftime_now() needs a format string (at most 256 bytes)");
  }
  std::tm local{};
  if (r.now_unix_seconds() >= 0) {
    const std::time_t fixed = static_cast<std::time_t>(r.now_unix_seconds());
    gmtime_r(&fixed, &local);
  } else {
    const std::time_t now = std::time(nullptr);
    localtime_r(&now, &local);
  }
  char buf[1024];
  const size_t n = std::strftime(buf, sizeof(buf), format.str().c_str(), &local);
  return Value::String(std::string(buf, n));
}

}  // namespace

bool HasMethod(const Value& self, std::string_view name) {
  if (self.is_string()) return In(kStringMethods, name);
  if (self.is_dict()) return In(kDictMethods, name);
  return false;
}

absl::StatusOr<Value> CallMethod(Renderer& r, const Value& self, std::string_view name,
                                 const CallArgs& args) {
  if (self.is_string()) return StringMethod(r, self.str(), name, args);
  if (self.is_dict()) return DictMethod(self.dict(), name, args);
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported method ", TypeName(self), ".", std::string(name), "()"));
}

bool IsGlobalFunction(std::string_view name) {
  return name == "raise_exception" || name == "namespace" || name == "range" || name == "dict" ||
         name == "strftime_now";
}

absl::StatusOr<Value> CallGlobal(Renderer& r, std::string_view name, const CallArgs& args) {
  if (name == "range") return Range(r, args);
  if (name == "strftime_now") return StrftimeNow(r, args);
  if (name == "namespace" || name == "dict") {
    // namespace(mapping, key=value, ...) and dict(key=value, ...).
    Dict attrs;
    if (args.positional.size() > 1 || (!args.positional.empty() && !args.positional[0].is_dict())) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(name),
                                                     "() takes keyword arguments and at most one dict"));
    }
    if (!args.positional.empty()) attrs = args.positional[0].dict();
    for (const auto& [key, value] : args.keyword) attrs.Set(Value::String(key), value);
    if (name == "dict") return Value::MakeDict(std::move(attrs));
    return r.NewNamespace(std::move(attrs));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported function ", std::string(name), "()"));
}

}  // namespace ingot::jinja
