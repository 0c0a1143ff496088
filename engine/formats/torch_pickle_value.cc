// PickleValue (torch_pickle.h): the node of an unpickled tree, its typed accessors,
// dict lookups with precise errors, and the short Python-like rendering for messages.
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/formats/torch_pickle.h"
#include "engine/formats/torch_pickle_machine.h"

namespace ingot::formats {

using pickle_internal::AbslView;
using pickle_internal::FindTorchDType;
using pickle_internal::TorchDTypeRow;

const char* PickleValue::KindName(Kind k) {
  switch (k) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kTensor: return "tensor";
    case Kind::kGlobal: return "global";
    case Kind::kStorage: return "storage";
  }
  return "?";
}

std::optional<int64_t> PickleValue::AsInt() const {
  if (kind_ == Kind::kInt) return i_;
  if (kind_ == Kind::kBool) return b_ ? 1 : 0;
  return std::nullopt;
}
std::optional<bool> PickleValue::AsBool() const {
  if (kind_ == Kind::kBool) return b_;
  if (kind_ == Kind::kInt && (i_ == 0 || i_ == 1)) return i_ == 1;
  return std::nullopt;
}
std::optional<double> PickleValue::AsDouble() const {
  if (kind_ == Kind::kFloat) return f_;
  if (kind_ == Kind::kInt) return static_cast<double>(i_);
  return std::nullopt;
}
const std::string* PickleValue::AsString() const {
  return kind_ == Kind::kString ? &s_ : nullptr;
}
const std::string* PickleValue::AsBytes() const {
  return kind_ == Kind::kBytes ? &s_ : nullptr;
}
const TensorView* PickleValue::AsTensor() const {
  return kind_ == Kind::kTensor ? &tensor_ : nullptr;
}
const std::string* PickleValue::AsGlobal() const {
  return kind_ == Kind::kGlobal ? &s_ : nullptr;
}
std::optional<DType> PickleValue::AsTorchDType() const {
  if (kind_ != Kind::kGlobal) return std::nullopt;
  const TorchDTypeRow* r = FindTorchDType(s_);
  return r ? r->dtype : std::nullopt;
}

const PickleValue* PickleValue::Get(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.first->kind_ == Kind::kString && e.first->s_ == key) return e.second;
  }
  return nullptr;
}
const PickleValue* PickleValue::Get(int64_t key) const {
  for (const Entry& e : entries_) {
    if (e.first->kind_ == Kind::kInt && e.first->i_ == key) return e.second;
  }
  return nullptr;
}
const PickleValue* PickleValue::At(size_t i) const {
  return is_sequence() && i < items_.size() ? items_[i] : nullptr;
}

namespace {

absl::StatusOr<const PickleValue*> Lookup(const PickleValue& d, std::string_view key) {
  const PickleValue* v = d.Get(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat("key '", AbslView(key), "' not found in ", d.DebugString()));
  }
  return v;
}
absl::Status WrongKind(std::string_view key, const PickleValue& v, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("key '", AbslView(key), "' is ", v.DebugString(),
                                                 ", not ", want));
}

}  // namespace

absl::StatusOr<int64_t> PickleValue::GetInt(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  if (v->kind_ != Kind::kInt) return WrongKind(key, *v, "an int");
  return v->i_;
}
absl::StatusOr<bool> PickleValue::GetBool(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  std::optional<bool> b = v->AsBool();
  if (!b) return WrongKind(key, *v, "a bool");
  return *b;
}
absl::StatusOr<double> PickleValue::GetDouble(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  std::optional<double> d = v->AsDouble();
  if (!d) return WrongKind(key, *v, "a number");
  return *d;
}
absl::StatusOr<std::string> PickleValue::GetString(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  if (v->kind_ != Kind::kString) return WrongKind(key, *v, "a str");
  return v->s_;
}
absl::StatusOr<const TensorView*> PickleValue::GetTensor(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  if (v->kind_ != Kind::kTensor) return WrongKind(key, *v, "a tensor");
  return &v->tensor_;
}
absl::StatusOr<const PickleValue*> PickleValue::GetDict(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  if (v->kind_ != Kind::kDict) return WrongKind(key, *v, "a dict");
  return v;
}
absl::StatusOr<std::vector<int64_t>> PickleValue::GetInts(std::string_view key) const {
  ASSIGN_OR_RETURN(const PickleValue* v, Lookup(*this, key));
  if (!v->is_sequence()) return WrongKind(key, *v, "a list or tuple of ints");
  std::vector<int64_t> out;
  for (const PickleValue* e : v->items_) {
    if (e->kind_ != Kind::kInt) return WrongKind(key, *v, "a list or tuple of ints");
    out.push_back(e->i_);
  }
  return out;
}

std::string PickleValue::DebugString() const {
  std::string out;
  AppendDebug(out, 0);
  return out;
}

void PickleValue::AppendDebug(std::string& out, int depth) const {
  constexpr size_t kMaxItems = 8;
  if (depth > 3 || out.size() > 400) {
    out += "...";
    return;
  }
  switch (kind_) {
    case Kind::kNone: out += "None"; return;
    case Kind::kBool: out += b_ ? "True" : "False"; return;
    case Kind::kInt: absl::StrAppend(&out, i_); return;
    case Kind::kFloat: absl::StrAppend(&out, f_); return;
    case Kind::kString: absl::StrAppend(&out, "'", s_.substr(0, 64), "'"); return;
    case Kind::kBytes: absl::StrAppend(&out, "b<", s_.size(), " bytes>"); return;
    case Kind::kGlobal: out += s_; return;
    case Kind::kStorage: absl::StrAppend(&out, "storage('", s_, "')"); return;
    case Kind::kTensor:
      absl::StrAppend(&out, "tensor(", DTypeName(tensor_.dtype), "[",
                      absl::StrJoin(tensor_.shape, ", "), "])");
      return;
    case Kind::kList: case Kind::kTuple: {
      out += kind_ == Kind::kList ? "[" : "(";
      for (size_t i = 0; i < items_.size() && i < kMaxItems; ++i) {
        if (i) out += ", ";
        items_[i]->AppendDebug(out, depth + 1);
      }
      if (items_.size() > kMaxItems) out += ", ...";
      out += kind_ == Kind::kList ? "]" : (items_.size() == 1 ? ",)" : ")");
      return;
    }
    case Kind::kDict: {
      out += "{";
      for (size_t i = 0; i < entries_.size() && i < kMaxItems; ++i) {
        if (i) out += ", ";
        entries_[i].first->AppendDebug(out, depth + 1);
        out += ": ";
        entries_[i].second->AppendDebug(out, depth + 1);
      }
      if (entries_.size() > kMaxItems) out += ", ...";
      out += "}";
      return;
    }
  }
}

}  // namespace ingot::formats
