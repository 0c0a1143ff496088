// Shared by the libFuzzer targets: the parsers open paths (they mmap), so each input is
// written to one memfd per process and opened through /proc/self/fd.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace ingot::fuzz {

// Replaces the memfd's contents with `data` and returns a path that opens it.
inline std::string WriteInput(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int f = ::memfd_create("ingot_fuzz_input", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  if (::ftruncate(fd, 0) != 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

// Reads every byte of a view so that ASan sees an out-of-bounds pointer or length.
inline uint64_t Touch(const uint8_t* data, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace ingot::fuzz
