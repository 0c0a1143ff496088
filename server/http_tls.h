// TLS for the HTTP API's port: the gRPC port's files (tls.cert_file, key_file,
// client_ca_file for mutual TLS), swapped on SIGHUP as the gRPC port's are
// (server/tls.h). Each handshake takes the certificate, key and client CAs in force
// through OpenSSL's certificate callback, so a reload never touches the SSL_CTX that
// other connections are being made from; open connections keep theirs.
#pragma once

#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace ingot::server {

class HttpTls {
 public:
  // Reads and checks the files (CheckTlsFiles); INVALID_ARGUMENT naming each problem.
  static absl::StatusOr<std::unique_ptr<HttpTls>> Create(const TlsConfig& tls);
  ~HttpTls();

  // Configures a fresh server SSL_CTX (httplib::SSLServer's setup callback): TLS 1.2+,
  // the certificate callback, and client verification when mutual.
  bool SetUp(SSL_CTX& ctx);
  // Re-reads the files; on any problem the ones in force stay and the error names it.
  absl::Status Reload();

 private:
  struct Material;
  explicit HttpTls(TlsConfig tls) : tls_(std::move(tls)) {}
  static absl::StatusOr<std::shared_ptr<const Material>> Load(const TlsConfig& tls);
  static int CertCallback(SSL* ssl, void* arg);
  std::shared_ptr<const Material> Current() const;

  const TlsConfig tls_;
  mutable std::mutex mu_;
  std::shared_ptr<const Material> current_;
};

}  // namespace ingot::server
