// Runtime values of the chat-template interpreter: the Python objects a Jinja template
// sees (None, bool, int, float, str, list, tuple, dict), Jinja's Undefined, namespace()
// objects and callables. Lists, tuples and dicts are immutable once built (transformers
// renders in an ImmutableSandboxedEnvironment), so they are shared, never copied.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ingot::jinja {

struct Stmt;
struct Callable;
class Value;

using ValueList = std::vector<Value>;

enum class ValueKind {
  kUndefined,  // a missing variable, key or attribute: prints as "", falsy
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kTuple,
  kDict,
  kNamespace,  // namespace(): the one mutable object, `set ns.attr = ...`
  kCallable,   // a global function, a bound method or a macro
};

// A Python dict: insertion-ordered; linear lookup, as template dicts have a handful of
// keys (a message has two).
struct Dict {
  std::vector<std::pair<Value, Value>> items;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Replaces the value of an existing key in place (Python keeps its position).
  void Set(Value key, Value value);
};

// namespace() objects live in the renderer's arena for the whole render; values point
// at them, so `set ns.x = ns` cannot leak a reference cycle.
struct Namespace {
  Dict attrs;
};

class Value {
 public:
  Value() = default;  // undefined

  // `error` is what using the value in an operation reports ("'foo' is undefined").
  static Value Undefined(std::string error);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(ValueList items);
  static Value Tuple(ValueList items);
  static Value MakeDict(Dict dict);
  static Value NamespaceRef(Namespace* ns);
  static Value Function(std::shared_ptr<const Callable> fn);

  ValueKind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == ValueKind::kUndefined; }
  bool is_none() const { return kind_ == ValueKind::kNone; }
  bool is_string() const { return kind_ == ValueKind::kString; }
  bool is_int() const { return kind_ == ValueKind::kInt; }
  // Python's numbers: bool is an int.
  bool is_integral() const { return kind_ == ValueKind::kInt || kind_ == ValueKind::kBool; }
  bool is_number() const { return is_integral() || kind_ == ValueKind::kFloat; }
  bool is_sequence() const { return kind_ == ValueKind::kList || kind_ == ValueKind::kTuple; }
  bool is_dict() const { return kind_ == ValueKind::kDict; }

  bool bool_value() const { return b_; }
  // For kInt and kBool.
  int64_t int_value() const { return kind_ == ValueKind::kBool ? int64_t{b_} : i_; }
  // For any number.
  double float_value() const {
    return kind_ == ValueKind::kFloat ? f_ : static_cast<double>(int_value());
  }
  // The string of kString; for kUndefined, the error that using it reports.
  const std::string& str() const { return s_; }
  const ValueList& items() const;  // kList, kTuple
  const Dict& dict() const;        // kDict
  Namespace* ns() const { return ns_; }
  const Callable& callable() const { return *fn_; }
  // Nesting of lists, tuples and dicts (0 for anything else). Repr, JSON, equality and
  // destruction recurse this deep, so the renderer bounds it (kMaxValueDepth).
  int depth() const { return depth_; }

 private:
  ValueKind kind_ = ValueKind::kUndefined;
  int depth_ = 0;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<const Dict> dict_;
  Namespace* ns_ = nullptr;
  std::shared_ptr<const Callable> fn_;
};

struct Callable {
  enum class Kind {
    kGlobal,  // raise_exception, namespace, range, dict, strftime_now
    kMethod,  // `self.name(...)`: str, dict and loop methods
    kMacro,
  };
  Kind kind;
  std::string name;
  Value self;                    // kMethod
  const Stmt* macro = nullptr;   // kMacro
};

// Python truthiness; Undefined is falsy.
bool Truthy(const Value& v);
// Python type names for error messages ("str", "int", "dict", "undefined").
const char* TypeName(const Value& v);

// str(v) as Jinja prints it: "" for Undefined, "None", "True", Python float and
// container reprs. Fails for namespaces and callables (their repr holds an address).
absl::StatusOr<std::string> ToPyStr(const Value& v);
// repr(v), used inside containers.
absl::StatusOr<std::string> ToPyRepr(const Value& v);

// json.dumps(v, ensure_ascii=False, indent, separators, sort_keys), the tojson filter
// transformers installs. `indent` is the per-level string, unset for single-line.
struct JsonOptions {
  std::optional<std::string> indent;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;  // escape non-ASCII as \uXXXX
};
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options);

// Python ==. Undefined equals only Undefined (Jinja's rule); 1 == 1.0 == True.
bool Equals(const Value& a, const Value& b);
// Python ordering for < <= > >=: numbers, strings (code point order), same-type
// sequences; anything else is a TypeError, returned as INVALID_ARGUMENT. Returns <0, 0
// or >0.
absl::StatusOr<int> Compare(const Value& a, const Value& b);

}  // namespace ingot::jinja
