#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <ctime>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/runtime/engine.h"
#include "server/http_openai.h"
#include "server/http_tls.h"
#include "server/limits.h"
#include "server/metrics.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

using json = nlohmann::json;

// The route label of ingot_http_requests_total: a fixed set, whatever the path was.
std::string RouteOf(const httplib::Request& req) {
  if (req.path == "/v1/models") return "models";
  if (req.path.rfind("/v1/models/", 0) == 0) return req.method == "DELETE" ? "model_delete" : "model";
  if (req.path == "/v1/completions") return "completions";
  if (req.path == "/v1/chat/completions") return "chat_completions";
  return "other";
}

int64_t UnixNow() { return static_cast<int64_t>(std::time(nullptr)); }

// Handler threads: every running stream holds one for its whole length, so there are
// as many as the streams the limits allow, plus a few for short calls.
size_t HandlerThreads(const LimitsConfig& limits) {
  const int64_t streams = limits.max_concurrent_streams > 0 ? limits.max_concurrent_streams : 64;
  return static_cast<size_t>(std::clamp<int64_t>(streams + 4, 8, 512));
}

}  // namespace

absl::Status AuthorizeHttp(CallGuard* guard, const httplib::Request& req, const char* method) {
  if (guard == nullptr) return absl::OkStatus();
  std::string value;
  std::optional<absl::string_view> authorization;
  if (req.has_header("Authorization")) {
    value = req.get_header_value("Authorization");
    authorization = absl::string_view(value);
  }
  absl::Status s = guard->AuthorizeToken(authorization, method);
  if (!s.ok()) {
    spdlog::warn("refused http {} {} peer={}:{} reason={}", req.method, req.path, req.remote_addr,
                 req.remote_port, std::string(s.message()));
  }
  return s;
}

void WriteError(httplib::Response& res, const absl::Status& status, bool chat) {
  http::HttpError e = http::ToHttpError(status, chat ? http::Endpoint::kChat : http::Endpoint::kCompletions);
  res.status = e.status;
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(http::Dump(e.body), "application/json");
}

HttpServer::HttpServer(const ServerConfig& config, Engine* engine, Metrics* metrics, CallGuard* guard,
                       std::function<void(const std::string&)> on_unloaded)
    : config_(config), engine_(engine), metrics_(metrics), guard_(guard),
      on_unloaded_(std::move(on_unloaded)) {}

HttpServer::~HttpServer() {
  Stop();
  server_.reset();  // before tls_
}

std::string HttpServer::NextRequestId() {
  static const int64_t kStart = UnixNow();
  return absl::StrFormat("h-%x-%d", kStart, next_id_.fetch_add(1));
}

std::shared_ptr<void> HttpServer::EnterRequest() {
  {
    std::lock_guard lock(mu_);
    ++in_flight_;
  }
  return std::shared_ptr<void>(nullptr, [this](void*) {
    std::lock_guard lock(mu_);
    if (--in_flight_ == 0) idle_cv_.notify_all();
  });
}

absl::Status HttpServer::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("http.listen: '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (config_.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<HttpTls>> tls = HttpTls::Create(config_.tls);
    if (!tls.ok()) return tls.status();
    tls_ = *std::move(tls);
    server_ = std::make_unique<httplib::SSLServer>([t = tls_.get()](SSL_CTX& ctx) { return t->SetUp(ctx); });
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  if (!server_->is_valid()) {
    return absl::InternalError("http.listen: the TLS context could not be made");
  }
  const size_t threads = HandlerThreads(config_.limits);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  if (config_.limits.max_request_bytes > 0) {
    server_->set_payload_max_length(static_cast<size_t>(config_.limits.max_request_bytes));
  }
  Route();
  port_ = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0) {
    port_ = 0;
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                               " for http (address in use or invalid)"));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

absl::Status HttpServer::ReloadTls() { return tls_ ? tls_->Reload() : absl::OkStatus(); }

void HttpServer::StartDrain() { draining_.store(true); }

bool HttpServer::WaitIdle(std::chrono::system_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_until(lock, deadline, [this] { return in_flight_ == 0; });
}

void HttpServer::Stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Route() {
  httplib::Server& s = *server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!draining_.load()) return httplib::Server::HandlerResponse::Unhandled;
    WriteError(res, absl::UnavailableError("the server is draining (shutting down); retry on another "
                                           "replica"));
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_->RecordHttpRequest(RouteOf(req), res.status);
  });
  // Routes httplib answers itself (unknown path 404, body too large 413, ...) get
  // OpenAI's error object too.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    absl::Status status = res.status == 404 ? absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path))
                        : res.status == 413 ? absl::InvalidArgumentError("the request body is over limits.max_request_bytes")
                                            : absl::InvalidArgumentError(absl::StrCat("HTTP ", res.status));
    json body = http::ToHttpError(status).body;
    if (res.status == 404) {
      body["error"]["param"] = nullptr;
      body["error"]["code"] = "unknown_url";
    }
    res.set_content(http::Dump(body), "application/json");
  });
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("http {} {}: {}", req.method, req.path, what);
    WriteError(res, absl::InternalError(what));
  });
  s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) { HandleModels(req, res); });
  s.Get(R"(/v1/models/([^/]+))",
        [this](const httplib::Request& req, httplib::Response& res) { HandleModel(req, res); });
  s.Delete(R"(/v1/models/([^/]+))",
           [this](const httplib::Request& req, httplib::Response& res) { HandleDeleteModel(req, res); });
  s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(this, /*chat=*/false, req, res);
  });
  s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(this, /*chat=*/true, req, res);
  });
}

void HttpServer::HandleModels(const httplib::Request& req, httplib::Response& res) {
  std::shared_ptr<void> in_flight = EnterRequest();
  if (absl::Status s = AuthorizeHttp(guard_, req, "ingot.v1.ModelService/ListModels"); !s.ok()) {
    return WriteError(res, s);
  }
  json data = json::array();
  const int64_t now = UnixNow();
  for (const ModelInfo& m : engine_->ListModels()) {
    if (m.state == ModelState::kReady) data.push_back(http::ModelObject(m, now));
  }
  res.set_content(http::Dump({{"object", "list"}, {"data", std::move(data)}}), "application/json");
}

void HttpServer::HandleModel(const httplib::Request& req, httplib::Response& res) {
  std::shared_ptr<void> in_flight = EnterRequest();
  if (absl::Status s = AuthorizeHttp(guard_, req, "ingot.v1.ModelService/GetModel"); !s.ok()) {
    return WriteError(res, s);
  }
  const std::string name = req.matches[1];
  absl::StatusOr<ModelInfo> info = engine_->GetModel(name);
  if (!info.ok()) return WriteError(res, info.status());
  res.set_content(http::Dump(http::ModelObject(*info, UnixNow())), "application/json");
}

void HttpServer::HandleDeleteModel(const httplib::Request& req, httplib::Response& res) {
  std::shared_ptr<void> in_flight = EnterRequest();
  if (absl::Status s = AuthorizeHttp(guard_, req, "ingot.v1.ModelService/UnloadModel"); !s.ok()) {
    return WriteError(res, s);
  }
  const std::string name = req.matches[1];
  const int running = engine_->RunningRequests(name);
  if (absl::Status s = engine_->UnloadModel(name); !s.ok()) return WriteError(res, s);
  if (on_unloaded_) on_unloaded_(name);
  spdlog::info("unload name={} running_requests={} peer={}:{} (http)", name, running, req.remote_addr,
               req.remote_port);
  res.set_content(http::Dump({{"id", name}, {"object", "model"}, {"deleted", true}}), "application/json");
}

}  // namespace ingot::server
