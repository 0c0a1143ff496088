// ingotd's OpenAI-compatible HTTP API (--http-listen / http.listen; off by default), on
// cpp-httplib (Debian libcpp-httplib-dev 0.11):
//   GET    /v1/models                 list (role read-only, as ListModels)
//   GET    /v1/models/{id}            one model (as GetModel)
//   DELETE /v1/models/{id}            unload (admin, as UnloadModel)
//   POST   /v1/completions            raw prompt   } as Generate: the same engine entry
//   POST   /v1/chat/completions       chat template} point, limits and metrics
// The same TLS files (mutual TLS when a client CA is set), bearer tokens and roles
// (`Authorization: Bearer TOKEN`, server/auth.h), limits (server/limits.h) and request
// metrics as gRPC; ingot_http_requests_total{route,status} counts the HTTP share.
// Streams are server-sent events in OpenAI's chunk format ending with `data: [DONE]`.
// A client that goes away cancels its sequences: a stream notices at its next write,
// and a non-streamed answer that takes over a second is sent chunked with a space
// (JSON whitespace) each second while it waits, so its disconnect is noticed too; such
// an answer's status is 200 even if the generation later fails (the body is then
// OpenAI's error object).
// While draining every request is refused with 503. TLS: server/http_tls.h (reloaded
// on SIGHUP with the gRPC port's certificates).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/config.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace ingot {
class Engine;
}  // namespace ingot

namespace ingot::server {

class CallGuard;
class HttpTls;
class Metrics;

class HttpServer {
 public:
  // `guard` may be null (every request admitted); `on_unloaded` (may be empty) is told
  // a model was unloaded through DELETE /v1/models/{id} (the health service).
  HttpServer(const ServerConfig& config, Engine* engine, Metrics* metrics, CallGuard* guard,
             std::function<void(const std::string&)> on_unloaded = {});
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `address` ("host:port", port 0 = any) and serves on a thread of its own.
  // UNAVAILABLE naming the address when it cannot be bound, INVALID_ARGUMENT for a
  // malformed address or TLS files the library refuses.
  absl::Status Start(const std::string& address);
  int port() const { return port_; }
  // Re-reads the TLS files (SIGHUP); OK without TLS. On error the ones in force stay.
  absl::Status ReloadTls();
  // From now on every request is answered 503; running ones go on.
  void StartDrain();
  // Waits until no request is in flight (true) or `deadline` passes (false).
  bool WaitIdle(std::chrono::system_clock::time_point deadline);
  // Stops listening and joins the serving thread (after in-flight responses end).
  void Stop();

  // Used by the request handlers (server/http_generate.cc).
  Engine* engine() const { return engine_; }
  Metrics* metrics() const { return metrics_; }
  CallGuard* guard() const { return guard_; }
  std::string NextRequestId();
  // Counts a request in flight until the returned token is destroyed.
  std::shared_ptr<void> EnterRequest();

 private:
  void Route();
  void HandleModels(const httplib::Request& req, httplib::Response& res);
  void HandleModel(const httplib::Request& req, httplib::Response& res);
  void HandleDeleteModel(const httplib::Request& req, httplib::Response& res);

  const ServerConfig config_;
  Engine* engine_;
  Metrics* metrics_;
  CallGuard* guard_;
  std::function<void(const std::string&)> on_unloaded_;
  std::unique_ptr<HttpTls> tls_;  // outlives server_: its handshakes call into it
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{1};
  std::mutex mu_;
  std::condition_variable idle_cv_;
  int in_flight_ = 0;  // guarded by mu_
};

// Shared by the handlers: the bearer token of `req` checked for `method`
// ("ingot.v1.GenerationService/Generate"); OK without a guard.
absl::Status AuthorizeHttp(CallGuard* guard, const httplib::Request& req, const char* method);
// Writes OpenAI's error object for `status` with its HTTP status.
void WriteError(httplib::Response& res, const absl::Status& status, bool chat = false);
// POST /v1/completions and /v1/chat/completions (server/http_generate.cc).
void HandleGenerate(HttpServer* server, bool chat, const httplib::Request& req, httplib::Response& res);

}  // namespace ingot::server
