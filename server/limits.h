// What a call may do before a handler starts work: the bearer token and its role,
// model roots for paths on the server, and the request limits. Every handler begins
// with one Admit(...) call and returns its refusal as is:
//
//   if (grpc::Status s = Admit(context, *request); !s.ok())
//     return RefuseStream<v1::LoadModelResponse>(s);
//   if (grpc::Status s = Admit(context, "ingot.v1.ModelService/UnloadModel", *request); !s.ok())
//     return RefuseUnary(context, s);
//
// Why in the handler and not in an interceptor or an AuthMetadataProcessor: gRPC 1.51's
// server interceptors cannot end a call with a status of their choosing, and an
// AuthMetadataProcessor only runs on TLS ports, while tokens must also work behind a
// TLS-terminating proxy. grpc.health.v1 and reflection have no Admit call: they stay
// open.
//
// main installs one CallGuard for the process; with none installed every call is
// admitted (in-process tests of the services).
//
// The models of the config and the return of evicted ones are server/model_keeper.h's;
// admission asks it (EnsureLoaded) before a call uses a model.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/config.h"
#include "server/model_keeper.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace ingot {
class Engine;
namespace v1 {
class GenerateRequest;
class TokenizeRequest;
class LoadModelRequest;
class QuantizeModelRequest;
class EvaluateModelRequest;
}  // namespace v1
}  // namespace ingot

namespace ingot::server {

class Metrics;
class TokenAuthenticator;

class CallGuard {
 public:
  // `max_batch_sequences`: the engine's running sequences per model, beyond which
  // requests wait in its queue (limits.max_queue_per_model counts those).
  CallGuard(ServerConfig config, Engine* engine, Metrics* metrics, ModelKeeper* keeper,
            int max_batch_sequences);
  ~CallGuard();

  // Reads the tokens (auth.tokens_file, INGOT_AUTH_TOKENS); at start and on SIGHUP.
  // On error the previous tokens stay in force.
  absl::Status LoadTokens();
  const ServerConfig& config() const { return config_; }

  grpc::Status Authorize(grpc::CallbackServerContext* context, absl::string_view method) const;
  // The same checks without a gRPC context, for the HTTP API (server/http_server.h):
  // the bearer token (`authorization` is the header value, nullopt when absent) for
  // `method`, a configured evictable model loaded again, and the generation limits
  // (RESOURCE_EXHAUSTED, counted in the request metrics like a gRPC refusal).
  absl::Status AuthorizeToken(std::optional<absl::string_view> authorization,
                              absl::string_view method) const;
  absl::Status EnsureModel(const std::string& model);
  // `message_texts`: the chat messages' contents (the prompt is then empty).
  absl::Status CheckGenerateLimits(const std::string& model, int64_t max_tokens,
                                   const std::string& prompt,
                                   const std::vector<std::string>& message_texts);
  grpc::Status AdmitGenerate(grpc::CallbackServerContext* context, const v1::GenerateRequest& r);
  grpc::Status AdmitModelUse(grpc::CallbackServerContext* context, absl::string_view method,
                             const std::vector<std::string>& models);
  grpc::Status AdmitPath(grpc::CallbackServerContext* context, absl::string_view method,
                         absl::string_view field, const std::string& path, bool for_write) const;

 private:
  const ServerConfig config_;
  Engine* engine_;
  Metrics* metrics_;
  ModelKeeper* keeper_;
  const int max_batch_sequences_;
  mutable std::mutex tokens_mu_;
  std::shared_ptr<const TokenAuthenticator> tokens_;  // null: auth off
};

// The guard every Admit below consults (not owned; nullptr uninstalls).
void InstallCallGuard(CallGuard* guard);
// The installed guard's config, nullptr when none (for CheckPathAllowed in handlers).
const ServerConfig* InstalledConfig();

// Every Admit also refuses a request that did not parse (proto/unparseable.h) with
// INVALID_ARGUMENT saying so.
//
// Token and role for `method` ("ingot.v1.ModelService/UnloadModel") only.
grpc::Status Admit(grpc::CallbackServerContext* context, absl::string_view method,
                   const google::protobuf::Message& request);
// Token, max_tokens, prompt tokens, concurrent streams, the model's queue.
grpc::Status Admit(grpc::CallbackServerContext* context, const v1::GenerateRequest& request);
grpc::Status Admit(grpc::CallbackServerContext* context, const v1::TokenizeRequest& request);
grpc::Status Admit(grpc::CallbackServerContext* context, const v1::EvaluateModelRequest& request);
// Token, and the source inside the model roots.
grpc::Status Admit(grpc::CallbackServerContext* context, const v1::LoadModelRequest& request);
// Token, and a calibration file inside the model roots.
grpc::Status Admit(grpc::CallbackServerContext* context, const v1::QuantizeModelRequest& request);
// Token for `method`, then `path` (named `field` in the refusal) under the model roots:
// for SaveModel's target, AdmitPath(context, "ingot.v1.ModelService/SaveModel", "path",
// request->path(), /*for_write=*/true, *request).
grpc::Status AdmitPath(grpc::CallbackServerContext* context, absl::string_view method,
                       absl::string_view field, const std::string& path, bool for_write,
                       const google::protobuf::Message& request);

// A unary call refused before any work: finishes the default reactor with `status`.
grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context,
                                      const grpc::Status& status);

// A server stream refused before any work: ends with `status`, writes nothing.
template <typename Response>
class RefusedStream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedStream(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};
template <typename Response>
grpc::ServerWriteReactor<Response>* RefuseStream(const grpc::Status& status) {
  return new RefusedStream<Response>(status);
}

}  // namespace ingot::server
