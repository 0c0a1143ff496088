// Every file the engine opens on a client's behalf goes through here: the model
// roots check, the refusal of anything that is not a regular file (or a directory
// where one is expected), and a size bound before anything is read.
//
// Why one place: a FIFO opened with a plain open() blocks until a writer comes (a load
// that never returns, a shutdown that never finishes); /dev/zero read to the end grows
// the process without bound; and a checkpoint directory inside a root can hold links
// to files outside it, which only a check of each opened file (after its links are
// resolved) catches.
//
// The roots are the process's sandbox (server config `model_roots`), installed once at
// start; with none installed every path is allowed (tools, tests).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ingot::formats {

// Bounds on files read whole into memory (bytes).
inline constexpr int64_t kMaxJsonFileBytes = 64ll << 20;         // config/tokenizer JSON
inline constexpr int64_t kMaxCalibrationFileBytes = 16ll << 20;  // calibration/evaluation text
inline constexpr int64_t kMaxPickleBytes = 256ll << 20;          // a checkpoint's data.pkl

// The one roots check. OK when `path`, made absolute with its links and ".."
// resolved, is inside one of `roots` (a root itself may be read as a directory but
// not written). PERMISSION_DENIED otherwise, naming `path` as given but never where a
// link points. Empty `roots`: OK.
absl::Status CheckPathInRoots(const std::vector<std::string>& roots, const std::string& path,
                              bool for_write);

// Installs the roots every OpenRegularFile/ReadFileBounded/CheckDirectory call checks.
void SetReadRoots(std::vector<std::string> roots);

// An open, regular file; closes on destruction.
class OpenFile {
 public:
  OpenFile(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~OpenFile();
  OpenFile(OpenFile&& o) noexcept : fd_(o.fd_), size_(o.size_) { o.fd_ = -1; }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  OpenFile& operator=(OpenFile&&) = delete;
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  int fd_;
  uint64_t size_;
};

// Opens `path` for reading without blocking (O_NONBLOCK, then fstat): NOT_FOUND for a
// missing file, INVALID_ARGUMENT for a symlink loop or anything not a regular file
// (FIFO, device, socket, directory), PERMISSION_DENIED outside the installed roots
// (checked on the path before opening and on the opened file's real path after).
// `what` names the file's role in messages ("calibration_file").
absl::StatusOr<OpenFile> OpenRegularFile(const std::string& path, absl::string_view what = "");

// The whole file, refused before reading when it is larger than `max_bytes` (the
// message names the bound); the read stops at the bound if the file grows meanwhile.
absl::StatusOr<std::string> ReadFileBounded(const std::string& path, int64_t max_bytes,
                                            absl::string_view what = "");

// What a checkpoint source is. Directories are checked against the roots like files.
enum class SourceKind { kRegularFile, kDirectory };
absl::StatusOr<SourceKind> CheckSource(const std::string& path, absl::string_view what = "");

}  // namespace ingot::formats
