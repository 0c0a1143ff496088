// IngotdTest plus the default model's f32 Hugging Face directory, made once per suite
// from the GGUF by transformers (tests/reference/make_hf_from_gguf.py in .venv-hf):
// the suites that load a real HF checkpoint of the default model share it.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/integration/ingotd_process.h"
#include "tests/integration/integration_fixture.h"

namespace ingot::testing {

inline std::string HfPython() { return SourcePath(".venv-hf/bin/python"); }

class DefaultHfDirTest : public IngotdTest {
 protected:
  // One server (IngotdTest's, "default" = the GGUF) and one made directory per suite.
  static void SetUpTestSuite() {
    IngotdTest::SetUpTestSuite();
    if (!std::filesystem::exists(DefaultModelPath()) || !std::filesystem::exists(HfPython())) return;
    tmp_ = MakeTempDir();
    const auto t0 = std::chrono::steady_clock::now();
    made_ = RunCommand({HfPython(), SourcePath("tests/reference/make_hf_from_gguf.py"), DefaultModelPath(),
                        tmp_ + "/hf"});
    std::printf("[ made ] %s in %.1f s\n", tmp_.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  static void TearDownTestSuite() {
    if (!tmp_.empty()) std::filesystem::remove_all(tmp_);
    tmp_.clear();
    IngotdTest::TearDownTestSuite();
  }
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(DefaultModelPath()))
        << DefaultModelPath() << " is missing: run scripts/setup.sh (or scripts/fetch_model.sh)";
    ASSERT_TRUE(std::filesystem::exists(HfPython()))
        << HfPython() << " is missing: run tests/reference/setup_hf_tools.sh (scripts/setup.sh does)";
    IngotdTest::SetUp();
    ASSERT_EQ(made_.exit_code, 0) << "make_hf_from_gguf.py failed:\n" << made_.out << made_.err;
  }

  static std::string Dir() { return tmp_ + "/hf"; }

  inline static std::string tmp_;
  inline static CommandResult made_;
};

}  // namespace ingot::testing
