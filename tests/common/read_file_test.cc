// ReadFile, the one reader of operator-named files: the bytes of real files (empty, one
// read, many reads, NUL bytes), and the errno-shaped failures callers prefix with the
// config key or flag (missing file, a directory, a path through a regular file).
#include "engine/common/read_file.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/test_util.h"

namespace ingot {
namespace {

namespace fs = std::filesystem;
using ::ingot::testing::StatusIs;
using ::testing::Eq;

class ReadFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ingot-read-file-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string dir_;
};

TEST_F(ReadFileTest, ReturnsTheBytesOfFilesOfEverySize) {
  // 0 bytes, under one 64 KiB read, and 3 reads with a ragged tail.
  for (size_t n : {size_t{0}, size_t{1}, size_t{4095}, size_t{(64 << 10) * 2 + 17}}) {
    std::string bytes(n, '\0');
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(i * 131 + 7);
    const std::string path = Write("f" + std::to_string(n), bytes);
    absl::StatusOr<std::string> got = ReadFile(path);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, bytes) << n;
  }
}

TEST_F(ReadFileTest, AMissingFileIsNotFoundWithTheErrnoText) {
  const std::string path = dir_ + "/absent.pem";
  EXPECT_THAT(ReadFile(path).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("cannot read '" + path + "' (No such file or directory)")));
}

TEST_F(ReadFileTest, ADirectoryIsRefusedAsOne) {
  EXPECT_THAT(ReadFile(dir_).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("cannot read '" + dir_ + "' (Is a directory)")));
}

TEST_F(ReadFileTest, APathThroughAFileIsNotADirectory) {
  const std::string path = Write("plain", "x") + "/tokens";
  EXPECT_THAT(ReadFile(path).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("cannot read '" + path + "' (Not a directory)")));
}

}  // namespace
}  // namespace ingot
