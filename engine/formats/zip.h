// A minimal read-only ZIP reader over a read-only mmap, enough for torch.save archives
// and numpy .npz files: the end of central directory (and its ZIP64 form, which
// torch always writes), central directory entries and local headers. Stored entries
// come back as views into the mapping; deflated entries are inflated (zlib) into a
// buffer the caller owns. Every offset and size is checked against the file, so a
// corrupt archive gives INVALID_ARGUMENT naming the file, the entry and the offset.
// Not supported (INVALID_ARGUMENT/UNIMPLEMENTED): encryption, multi-disk archives,
// compression methods other than stored (0) and deflate (8).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/formats/mapped_file.h"

namespace ingot::formats {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;             // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;        // first byte of the (compressed) data in the file
};

// The bytes of one entry: `data` points into the archive's mapping (stored entries)
// or into `owned` (inflated ones). Move-only so the pointer cannot dangle by copy.
struct ZipBytes {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  std::unique_ptr<uint8_t[]> owned;
};

class ZipArchive {
 public:
  // Maps `path` and reads its directory.
  static absl::StatusOr<std::unique_ptr<ZipArchive>> Open(const std::string& path);
  // Reads the directory of an archive already in memory; `data` must outlive the
  // archive. `name` is used in messages.
  static absl::StatusOr<std::unique_ptr<ZipArchive>> FromBuffer(std::string name,
                                                                const uint8_t* data,
                                                                uint64_t size);
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(std::string_view name) const;  // null if absent

  // Stored: a view (no copy, no CRC check: torch checkpoints are read in place).
  // Deflated: inflated into an owned buffer whose size and CRC-32 must match the
  // directory.
  absl::StatusOr<ZipBytes> Read(const ZipEntry& entry) const;

 private:
  ZipArchive() = default;
  absl::Status Parse();

  std::unique_ptr<MappedFile> file_;  // null for FromBuffer
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<ZipEntry> entries_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace ingot::formats
