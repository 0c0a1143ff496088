// CheckPathAllowed on a real directory tree with real symlinks: what resolves inside a
// model root is allowed, what resolves outside (directly, through "..", through a
// symlink, or by a name that merely starts like a root) is PERMISSION_DENIED.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "server/config.h"
#include "tests/test_util.h"

namespace ingot::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::ingot::testing::StatusIs;

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ingot-paths-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    base_ = fs::canonical(tmpl);
    fs::create_directories(base_ / "models" / "sub");
    fs::create_directories(base_ / "outside");
    fs::create_directories(base_ / "models-evil");
    for (const char* f : {"models/a.gguf", "models/sub/b.gguf", "outside/secret.gguf",
                          "models-evil/c.gguf"}) {
      std::ofstream(base_ / f) << "x";
    }
    fs::create_symlink(base_ / "outside" / "secret.gguf", base_ / "models" / "escape.gguf");
    fs::create_symlink(base_ / "outside", base_ / "models" / "escape_dir");
    fs::create_symlink(base_ / "models" / "sub" / "b.gguf", base_ / "models" / "inner.gguf");
    // A root given through a symlink (as Kubernetes mounts often are).
    fs::create_symlink(base_ / "models", base_ / "models_link");
    config_.model_roots = {(base_ / "models").string()};
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string P(const std::string& rel) const { return (base_ / rel).string(); }

  fs::path base_;
  ServerConfig config_;
};

TEST_F(PathsTest, FilesInsideARootAreAllowed) {
  EXPECT_OK(CheckPathAllowed(config_, P("models/a.gguf"), false));
  EXPECT_OK(CheckPathAllowed(config_, P("models/sub/b.gguf"), false));
  EXPECT_OK(CheckPathAllowed(config_, P("models/sub/../a.gguf"), false));
  EXPECT_OK(CheckPathAllowed(config_, P("models/inner.gguf"), false));  // symlink staying inside
  EXPECT_OK(CheckPathAllowed(config_, P("models/not-yet.gguf"), false));  // the engine says NOT_FOUND
  EXPECT_OK(CheckPathAllowed(config_, P("models_link/a.gguf"), false));
  // A root named through a symlink covers the real directory.
  ServerConfig via_link = config_;
  via_link.model_roots = {P("models_link") + "/"};
  EXPECT_OK(CheckPathAllowed(via_link, P("models/a.gguf"), false));
}

TEST_F(PathsTest, OutsideEveryRootIsPermissionDeniedNamingThePath) {
  EXPECT_THAT(CheckPathAllowed(config_, P("outside/secret.gguf"), false),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("'" + P("outside/secret.gguf") + "' is outside the model roots")));
  EXPECT_THAT(CheckPathAllowed(config_, "/etc/passwd", false),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("/etc/passwd")));
}

TEST_F(PathsTest, DotDotEscapesAreDenied) {
  for (const std::string rel : {"models/../outside/secret.gguf", "models/sub/../../outside/secret.gguf",
                                 "models/missing/../../outside/new.gguf"}) {
    SCOPED_TRACE(rel);
    EXPECT_THAT(CheckPathAllowed(config_, P(rel), false),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         HasSubstr("resolves to '" + P("outside"))));
  }
}

// The refusal names the path as given, never where the link points (a client could
// map the file system outside the roots through the messages otherwise).
TEST_F(PathsTest, SymlinksOutOfARootAreDenied) {
  const absl::Status s = CheckPathAllowed(config_, P("models/escape.gguf"), false);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kPermissionDenied,
                          HasSubstr("'" + P("models/escape.gguf") + "' is outside the model roots")));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(P("outside"))));
  EXPECT_THAT(CheckPathAllowed(config_, P("models/escape_dir/secret.gguf"), false),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Writing through a symlinked directory would land outside too.
  EXPECT_THAT(CheckPathAllowed(config_, P("models/escape_dir/new.gguf"), true),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("may not be written")));
}

TEST_F(PathsTest, ARootIsComparedByWholeComponents) {
  EXPECT_THAT(CheckPathAllowed(config_, P("models-evil/c.gguf"), false),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(PathsTest, WritesGoBelowARootNotOntoIt) {
  EXPECT_OK(CheckPathAllowed(config_, P("models/new.gguf"), true));
  EXPECT_OK(CheckPathAllowed(config_, P("models/sub/new.gguf"), true));
  EXPECT_THAT(CheckPathAllowed(config_, P("models"), true),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is the model root")));
  EXPECT_THAT(CheckPathAllowed(config_, P("outside/new.gguf"), true),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("may not be written")));
}

TEST_F(PathsTest, RelativePathsResolveFromTheWorkingDirectory) {
  const fs::path cwd = fs::current_path();
  fs::current_path(base_ / "models" / "sub");
  absl::Status inside = CheckPathAllowed(config_, "b.gguf", false);
  absl::Status escape = CheckPathAllowed(config_, "../../outside/secret.gguf", false);
  fs::current_path(cwd);
  EXPECT_OK(inside);
  EXPECT_THAT(escape, StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(PathsTest, NoRootsMeansNoRestriction) {
  ServerConfig open;
  EXPECT_OK(CheckPathAllowed(open, "/etc/passwd", false));
  EXPECT_OK(CheckPathAllowed(open, P("models/escape.gguf"), true));
}

TEST_F(PathsTest, SeveralRootsEachCount) {
  config_.model_roots.push_back(P("outside"));
  EXPECT_OK(CheckPathAllowed(config_, P("outside/secret.gguf"), false));
  EXPECT_OK(CheckPathAllowed(config_, P("models/escape.gguf"), false));
  EXPECT_THAT(CheckPathAllowed(config_, P("models-evil/c.gguf"), false),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr(P("models") + ", " + P("outside"))));
}

TEST_F(PathsTest, ASymlinkLoopIsSaidToBeALoop) {
  fs::create_symlink(base_ / "models" / "loop_b", base_ / "models" / "loop_a");
  fs::create_symlink(base_ / "models" / "loop_a", base_ / "models" / "loop_b");
  EXPECT_THAT(CheckPathAllowed(config_, P("models/loop_a"), false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symlink loop")));
}

}  // namespace
}  // namespace ingot::server
