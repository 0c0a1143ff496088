// Small helpers for tests: status matchers (Abseil 20220623 has none) and paths.
#pragma once

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
