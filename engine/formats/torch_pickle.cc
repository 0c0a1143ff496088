// torch.save zip checkpoints (see torch_pickle.h): the archive layout and torch tensor
// resolution: storage classes and dtypes, persistent ids, the _rebuild_tensor* calls,
// and the pass that turns (storage, offset, size, stride) into tensor views. The
// pickle itself runs in torch_pickle_machine.cc. The tree walk is depth-limited,
// rejects cycles, and caps the number of paths it follows so shared sub-trees cannot
// blow up exponentially.
#include "engine/formats/torch_pickle.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/torch_pickle_machine.h"
#include "engine/formats/zip.h"

namespace ingot::formats {
namespace pickle_internal {
namespace {

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

}  // namespace

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

}  // namespace pickle_internal

namespace {

using Kind = PickleValue::Kind;
using pickle_internal::AbslView;
using pickle_internal::FindStorage;
using pickle_internal::FindTorchDType;
using pickle_internal::Global;
using pickle_internal::StorageRow;

constexpr int kMaxDepth = 200;           // nesting the tree walk follows
constexpr int kMaxDims = 64;
constexpr uint64_t kCopyFactor = 16;     // strided copies, total, vs the archive size
constexpr uint64_t kMinCopyBudget = 64ull << 20;

std::string KeyText(const PickleValue& k) {
  if (const std::string* s = k.AsString()) return *s;
  if (k.kind() == Kind::kInt) return absl::StrCat(*k.AsInt());
  return k.DebugString();
}

}  // namespace

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
