// TLS file checks and the SIGHUP reloader's staging on certificates made by the
// openssl tool: a matching pair passes, a wrong key, an expired certificate or a
// non-PEM file is named, and a reload with a bad file keeps the served certificate.
#include "server/tls.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/server/test_certs.h"
#include "tests/test_util.h"

namespace ingot::server {
namespace {

namespace fs = std::filesystem;
using ::ingot::testing::CertFiles;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::ingot::testing::StatusIs;

class TlsFilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "ingot-tls-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    certs_ = new Certs;
    ASSERT_EQ(::ingot::testing::MakeCa(*dir_, "ca1", &certs_->ca1), "");
    ASSERT_EQ(::ingot::testing::MakeCa(*dir_, "ca2", &certs_->ca2), "");
    ASSERT_EQ(::ingot::testing::MakeLeaf(*dir_, "server1", certs_->ca1, true, &certs_->server1), "");
    ASSERT_EQ(::ingot::testing::MakeLeaf(*dir_, "server2", certs_->ca2, true, &certs_->server2), "");
    ASSERT_EQ(::ingot::testing::MakeLeaf(*dir_, "expired", certs_->ca1, true, &certs_->expired, 0), "");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete certs_;
  }
  struct Certs {
    CertFiles ca1, ca2, server1, server2, expired;
  };
  static TlsConfig Config(const CertFiles& leaf, const std::string& ca = "") {
    TlsConfig tls;
    tls.cert_file = leaf.cert;
    tls.key_file = leaf.key;
    tls.client_ca_file = ca;
    return tls;
  }
  static std::string* dir_;
  static Certs* certs_;
};
std::string* TlsFilesTest::dir_ = nullptr;
TlsFilesTest::Certs* TlsFilesTest::certs_ = nullptr;

TEST_F(TlsFilesTest, AMatchingPairAndCaPass) {
  EXPECT_THAT(CheckTlsFiles(Config(certs_->server1)), IsEmpty());
  EXPECT_THAT(CheckTlsFiles(Config(certs_->server1, certs_->ca2.cert)), IsEmpty());
}

TEST_F(TlsFilesTest, EachProblemNamesItsKeyAndFile) {
  TlsConfig crossed = Config(certs_->server1);
  crossed.key_file = certs_->server2.key;
  EXPECT_THAT(CheckTlsFiles(crossed),
              ElementsAre(StartsWith("tls.key_file: '" + certs_->server2.key +
                                     "' does not match the certificate in tls.cert_file")));
  // PEM of the wrong kind: a key where the certificate belongs, a certificate as CA is fine,
  // a key as CA is not.
  TlsConfig swapped = Config(certs_->server1, certs_->server1.key);
  swapped.cert_file = certs_->server1.key;
  std::vector<std::string> problems = CheckTlsFiles(swapped);
  EXPECT_THAT(problems, Contains(StartsWith("tls.cert_file: '" + certs_->server1.key +
                                            "' holds no PEM certificate")));
  EXPECT_THAT(problems, Contains(StartsWith("tls.client_ca_file: '" + certs_->server1.key +
                                            "' holds no PEM certificate")));
  TlsConfig missing = Config(certs_->server1);
  missing.key_file = *dir_ + "/nope.key";
  EXPECT_THAT(CheckTlsFiles(missing), ElementsAre(StartsWith("tls.key_file: cannot read")));
}

TEST_F(TlsFilesTest, AnExpiredCertificateIsAProblem) {
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // -days 0: expired after a tick
  EXPECT_THAT(CheckTlsFiles(Config(certs_->expired)),
              ElementsAre(StartsWith("tls.cert_file: '" + certs_->expired.cert + "' expired on")));
}

TEST_F(TlsFilesTest, ReloadSwapsOnlyGoodCertificates) {
  // The reloader reads the configured paths again on each Reload: work on copies.
  const std::string live = *dir_ + "/live";
  fs::create_directories(live);
  CertFiles served{live + "/server.pem", live + "/server.key"};
  fs::copy_file(certs_->server1.cert, served.cert, fs::copy_options::overwrite_existing);
  fs::copy_file(certs_->server1.key, served.key, fs::copy_options::overwrite_existing);
  absl::StatusOr<std::unique_ptr<TlsReloader>> r = TlsReloader::Create(Config(served), *dir_);
  ASSERT_OK(r);
  TlsReloader& reloader = **r;
  EXPECT_EQ(reloader.generation(), 1);
  EXPECT_THAT(reloader.Describe(), HasSubstr("ingot test ca1"));  // issuer
  EXPECT_NE(reloader.Credentials(), nullptr);

  // Half a rotation (new certificate, old key) is refused; the old pair stays.
  fs::copy_file(certs_->server2.cert, served.cert, fs::copy_options::overwrite_existing);
  EXPECT_THAT(reloader.Reload(), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("does not match the certificate")));
  EXPECT_EQ(reloader.generation(), 1);
  EXPECT_THAT(reloader.Describe(), HasSubstr("ingot test ca1"));

  fs::copy_file(certs_->server2.key, served.key, fs::copy_options::overwrite_existing);
  ASSERT_OK(reloader.Reload());
  EXPECT_EQ(reloader.generation(), 2);
  EXPECT_THAT(reloader.Describe(), HasSubstr("ingot test ca2"));
}

}  // namespace
}  // namespace ingot::server
