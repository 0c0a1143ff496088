// Internal to the torch.save reader (torch_pickle.h), shared by its three files:
//   torch_pickle_value.cc    PickleValue, the unpickled tree's node (the object model)
//   torch_pickle_machine.cc  the pickle machine: opcodes, memo, the allow-list of globals
//                            and the "calls" of the plain ones (OrderedDict, set, Size, ...)
//   torch_pickle.cc          torch tensor resolution: storage classes and dtypes,
//                            persistent ids, _rebuild_tensor*, (storage, offset, size,
//                            stride) -> views, the tree walk, and TorchCheckpoint::Open
// PickleMachine is one class (it owns the stack the tensor rebuilds read and the specs
// the walk resolves); its members are defined in the last two files, as marked below.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/common/status.h"
#include "engine/formats/tensor.h"
#include "engine/formats/torch_pickle.h"

namespace ingot::formats {
namespace pickle_internal {

// Debian's Abseil has its own string_view; the public API takes std::string_view.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// What each allowed global is. Callables are "called" by PickleMachine::Call().
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

// The allow-list: the global's kind, or nullopt when it is not allowed
// (torch_pickle_machine.cc).
std::optional<Global> ClassifyGlobal(std::string_view name);

// Storage classes in persistent ids; nullopt dtype: untyped (bytes) or unsupported.
struct StorageRow {
  const char* name;
  std::optional<DType> dtype;
  bool untyped;
};
// torch dtypes as pickled (getattr(torch, name)); unsupported ones are accepted as
// values and refused only if a tensor uses them.
struct TorchDTypeRow {
  const char* name;
  std::optional<DType> dtype;
};
// Both null when the name is not in the table (torch_pickle.cc). FindTorchDType takes
// the full global ("torch.float16").
const StorageRow* FindStorage(std::string_view name);
const TorchDTypeRow* FindTorchDType(std::string_view name);

}  // namespace pickle_internal

class PickleMachine {
 public:
  PickleMachine(TorchCheckpoint& ckpt, std::string prefix, std::string pkl_name,
                const uint8_t* data, uint64_t size)
      : ckpt_(ckpt), prefix_(std::move(prefix)), pkl_name_(std::move(pkl_name)),
        data_(data), size_(size) {}

  // Runs the pickle to STOP, leaving the root in the checkpoint (torch_pickle_machine.cc).
  absl::Status Run();
  // Walks the tree from the root: resolves tensors and lists every tensor by path
  // (torch_pickle.cc).
  absl::Status Resolve(std::vector<TensorView>& flat);

 private:
  using Kind = PickleValue::Kind;

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

  // torch_pickle_machine.cc: globals, containers and the plain callables.
  absl::Status PushGlobal(const std::string& module, const std::string& name);
  absl::StatusOr<int64_t> IntOperand(uint8_t op);
  absl::StatusOr<uint64_t> MemoIndex(uint8_t op);
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
  absl::StatusOr<PickleValue*> Call(PickleValue* callable, PickleValue* args);

  // torch_pickle.cc: storages (persistent ids), tensor rebuilds and their resolution.
  absl::Status PersistentLoad(PickleValue* pid);
  absl::StatusOr<PickleValue*> RebuildTensor(pickle_internal::Global kind,
                                             const std::vector<const PickleValue*>& a);
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

}  // namespace ingot::formats
