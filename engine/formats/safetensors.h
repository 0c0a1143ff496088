// safetensors reader (mmap) and writer.
// Layout: u64 little-endian N, then N bytes of JSON (an object: tensor name ->
// {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, plus an optional
// "__metadata__" object of string -> string), then the data area; offsets are relative
// to its start. Tensor bytes are row-major little-endian and not necessarily aligned.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/formats/tensor.h"

namespace ingot::formats {

class MappedFile;

// One mmap'd .safetensors file. Every tensor's bytes are checked to lie in the data
// area, match dtype x shape and not overlap another's; any violation is
// INVALID_ARGUMENT naming the file and the tensor.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // header order
  const TensorView* Find(std::string_view name) const;                 // null if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint made of one or more safetensors files: a single file, a
// `*.safetensors.index.json` file, or a directory holding model.safetensors.index.json
// or model.safetensors (or else exactly one *.safetensors.index.json or one
// *.safetensors). An index's weight_map names each tensor's shard, relative to the
// index; a missing shard, a shard lacking a tensor the index puts there, or one tensor
// in two shards -> INVALID_ARGUMENT naming them.
class SafetensorsSet {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsSet>> Open(const std::string& file_or_dir);

  std::vector<const TensorView*> tensors() const;  // shard by shard, header order
  const TensorView* Find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const;  // of the first file
  std::vector<std::string> files() const;                      // paths, shard order

 private:
  SafetensorsSet() = default;
  absl::Status AddFile(const std::string& path);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const TensorView*> index_;
};

// Writes `tensors` (names unique, each with nbytes == numel * dtype size) and
// `metadata` as a safetensors file: written to `path`.tmp, then renamed. Tensors are
// laid out by element size, largest first (stable otherwise), so that every tensor's
// data is aligned to its element size, as the safetensors library does; the header
// lists them in that order.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace ingot::formats
