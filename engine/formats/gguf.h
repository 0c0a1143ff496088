// GGUF v2/v3 reader over mmap (and a writer, for tests and export).
// Spec: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, then kv pairs
// (gguf string key, u32 value type, value), then tensor infos (name, u32 n_dims,
// u64 dims[n_dims] (dims[0] fastest), u32 ggml type, u64 offset relative to the data
// section), then padding to `general.alignment` (default 32) and the tensor data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/ggml_types.h"

namespace ingot::formats {
class MappedFile;  // mapped_file.h
}  // namespace ingot::formats

namespace ingot::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
  kFloat64 = 12,
};
const char* ValueTypeName(ValueType t);

// A metadata value. Scalars use one field by kind; arrays keep every element in the
// vector of their kind (integers and bools in `ints`, floats in `floats`, strings in
// `strings`; nested arrays in `arrays`).
struct Value {
  ValueType type = ValueType::kUint8;
  ValueType elem_type = ValueType::kUint8;  // arrays only
  int64_t i = 0;        // every integer type and bool (uint64 above 2^63 wraps)
  uint64_t u = 0;       // every integer type as unsigned
  double f = 0;         // float32/float64
  std::string s;        // string
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<Value> arrays;
  size_t ArraySize() const;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ne order: dims[0] is the contiguous (fastest) axis
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;        // absolute offset of the data in the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping, valid while the File lives
  int64_t NumElements() const;
};

class File {
 public:
  // Maps and parses `path`. NOT_FOUND when missing; INVALID_ARGUMENT naming the
  // offset/key/tensor for anything truncated, corrupt or out of range.
  static absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return size_; }

  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* Find(std::string_view key) const;
  // Typed getters: NOT_FOUND when absent, INVALID_ARGUMENT when of another kind.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;       // any integer type
  absl::StatusOr<double> GetFloat(std::string_view key) const;      // float or integer
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  // Defaults for optional keys (absent -> default; wrong kind -> default too).
  std::string GetStringOr(std::string_view key, std::string def) const;
  int64_t GetIntOr(std::string_view key, int64_t def) const;
  double GetFloatOr(std::string_view key, double def) const;
  bool GetBoolOr(std::string_view key, bool def) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

 private:
  File() = default;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::unique_ptr<formats::MappedFile> mapped_;  // the whole file, read-only
  const uint8_t* base_ = nullptr;                 // mapped_->data()
  uint64_t size_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  absl::flat_hash_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
  friend class FileParser;
};

// Builds a GGUF file in memory (tests write every value and tensor type with it;
// export will use it too).
class Writer {
 public:
  explicit Writer(uint32_t version = 3) : version_(version) {}
  void SetAlignment(uint64_t alignment);  // also writes general.alignment
  void Add(std::string key, Value value);
  void AddString(std::string key, std::string value);
  void AddUint32(std::string key, uint32_t value);
  void AddInt32(std::string key, int32_t value);
  void AddFloat32(std::string key, float value);
  void AddBool(std::string key, bool value);
  void AddStringArray(std::string key, std::vector<std::string> values);
  // `data` holds the raw bytes for `dims` elements of `type` (ne order).
  void AddTensor(std::string name, GgmlType type, std::vector<int64_t> dims,
                 std::string data);
  std::string Serialize() const;
  absl::Status WriteTo(const std::string& path) const;

 private:
  uint32_t version_;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> kv_;
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    std::string data;
  };
  std::vector<PendingTensor> tensors_;
};

}  // namespace ingot::gguf
