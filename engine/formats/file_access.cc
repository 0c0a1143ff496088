#include "engine/formats/file_access.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ingot::formats {
namespace {

namespace fs = std::filesystem;

std::mutex g_roots_mu;
std::vector<std::string>* g_roots = nullptr;  // guarded by g_roots_mu; null: unrestricted

std::string Named(const std::string& path, absl::string_view what) {
  return what.empty() ? path : absl::StrCat(what, " ", path);
}

absl::Status LoopError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      Named(path, what), ": is a symlink loop (too many levels of symbolic links)"));
}

// `path` made absolute and resolved: links of the part that exists followed, ".." and
// "." of the rest folded; no trailing separator.
absl::StatusOr<fs::path> Resolve(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (!ec) abs = fs::weakly_canonical(abs, ec);
  if (ec) {
    if (ec.value() == ELOOP) return LoopError(path, "");
    return absl::PermissionDeniedError(
        absl::StrCat("'", path, "' cannot be resolved: ", ec.message()));
  }
  abs = abs.lexically_normal();
  if (abs.filename().empty() && abs != abs.root_path()) abs = abs.parent_path();
  return abs;
}

// `p` is `root` or below it.
bool Within(const fs::path& p, const fs::path& root) {
  auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  return r == root.end();
}

// `shown`: what the path resolves to, when no link was followed to get there. Never
// where a link points: that would let a client map the file system outside the roots.
absl::Status OutsideRoots(const std::vector<std::string>& roots, const std::string& path,
                          bool for_write, const std::string& shown = "") {
  return absl::PermissionDeniedError(absl::StrCat(
      "'", path, "'", shown.empty() ? "" : absl::StrCat(" (it resolves to '", shown, "')"),
      " is outside the model roots (", absl::StrJoin(roots, ", "), "): it may not be ",
      for_write ? "written" : "read"));
}

// `resolved` (already free of links) against `roots`.
absl::Status CheckResolved(const std::vector<std::string>& roots, const std::string& path,
                           const fs::path& resolved, bool for_write, const std::string& shown = "") {
  for (const std::string& root : roots) {
    absl::StatusOr<fs::path> r = Resolve(root);
    if (!r.ok() || !Within(resolved, *r)) continue;
    if (for_write && resolved == *r) {
      return absl::PermissionDeniedError(absl::StrCat(
          "'", path, "' is the model root ", root, " itself: write to a path below it"));
    }
    return absl::OkStatus();
  }
  return OutsideRoots(roots, path, for_write, shown);
}

// The resolved path when only "." and ".." made it differ from `path` (no link).
std::string ShownResolution(const std::string& path, const fs::path& resolved) {
  std::error_code ec;
  fs::path lexical = fs::absolute(path, ec).lexically_normal();
  if (ec) return "";
  if (lexical.filename().empty() && lexical != lexical.root_path()) lexical = lexical.parent_path();
  return lexical == resolved && resolved.string() != path ? resolved.string() : "";
}

// The installed roots (a copy, so the lock is held only for the copy).
std::vector<std::string> Roots() {
  std::lock_guard lock(g_roots_mu);
  return g_roots ? *g_roots : std::vector<std::string>{};
}

absl::Status OpenError(const std::string& path, absl::string_view what, int err) {
  if (err == ENOENT || err == ENOTDIR) {
    return absl::NotFoundError(absl::StrCat(Named(path, what), ": no such file"));
  }
  if (err == ELOOP) return LoopError(path, what);
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(absl::StrCat(Named(path, what), ": ", std::strerror(err)));
  }
  return absl::FailedPreconditionError(absl::StrCat(Named(path, what), ": ", std::strerror(err)));
}

const char* KindName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  return "not a regular file";
}

// Opens without blocking (a FIFO's open waits for a writer otherwise) and checks the
// opened file's real path against the roots: the path was checked before opening, but
// a link swapped in between would not be.
absl::StatusOr<int> OpenChecked(const std::string& path, absl::string_view what, int flags,
                                struct stat* st) {
  const std::vector<std::string> roots = Roots();
  if (!roots.empty()) {
    absl::StatusOr<fs::path> resolved = Resolve(path);
    if (!resolved.ok()) {
      if (resolved.status().code() == absl::StatusCode::kInvalidArgument) {
        return LoopError(path, what);
      }
      return OutsideRoots(roots, path, false);
    }
    if (absl::Status s = CheckResolved(roots, path, *resolved, false, ShownResolution(path, *resolved));
        !s.ok()) {
      return s;
    }
  }
  const int fd = ::open(path.c_str(), flags | O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return OpenError(path, what, errno);
  if (::fstat(fd, st) != 0) {
    const int err = errno;
    ::close(fd);
    return OpenError(path, what, err);
  }
  if (!roots.empty()) {
    char link[64];
    std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    std::error_code ec;
    const fs::path real = fs::read_symlink(link, ec);
    absl::Status s = ec ? OutsideRoots(roots, path, false) : CheckResolved(roots, path, real, false);
    if (!s.ok()) {
      ::close(fd);
      return s;
    }
  }
  return fd;
}

}  // namespace

absl::Status CheckPathInRoots(const std::vector<std::string>& roots, const std::string& path,
                              bool for_write) {
  if (roots.empty()) return absl::OkStatus();
  if (path.empty()) return absl::InvalidArgumentError("path is empty");
  absl::StatusOr<fs::path> resolved = Resolve(path);
  if (!resolved.ok()) return resolved.status();
  return CheckResolved(roots, path, *resolved, for_write, ShownResolution(path, *resolved));
}

void SetReadRoots(std::vector<std::string> roots) {
  std::lock_guard lock(g_roots_mu);
  delete g_roots;
  g_roots = roots.empty() ? nullptr : new std::vector<std::string>(std::move(roots));
}


OpenFile::~OpenFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<OpenFile> OpenRegularFile(const std::string& path, absl::string_view what) {
  struct stat st;
  absl::StatusOr<int> fd = OpenChecked(path, what, 0, &st);
  if (!fd.ok()) return fd.status();
  OpenFile file(*fd, static_cast<uint64_t>(st.st_size));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Named(path, what), ": is ", KindName(st.st_mode), ", not a regular file"));
  }
  // Reads of a regular file never block; clear the flag so nothing downstream sees it.
  ::fcntl(file.fd(), F_SETFL, ::fcntl(file.fd(), F_GETFL) & ~O_NONBLOCK);
  return file;
}

absl::StatusOr<std::string> ReadFileBounded(const std::string& path, int64_t max_bytes,
                                            absl::string_view what) {
  absl::StatusOr<OpenFile> file = OpenRegularFile(path, what);
  if (!file.ok()) return file.status();
  auto over = [&](int64_t size) {
    return absl::InvalidArgumentError(absl::StrCat(Named(path, what), ": ", size,
                                                   " bytes is over the bound of ", max_bytes,
                                                   " bytes for this file"));
  };
  if (static_cast<int64_t>(file->size()) > max_bytes) return over(static_cast<int64_t>(file->size()));
  std::string out(static_cast<size_t>(file->size()), '\0');
  size_t done = 0;
  while (true) {
    if (done == out.size()) {
      // The file may have grown since fstat: read on, but never past the bound.
      if (static_cast<int64_t>(out.size()) > max_bytes) return over(static_cast<int64_t>(out.size()));
      out.resize(std::min<size_t>(std::max<size_t>(out.size() * 2, 4096),
                                  static_cast<size_t>(max_bytes) + 1));
    }
    const ssize_t n = ::read(file->fd(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::FailedPreconditionError(
          absl::StrCat(Named(path, what), ": read failed: ", std::strerror(errno)));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  if (static_cast<int64_t>(done) > max_bytes) return over(static_cast<int64_t>(done));
  return out;
}

absl::StatusOr<SourceKind> CheckSource(const std::string& path, absl::string_view what) {
  struct stat st;
  absl::StatusOr<int> fd = OpenChecked(path, what, 0, &st);
  if (!fd.ok()) return fd.status();
  ::close(*fd);
  if (S_ISDIR(st.st_mode)) return SourceKind::kDirectory;
  if (S_ISREG(st.st_mode)) return SourceKind::kRegularFile;
  return absl::InvalidArgumentError(absl::StrCat(Named(path, what), ": is ", KindName(st.st_mode),
                                                 ", not a regular file or a directory"));
}

}  // namespace ingot::formats
