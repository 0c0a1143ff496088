// torch.save zip checkpoints (see torch_pickle.h): archive layout, a restricted pickle
// machine, and the pass that turns (storage, offset, size, stride) into tensor views.
// The machine follows CPython's Lib/pickle.py _Unpickler opcode by opcode, but a
// global is only ever looked up in the allow-list below and "called" by code here.
// Everything is bounded by the input: each opcode consumes at least one byte and
// creates at most one node; the tree walk is depth-limited, rejects cycles, and caps
// the number of paths it follows so shared sub-trees cannot blow up exponentially.
#include "engine/formats/torch_pickle.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/zip.h"

namespace ingot::formats {
namespace {

using Kind = PickleValue::Kind;

// Debian's Abseil has its own string_view; the public API takes std::string_view.
absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

constexpr int kMaxDepth = 200;           // nesting the tree walk follows
constexpr int kMaxDims = 64;
constexpr uint64_t kCopyFactor = 16;     // strided copies, total, vs the archive size
constexpr uint64_t kMinCopyBudget = 64ull << 20;

// What each allowed global is. Callables are "called" by Call() below.
enum class Global {
  kOrderedDict, kSet, kRebuildTensor, kRebuildTensorV2, kRebuildTensorV3,
  kRebuildParameter, kRebuildParameterWithState, kRebuildFromTypeV2, kSize, kDevice,
  kCodecsEncode, kGetLayout,
  kValue,    // a dtype or a tensor class: only ever an argument
  kStorage,  // a storage class: only inside persistent ids
  // A tensor subclass without storage of its own (torch.utils._python_dispatch wrapper):
  // pickled as _rebuild_from_type_v2(_rebuild_wrapper_subclass, Class, (...), state) and
  // read as its state dict, so its tensor attributes list as NAME.<attr>.
  kRebuildWrapperSubclass, kWrapperSubclass,
};

struct GlobalRow {
  const char* name;
  Global kind;
};
constexpr GlobalRow kCallables[] = {
    {"collections.OrderedDict", Global::kOrderedDict},
    {"builtins.set", Global::kSet},
    {"builtins.frozenset", Global::kSet},
    {"__builtin__.set", Global::kSet},
    {"__builtin__.frozenset", Global::kSet},
    {"torch._utils._rebuild_tensor", Global::kRebuildTensor},
    {"torch._utils._rebuild_tensor_v2", Global::kRebuildTensorV2},
    {"torch._utils._rebuild_tensor_v3", Global::kRebuildTensorV3},
    {"torch._utils._rebuild_parameter", Global::kRebuildParameter},
    {"torch._utils._rebuild_parameter_with_state", Global::kRebuildParameterWithState},
    {"torch._tensor._rebuild_from_type_v2", Global::kRebuildFromTypeV2},
    {"torch.Size", Global::kSize},
    {"torch.device", Global::kDevice},
    {"_codecs.encode", Global::kCodecsEncode},
    {"torch.serialization._get_layout", Global::kGetLayout},
    {"torch.Tensor", Global::kValue},
    {"torch.nn.parameter.Parameter", Global::kValue},
    {"torch._utils._rebuild_wrapper_subclass", Global::kRebuildWrapperSubclass},
    // torchao 0.18's weights whose state is tensors and plain values only
    // (engine/formats/layouts/torchao.cc reads them): the CPU int4 one and the
    // weight-only int8 one (the dynamic int8 one also pickles its activation settings
    // as objects, and is refused by their names).
    {"torchao.prototype.quantization.int4.Int4OpaqueTensor", Global::kWrapperSubclass},
    {"torchao.quantization.Int8Tensor", Global::kWrapperSubclass},
};

// Storage classes in persistent ids; nullopt dtype: untyped (bytes) or unsupported.
struct StorageRow {
  const char* name;
  std::optional<DType> dtype;
  bool untyped;
};
constexpr StorageRow kStorages[] = {
    {"torch.DoubleStorage", DType::kF64, false},  {"torch.FloatStorage", DType::kF32, false},
    {"torch.HalfStorage", DType::kF16, false},    {"torch.BFloat16Storage", DType::kBF16, false},
    {"torch.LongStorage", DType::kI64, false},    {"torch.IntStorage", DType::kI32, false},
    {"torch.ShortStorage", DType::kI16, false},   {"torch.CharStorage", DType::kI8, false},
    {"torch.ByteStorage", DType::kU8, false},     {"torch.BoolStorage", DType::kBool, false},
    {"torch.ComplexFloatStorage", std::nullopt, false},
    {"torch.ComplexDoubleStorage", std::nullopt, false},
    {"torch.UntypedStorage", std::nullopt, true},
    {"torch.storage.UntypedStorage", std::nullopt, true},
};

// torch dtypes as pickled (getattr(torch, name)); unsupported ones are accepted as
// values and refused only if a tensor uses them.
struct TorchDTypeRow {
  const char* name;
  std::optional<DType> dtype;
};
constexpr TorchDTypeRow kTorchDTypes[] = {
    {"float64", DType::kF64},  {"float32", DType::kF32},  {"float16", DType::kF16},
    {"bfloat16", DType::kBF16}, {"int64", DType::kI64},   {"int32", DType::kI32},
    {"int16", DType::kI16},    {"int8", DType::kI8},      {"uint8", DType::kU8},
    {"uint16", DType::kU16},   {"uint32", DType::kU32},   {"uint64", DType::kU64},
    {"bool", DType::kBool},    {"float8_e4m3fn", DType::kF8E4M3},
    {"float8_e5m2", DType::kF8E5M2},
    {"complex32", std::nullopt}, {"complex64", std::nullopt}, {"complex128", std::nullopt},
    {"float8_e4m3fnuz", std::nullopt}, {"float8_e5m2fnuz", std::nullopt},
    {"float8_e8m0fnu", std::nullopt}, {"float4_e2m1fn_x2", std::nullopt},
    {"qint8", std::nullopt}, {"quint8", std::nullopt}, {"qint32", std::nullopt},
    {"quint4x2", std::nullopt}, {"quint2x4", std::nullopt},
};

const StorageRow* FindStorage(std::string_view name) {
  for (const StorageRow& r : kStorages) {
    if (name == r.name) return &r;
  }
  return nullptr;
}

const TorchDTypeRow* FindTorchDType(std::string_view name) {
  if (!absl::StartsWith(AbslView(name), "torch.")) return nullptr;
  name.remove_prefix(6);
  for (const TorchDTypeRow& r : kTorchDTypes) {
    if (name == r.name) return &r;
  }
  return nullptr;
}

std::optional<Global> ClassifyGlobal(std::string_view name) {
  for (const GlobalRow& r : kCallables) {
    if (name == r.name) return r.kind;
  }
  if (FindStorage(name) != nullptr) return Global::kStorage;
  if (FindTorchDType(name) != nullptr) return Global::kValue;
  return std::nullopt;
}

// UTF-8 -> latin-1 bytes (what _codecs.encode(s, 'latin1') does); false if a code
// point is above 255 or the UTF-8 is malformed.
bool Utf8ToLatin1(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size();) {
    const uint8_t c = static_cast<uint8_t>(in[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c & 0xe0) == 0xc0 && i + 1 < in.size() &&
               (static_cast<uint8_t>(in[i + 1]) & 0xc0) == 0x80) {
      const uint32_t cp = (c & 0x1fu) << 6 | (static_cast<uint8_t>(in[i + 1]) & 0x3fu);
      if (cp > 0xff) return false;
      out.push_back(static_cast<char>(cp));
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | cp >> 6));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | cp >> 12));
    out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18 & 0x07)));
    out.push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string KeyText(const PickleValue& k) {
  if (const std::string* s = k.AsString()) return *s;
  if (k.kind() == Kind::kInt) return absl::StrCat(*k.AsInt());
  return k.DebugString();
}

}  // namespace

// ---------------------------------------------------------------------------------
// PickleValue

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

// ---------------------------------------------------------------------------------
// The pickle machine

class PickleMachine {
 public:
  PickleMachine(TorchCheckpoint& ckpt, std::string prefix, std::string pkl_name,
                const uint8_t* data, uint64_t size)
      : ckpt_(ckpt), prefix_(std::move(prefix)), pkl_name_(std::move(pkl_name)),
        data_(data), size_(size) {}

  absl::Status Run();
  // Walks the tree from the root: resolves tensors and lists every tensor by path.
  absl::Status Resolve(std::vector<TensorView>& flat);

 private:
  struct StorageSpec {
    std::string key;
    std::string type_name;
    std::optional<DType> dtype;
    bool untyped = false;
    int64_t numel = 0;  // elements (typed) or bytes (untyped), as declared
  };
  struct TensorSpec {
    const PickleValue* storage;
    std::optional<DType> dtype;  // _rebuild_tensor_v3's explicit dtype
    const PickleValue* dtype_global = nullptr;
    int64_t offset;
    const PickleValue* size;
    const PickleValue* stride;
  };

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(ckpt_.path_, ": ", pkl_name_, " byte ",
                                                   op_at_, ": ", what));
  }
  absl::Status TensorError(const std::string& path, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(ckpt_.path_, ": tensor '", path, "': ", what));
  }

  PickleValue* New(Kind k) {
    ckpt_.nodes_.push_back(std::make_unique<PickleValue>());
    ckpt_.nodes_.back()->kind_ = k;
    return ckpt_.nodes_.back().get();
  }
  PickleValue* NewInt(int64_t v) {
    PickleValue* p = New(Kind::kInt);
    p->i_ = v;
    return p;
  }
  PickleValue* NewString(Kind k, std::string s) {
    PickleValue* p = New(k);
    p->s_ = std::move(s);
    return p;
  }

  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  absl::StatusOr<PickleValue*> Pop() {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    PickleValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  absl::StatusOr<PickleValue*> Top() {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    return stack_.back();
  }
  // Everything above the last MARK, removing the mark.
  absl::StatusOr<std::vector<PickleValue*>> PopMark() {
    if (marks_.empty()) return Error("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleValue*> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }

  bool Has(uint64_t n) const { return size_ - pos_ >= n; }
  template <typename T>
  absl::StatusOr<T> Read() {
    if (!Has(sizeof(T))) return Error("truncated operand");
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  absl::StatusOr<std::string> ReadBytes(uint64_t n) {
    if (!Has(n)) return Error(absl::StrCat("length ", n, " runs past the end of the pickle"));
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  absl::StatusOr<std::string> ReadLine() {
    const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (nl == nullptr) return Error("unterminated text operand");
    const uint64_t end = static_cast<const uint8_t*>(nl) - data_;
    std::string s(reinterpret_cast<const char*>(data_ + pos_), end - pos_);
    pos_ = end + 1;
    return s;
  }
  absl::StatusOr<int64_t> ParseDecimal(std::string s) {
    if (!s.empty() && s.back() == 'L') s.pop_back();  // Python 2 longs
    int64_t v = 0;
    if (!absl::SimpleAtoi(s, &v)) {
      return Error(absl::StrCat("integer '", s.substr(0, 32), "' does not fit in 64 bits"));
    }
    return v;
  }
  // LONG1/LONG4: little-endian two's complement of n bytes.
  absl::StatusOr<int64_t> ReadLong(uint64_t n) {
    if (!Has(n)) return Error("truncated long");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    if (n == 0) return 0;
    const bool negative = p[n - 1] & 0x80;
    const uint8_t fill = negative ? 0xff : 0x00;
    for (uint64_t i = 8; i < n; ++i) {
      if (p[i] != fill) return Error("integer does not fit in 64 bits");
    }
    uint64_t u = negative ? ~uint64_t{0} : 0;
    for (uint64_t i = 0; i < n && i < 8; ++i) {
      u &= ~(uint64_t{0xff} << (8 * i));
      u |= static_cast<uint64_t>(p[i]) << (8 * i);
    }
    const int64_t v = static_cast<int64_t>(u);
    if (n > 8 && (v < 0) != negative) return Error("integer does not fit in 64 bits");
    return v;
  }

  absl::Status PushGlobal(const std::string& module, const std::string& name);
  absl::Status Memo(uint64_t index) {
    ASSIGN_OR_RETURN(PickleValue* v, Top());
    memo_[index] = v;
    return absl::OkStatus();
  }
  absl::Status Recall(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return Error(absl::StrCat("memo key ", index, " was never stored"));
    stack_.push_back(it->second);
    return absl::OkStatus();
  }
  absl::Status SetItems(PickleValue* dict, const std::vector<PickleValue*>& kv);
  absl::Status Append(PickleValue* list, const std::vector<PickleValue*>& items);
  absl::Status PersistentLoad(PickleValue* pid);
  absl::StatusOr<PickleValue*> Call(PickleValue* callable, PickleValue* args);
  absl::StatusOr<PickleValue*> RebuildTensor(Global kind, const std::vector<const PickleValue*>& a);
  absl::Status Walk(const PickleValue* v, std::string& path, int depth,
                    std::vector<TensorView>& flat);
  absl::Status ResolveTensor(PickleValue* t, const std::string& path);
  absl::StatusOr<std::pair<const uint8_t*, uint64_t>> StorageBytes(const StorageSpec& s,
                                                                   const std::string& path);

  TorchCheckpoint& ckpt_;
  const std::string prefix_;
  const std::string pkl_name_;
  const uint8_t* data_;
  const uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t op_at_ = 0;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, PickleValue*> memo_;
  // (dict, "s<str>" or "i<int>") -> index in the dict's entries.
  absl::flat_hash_map<std::pair<const PickleValue*, std::string>, size_t> dict_keys_;
  absl::flat_hash_map<std::string, PickleValue*> storages_by_key_;
  std::vector<StorageSpec> storages_;
  std::vector<TensorSpec> tensors_;
  absl::flat_hash_map<std::string, std::pair<const uint8_t*, uint64_t>> records_;
  std::unordered_set<const PickleValue*> on_path_;
  int64_t walk_budget_ = 0;
  uint64_t copy_budget_ = 0;
};

absl::Status PickleMachine::PushGlobal(const std::string& module, const std::string& name) {
  const std::string full = absl::StrCat(module, ".", name);
  if (!ClassifyGlobal(full)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt_.path_, ": pickle references '", full,
        "'; only tensors and plain containers are allowed (torch.save of a state dict)"));
  }
  stack_.push_back(NewString(Kind::kGlobal, full));
  return absl::OkStatus();
}

absl::Status PickleMachine::SetItems(PickleValue* dict, const std::vector<PickleValue*>& kv) {
  if (dict->kind_ != Kind::kDict) {
    return Error(absl::StrCat("SETITEM(S) on a ", PickleValue::KindName(dict->kind_)));
  }
  if (kv.size() % 2 != 0) return Error("SETITEMS with an odd number of items");
  for (size_t i = 0; i < kv.size(); i += 2) {
    // A repeated str/int key replaces the value in place, as a Python dict does
    // (found through dict_keys_, so a dict of n keys costs O(n), not O(n^2)).
    const PickleValue* k = kv[i];
    if (k->kind_ == Kind::kString || k->kind_ == Kind::kInt) {
      std::string id = k->kind_ == Kind::kString ? "s" + k->s_ : absl::StrCat("i", k->i_);
      auto [it, inserted] = dict_keys_.try_emplace({dict, std::move(id)}, dict->entries_.size());
      if (!inserted) {
        dict->entries_[it->second].second = kv[i + 1];
        continue;
      }
    }
    dict->entries_.emplace_back(k, kv[i + 1]);
  }
  return absl::OkStatus();
}

absl::Status PickleMachine::Append(PickleValue* list, const std::vector<PickleValue*>& items) {
  if (list->kind_ != Kind::kList) {
    return Error(absl::StrCat("APPEND(S) on a ", PickleValue::KindName(list->kind_)));
  }
  list->items_.insert(list->items_.end(), items.begin(), items.end());
  return absl::OkStatus();
}

// ('storage', <storage class>, key, location, numel): one storage per key.
absl::Status PickleMachine::PersistentLoad(PickleValue* pid) {
  const auto& t = pid->items_;
  if (pid->kind_ != Kind::kTuple || t.size() != 5 || t[0]->kind_ != Kind::kString ||
      t[0]->s_ != "storage") {
    return Error(absl::StrCat("unsupported persistent id ", pid->DebugString(),
                              " (expected ('storage', type, key, location, numel))"));
  }
  if (t[1]->kind_ != Kind::kGlobal || FindStorage(t[1]->s_) == nullptr) {
    return Error(absl::StrCat("persistent id storage type ", t[1]->DebugString(),
                              " is not a torch storage class"));
  }
  if (t[2]->kind_ != Kind::kString || t[4]->kind_ != Kind::kInt || t[4]->i_ < 0) {
    return Error(absl::StrCat("persistent id ", pid->DebugString(),
                              " needs a str key and a non-negative numel"));
  }
  auto it = storages_by_key_.find(t[2]->s_);
  if (it == storages_by_key_.end()) {
    const StorageRow* row = FindStorage(t[1]->s_);
    PickleValue* s = NewString(Kind::kStorage, t[2]->s_);
    s->i_ = static_cast<int64_t>(storages_.size());
    storages_.push_back({t[2]->s_, t[1]->s_, row->dtype, row->untyped, t[4]->i_});
    it = storages_by_key_.emplace(t[2]->s_, s).first;
  }
  stack_.push_back(it->second);
  return absl::OkStatus();
}

absl::StatusOr<PickleValue*> PickleMachine::RebuildTensor(
    Global kind, const std::vector<const PickleValue*>& a) {
  const size_t min_args = kind == Global::kRebuildTensor     ? 4
                          : kind == Global::kRebuildTensorV2 ? 6
                                                             : 7;
  if (a.size() < min_args || a.size() > min_args + 1) {
    return Error(absl::StrCat("tensor rebuild takes ", min_args, " arguments, got ", a.size()));
  }
  if (a[0]->kind_ != Kind::kStorage) {
    return Error(absl::StrCat("tensor rebuild from ", a[0]->DebugString(), ", not a storage"));
  }
  if (a[1]->kind_ != Kind::kInt || !a[2]->is_sequence() || !a[3]->is_sequence()) {
    return Error("tensor rebuild needs (storage, offset, size, stride, ...)");
  }
  TensorSpec spec{a[0], std::nullopt, nullptr, a[1]->i_, a[2], a[3]};
  if (kind == Global::kRebuildTensorV3) {
    if (a[6]->kind_ != Kind::kGlobal || FindTorchDType(a[6]->s_) == nullptr) {
      return Error(absl::StrCat("_rebuild_tensor_v3 dtype ", a[6]->DebugString(),
                                " is not a torch dtype"));
    }
    spec.dtype_global = a[6];
  }
  PickleValue* t = New(Kind::kTensor);
  t->spec_ = static_cast<int32_t>(tensors_.size());
  tensors_.push_back(spec);
  return t;
}

absl::StatusOr<PickleValue*> PickleMachine::Call(PickleValue* callable, PickleValue* args) {
  if (callable->kind_ != Kind::kGlobal) {
    return Error(absl::StrCat("call of ", callable->DebugString(), ", not a global"));
  }
  if (args->kind_ != Kind::kTuple) {
    return Error(absl::StrCat("arguments of ", callable->s_, " are ", args->DebugString(),
                              ", not a tuple"));
  }
  const std::vector<const PickleValue*>& a = args->items_;
  const Global kind = *ClassifyGlobal(callable->s_);
  auto bad_args = [&]() {
    return Error(absl::StrCat(callable->s_, " called with ", args->DebugString()));
  };
  switch (kind) {
    case Global::kOrderedDict: {
      PickleValue* d = New(Kind::kDict);
      if (a.empty()) return d;
      // OrderedDict([(k, v), ...])
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      std::vector<PickleValue*> kv;
      for (const PickleValue* pair : a[0]->items_) {
        if (!pair->is_sequence() || pair->items_.size() != 2) return bad_args();
        kv.push_back(const_cast<PickleValue*>(pair->items_[0]));
        kv.push_back(const_cast<PickleValue*>(pair->items_[1]));
      }
      RETURN_IF_ERROR(SetItems(d, kv));
      return d;
    }
    case Global::kSet: {
      PickleValue* l = New(Kind::kList);
      if (a.empty()) return l;
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      l->items_ = a[0]->items_;
      return l;
    }
    case Global::kRebuildTensor:
    case Global::kRebuildTensorV2:
    case Global::kRebuildTensorV3:
      return RebuildTensor(kind, a);
    case Global::kRebuildParameter:
    case Global::kRebuildParameterWithState:
      if (a.size() < 3 || a[0]->kind_ != Kind::kTensor) return bad_args();
      return const_cast<PickleValue*>(a[0]);
    case Global::kRebuildFromTypeV2: {
      // An allowed wrapper subclass: its state dict stands for it (args only describe
      // the wrapper: class, dtype, size, stride, offset, layout, device).
      if (a.size() == 4 && a[0]->kind_ == Kind::kGlobal && a[1]->kind_ == Kind::kGlobal &&
          *ClassifyGlobal(a[1]->s_) == Global::kWrapperSubclass) {
        if (*ClassifyGlobal(a[0]->s_) != Global::kRebuildWrapperSubclass || a[3]->kind_ != Kind::kDict) {
          return bad_args();
        }
        return const_cast<PickleValue*>(a[3]);
      }
      // (func, type, args, state): func(*args), with func a tensor rebuild (not
      // this function again: no recursion) and type a tensor class.
      if (a.size() != 4 || a[0]->kind_ != Kind::kGlobal || a[1]->kind_ != Kind::kGlobal ||
          a[2]->kind_ != Kind::kTuple ||
          (a[1]->s_ != "torch.Tensor" && a[1]->s_ != "torch.nn.parameter.Parameter")) {
        return bad_args();
      }
      const Global func = *ClassifyGlobal(a[0]->s_);
      if (func != Global::kRebuildTensor && func != Global::kRebuildTensorV2 &&
          func != Global::kRebuildTensorV3 && func != Global::kRebuildParameter &&
          func != Global::kRebuildParameterWithState) {
        return bad_args();
      }
      ASSIGN_OR_RETURN(PickleValue* r, Call(const_cast<PickleValue*>(a[0]),
                                            const_cast<PickleValue*>(a[2])));
      if (r->kind_ != Kind::kTensor) return bad_args();
      return r;
    }
    case Global::kSize: {
      PickleValue* t = New(Kind::kTuple);
      if (a.empty()) return t;
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      for (const PickleValue* d : a[0]->items_) {
        if (d->kind_ != Kind::kInt) return bad_args();
      }
      t->items_ = a[0]->items_;
      return t;
    }
    case Global::kDevice: {
      if (a.empty() || a.size() > 2 || a[0]->kind_ != Kind::kString) return bad_args();
      std::string dev = a[0]->s_;
      if (a.size() == 2 && a[1]->kind_ == Kind::kInt) absl::StrAppend(&dev, ":", a[1]->i_);
      return NewString(Kind::kString, std::move(dev));
    }
    case Global::kCodecsEncode: {
      if (a.size() != 2 || a[0]->kind_ != Kind::kString || a[1]->kind_ != Kind::kString ||
          (a[1]->s_ != "latin1" && a[1]->s_ != "latin-1")) {
        return bad_args();
      }
      std::string bytes;
      if (!Utf8ToLatin1(a[0]->s_, bytes)) return bad_args();
      return NewString(Kind::kBytes, std::move(bytes));
    }
    case Global::kGetLayout:  // _get_layout("torch.strided"): the name stands for it
      if (a.size() != 1 || a[0]->kind_ != Kind::kString) return bad_args();
      return const_cast<PickleValue*>(a[0]);
    case Global::kValue:
    case Global::kStorage:
    case Global::kRebuildWrapperSubclass:  // only ever _rebuild_from_type_v2's func
    case Global::kWrapperSubclass:
      break;
  }
  return Error(absl::StrCat(callable->s_, " is not callable here"));
}

absl::Status PickleMachine::Run() {
  while (true) {
    if (pos_ >= size_) return Error("pickle ends without a STOP opcode");
    op_at_ = pos_;
    const uint8_t op = data_[pos_++];
    switch (op) {
      case 0x80: {  // PROTO
        ASSIGN_OR_RETURN(uint8_t proto, Read<uint8_t>());
        if (proto > 5) return Error(absl::StrCat("pickle protocol ", proto, " is not supported"));
        break;
      }
      case 0x95: {  // FRAME: a length prefix only
        ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>());
        (void)len;
        break;
      }
      case '.': {  // STOP
        ASSIGN_OR_RETURN(PickleValue* root, Pop());
        ckpt_.root_ = root;
        return absl::OkStatus();
      }
      case '(': marks_.push_back(stack_.size()); break;
      case '0': {  // POP (or POP_MARK when the current segment is empty)
        if (stack_.size() > Floor()) {
          stack_.pop_back();
        } else {
          RETURN_IF_ERROR(PopMark().status());
        }
        break;
      }
      case '1': RETURN_IF_ERROR(PopMark().status()); break;
      case '2': {  // DUP
        ASSIGN_OR_RETURN(PickleValue* v, Top());
        stack_.push_back(v);
        break;
      }
      case 'N': stack_.push_back(New(Kind::kNone)); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        PickleValue* v = New(Kind::kBool);
        v->b_ = op == 0x88;
        stack_.push_back(v);
        break;
      }
      case 'I': {  // INT (text); "00"/"01" are False/True
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        if (s == "00" || s == "01") {
          PickleValue* v = New(Kind::kBool);
          v->b_ = s == "01";
          stack_.push_back(v);
        } else {
          ASSIGN_OR_RETURN(int64_t v, ParseDecimal(s));
          stack_.push_back(NewInt(v));
        }
        break;
      }
      case 'L': {  // LONG (text)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        ASSIGN_OR_RETURN(int64_t v, ParseDecimal(s));
        stack_.push_back(NewInt(v));
        break;
      }
      case 'J': {
        ASSIGN_OR_RETURN(int32_t v, Read<int32_t>());
        stack_.push_back(NewInt(v));
        break;
      }
      case 'K': {
        ASSIGN_OR_RETURN(uint8_t v, Read<uint8_t>());
        stack_.push_back(NewInt(v));
        break;
      }
      case 'M': {
        ASSIGN_OR_RETURN(uint16_t v, Read<uint16_t>());
        stack_.push_back(NewInt(v));
        break;
      }
      case 0x8a: {  // LONG1
        ASSIGN_OR_RETURN(uint8_t n, Read<uint8_t>());
        ASSIGN_OR_RETURN(int64_t v, ReadLong(n));
        stack_.push_back(NewInt(v));
        break;
      }
      case 0x8b: {  // LONG4
        ASSIGN_OR_RETURN(int32_t n, Read<int32_t>());
        if (n < 0) return Error("negative LONG4 length");
        ASSIGN_OR_RETURN(int64_t v, ReadLong(static_cast<uint64_t>(n)));
        stack_.push_back(NewInt(v));
        break;
      }
      case 'F': {  // FLOAT (text)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        PickleValue* v = New(Kind::kFloat);
        if (!absl::SimpleAtod(s, &v->f_)) return Error(absl::StrCat("bad float '", s, "'"));
        stack_.push_back(v);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        ASSIGN_OR_RETURN(uint64_t be, Read<uint64_t>());
        const uint64_t bits = __builtin_bswap64(be);
        PickleValue* v = New(Kind::kFloat);
        std::memcpy(&v->f_, &bits, 8);
        stack_.push_back(v);
        break;
      }
      case 'X': case 0x8c: case 0x8d:    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      case 'B': case 'C': case 0x8e:     // BINBYTES, SHORT_BINBYTES, BINBYTES8
      case 'T': case 'U': case 0x96: {   // BINSTRING, SHORT_BINSTRING, BYTEARRAY8
        uint64_t n = 0;
        if (op == 0x8c || op == 'C' || op == 'U') {
          ASSIGN_OR_RETURN(uint8_t n8, Read<uint8_t>());
          n = n8;
        } else if (op == 0x8d || op == 0x8e || op == 0x96) {
          ASSIGN_OR_RETURN(n, Read<uint64_t>());
        } else {
          ASSIGN_OR_RETURN(uint32_t n32, Read<uint32_t>());
          n = n32;
        }
        ASSIGN_OR_RETURN(std::string s, ReadBytes(n));
        // Python 2 str (T, U) is unpickled as str by torch (encoding='utf-8').
        const bool text = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
        stack_.push_back(NewString(text ? Kind::kString : Kind::kBytes, std::move(s)));
        break;
      }
      case 'S': {  // STRING (text, quoted repr): only the unescaped form
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        if (s.size() < 2 || (s[0] != '\'' && s[0] != '"') || s.back() != s[0] ||
            s.find('\\') != std::string::npos) {
          return Error("unsupported STRING operand (escapes are not supported)");
        }
        stack_.push_back(NewString(Kind::kString, s.substr(1, s.size() - 2)));
        break;
      }
      case 'V': {  // UNICODE (raw-unicode-escape)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
          const uint8_t c = static_cast<uint8_t>(s[i]);
          if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            const size_t digits = s[i + 1] == 'u' ? 4 : 8;
            uint32_t cp = 0;
            if (i + 2 + digits > s.size()) return Error("truncated \\u escape");
            for (size_t k = 0; k < digits; ++k) {
              const char h = s[i + 2 + k];
              const int d = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
              if (d < 0) return Error("bad \\u escape");
              cp = cp << 4 | static_cast<uint32_t>(d);
            }
            if (cp > 0x10ffff) return Error("bad \\U escape");
            AppendUtf8(out, cp);
            i += 1 + digits;
          } else {
            AppendUtf8(out, c);
          }
        }
        stack_.push_back(NewString(Kind::kString, std::move(out)));
        break;
      }
      case ')': stack_.push_back(New(Kind::kTuple)); break;
      case ']': stack_.push_back(New(Kind::kList)); break;
      case '}': stack_.push_back(New(Kind::kDict)); break;
      case 0x8f: stack_.push_back(New(Kind::kList)); break;  // EMPTY_SET
      case 't': case 'l': case 0x91: {  // TUPLE, LIST, FROZENSET (from MARK)
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        PickleValue* v = New(op == 't' ? Kind::kTuple : Kind::kList);
        v->items_.assign(items.begin(), items.end());
        stack_.push_back(v);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        const size_t n = op - 0x84;
        if (stack_.size() < Floor() + n) return Error("stack underflow");
        PickleValue* v = New(Kind::kTuple);
        v->items_.assign(stack_.end() - n, stack_.end());
        stack_.resize(stack_.size() - n);
        stack_.push_back(v);
        break;
      }
      case 'd': {  // DICT (from MARK)
        ASSIGN_OR_RETURN(std::vector<PickleValue*> kv, PopMark());
        PickleValue* d = New(Kind::kDict);
        RETURN_IF_ERROR(SetItems(d, kv));
        stack_.push_back(d);
        break;
      }
      case 'a': {  // APPEND
        ASSIGN_OR_RETURN(PickleValue* v, Pop());
        ASSIGN_OR_RETURN(PickleValue* list, Top());
        RETURN_IF_ERROR(Append(list, {v}));
        break;
      }
      case 'e': case 0x90: {  // APPENDS, ADDITEMS
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        ASSIGN_OR_RETURN(PickleValue* list, Top());
        RETURN_IF_ERROR(Append(list, items));
        break;
      }
      case 's': {  // SETITEM
        ASSIGN_OR_RETURN(PickleValue* v, Pop());
        ASSIGN_OR_RETURN(PickleValue* k, Pop());
        ASSIGN_OR_RETURN(PickleValue* d, Top());
        RETURN_IF_ERROR(SetItems(d, {k, v}));
        break;
      }
      case 'u': {  // SETITEMS
        ASSIGN_OR_RETURN(std::vector<PickleValue*> kv, PopMark());
        ASSIGN_OR_RETURN(PickleValue* d, Top());
        RETURN_IF_ERROR(SetItems(d, kv));
        break;
      }
      case 'p': {  // PUT (text)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        ASSIGN_OR_RETURN(int64_t i, ParseDecimal(s));
        RETURN_IF_ERROR(Memo(static_cast<uint64_t>(i)));
        break;
      }
      case 'q': {
        ASSIGN_OR_RETURN(uint8_t i, Read<uint8_t>());
        RETURN_IF_ERROR(Memo(i));
        break;
      }
      case 'r': {
        ASSIGN_OR_RETURN(uint32_t i, Read<uint32_t>());
        RETURN_IF_ERROR(Memo(i));
        break;
      }
      case 0x94: RETURN_IF_ERROR(Memo(memo_.size())); break;  // MEMOIZE
      case 'g': {  // GET (text)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        ASSIGN_OR_RETURN(int64_t i, ParseDecimal(s));
        RETURN_IF_ERROR(Recall(static_cast<uint64_t>(i)));
        break;
      }
      case 'h': {
        ASSIGN_OR_RETURN(uint8_t i, Read<uint8_t>());
        RETURN_IF_ERROR(Recall(i));
        break;
      }
      case 'j': {
        ASSIGN_OR_RETURN(uint32_t i, Read<uint32_t>());
        RETURN_IF_ERROR(Recall(i));
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        ASSIGN_OR_RETURN(std::string module, ReadLine());
        ASSIGN_OR_RETURN(std::string name, ReadLine());
        RETURN_IF_ERROR(PushGlobal(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        ASSIGN_OR_RETURN(PickleValue* name, Pop());
        ASSIGN_OR_RETURN(PickleValue* module, Pop());
        if (module->kind_ != Kind::kString || name->kind_ != Kind::kString) {
          return Error("STACK_GLOBAL needs two strings");
        }
        RETURN_IF_ERROR(PushGlobal(module->s_, name->s_));
        break;
      }
      case 'i': {  // INST "module\nname\n", arguments from MARK
        ASSIGN_OR_RETURN(std::string module, ReadLine());
        ASSIGN_OR_RETURN(std::string name, ReadLine());
        RETURN_IF_ERROR(PushGlobal(module, name));
        PickleValue* cls = stack_.back();
        stack_.pop_back();
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        PickleValue* args = New(Kind::kTuple);
        args->items_.assign(items.begin(), items.end());
        ASSIGN_OR_RETURN(PickleValue* r, Call(cls, args));
        stack_.push_back(r);
        break;
      }
      case 'o': {  // OBJ: MARK cls args...
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        if (items.empty()) return Error("OBJ without a class");
        PickleValue* args = New(Kind::kTuple);
        args->items_.assign(items.begin() + 1, items.end());
        ASSIGN_OR_RETURN(PickleValue* r, Call(items[0], args));
        stack_.push_back(r);
        break;
      }
      case 'R': case 0x81: {  // REDUCE, NEWOBJ
        ASSIGN_OR_RETURN(PickleValue* args, Pop());
        ASSIGN_OR_RETURN(PickleValue* callable, Pop());
        ASSIGN_OR_RETURN(PickleValue* r, Call(callable, args));
        stack_.push_back(r);
        break;
      }
      case 0x92: {  // NEWOBJ_EX: cls, args, kwargs (kwargs must be empty)
        ASSIGN_OR_RETURN(PickleValue* kwargs, Pop());
        ASSIGN_OR_RETURN(PickleValue* args, Pop());
        ASSIGN_OR_RETURN(PickleValue* cls, Pop());
        if (kwargs->kind_ != Kind::kDict || !kwargs->entries_.empty()) {
          return Error("NEWOBJ_EX with keyword arguments");
        }
        ASSIGN_OR_RETURN(PickleValue* r, Call(cls, args));
        stack_.push_back(r);
        break;
      }
      case 'b': {  // BUILD: state for dicts (OrderedDict._metadata) and tensors is dropped
        ASSIGN_OR_RETURN(PickleValue* state, Pop());
        ASSIGN_OR_RETURN(PickleValue* obj, Top());
        (void)state;
        if (obj->kind_ != Kind::kDict && obj->kind_ != Kind::kTensor) {
          return Error(absl::StrCat("BUILD on a ", PickleValue::KindName(obj->kind_)));
        }
        break;
      }
      case 'Q': {  // BINPERSID
        ASSIGN_OR_RETURN(PickleValue* pid, Pop());
        RETURN_IF_ERROR(PersistentLoad(pid));
        break;
      }
      case 'P': {  // PERSID (text): torch never writes it
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        return Error(absl::StrCat("unsupported text persistent id '", s.substr(0, 32), "'"));
      }
      case 0x82: case 0x83: case 0x84:
        return Error("extension-registry opcodes (EXT1/2/4) are not supported");
      case 0x97: case 0x98:
        return Error("out-of-band buffers (protocol 5) are not supported");
      default:
        return Error(absl::StrFormat("unknown opcode 0x%02x", op));
    }
  }
}

// ---------------------------------------------------------------------------------
// Tensors

absl::StatusOr<std::pair<const uint8_t*, uint64_t>> PickleMachine::StorageBytes(
    const StorageSpec& s, const std::string& path) {
  auto it = records_.find(s.key);
  if (it != records_.end()) return it->second;
  const std::string name = absl::StrCat(prefix_, "data/", s.key);
  const ZipEntry* e = ckpt_.zip_->Find(name);
  if (e == nullptr) {
    return TensorError(path, absl::StrCat("its storage record '", name, "' is missing"));
  }
  ASSIGN_OR_RETURN(ZipBytes bytes, ckpt_.zip_->Read(*e));
  if (bytes.owned) ckpt_.owned_.push_back(std::move(bytes.owned));
  return records_[s.key] = {bytes.data, bytes.size};
}

absl::Status PickleMachine::ResolveTensor(PickleValue* t, const std::string& path) {
  const TensorSpec& spec = tensors_[t->spec_];
  const StorageSpec& storage = storages_[spec.storage->i_];
  std::optional<DType> dtype = storage.dtype;
  if (spec.dtype_global != nullptr) {
    dtype = FindTorchDType(spec.dtype_global->s_)->dtype;
    if (!dtype) {
      return TensorError(path, absl::StrCat("dtype ", spec.dtype_global->s_,
                                            " is not supported"));
    }
  } else if (storage.untyped) {
    return TensorError(path, "an untyped storage needs _rebuild_tensor_v3's dtype");
  } else if (!dtype) {
    return TensorError(path, absl::StrCat("storage type ", storage.type_name,
                                          " is not supported"));
  }
  const uint64_t esize = DTypeSize(*dtype);
  ASSIGN_OR_RETURN(auto record, StorageBytes(storage, path));
  // The declared size must fit in the record (torch writes exactly that many bytes).
  const uint64_t declared_bytes =
      storage.untyped ? static_cast<uint64_t>(storage.numel)
                      : (static_cast<uint64_t>(storage.numel) > record.second / esize
                             ? UINT64_MAX
                             : static_cast<uint64_t>(storage.numel) * esize);
  if (declared_bytes > record.second) {
    return TensorError(path, absl::StrCat("storage '", storage.key, "' declares ",
                                          storage.numel, storage.untyped ? " bytes" : " elements",
                                          " but its record has ", record.second, " bytes"));
  }
  const uint64_t storage_elems = declared_bytes / esize;
  const auto& size = spec.size->items_;
  const auto& stride = spec.stride->items_;
  if (size.size() != stride.size() || size.size() > kMaxDims) {
    return TensorError(path, absl::StrCat("size ", spec.size->DebugString(), " and stride ",
                                          spec.stride->DebugString(), " do not match"));
  }
  std::vector<int64_t> shape, strides;
  bool has_zero = false;
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d]->kind_ != Kind::kInt || stride[d]->kind_ != Kind::kInt || size[d]->i_ < 0 ||
        stride[d]->i_ < 0) {
      return TensorError(path, absl::StrCat("size ", spec.size->DebugString(), " / stride ",
                                            spec.stride->DebugString(),
                                            " must be non-negative ints"));
    }
    shape.push_back(size[d]->i_);
    strides.push_back(stride[d]->i_);
    has_zero |= size[d]->i_ == 0;
  }
  if (spec.offset < 0) return TensorError(path, "negative storage offset");
  const std::optional<uint64_t> checked_numel = CheckedNumel(shape, esize);
  if (!checked_numel) {
    return TensorError(path, absl::StrCat("size ", spec.size->DebugString(),
                                          " overflows the element count"));
  }
  const uint64_t numel = *checked_numel;
  uint64_t last = static_cast<uint64_t>(spec.offset);  // highest element index touched
  bool overflow = false;
  if (!has_zero) {
    for (size_t d = 0; d < shape.size(); ++d) {
      uint64_t reach = 0;
      overflow |= __builtin_mul_overflow(static_cast<uint64_t>(shape[d] - 1),
                                         static_cast<uint64_t>(strides[d]), &reach);
      overflow |= __builtin_add_overflow(last, reach, &last);
    }
  }
  if (overflow || (numel > 0 && last >= storage_elems)) {
    return TensorError(path, absl::StrCat(
        "size ", spec.size->DebugString(), ", stride ", spec.stride->DebugString(),
        " and offset ", spec.offset, " reach past its storage '", storage.key, "' of ",
        storage_elems, " ", DTypeName(*dtype), " elements"));
  }
  TensorView& v = t->tensor_;
  v.name = path;
  v.dtype = *dtype;
  v.shape = shape;
  v.nbytes = numel * esize;
  const uint8_t* base = record.first;
  if (numel == 0) {
    v.data = base;
    return absl::OkStatus();
  }
  bool contiguous = true;
  uint64_t expect = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && static_cast<uint64_t>(strides[d]) != expect) contiguous = false;
    expect *= static_cast<uint64_t>(shape[d]);
  }
  if (contiguous) {
    v.data = base + static_cast<uint64_t>(spec.offset) * esize;
    return absl::OkStatus();
  }
  // Strided (a transpose, an expand): gather into an owned contiguous copy, copying
  // whole rows when the innermost stride is 1.
  if (v.nbytes > copy_budget_) {
    return TensorError(path, absl::StrCat("strided tensor would expand to ", v.nbytes,
                                          " bytes, more than ", kCopyFactor,
                                          "x the checkpoint; save it .contiguous()"));
  }
  copy_budget_ -= v.nbytes;
  std::unique_ptr<uint8_t[]> buf(new uint8_t[v.nbytes]);
  const size_t nd = shape.size();
  const bool rows = strides[nd - 1] == 1;
  const uint64_t run = rows ? static_cast<uint64_t>(shape[nd - 1]) : 1;
  const size_t outer_dims = rows ? nd - 1 : nd;
  std::vector<int64_t> idx(nd, 0);
  uint8_t* out = buf.get();
  for (uint64_t done = 0; done < numel; done += run) {
    uint64_t src = static_cast<uint64_t>(spec.offset);
    for (size_t d = 0; d < outer_dims; ++d) src += static_cast<uint64_t>(idx[d] * strides[d]);
    std::memcpy(out, base + src * esize, run * esize);
    out += run * esize;
    for (size_t d = outer_dims; d-- > 0;) {  // odometer over the outer dims
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  v.data = buf.get();
  ckpt_.owned_.push_back(std::move(buf));
  return absl::OkStatus();
}

absl::Status PickleMachine::Walk(const PickleValue* v, std::string& path, int depth,
                                 std::vector<TensorView>& flat) {
  if (--walk_budget_ < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt_.path_, ": '", path, "': the pickle shares containers too often to flatten"));
  }
  if (v->kind_ == Kind::kTensor) {
    PickleValue* t = const_cast<PickleValue*>(v);
    if (t->spec_ >= 0) {
      RETURN_IF_ERROR(ResolveTensor(t, path));
      t->spec_ = -1;
    }
    flat.push_back(t->tensor_);
    flat.back().name = path;
    return absl::OkStatus();
  }
  if (v->kind_ != Kind::kDict && !v->is_sequence()) return absl::OkStatus();
  if (depth > kMaxDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(ckpt_.path_, ": '", path, "': nested deeper than ", kMaxDepth));
  }
  if (!on_path_.insert(v).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(ckpt_.path_, ": '", path, "' contains itself"));
  }
  const size_t len = path.size();
  auto child = [&](const std::string& key, const PickleValue* c) {
    path.resize(len);
    if (len > 0) path += '.';
    path += key;
    return Walk(c, path, depth + 1, flat);
  };
  if (v->kind_ == Kind::kDict) {
    for (const auto& [k, c] : v->entries_) RETURN_IF_ERROR(child(KeyText(*k), c));
  } else {
    for (size_t i = 0; i < v->items_.size(); ++i) {
      RETURN_IF_ERROR(child(absl::StrCat(i), v->items_[i]));
    }
  }
  path.resize(len);
  on_path_.erase(v);
  return absl::OkStatus();
}

absl::Status PickleMachine::Resolve(std::vector<TensorView>& flat) {
  walk_budget_ = 4 * static_cast<int64_t>(ckpt_.nodes_.size()) + 100000;
  copy_budget_ = std::max(kMinCopyBudget, kCopyFactor * ckpt_.zip_->size());
  std::string path;
  return Walk(ckpt_.root_, path, 0, flat);
}

// ---------------------------------------------------------------------------------
// TorchCheckpoint

TorchCheckpoint::TorchCheckpoint() = default;
TorchCheckpoint::~TorchCheckpoint() = default;

absl::StatusOr<std::unique_ptr<TorchCheckpoint>> TorchCheckpoint::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const uint8_t* p = file->data();
  const uint64_t n = file->size();
  if (n >= 2 && p[0] == 0x80 && p[1] <= 5) {
    return absl::UnimplementedError(absl::StrCat(
        path, ": legacy torch.save format (a bare pickle, PyTorch < 1.6 or "
              "_use_new_zipfile_serialization=False) is not supported; re-save it with "
              "torch.save(torch.load(f), f2) in a current PyTorch"));
  }
  if (n >= 262 && std::memcmp(p + 257, "ustar", 5) == 0) {
    return absl::UnimplementedError(absl::StrCat(
        path, ": legacy tar-based torch.save format (PyTorch < 0.4) is not supported"));
  }
  if (n < 4 || std::memcmp(p, "PK\x03\x04", 4) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a torch.save zip archive (no PK signature)"));
  }
  std::unique_ptr<TorchCheckpoint> ckpt(new TorchCheckpoint());
  ckpt->path_ = path;
  ASSIGN_OR_RETURN(ckpt->zip_, ZipArchive::FromBuffer(path, p, n));
  ckpt->file_ = std::move(file);

  // <prefix>/data.pkl, the prefix being the archive's top directory (any name).
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : ckpt->zip_->entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash + 1, std::string::npos, "data.pkl") == 0) {
      pkl = &e;
      break;
    }
  }
  if (pkl == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no <name>/data.pkl in the archive (a TorchScript or other zip file?)"));
  }
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);
  if (const ZipEntry* bo = ckpt->zip_->Find(prefix + "byteorder")) {
    ASSIGN_OR_RETURN(ZipBytes b, ckpt->zip_->Read(*bo));
    const std::string_view order(reinterpret_cast<const char*>(b.data), b.size);
    if (order == "big") {
      return absl::UnimplementedError(
          absl::StrCat(path, ": big-endian torch checkpoint is not supported"));
    }
    if (order != "little") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": byteorder record is '", AbslView(order.substr(0, 16)), "'"));
    }
  }
  // The pickle is inflated into memory: bounded before reading.
  if (pkl->uncompressed_size > static_cast<uint64_t>(kMaxPickleBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", pkl->name, " is ", pkl->uncompressed_size,
                                                   " bytes, over the bound of ", kMaxPickleBytes,
                                                   " bytes for a pickle"));
  }
  ASSIGN_OR_RETURN(ZipBytes pickle, ckpt->zip_->Read(*pkl));
  PickleMachine vm(*ckpt, prefix, pkl->name, pickle.data, pickle.size);
  RETURN_IF_ERROR(vm.Run());
  RETURN_IF_ERROR(vm.Resolve(ckpt->flat_));
  for (size_t i = 0; i < ckpt->flat_.size(); ++i) {
    ckpt->flat_index_.emplace(ckpt->flat_[i].name, i);
  }
  return ckpt;
}

const TensorView* TorchCheckpoint::FindTensor(std::string_view dotted_path) const {
  auto it = flat_index_.find(dotted_path);
  return it == flat_index_.end() ? nullptr : &flat_[it->second];
}

}  // namespace ingot::formats
