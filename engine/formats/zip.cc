// ZIP reader (see zip.h). Layout (APPNOTE 6.3): local headers + data, then the
// central directory, then [ZIP64 end record, ZIP64 locator], then the end of central
// directory record (EOCD) and an optional comment of up to 65535 bytes.
#include "engine/formats/zip.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/common/status.h"

namespace ingot::formats {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kLocalSize = 30;
constexpr uint64_t kCentralSize = 46;
constexpr uint64_t kEocdSize = 22;
constexpr uint64_t kZip64EocdSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint16_t kZip64ExtraId = 0x0001;
// Deflate cannot expand more than ~1032:1; a larger claim is a corrupt header, and
// refusing it bounds the buffer a bad archive can make us allocate.
constexpr uint64_t kMaxDeflateRatio = 1032;

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  std::unique_ptr<ZipArchive> zip(new ZipArchive());
  zip->path_ = path;
  zip->base_ = file->data();
  zip->size_ = file->size();
  zip->file_ = std::move(file);
  RETURN_IF_ERROR(zip->Parse());
  return zip;
}

absl::StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::FromBuffer(std::string name,
                                                                   const uint8_t* data,
                                                                   uint64_t size) {
  std::unique_ptr<ZipArchive> zip(new ZipArchive());
  zip->path_ = std::move(name);
  zip->base_ = data;
  zip->size_ = size;
  RETURN_IF_ERROR(zip->Parse());
  return zip;
}

const ZipEntry* ZipArchive::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

absl::Status ZipArchive::Parse() {
  auto error = [this](uint64_t at, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": ", what, " at byte offset ", at, " (not a valid ZIP archive)"));
  };
  if (size_ < kEocdSize) {
    return error(0, absl::StrCat("file is ", size_, " bytes, too short for a ZIP directory"));
  }
  // The EOCD is the last record; only a comment may follow it.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size_ - kEocdSize > 0xffff ? size_ - kEocdSize - 0xffff : 0;
  for (uint64_t p = size_ - kEocdSize + 1; p-- > lowest;) {
    if (Le32(base_ + p) == kEocdSig && p + kEocdSize + Le16(base_ + p + 20) <= size_) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) return error(size_, "no end of central directory record");
  const uint8_t* e = base_ + eocd;
  if (Le16(e + 4) != 0 || Le16(e + 6) != 0) {
    return error(eocd, "multi-disk (split) archives are not supported");
  }
  uint64_t count = Le16(e + 10);
  uint64_t cd_size = Le32(e + 12);
  uint64_t cd_offset = Le32(e + 16);
  // A ZIP64 locator right before the EOCD points at the ZIP64 end record, whose
  // 64-bit fields replace the saturated 16/32-bit ones.
  if (eocd >= kZip64LocatorSize && Le32(base_ + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint64_t loc = eocd - kZip64LocatorSize;
    const uint64_t rec = Le64(base_ + loc + 8);
    if (rec > loc || loc - rec < kZip64EocdSize) {
      return error(loc, absl::StrCat("ZIP64 end record offset ", rec, " is out of range"));
    }
    if (Le32(base_ + rec) != kZip64EocdSig) return error(rec, "bad ZIP64 end record signature");
    if (Le32(base_ + rec + 16) != 0 || Le32(base_ + rec + 20) != 0) {
      return error(rec, "multi-disk (split) archives are not supported");
    }
    count = Le64(base_ + rec + 32);
    cd_size = Le64(base_ + rec + 40);
    cd_offset = Le64(base_ + rec + 48);
  }
  const uint64_t cd_limit = eocd;  // the directory ends where the end records start
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset) {
    return error(eocd, absl::StrCat("central directory [", cd_offset, ", +", cd_size,
                                    ") lies outside the file (", size_, " bytes)"));
  }
  if (count > cd_size / kCentralSize) {
    return error(eocd, absl::StrCat(count, " entries cannot fit in a central directory of ",
                                    cd_size, " bytes"));
  }
  entries_.reserve(count);
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t at = pos;
    if (cd_end - pos < kCentralSize || Le32(base_ + pos) != kCentralSig) {
      return error(at, absl::StrCat("central directory entry ", i, " is truncated or has a bad signature"));
    }
    const uint8_t* c = base_ + pos;
    const uint16_t flags = Le16(c + 8);
    ZipEntry z;
    z.method = Le16(c + 10);
    z.crc32 = Le32(c + 16);
    z.compressed_size = Le32(c + 20);
    z.uncompressed_size = Le32(c + 24);
    const uint64_t name_len = Le16(c + 28);
    const uint64_t extra_len = Le16(c + 30);
    const uint64_t comment_len = Le16(c + 32);
    const uint16_t disk = Le16(c + 34);
    z.local_header_offset = Le32(c + 42);
    if (cd_end - pos - kCentralSize < name_len + extra_len + comment_len) {
      return error(at, absl::StrCat("central directory entry ", i, " runs past the directory"));
    }
    z.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    const std::string where = absl::StrCat("entry '", z.name, "'");
    // ZIP64 extra field: the 64-bit values, in this order, of exactly the fields that
    // are saturated in the fixed header.
    const uint8_t* x = c + kCentralSize + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      const uint16_t id = Le16(x);
      const uint16_t len = Le16(x + 2);
      if (x_end - x - 4 < len) return error(at, absl::StrCat(where, ": extra field overruns"));
      if (id == kZip64ExtraId) {
        const uint8_t* v = x + 4;
        const uint8_t* v_end = v + len;
        auto take = [&](uint64_t& field) -> bool {
          if (v_end - v < 8) return false;
          field = Le64(v);
          v += 8;
          return true;
        };
        if ((z.uncompressed_size == 0xffffffffu && !take(z.uncompressed_size)) ||
            (z.compressed_size == 0xffffffffu && !take(z.compressed_size)) ||
            (z.local_header_offset == 0xffffffffu && !take(z.local_header_offset))) {
          return error(at, absl::StrCat(where, ": ZIP64 extra field is too short"));
        }
      }
      x += 4 + len;
    }
    pos += kCentralSize + name_len + extra_len + comment_len;

    if (disk != 0 && disk != 0xffff) {
      return error(at, absl::StrCat(where, ": lies on disk ", disk, " (split archive)"));
    }
    if (flags & 1) return error(at, absl::StrCat(where, ": is encrypted"));
    if (z.method != 0 && z.method != 8) {
      return absl::UnimplementedError(absl::StrCat(
          path_, ": ", where, ": compression method ", z.method,
          " is not supported (only stored and deflate)"));
    }
    if (z.method == 0 && z.compressed_size != z.uncompressed_size) {
      return error(at, absl::StrCat(where, ": stored entry with compressed size ",
                                    z.compressed_size, " != uncompressed size ",
                                    z.uncompressed_size));
    }
    if (z.method == 8 && z.uncompressed_size / kMaxDeflateRatio > z.compressed_size) {
      return error(at, absl::StrCat(where, ": claims ", z.uncompressed_size,
                                    " bytes from ", z.compressed_size,
                                    " deflated bytes, more than deflate can produce"));
    }
    // The local header repeats the name and has its own extra field (torch pads the
    // data to 64 bytes there), so the data offset comes from it.
    const uint64_t lh = z.local_header_offset;
    if (lh > cd_offset || cd_offset - lh < kLocalSize || Le32(base_ + lh) != kLocalSig) {
      return error(at, absl::StrCat(where, ": local header offset ", lh,
                                    " does not point at a local header"));
    }
    const uint64_t local_name = Le16(base_ + lh + 26);
    const uint64_t local_extra = Le16(base_ + lh + 28);
    const uint64_t data = lh + kLocalSize + local_name + local_extra;
    if (data > cd_offset || z.compressed_size > cd_offset - data) {
      return error(lh, absl::StrCat(where, ": data [", data, ", +", z.compressed_size,
                                    ") runs into the central directory at ", cd_offset));
    }
    if (local_name != name_len ||
        std::memcmp(base_ + lh + kLocalSize, z.name.data(), name_len) != 0) {
      return error(lh, absl::StrCat(where, ": local header names another entry"));
    }
    z.data_offset = data;
    if (!index_.emplace(z.name, entries_.size()).second) {
      return error(at, absl::StrCat(where, ": duplicate entry name"));
    }
    entries_.push_back(std::move(z));
  }
  return absl::OkStatus();
}

absl::StatusOr<ZipBytes> ZipArchive::Read(const ZipEntry& entry) const {
  ZipBytes out;
  const uint8_t* src = base_ + entry.data_offset;
  if (entry.method == 0) {
    out.data = src;
    out.size = entry.uncompressed_size;
    return out;
  }
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": entry '", entry.name, "': ", what));
  };
  const uint64_t n = entry.uncompressed_size;
  out.owned.reset(new uint8_t[n == 0 ? 1 : n]);
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {  // raw deflate, no zlib header
    return absl::InternalError(absl::StrCat(path_, ": inflateInit2 failed"));
  }
  // zlib counts in uInt; feed and drain in chunks so entries over 4 GiB work.
  uint64_t in_left = entry.compressed_size;
  uint64_t out_left = n;
  zs.next_in = const_cast<Bytef*>(src);
  zs.next_out = out.owned.get();
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (zs.avail_in == 0 && in_left > 0) {
      zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in_left, UINT_MAX));
      in_left -= zs.avail_in;
    }
    if (zs.avail_out == 0 && out_left > 0) {
      zs.avail_out = static_cast<uInt>(std::min<uint64_t>(out_left, UINT_MAX));
      out_left -= zs.avail_out;
    }
    const uInt before_in = zs.avail_in;
    const uInt before_out = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR || (rc == Z_OK && zs.avail_in == before_in &&
                              zs.avail_out == before_out)) {
      break;  // no progress: input ended early or output is full
    }
  }
  const uint64_t produced = n - out_left - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    if (rc == Z_DATA_ERROR) return error("corrupt deflate data");
    if (produced == n && n > 0) {
      return error(absl::StrCat("inflates to more than the ", n,
                                " bytes the directory records"));
    }
    return error(absl::StrCat("deflate data ends after ", produced, " of ", n, " bytes"));
  }
  if (produced != n) {
    return error(absl::StrCat("inflates to ", produced, " bytes, the directory records ", n));
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t off = 0; off < n;) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(n - off, UINT_MAX));
    crc = crc32(crc, out.owned.get() + off, chunk);
    off += chunk;
  }
  if (static_cast<uint32_t>(crc) != entry.crc32) {
    return error(absl::StrFormat("CRC-32 0x%08x does not match the directory's 0x%08x",
                                 static_cast<uint32_t>(crc), entry.crc32));
  }
  out.data = out.owned.get();
  out.size = n;
  return out;
}

}  // namespace ingot::formats
