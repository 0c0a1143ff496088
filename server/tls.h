// TLS and mutual TLS for the gRPC port, with certificates reloaded on SIGHUP.
//
// How the reload works: gRPC's FileWatcherCertificateProvider re-reads its files every
// second, but it watches a private staging directory, not the configured files. Only
// Reload() (called from the SIGHUP handler) copies the configured files there, after
// checking that they parse, that the key matches the certificate and that it has not
// expired, so a half-written or wrong certificate never replaces a working one, and a
// file changed on disk is served only after SIGHUP. Each reload is a new generation
// directory swapped in by renaming a symlink, with its own file times, so the watcher
// (which compares modification times before and after reading) never pairs one
// generation's key with another's certificate. New connections get the new
// certificate within about a second of the signal; open connections keep theirs.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config.h"

namespace grpc {
class ServerCredentials;
namespace experimental {
class CertificateProviderInterface;
}  // namespace experimental
}  // namespace grpc

namespace ingot::server {

// Every problem with the configured files, each naming its key and path: unreadable,
// not PEM, key not matching the certificate, certificate expired or not yet valid.
std::vector<std::string> CheckTlsFiles(const TlsConfig& tls);

class TlsReloader {
 public:
  // Checks and stages the files. `staging_parent` holds the private staging directory
  // ("" = $TMPDIR or /tmp).
  static absl::StatusOr<std::unique_ptr<TlsReloader>> Create(const TlsConfig& tls,
                                                             const std::string& staging_parent = "");
  ~TlsReloader();  // removes the staging directory

  // Server credentials reading the staged files (mutual when a client CA is set).
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;
  // Re-reads the configured files; on any problem the served certificate stays and the
  // error names the problem.
  absl::Status Reload();
  // "subject=..., expires=..." of the staged certificate, for the log.
  std::string Describe() const;
  int generation() const;

 private:
  TlsReloader(TlsConfig tls, std::string dir) : tls_(std::move(tls)), dir_(std::move(dir)) {}
  absl::Status Stage();  // with mu_ held

  const TlsConfig tls_;
  const std::string dir_;  // the staging directory
  mutable std::mutex mu_;
  int generation_ = 0;
  std::string description_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
};

}  // namespace ingot::server
