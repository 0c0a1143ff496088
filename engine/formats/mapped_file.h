// The one mmap'd file type of engine/formats (mapped_file.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ingot::formats {

// A whole file mapped read-only: the one mapping every container reader (GGUF,
// safetensors, zip/npz, torch archives) holds its file through.
class MappedFile {
 public:
  // NOT_FOUND when missing, PERMISSION_DENIED, INVALID_ARGUMENT when not a regular
  // file, RESOURCE_EXHAUSTED when the mapping fails.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::unique_ptr<uint8_t[]> owned_;  // fuzz builds only: a heap copy instead of mmap
};

}  // namespace ingot::formats
