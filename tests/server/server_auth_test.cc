// Bearer tokens: the file format, roles against every RPC of the real ingot.v1
// services (from their descriptors), and the codes for missing, unknown and
// insufficient tokens.
#include "server/auth.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "ingot/v1/generation.pb.h"
#include "ingot/v1/model.pb.h"
#include "ingot/v1/quantization.pb.h"
#include "tests/test_util.h"

namespace ingot::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::ingot::testing::StatusIs;

// Every RPC of the public API, "ingot.v1.ModelService/LoadModel" style.
std::vector<std::string> AllMethods() {
  std::vector<std::string> methods;
  for (const google::protobuf::FileDescriptor* file :
       {v1::LoadModelRequest::descriptor()->file(), v1::GenerateRequest::descriptor()->file(),
        v1::QuantizeModelRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        methods.push_back(service->full_name() + "/" + service->method(m)->name());
      }
    }
  }
  return methods;
}

TEST(TokenFile, ParsesRolesNamesAndComments) {
  absl::StatusOr<std::vector<TokenEntry>> tokens = ParseTokens(
      "# ops tokens\n\nabc123 admin alice\n  def456\tread-only   # dashboards\nghi789 read-only\n",
      "tokens");
  ASSERT_OK(tokens);
  ASSERT_EQ(tokens->size(), 3u);
  EXPECT_EQ((*tokens)[0].token, "abc123");
  EXPECT_EQ((*tokens)[0].role, Role::kAdmin);
  EXPECT_EQ((*tokens)[0].name, "alice");
  EXPECT_EQ((*tokens)[1].token, "def456");
  EXPECT_EQ((*tokens)[1].role, Role::kReadOnly);
  EXPECT_EQ((*tokens)[1].name, "tokens:4");  // unnamed: where it was defined
  EXPECT_EQ((*tokens)[2].name, "tokens:5");
}

TEST(TokenFile, ProblemsNameTheLine) {
  EXPECT_THAT(ParseTokens("a admin\nb superuser\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f:2: role 'superuser' is not admin or read-only")));
  EXPECT_THAT(ParseTokens("\n\nlonely\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:3: expected 'TOKEN")));
  EXPECT_THAT(ParseTokens("a admin x\na read-only y\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f:2: token 'y' repeats an earlier token")));
  EXPECT_THAT(ParseTokens("a admin two names\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:1:")));
}

TEST(TokenFile, FileAndEnvironmentTogether) {
  std::string tmpl = (fs::temp_directory_path() / "ingot-tokens-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/tokens";
  std::ofstream(path) << "file-admin admin ops\n";
  AuthConfig auth;
  auth.tokens_file = path;
  auth.tokens_env = "env-ro read-only grafana,env-admin admin ci";
  absl::StatusOr<std::vector<TokenEntry>> tokens = LoadTokens(auth);
  ASSERT_OK(tokens);
  std::vector<std::string> names;
  for (const TokenEntry& t : *tokens) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("ops", "grafana", "ci"));

  auth.tokens_env = "file-admin read-only again";
  EXPECT_THAT(LoadTokens(auth), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("also in auth.tokens_file")));
  std::ofstream(path) << "# nothing yet\n";
  auth.tokens_env.clear();
  EXPECT_THAT(LoadTokens(auth), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokens")));
  auth.tokens_file = tmpl + "/missing";
  EXPECT_THAT(LoadTokens(auth), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("auth.tokens_file: cannot read")));
  fs::remove_all(tmpl);
}

TEST(Roles, ReadOnlyListNamesRealMethodsAndEverythingElseNeedsAdmin) {
  const std::vector<std::string> all = AllMethods();
  ASSERT_GE(all.size(), 12u);
  const std::set<std::string> known(all.begin(), all.end());
  for (const std::string& m : ReadOnlyMethods()) {
    EXPECT_TRUE(known.count(m)) << m << " is in the read-only list but is no RPC of ingot.v1";
  }
  // What a read-only token must never do, by the verbs of the API.
  for (const std::string& m : all) {
    SCOPED_TRACE(m);
    const std::string verb = m.substr(m.find('/') + 1);
    // PlanLoad opens checkpoints on the server's file system as LoadModel does: admin too.
    const bool mutates = verb.rfind("Load", 0) == 0 || verb.rfind("Unload", 0) == 0 ||
                         verb.rfind("Quantize", 0) == 0 || verb.rfind("Save", 0) == 0 || verb == "PlanLoad";
    EXPECT_EQ(RequiredRole(m), mutates ? Role::kAdmin : Role::kReadOnly);
    EXPECT_EQ(RequiredRole("/" + m), RequiredRole(m));  // gRPC's ":path" spelling
  }
  // A method the table has never heard of (a new RPC) is closed to read-only tokens.
  EXPECT_EQ(RequiredRole("ingot.v1.ModelService/SaveModel"), Role::kAdmin);
  EXPECT_EQ(RequiredRole("ingot.v1.ModelService/SomethingNew"), Role::kAdmin);
}

class AuthorizeTest : public ::testing::Test {
 protected:
  AuthorizeTest()
      : auth_(*ParseTokens("s3cret-admin admin alice\nlook-only read-only grafana\n", "t")) {}
  TokenAuthenticator auth_;
};

TEST_F(AuthorizeTest, MissingOrUnknownTokensAreUnauthenticated) {
  const char* kGenerate = "ingot.v1.GenerationService/Generate";
  EXPECT_THAT(auth_.Authorize(std::nullopt, kGenerate),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing bearer token")));
  EXPECT_THAT(auth_.Authorize("Basic czNjcmV0", kGenerate),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not 'Bearer <token>'")));
  EXPECT_THAT(auth_.Authorize("Bearer nope", kGenerate),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown bearer token")));
  EXPECT_THAT(auth_.Authorize("Bearer s3cret-admi", kGenerate),  // a prefix is no match
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth_.Authorize("Bearer ", kGenerate), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(AuthorizeTest, RolesDecidePerMethod) {
  std::string who;
  EXPECT_OK(auth_.Authorize("Bearer look-only", "ingot.v1.GenerationService/Generate", &who));
  EXPECT_EQ(who, "grafana");
  EXPECT_OK(auth_.Authorize("bearer look-only", "/ingot.v1.ModelService/ListModels"));
  EXPECT_OK(auth_.Authorize("Bearer   s3cret-admin ", "ingot.v1.ModelService/LoadModel", &who));
  EXPECT_EQ(who, "alice");
  for (const std::string& m : AllMethods()) {
    EXPECT_OK(auth_.Authorize("Bearer s3cret-admin", m)) << m;
  }
  EXPECT_THAT(auth_.Authorize("Bearer look-only", "ingot.v1.ModelService/LoadModel"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("token 'grafana' is read-only; ingot.v1.ModelService/LoadModel "
                                 "needs an admin token")));
  EXPECT_THAT(auth_.Authorize("Bearer look-only", "ingot.v1.QuantizationService/QuantizeModel"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("QuantizeModel")));
}

}  // namespace
}  // namespace ingot::server
