#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/read_file.h"

namespace ingot::server {
namespace {

namespace fs = std::filesystem;

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct KeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
using X509Ptr = std::unique_ptr<X509, X509Free>;

// The bytes of the file a config key names, or the problem.
absl::StatusOr<std::string> ReadPem(const std::string& key, const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", pem.status().message()));
  return pem;
}

// Every certificate in a PEM bundle (none: an error naming the file).
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& key,
                                                       const std::string& path,
                                                       const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' holds no PEM certificate"));
  }
  return certs;
}

std::string NameOf(X509_NAME* name) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

std::string TimeOf(const ASN1_TIME* t) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

// Checks PEM contents; returns the problems and, through `description`, the leaf
// certificate's subject and expiry.
std::vector<std::string> CheckPem(const TlsConfig& tls, const std::string& cert_pem,
                                  const std::string& key_pem, const std::string& ca_pem,
                                  std::string* description) {
  std::vector<std::string> problems;
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ParseCertificates("tls.cert_file", tls.cert_file, cert_pem);
  if (!chain.ok()) {
    problems.emplace_back(chain.status().message());
  } else {
    X509* leaf = chain->front().get();
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
      problems.push_back(absl::StrCat("tls.cert_file: '", tls.cert_file, "' expired on ",
                                      TimeOf(X509_get0_notAfter(leaf))));
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
      problems.push_back(absl::StrCat("tls.cert_file: '", tls.cert_file, "' is not valid before ",
                                      TimeOf(X509_get0_notBefore(leaf))));
    }
    if (description) {
      *description = absl::StrCat("subject=\"", NameOf(X509_get_subject_name(leaf)),
                                  "\" issuer=\"", NameOf(X509_get_issuer_name(leaf)),
                                  "\" expires=\"", TimeOf(X509_get0_notAfter(leaf)), "\"");
    }
  }
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    problems.push_back(absl::StrCat("tls.key_file: '", tls.key_file,
                                    "' holds no PEM private key (or it is encrypted)"));
  } else if (chain.ok() && X509_check_private_key(chain->front().get(), key.get()) != 1) {
    problems.push_back(absl::StrCat("tls.key_file: '", tls.key_file,
                                    "' does not match the certificate in tls.cert_file '",
                                    tls.cert_file, "'"));
  }
  if (tls.mutual()) {
    absl::StatusOr<std::vector<X509Ptr>> ca =
        ParseCertificates("tls.client_ca_file", tls.client_ca_file, ca_pem);
    if (!ca.ok()) problems.emplace_back(ca.status().message());
  }
  return problems;
}

absl::Status WriteFile(const std::string& path, const std::string& data, mode_t mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> CheckTlsFiles(const TlsConfig& tls) {
  std::vector<std::string> problems;
  absl::StatusOr<std::string> cert = ReadPem("tls.cert_file", tls.cert_file);
  absl::StatusOr<std::string> key = ReadPem("tls.key_file", tls.key_file);
  absl::StatusOr<std::string> ca =
      tls.mutual() ? ReadPem("tls.client_ca_file", tls.client_ca_file)
                    : absl::StatusOr<std::string>(std::string());
  for (const auto* s : {&cert, &key, &ca}) {
    if (!s->ok()) problems.emplace_back(s->status().message());
  }
  if (!problems.empty()) return problems;
  return CheckPem(tls, *cert, *key, *ca, nullptr);
}

absl::StatusOr<std::unique_ptr<TlsReloader>> TlsReloader::Create(const TlsConfig& tls,
                                                                const std::string& staging_parent) {
  std::string parent = staging_parent;
  if (parent.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp && *tmp ? tmp : "/tmp";
  }
  std::string tmpl = parent + "/ingotd-tls-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {  // mode 0700: the key is copied in here
    return absl::FailedPreconditionError(absl::StrCat(
        "tls: cannot create a staging directory under '", parent, "' (", std::strerror(errno),
        "); set TMPDIR to a writable directory"));
  }
  std::unique_ptr<TlsReloader> r(new TlsReloader(tls, tmpl));
  std::lock_guard lock(r->mu_);
  if (absl::Status s = r->Stage(); !s.ok()) return s;
  const std::string current = r->dir_ + "/current/";
  // One second is the provider's finest refresh; it reads only the staged copies.
  r->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      current + "key.pem", current + "cert.pem", tls.mutual() ? current + "ca.pem" : "",
      /*refresh_interval_sec=*/1);
  return r;
}

TlsReloader::~TlsReloader() {
  provider_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::shared_ptr<grpc::ServerCredentials> TlsReloader::Credentials() const {
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_identity_key_cert_pairs();
  if (tls_.mutual()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::Status TlsReloader::Reload() {
  std::lock_guard lock(mu_);
  return Stage();
}

std::string TlsReloader::Describe() const {
  std::lock_guard lock(mu_);
  return description_;
}

int TlsReloader::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

absl::Status TlsReloader::Stage() {
  absl::StatusOr<std::string> cert = ReadPem("tls.cert_file", tls_.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls.key_file", tls_.key_file);
  if (!key.ok()) return key.status();
  std::string ca;
  if (tls_.mutual()) {
    absl::StatusOr<std::string> c = ReadPem("tls.client_ca_file", tls_.client_ca_file);
    if (!c.ok()) return c.status();
    ca = *std::move(c);
  }
  std::string description;
  std::vector<std::string> problems = CheckPem(tls_, *cert, *key, ca, &description);
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));

  const int gen = generation_ + 1;
  const std::string gdir = absl::StrCat(dir_, "/g", gen);
  if (mkdir(gdir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("tls: cannot create '", gdir, "': ", std::strerror(errno)));
  }
  std::vector<std::pair<std::string, const std::string*>> files = {{"key.pem", &*key},
                                                                   {"cert.pem", &*cert}};
  if (tls_.mutual()) files.emplace_back("ca.pem", &ca);
  // File times unique to this generation: the watcher's before/after comparison then
  // catches a swap in the middle of its reads.
  static const time_t kBase =
      std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& [name, data] : files) {
    const std::string path = gdir + "/" + name;
    if (absl::Status s = WriteFile(path, *data, 0600); !s.ok()) return s;
    timespec times[2] = {{kBase + gen, 0}, {kBase + gen, 0}};
    utimensat(AT_FDCWD, path.c_str(), times, 0);
  }
  const std::string link_tmp = dir_ + "/current.tmp";
  unlink(link_tmp.c_str());
  if (symlink(absl::StrCat("g", gen).c_str(), link_tmp.c_str()) != 0 ||
      rename(link_tmp.c_str(), (dir_ + "/current").c_str()) != 0) {
    return absl::InternalError(absl::StrCat("tls: cannot switch '", dir_, "/current': ",
                                            std::strerror(errno)));
  }
  // The generation before the last may still be open in a read that began before the
  // previous swap; two back is safe to remove.
  std::error_code ec;
  fs::remove_all(absl::StrCat(dir_, "/g", gen - 2), ec);
  generation_ = gen;
  description_ = std::move(description);
  return absl::OkStatus();
}

}  // namespace ingot::server
