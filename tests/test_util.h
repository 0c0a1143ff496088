// Small helpers for tests: status matchers (Abseil 20220623 has none) and paths.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ingot::testing {

// $INGOT_TEST_SOURCE_DIR overrides the checkout the tests were built in (a GPU host
// runs the binaries over a copy of the tree elsewhere: tests/gpu/run.sh).
inline std::string SourcePath(const std::string& rel) {
  const char* dir = std::getenv("INGOT_TEST_SOURCE_DIR");
  return std::string(dir != nullptr && *dir ? dir : INGOT_SOURCE_DIR) + "/" + rel;
}
// The default model, fetched by scripts/fetch_model.sh; $INGOT_TEST_MODEL replaces it
// (run.sh: a random-weight model of the same shapes, tests/tools/random_gguf.cc).
inline std::string DefaultModelPath() {
  const char* model = std::getenv("INGOT_TEST_MODEL");
  if (model != nullptr && *model) return model;
  return SourcePath("models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

// A JSON file of the source tree (golden vectors under tests/data), parsed.
inline nlohmann::json ReadJson(const std::string& rel) {
  std::ifstream in(SourcePath(rel));
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// `bytes` of storage that end where an inaccessible page starts: a kernel that reads past
// the end of a weight matrix (the last block of its last row) faults.
class GuardedBytes {
 public:
  explicit GuardedBytes(size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    map_bytes_ = (bytes + page - 1) / page * page + page;
    void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) std::abort();
    map_ = static_cast<uint8_t*>(m);
    if (mprotect(map_ + map_bytes_ - page, page, PROT_NONE) != 0) std::abort();
    data_ = map_ + map_bytes_ - page - bytes;
  }
  ~GuardedBytes() { munmap(map_, map_bytes_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  uint8_t* data() { return data_; }

 private:
  uint8_t* map_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t map_bytes_ = 0;
};

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) { return s.status(); }

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s.ToString();
  return s.ok();
}

// StatusIs(code) or StatusIs(code, HasSubstr("...")).
MATCHER_P(StatusIs, code, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code;
}
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code &&
         ::testing::Matches(message_matcher)(std::string(s.message()));
}

}  // namespace ingot::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::ingot::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::ingot::testing::IsOk())
