#include "engine/tokenizer/chat_template_value.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/tokenizer/chat_template_strings.h"

namespace ingot::jinja {

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (Equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (Equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

Value Value::Undefined(std::string error) {
  Value v;
  v.s_ = std::move(error);
  return v;
}
Value Value::None() {
  Value v;
  v.kind_ = ValueKind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = ValueKind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = ValueKind::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind_ = ValueKind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.kind_ = ValueKind::kString;
  v.s_ = std::move(s);
  return v;
}
Value Value::List(ValueList items) {
  Value v;
  v.kind_ = ValueKind::kList;
  for (const Value& item : items) v.depth_ = std::max(v.depth_, item.depth_);
  ++v.depth_;
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::Tuple(ValueList items) {
  Value v = List(std::move(items));
  v.kind_ = ValueKind::kTuple;
  return v;
}
Value Value::MakeDict(Dict dict) {
  Value v;
  v.kind_ = ValueKind::kDict;
  for (const auto& [key, value] : dict.items) v.depth_ = std::max({v.depth_, key.depth_, value.depth_});
  ++v.depth_;
  v.dict_ = std::make_shared<const Dict>(std::move(dict));
  return v;
}
Value Value::NamespaceRef(Namespace* ns) {
  Value v;
  v.kind_ = ValueKind::kNamespace;
  v.ns_ = ns;
  return v;
}
Value Value::Function(std::shared_ptr<const Callable> fn) {
  Value v;
  v.kind_ = ValueKind::kCallable;
  v.fn_ = std::move(fn);
  return v;
}

const ValueList& Value::items() const {
  static const ValueList kEmpty;
  return list_ ? *list_ : kEmpty;
}

const Dict& Value::dict() const {
  static const Dict kEmpty;
  return dict_ ? *dict_ : kEmpty;
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return false;
    case ValueKind::kBool: return v.bool_value();
    case ValueKind::kInt: return v.int_value() != 0;
    case ValueKind::kFloat: return v.float_value() != 0;
    case ValueKind::kString: return !v.str().empty();
    case ValueKind::kList:
    case ValueKind::kTuple: return !v.items().empty();
    case ValueKind::kDict: return !v.dict().items.empty();
    case ValueKind::kNamespace:
    case ValueKind::kCallable: return true;
  }
  return false;
}

const char* TypeName(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return "undefined";
    case ValueKind::kNone: return "NoneType";
    case ValueKind::kBool: return "bool";
    case ValueKind::kInt: return "int";
    case ValueKind::kFloat: return "float";
    case ValueKind::kString: return "str";
    case ValueKind::kList: return "list";
    case ValueKind::kTuple: return "tuple";
    case ValueKind::kDict: return "dict";
    case ValueKind::kNamespace: return "namespace";
    case ValueKind::kCallable: return "function";
  }
  return "?";
}

namespace {

absl::StatusOr<std::string> SequenceRepr(const Value& v) {
  const bool tuple = v.kind() == ValueKind::kTuple;
  std::string out = tuple ? "(" : "[";
  const ValueList& items = v.items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    ASSIGN_OR_RETURN(std::string item, ToPyRepr(items[i]));
    out += item;
  }
  if (tuple && items.size() == 1) out += ",";
  out += tuple ? ")" : "]";
  return out;
}

absl::StatusOr<std::string> DictRepr(const Value& v) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : v.dict().items) {
    if (!first) out += ", ";
    first = false;
    ASSIGN_OR_RETURN(std::string k, ToPyRepr(key));
    ASSIGN_OR_RETURN(std::string val, ToPyRepr(value));
    absl::StrAppend(&out, k, ": ", val);
  }
  return out + "}";
}

absl::StatusOr<std::string> JsonKey(const Value& key) {
  switch (key.kind()) {
    case ValueKind::kString: return key.str();
    case ValueKind::kInt: return std::to_string(key.int_value());
    case ValueKind::kFloat: return PyFloatRepr(key.float_value());
    case ValueKind::kBool: return std::string(key.bool_value() ? "true" : "false");
    case ValueKind::kNone: return std::string("null");
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tojson: keys must be str, int, float, bool or None, not ", TypeName(key)));
  }
}

absl::Status AppendJson(const Value& v, const JsonOptions& opt, int level, std::string* out) {
  // With an indent, every item goes on its own line one level deeper.
  auto newline = [&](int lvl) {
    if (!opt.indent) return;
    out->push_back('\n');
    for (int i = 0; i < lvl; ++i) out->append(*opt.indent);
  };
  switch (v.kind()) {
    case ValueKind::kNone: out->append("null"); return absl::OkStatus();
    case ValueKind::kBool: out->append(v.bool_value() ? "true" : "false"); return absl::OkStatus();
    case ValueKind::kInt: out->append(std::to_string(v.int_value())); return absl::OkStatus();
    case ValueKind::kFloat: {
      const double d = v.float_value();
      if (std::isnan(d)) {
        out->append("NaN");
      } else if (std::isinf(d)) {
        out->append(d > 0 ? "Infinity" : "-Infinity");
      } else {
        out->append(PyFloatRepr(d));
      }
      return absl::OkStatus();
    }
    case ValueKind::kString: out->append(JsonQuote(v.str(), opt.ensure_ascii)); return absl::OkStatus();
    case ValueKind::kList:
    case ValueKind::kTuple: {
      if (v.items().empty()) {
        out->append("[]");
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i > 0) out->append(opt.item_separator);
        newline(level + 1);
        RETURN_IF_ERROR(AppendJson(v.items()[i], opt, level + 1, out));
      }
      newline(level);
      out->push_back(']');
      return absl::OkStatus();
    }
    case ValueKind::kDict: {
      if (v.dict().items.empty()) {
        out->append("{}");
        return absl::OkStatus();
      }
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& entry : v.dict().items) entries.push_back(&entry);
      if (opt.sort_keys) {
        absl::Status status;
        std::stable_sort(entries.begin(), entries.end(), [&](auto* a, auto* b) {
          absl::StatusOr<int> c = Compare(a->first, b->first);
          if (!c.ok()) status = c.status();
          return c.ok() && *c < 0;
        });
        RETURN_IF_ERROR(status);
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out->append(opt.item_separator);
        newline(level + 1);
        ASSIGN_OR_RETURN(std::string key, JsonKey(entries[i]->first));
        out->append(JsonQuote(key, opt.ensure_ascii));
        out->append(opt.key_separator);
        RETURN_IF_ERROR(AppendJson(entries[i]->second, opt, level + 1, out));
      }
      newline(level);
      out->push_back('}');
      return absl::OkStatus();
    }
    case ValueKind::kUndefined:
      return absl::InvalidArgumentError("tojson: Undefined is not JSON serializable");
    case ValueKind::kNamespace:
    case ValueKind::kCallable:
      return absl::InvalidArgumentError(
          absl::StrCat("tojson: a ", TypeName(v), " is not JSON serializable"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ToPyStr(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return std::string();
    case ValueKind::kString: return v.str();
    default: return ToPyRepr(v);
  }
}

absl::StatusOr<std::string> ToPyRepr(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return std::string("Undefined");
    case ValueKind::kNone: return std::string("None");
    case ValueKind::kBool: return std::string(v.bool_value() ? "True" : "False");
    case ValueKind::kInt: return std::to_string(v.int_value());
    case ValueKind::kFloat: return PyFloatRepr(v.float_value());
    case ValueKind::kString: return PyStrRepr(v.str());
    case ValueKind::kList:
    case ValueKind::kTuple: return SequenceRepr(v);
    case ValueKind::kDict: return DictRepr(v);
    case ValueKind::kNamespace:
    case ValueKind::kCallable: break;
  }
  // Python would print an object address here; no template means to.
  return absl::InvalidArgumentError(
      absl::StrCat("cannot convert a ", TypeName(v), " object to a string"));
}

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  RETURN_IF_ERROR(AppendJson(v, options, 0, &out));
  return out;
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.int_value() == b.int_value();
    return a.float_value() == b.float_value();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return true;
    case ValueKind::kString: return a.str() == b.str();
    case ValueKind::kList:
    case ValueKind::kTuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case ValueKind::kDict: {
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& [key, value] : a.dict().items) {
        const Value* other = b.dict().Find(key);
        if (other == nullptr || !Equals(value, *other)) return false;
      }
      return true;
    }
    case ValueKind::kNamespace: return a.ns() == b.ns();
    case ValueKind::kCallable: return &a.callable() == &b.callable();
    default: return false;
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) {
      return a.int_value() < b.int_value() ? -1 : a.int_value() > b.int_value() ? 1 : 0;
    }
    const double x = a.float_value(), y = b.float_value();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order.
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_sequence() && a.kind() == b.kind()) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!Equals(x[i], y[i])) return Compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    return absl::InvalidArgumentError(u.str());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "ordering is not supported between '", TypeName(a), "' and '", TypeName(b), "'"));
}

}  // namespace ingot::jinja
