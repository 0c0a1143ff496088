// MappedFile: a read-only mmap (a heap copy in fuzz builds, where AddressSanitizer must
// see reads past the end). Kept apart from zip.cc so that a safetensors- or GGUF-only
// binary needs no zlib.
#include "engine/formats/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"

namespace ingot::formats {

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  // Non-blocking open, regular files only, the model roots (file_access.h).
  ASSIGN_OR_RETURN(OpenFile opened, OpenRegularFile(path));
  const int fd = opened.fd();
  std::unique_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = opened.size();
  if (file->size_ > 0) {
#ifdef INGOT_FUZZING
    // Fuzz builds (tests/fuzz) read into a heap buffer of exactly the file's size: a
    // read past the end of an mmap'd file stays inside its last page, where
    // AddressSanitizer cannot see it.
    file->owned_.reset(new uint8_t[file->size_]);
    for (uint64_t done = 0; done < file->size_;) {
      const ssize_t n = ::pread(fd, file->owned_.get() + done, file->size_ - done,
                                static_cast<off_t>(done));
      if (n <= 0) {
        return absl::FailedPreconditionError(absl::StrCat(path, ": read failed"));
      }
      done += static_cast<uint64_t>(n);
    }
    file->data_ = file->owned_.get();
#else
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      return absl::ResourceExhaustedError(absl::StrCat(
          path, ": mmap of ", file->size_, " bytes failed: ", std::strerror(err)));
    }
    file->data_ = static_cast<const uint8_t*>(p);
#endif
  }
  (void)fd;  // closed with `opened`; the mapping stays valid
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr && owned_ == nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace ingot::formats
