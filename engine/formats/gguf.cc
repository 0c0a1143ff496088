// GGUF reader over a read-only mmap (the writer is gguf_writer.cc). Every read goes through a bounds-
// checked cursor; counts are checked against the bytes left before anything is
// reserved, so a corrupt file gives INVALID_ARGUMENT (file, key or tensor, byte offset)
// and never a crash or an allocation larger than a small multiple of the file.
#include "engine/formats/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/mapped_file.h"
#include "engine/formats/gguf_internal.h"

namespace ingot::gguf {
namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
constexpr uint32_t kMaxDims = 4;       // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;     // nested arrays; bounds the recursion

// Debian's Abseil has its own string_view; the public API takes std::string_view.
absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

bool IsIntegerType(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kUint16:
    case ValueType::kInt16: case ValueType::kUint32: case ValueType::kInt32:
    case ValueType::kUint64: case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

// Fewest bytes one value of type `t` takes on disk (a string or array is at least its
// length prefix); bounds counts by the bytes left.
uint64_t MinEncodedSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
    case ValueType::kString: return 8;
    case ValueType::kArray: return 4 + 8;
  }
  return 1;
}

}  // namespace

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

size_t Value::ArraySize() const {
  return type == ValueType::kArray ? ElementCount(*this) : 0;
}

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------
// Reader

class FileParser {
 public:
  explicit FileParser(File& file) : f_(file) {}

  absl::Status Parse() {
    RETURN_IF_ERROR(ParseHeader());
    for (uint64_t i = 0; i < kv_count_; ++i) RETURN_IF_ERROR(ParseKeyValue(i));
    context_.clear();
    RETURN_IF_ERROR(ApplyAlignment());
    // Each tensor info takes at least name length, n_dims, type and offset.
    constexpr uint64_t kMinTensorInfo = 8 + 4 + 4 + 8;
    if (tensor_count_ > Remaining() / kMinTensorInfo) {
      return Error(16, absl::StrCat("tensor count ", tensor_count_,
                                    " cannot fit in the ", Remaining(),
                                    " bytes left after the metadata"));
    }
    f_.tensors_.reserve(tensor_count_);
    for (uint64_t i = 0; i < tensor_count_; ++i) RETURN_IF_ERROR(ParseTensorInfo(i));
    context_.clear();
    return PlaceTensorData();
  }

 private:
  uint64_t Remaining() const { return f_.size_ - pos_; }

  absl::Status Error(uint64_t at, absl::string_view what) const {
    std::string where = context_;
    for (uint64_t i : index_path_) absl::StrAppend(&where, "[", i, "]");
    return absl::InvalidArgumentError(absl::StrCat(
        f_.path_, ": ", where, where.empty() ? "" : ": ", what, " at byte offset ", at));
  }

  template <typename T>
  absl::Status Read(T& out, absl::string_view what) {
    if (Remaining() < sizeof(T)) {
      return Error(pos_, absl::StrCat("truncated: ", what, " needs ", sizeof(T),
                                      " bytes, ", Remaining(), " left"));
    }
    std::memcpy(&out, f_.base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status ReadString(std::string& out, absl::string_view what) {
    const uint64_t at = pos_;
    uint64_t len = 0;
    RETURN_IF_ERROR(Read(len, absl::StrCat(what, " length")));
    if (len > Remaining()) {
      return Error(at, absl::StrCat(what, " length ", len, " exceeds the ", Remaining(),
                                    " bytes left in the file"));
    }
    out.assign(reinterpret_cast<const char*>(f_.base_ + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

  absl::Status ReadValueType(ValueType& out, absl::string_view what) {
    const uint64_t at = pos_;
    uint32_t raw = 0;
    RETURN_IF_ERROR(Read(raw, what));
    if (!IsKnownValueType(raw)) {
      return Error(at, absl::StrCat("unknown ", what, " ", raw));
    }
    out = static_cast<ValueType>(raw);
    return absl::OkStatus();
  }

  absl::Status ParseHeader() {
    if (f_.size_ < 4) {
      return Error(0, absl::StrCat("truncated: file is ", f_.size_,
                                   " bytes, too short for the GGUF magic"));
    }
    uint32_t magic = 0;
    RETURN_IF_ERROR(Read(magic, "magic"));
    if (magic != kMagic) {
      return Error(0, absl::StrFormat("bad magic 0x%08x (expected \"GGUF\"); not a GGUF file",
                                      magic));
    }
    uint32_t version = 0;
    RETURN_IF_ERROR(Read(version, "version"));
    if (version == 1) {
      return Error(4, "GGUF version 1 is not supported (only v2 and v3); re-convert the "
                      "model with a current converter");
    }
    if (version != 2 && version != 3) {
      if ((version & 0xffff) == 0 && version != 0) {
        return Error(4, absl::StrFormat("big-endian GGUF (version field 0x%08x) is not "
                                        "supported", version));
      }
      return Error(4, absl::StrCat("unsupported GGUF version ", version,
                                   " (expected 2 or 3)"));
    }
    f_.version_ = version;
    RETURN_IF_ERROR(Read(tensor_count_, "tensor count"));
    RETURN_IF_ERROR(Read(kv_count_, "metadata count"));
    // A pair is at least key length, value type and one byte of value.
    constexpr uint64_t kMinPair = 8 + 4 + 1;
    if (kv_count_ > Remaining() / kMinPair) {
      return Error(16, absl::StrCat("metadata count ", kv_count_, " cannot fit in the ",
                                    Remaining(), " bytes left"));
    }
    if (tensor_count_ > Remaining() / (8 + 4 + 4 + 8)) {
      return Error(8, absl::StrCat("tensor count ", tensor_count_, " cannot fit in the ",
                                   Remaining(), " bytes left"));
    }
    f_.kv_.reserve(kv_count_);
    return absl::OkStatus();
  }

  absl::Status ParseKeyValue(uint64_t index) {
    const uint64_t at = pos_;
    context_ = absl::StrCat("metadata pair ", index);
    std::string key;
    RETURN_IF_ERROR(ReadString(key, "key"));
    context_ = absl::StrCat("key '", key, "'");
    if (f_.kv_index_.contains(key)) return Error(at, "duplicate key");
    ValueType type = ValueType::kUint8;
    RETURN_IF_ERROR(ReadValueType(type, "value type"));
    if (key == kAlignmentKey) alignment_at_ = pos_;
    Value value;
    RETURN_IF_ERROR(ReadValue(type, value, 0));
    f_.kv_index_.emplace(key, f_.kv_.size());
    f_.kv_.emplace_back(std::move(key), std::move(value));
    return absl::OkStatus();
  }

  absl::Status ReadValue(ValueType type, Value& v, int depth) {
    v.type = type;
    if (type == ValueType::kString) return ReadString(v.s, "string");
    if (type == ValueType::kArray) return ReadArray(v, depth);
    return ReadScalar(type, v);
  }

  // Integers land in both i and u (signed ones sign-extended); floats in f.
  absl::Status ReadScalar(ValueType type, Value& v) {
    switch (type) {
      case ValueType::kUint8: return ReadInt<uint8_t>(v);
      case ValueType::kInt8: return ReadInt<int8_t>(v);
      case ValueType::kUint16: return ReadInt<uint16_t>(v);
      case ValueType::kInt16: return ReadInt<int16_t>(v);
      case ValueType::kUint32: return ReadInt<uint32_t>(v);
      case ValueType::kInt32: return ReadInt<int32_t>(v);
      case ValueType::kUint64: return ReadInt<uint64_t>(v);
      case ValueType::kInt64: return ReadInt<int64_t>(v);
      case ValueType::kBool: {
        uint8_t b = 0;
        RETURN_IF_ERROR(Read(b, "bool"));
        v.i = b != 0;
        v.u = b != 0;
        return absl::OkStatus();
      }
      case ValueType::kFloat32: {
        float x = 0;
        RETURN_IF_ERROR(Read(x, "float32"));
        v.f = x;
        return absl::OkStatus();
      }
      case ValueType::kFloat64: return Read(v.f, "float64");
      case ValueType::kString: case ValueType::kArray: break;
    }
    return Error(pos_, "internal: not a scalar type");
  }

  template <typename T>
  absl::Status ReadInt(Value& v) {
    T x = 0;
    RETURN_IF_ERROR(Read(x, "integer"));
    v.i = static_cast<int64_t>(x);
    v.u = static_cast<uint64_t>(v.i);
    if constexpr (std::is_same_v<T, uint64_t>) v.u = x;
    return absl::OkStatus();
  }

  absl::Status ReadArray(Value& v, int depth) {
    const uint64_t at = pos_;
    if (depth >= kMaxArrayDepth) {
      return Error(at, absl::StrCat("arrays nested deeper than ", kMaxArrayDepth));
    }
    RETURN_IF_ERROR(ReadValueType(v.elem_type, "array element type"));
    uint64_t count = 0;
    RETURN_IF_ERROR(Read(count, "array length"));
    if (count > Remaining() / MinEncodedSize(v.elem_type)) {
      return Error(at, absl::StrCat("array of ", count, " ", ValueTypeName(v.elem_type),
                                    " elements cannot fit in the ", Remaining(),
                                    " bytes left"));
    }
    index_path_.push_back(0);
    absl::Status status = ReadArrayElements(v, count, depth);
    if (status.ok()) index_path_.pop_back();  // on error the path names the element
    return status;
  }

  // index_path_.back() tracks the element being read (nested reads push onto the
  // path, so it is re-indexed rather than held by reference).
  absl::Status ReadArrayElements(Value& v, uint64_t count, int depth) {
    const size_t slot = index_path_.size() - 1;
    switch (v.elem_type) {
      case ValueType::kString:
        v.strings.resize(count);
        for (uint64_t k = 0; k < count; ++k) {
          index_path_[slot] = k;
          RETURN_IF_ERROR(ReadString(v.strings[k], "string"));
        }
        return absl::OkStatus();
      case ValueType::kArray:
        v.arrays.resize(count);
        for (uint64_t k = 0; k < count; ++k) {
          index_path_[slot] = k;
          RETURN_IF_ERROR(ReadValue(ValueType::kArray, v.arrays[k], depth + 1));
        }
        return absl::OkStatus();
      case ValueType::kFloat32: case ValueType::kFloat64:
        v.floats.resize(count);
        for (uint64_t k = 0; k < count; ++k) {
          index_path_[slot] = k;
          Value e;
          RETURN_IF_ERROR(ReadScalar(v.elem_type, e));
          v.floats[k] = e.f;
        }
        return absl::OkStatus();
      default:  // integers and bools
        v.ints.resize(count);
        for (uint64_t k = 0; k < count; ++k) {
          index_path_[slot] = k;
          Value e;
          RETURN_IF_ERROR(ReadScalar(v.elem_type, e));
          v.ints[k] = e.i;
        }
        return absl::OkStatus();
    }
  }

  absl::Status ApplyAlignment() {
    f_.alignment_ = kDefaultAlignment;
    auto it = f_.kv_index_.find(kAlignmentKey);
    if (it == f_.kv_index_.end()) return absl::OkStatus();
    const Value& v = f_.kv_[it->second].second;
    context_ = absl::StrCat("key '", kAlignmentKey, "'");
    if (!IsIntegerType(v.type)) {
      return Error(alignment_at_, absl::StrCat("alignment must be an integer, got ",
                                               ValueTypeName(v.type)));
    }
    if (v.i <= 0 || v.u > kMaxAlignment || (v.u & (v.u - 1)) != 0) {
      return Error(alignment_at_, absl::StrCat("alignment ", v.i,
                                               " is not a power of two up to 2^30"));
    }
    f_.alignment_ = v.u;
    return absl::OkStatus();
  }

  absl::Status ParseTensorInfo(uint64_t index) {
    context_ = absl::StrCat("tensor ", index);
    TensorInfo t;
    const uint64_t at = pos_;
    RETURN_IF_ERROR(ReadString(t.name, "tensor name"));
    context_ = absl::StrCat("tensor '", t.name, "'");
    if (f_.tensor_index_.contains(t.name)) return Error(at, "duplicate tensor name");
    const uint64_t dims_at = pos_;
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(Read(n_dims, "n_dims"));
    if (n_dims > kMaxDims) {
      return Error(dims_at, absl::StrCat("n_dims ", n_dims, " exceeds ", kMaxDims));
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim_at = pos_;
      uint64_t dim = 0;
      RETURN_IF_ERROR(Read(dim, "dimension"));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(dim_at, absl::StrCat("dims[", d, "] = ", dim, " is out of range"));
      }
      const int64_t di = static_cast<int64_t>(dim);
      if (di != 0 && elements > std::numeric_limits<int64_t>::max() / di) {
        return Error(dim_at, absl::StrCat("element count overflows at dims[", d,
                                          "] = ", dim));
      }
      elements *= di;
      t.dims.push_back(di);
    }
    const uint64_t type_at = pos_;
    uint32_t raw_type = 0;
    RETURN_IF_ERROR(Read(raw_type, "tensor type"));
    const GgmlTypeTraits& traits = GetGgmlTypeTraits(raw_type);
    if (traits.block_size == 0) {
      return Error(type_at, absl::StrCat("unknown tensor type ", raw_type));
    }
    t.type = static_cast<GgmlType>(raw_type);
    const int64_t row = t.dims.empty() ? 1 : t.dims[0];
    if (row % traits.block_size != 0) {
      return Error(dims_at, absl::StrCat("dims[0] = ", row, " is not a multiple of the ",
                                         traits.name, " block size ",
                                         traits.block_size));
    }
    const uint64_t blocks = static_cast<uint64_t>(elements / traits.block_size);
    if (traits.type_size != 0 &&
        blocks > std::numeric_limits<uint64_t>::max() / traits.type_size) {
      return Error(dims_at, "tensor byte size overflows");
    }
    t.nbytes = blocks * traits.type_size;
    const uint64_t offset_at = pos_;
    RETURN_IF_ERROR(Read(t.offset, "tensor data offset"));
    if (t.offset % f_.alignment_ != 0) {
      return Error(offset_at, absl::StrCat("data offset ", t.offset,
                                           " is not a multiple of the alignment ",
                                           f_.alignment_));
    }
    info_at_.push_back(offset_at);
    f_.tensor_index_.emplace(t.name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }

  // Turns the relative offsets into absolute ones and checks each tensor's bytes lie
  // inside the file.
  absl::Status PlaceTensorData() {
    if (f_.tensors_.empty()) return absl::OkStatus();
    const uint64_t data_start = AlignUp(pos_, f_.alignment_);
    if (data_start > f_.size_) {
      return Error(pos_, absl::StrCat("truncated: tensor data section would start at ",
                                      data_start, ", past the end of the file (",
                                      f_.size_, " bytes)"));
    }
    const uint64_t data_size = f_.size_ - data_start;
    for (size_t i = 0; i < f_.tensors_.size(); ++i) {
      TensorInfo& t = f_.tensors_[i];
      if (t.offset > data_size || t.nbytes > data_size - t.offset) {
        context_ = absl::StrCat("tensor '", t.name, "'");
        return Error(info_at_[i],
                     absl::StrCat("data [", data_start + t.offset, ", +", t.nbytes,
                                  ") runs past the end of the file (", f_.size_,
                                  " bytes)"));
      }
      t.offset += data_start;
      t.data = f_.base_ + t.offset;
    }
    return absl::OkStatus();
  }

  File& f_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
  uint64_t alignment_at_ = 0;      // where general.alignment's value sits
  std::vector<uint64_t> info_at_;  // where each tensor's offset field sits
  std::string context_;            // "key 'x'" / "tensor 'y'" for error messages
  std::vector<uint64_t> index_path_;  // element indices of the arrays being read
};

absl::StatusOr<std::unique_ptr<File>> File::Open(const std::string& path) {
  // Non-blocking open, regular files only, the model roots (file_access.h): MappedFile.
  std::unique_ptr<File> file(new File());
  ASSIGN_OR_RETURN(file->mapped_, formats::MappedFile::Open(path));
  file->path_ = path;
  file->base_ = file->mapped_->data();
  file->size_ = file->mapped_->size();
  FileParser parser(*file);
  RETURN_IF_ERROR(parser.Parse());
  return file;
}

File::~File() = default;

const Value* File::Find(std::string_view key) const {
  auto it = kv_index_.find(AbslView(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {

absl::Status MissingKey(const std::string& path, absl::string_view key) {
  return absl::NotFoundError(absl::StrCat(path, ": metadata key '", key, "' not found"));
}
absl::Status WrongKind(const std::string& path, absl::string_view key, const Value& v,
                       absl::string_view wanted) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": metadata key '", key, "' is ",
                                                 ValueTypeName(v.type), ", not ", wanted));
}

}  // namespace

absl::StatusOr<std::string> File::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return MissingKey(path_, AbslView(key));
  if (v->type != ValueType::kString) return WrongKind(path_, AbslView(key), *v, "a string");
  return v->s;
}

absl::StatusOr<int64_t> File::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return MissingKey(path_, AbslView(key));
  if (!IsIntegerType(v->type)) return WrongKind(path_, AbslView(key), *v, "an integer");
  return v->i;
}

absl::StatusOr<double> File::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return MissingKey(path_, AbslView(key));
  if (IsFloatType(v->type)) return v->f;
  if (v->type == ValueType::kUint64) return static_cast<double>(v->u);
  if (IsIntegerType(v->type)) return static_cast<double>(v->i);
  return WrongKind(path_, AbslView(key), *v, "a number");
}

absl::StatusOr<bool> File::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return MissingKey(path_, AbslView(key));
  if (v->type != ValueType::kBool) return WrongKind(path_, AbslView(key), *v, "a bool");
  return v->i != 0;
}

std::string File::GetStringOr(std::string_view key, std::string def) const {
  auto r = GetString(key);
  return r.ok() ? *std::move(r) : std::move(def);
}
int64_t File::GetIntOr(std::string_view key, int64_t def) const {
  auto r = GetInt(key);
  return r.ok() ? *r : def;
}
double File::GetFloatOr(std::string_view key, double def) const {
  auto r = GetFloat(key);
  return r.ok() ? *r : def;
}
bool File::GetBoolOr(std::string_view key, bool def) const {
  auto r = GetBool(key);
  return r.ok() ? *r : def;
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(AbslView(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ingot::gguf
