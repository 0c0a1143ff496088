// GGUF writer: lays a file out as ggml does (metadata, tensor infos, then each
// tensor's data on an alignment boundary).
#include "engine/formats/gguf.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/formats/gguf_internal.h"

namespace ingot::gguf {
namespace {

template <typename T>
void Put(std::string& out, T x) {
  out.append(reinterpret_cast<const char*>(&x), sizeof(T));
}

void PutString(std::string& out, absl::string_view s) {
  Put<uint64_t>(out, s.size());
  out.append(s.data(), s.size());
}

// Scalars: an integer's bits come from `u` when set, else from `i`, so a Value built by
// hand may fill either field.
void PutScalar(std::string& out, ValueType type, const Value& v) {
  const uint64_t bits = v.u != 0 ? v.u : static_cast<uint64_t>(v.i);
  switch (type) {
    case ValueType::kUint8: case ValueType::kInt8: Put<uint8_t>(out, bits); break;
    case ValueType::kUint16: case ValueType::kInt16: Put<uint16_t>(out, bits); break;
    case ValueType::kUint32: case ValueType::kInt32: Put<uint32_t>(out, bits); break;
    case ValueType::kUint64: case ValueType::kInt64: Put<uint64_t>(out, bits); break;
    case ValueType::kBool: Put<uint8_t>(out, bits != 0); break;
    case ValueType::kFloat32: Put<float>(out, static_cast<float>(v.f)); break;
    case ValueType::kFloat64: Put<double>(out, v.f); break;
    case ValueType::kString: PutString(out, v.s); break;
    case ValueType::kArray: break;
  }
}

void PutArray(std::string& out, const Value& v) {
  Put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
  // Nested elements may be built by hand without type = kArray; count by elem_type.
  Put<uint64_t>(out, ElementCount(v));
  Value e;
  switch (v.elem_type) {
    case ValueType::kString:
      for (const std::string& s : v.strings) PutString(out, s);
      break;
    case ValueType::kArray:
      for (const Value& a : v.arrays) PutArray(out, a);
      break;
    case ValueType::kFloat32: case ValueType::kFloat64:
      for (double f : v.floats) {
        e.f = f;
        PutScalar(out, v.elem_type, e);
      }
      break;
    default:
      for (int64_t i : v.ints) {
        e.i = i;
        PutScalar(out, v.elem_type, e);
      }
      break;
  }
}

void PutValue(std::string& out, const Value& v) {
  if (v.type == ValueType::kArray) {
    PutArray(out, v);
  } else {
    PutScalar(out, v.type, v);
  }
}

void PadTo(std::string& out, uint64_t alignment) {
  out.resize(AlignUp(out.size(), alignment), '\0');
}

}  // namespace

void Writer::SetAlignment(uint64_t alignment) {
  alignment_ = alignment;
  Value v;
  v.type = ValueType::kUint32;
  v.u = alignment;
  v.i = static_cast<int64_t>(alignment);
  for (auto& [key, value] : kv_) {
    if (key == kAlignmentKey) {
      value = v;
      return;
    }
  }
  kv_.emplace_back(std::string(kAlignmentKey), std::move(v));
}

// Keys are written as given, duplicates included (tests build corrupt files this way).
void Writer::Add(std::string key, Value value) {
  kv_.emplace_back(std::move(key), std::move(value));
}

void Writer::AddString(std::string key, std::string value) {
  Value v;
  v.type = ValueType::kString;
  v.s = std::move(value);
  Add(std::move(key), std::move(v));
}

void Writer::AddUint32(std::string key, uint32_t value) {
  Value v;
  v.type = ValueType::kUint32;
  v.i = value;
  v.u = value;
  Add(std::move(key), std::move(v));
}

void Writer::AddInt32(std::string key, int32_t value) {
  Value v;
  v.type = ValueType::kInt32;
  v.i = value;
  v.u = static_cast<uint64_t>(v.i);
  Add(std::move(key), std::move(v));
}

void Writer::AddFloat32(std::string key, float value) {
  Value v;
  v.type = ValueType::kFloat32;
  v.f = value;
  Add(std::move(key), std::move(v));
}

void Writer::AddBool(std::string key, bool value) {
  Value v;
  v.type = ValueType::kBool;
  v.i = value;
  v.u = value;
  Add(std::move(key), std::move(v));
}

void Writer::AddStringArray(std::string key, std::vector<std::string> values) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = ValueType::kString;
  v.strings = std::move(values);
  Add(std::move(key), std::move(v));
}

void Writer::AddTensor(std::string name, GgmlType type, std::vector<int64_t> dims,
                       std::string data) {
  tensors_.push_back({std::move(name), type, std::move(dims), std::move(data)});
}

// Layout as ggml writes it: every tensor's data starts on an alignment boundary,
// relative to the data section, which itself starts aligned.
std::string Writer::Serialize() const {
  std::string out;
  Put<uint32_t>(out, kMagic);
  Put<uint32_t>(out, version_);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, kv_.size());
  for (const auto& [key, value] : kv_) {
    PutString(out, key);
    Put<uint32_t>(out, static_cast<uint32_t>(value.type));
    PutValue(out, value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) Put<uint64_t>(out, static_cast<uint64_t>(d));
    Put<uint32_t>(out, static_cast<uint32_t>(t.type));
    Put<uint64_t>(out, offset);
    offset = AlignUp(offset + t.data.size(), alignment_);
  }
  PadTo(out, alignment_);
  for (const PendingTensor& t : tensors_) {
    out.append(t.data);
    PadTo(out, alignment_);
  }
  return out;
}

absl::Status Writer::WriteTo(const std::string& path) const {
  const std::string bytes = Serialize();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  }
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  int err = written != bytes.size() ? errno : 0;
  if (std::fclose(f) != 0 && err == 0) err = errno;
  if (written != bytes.size() || err != 0) {
    // Only a full disk is RESOURCE_EXHAUSTED; a target that takes no writes (EIO from
    // /proc/self/mem, a read-only mount) is the caller's path, named.
    const std::string what = absl::StrCat(path, ": cannot be written (", written, " of ", bytes.size(),
                                          " bytes): ", std::strerror(err));
    if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(what);
    if (err == EACCES || err == EPERM || err == EROFS) return absl::PermissionDeniedError(what);
    return absl::FailedPreconditionError(what);
  }
  return absl::OkStatus();
}

}  // namespace ingot::gguf
