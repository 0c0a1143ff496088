#include "server/http_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/read_file.h"
#include "server/tls.h"

namespace ingot::server {
namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct KeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct StoreFree { void operator()(X509_STORE* s) const { X509_STORE_free(s); } };
using X509Ptr = std::unique_ptr<X509, X509Free>;

absl::StatusOr<std::string> Read(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return absl::InvalidArgumentError(bytes.status().message());
  return bytes;
}

std::vector<X509Ptr> Certificates(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();  // the end of the bundle reads as an error
  return certs;
}

}  // namespace

struct HttpTls::Material {
  std::vector<X509Ptr> chain;  // leaf first
  std::unique_ptr<EVP_PKEY, KeyFree> key;
  std::unique_ptr<X509_STORE, StoreFree> client_cas;  // mutual TLS only
};

HttpTls::~HttpTls() = default;

absl::StatusOr<std::shared_ptr<const HttpTls::Material>> HttpTls::Load(const TlsConfig& tls) {
  if (std::vector<std::string> problems = CheckTlsFiles(tls); !problems.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
  }
  auto m = std::make_shared<Material>();
  absl::StatusOr<std::string> cert = Read(tls.cert_file);
  if (!cert.ok()) return cert.status();
  m->chain = Certificates(*cert);
  absl::StatusOr<std::string> key = Read(tls.key_file);
  if (!key.ok()) return key.status();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(key->data(), static_cast<int>(key->size())));
  m->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  // Checked by CheckTlsFiles a moment ago; a file replaced in between is caught here.
  if (m->chain.empty() || !m->key || X509_check_private_key(m->chain.front().get(), m->key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("tls.cert_file '", tls.cert_file, "' and tls.key_file '",
                                                   tls.key_file, "' changed while being read"));
  }
  if (tls.mutual()) {
    absl::StatusOr<std::string> ca = Read(tls.client_ca_file);
    if (!ca.ok()) return ca.status();
    m->client_cas.reset(X509_STORE_new());
    for (X509Ptr& c : Certificates(*ca)) X509_STORE_add_cert(m->client_cas.get(), c.get());
  }
  return std::shared_ptr<const Material>(std::move(m));
}

absl::StatusOr<std::unique_ptr<HttpTls>> HttpTls::Create(const TlsConfig& tls) {
  std::unique_ptr<HttpTls> out(new HttpTls(tls));
  absl::StatusOr<std::shared_ptr<const Material>> m = Load(tls);
  if (!m.ok()) return m.status();
  out->current_ = *std::move(m);
  return out;
}

absl::Status HttpTls::Reload() {
  absl::StatusOr<std::shared_ptr<const Material>> m = Load(tls_);
  if (!m.ok()) return m.status();
  std::lock_guard lock(mu_);
  current_ = *std::move(m);
  return absl::OkStatus();
}

std::shared_ptr<const HttpTls::Material> HttpTls::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

bool HttpTls::SetUp(SSL_CTX& ctx) {
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
  SSL_CTX_set_cert_cb(&ctx, &HttpTls::CertCallback, this);
  if (tls_.mutual()) {
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return true;
}

// Runs in each handshake before the server's certificate is sent; the client's
// certificate is verified later against the store set here.
int HttpTls::CertCallback(SSL* ssl, void* arg) {
  std::shared_ptr<const Material> m = static_cast<HttpTls*>(arg)->Current();
  if (SSL_use_certificate(ssl, m->chain.front().get()) != 1) return 0;
  if (SSL_use_PrivateKey(ssl, m->key.get()) != 1) return 0;
  SSL_clear_chain_certs(ssl);
  for (size_t i = 1; i < m->chain.size(); ++i) {
    if (SSL_add1_chain_cert(ssl, m->chain[i].get()) != 1) return 0;
  }
  if (m->client_cas && SSL_set1_verify_cert_store(ssl, m->client_cas.get()) != 1) return 0;
  return 1;
}

}  // namespace ingot::server
