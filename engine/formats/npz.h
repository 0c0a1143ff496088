// numpy .npy and .npz reader.
// .npy: "\x93NUMPY", major/minor version, header length (u16 in v1, u32 in v2/v3),
// then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a newline, then the array bytes. .npz: a ZIP archive of
// <name>.npy members, stored (numpy.savez) or deflated (numpy.savez_compressed).
// Supported: little-endian (or byte-order-free) bool, int8..64, uint8..64, float16/32/64
// in C order. Fortran order, big-endian, structured, object, string and complex arrays
// -> INVALID_ARGUMENT naming the file and the array.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/formats/tensor.h"

namespace ingot::formats {

class MappedFile;
class ZipArchive;

class NpzFile {
 public:
  // A .npz (by content: a ZIP archive) or a single .npy, whose one array is named
  // after the file (stem, without .npy).
  static absl::StatusOr<std::unique_ptr<NpzFile>> Open(const std::string& path);
  ~NpzFile();
  NpzFile(const NpzFile&) = delete;
  NpzFile& operator=(const NpzFile&) = delete;

  const std::string& path() const { return path_; }
  // One per array, in archive order, named without ".npy". Data points into the
  // mapping (.npy, stored members) or into buffers this object owns (deflated).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(std::string_view name) const;  // null if absent

 private:
  NpzFile() = default;
  absl::Status AddArray(std::string name, const uint8_t* data, uint64_t size);

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::unique_ptr<ZipArchive> zip_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace ingot::formats
