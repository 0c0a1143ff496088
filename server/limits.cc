#include "server/limits.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/hf_cache.h"
#include "engine/runtime/engine.h"
#include "ingot/v1/generation.pb.h"
#include "ingot/v1/model.pb.h"
#include "ingot/v1/quantization.pb.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/status.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

std::atomic<CallGuard*> g_guard{nullptr};

grpc::Status Refused(grpc::CallbackServerContext* context, absl::string_view method,
                     const absl::Status& status) {
  grpc::Status g = ToGrpcStatus(status);
  spdlog::warn("refused method={} peer={} code={} reason={}", std::string(method),
               context->peer(), GrpcCodeName(g.error_code()), std::string(status.message()));
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------
// CallGuard

CallGuard::CallGuard(ServerConfig config, Engine* engine, Metrics* metrics, ModelKeeper* keeper,
                     int max_batch_sequences)
    : config_(std::move(config)),
      engine_(engine),
      metrics_(metrics),
      keeper_(keeper),
      max_batch_sequences_(max_batch_sequences) {}

CallGuard::~CallGuard() = default;

absl::Status CallGuard::LoadTokens() {
  if (!config_.auth.enabled()) return absl::OkStatus();
  absl::StatusOr<std::vector<TokenEntry>> tokens = ::ingot::server::LoadTokens(config_.auth);
  if (!tokens.ok()) return tokens.status();
  auto auth = std::make_shared<const TokenAuthenticator>(*std::move(tokens));
  std::lock_guard lock(tokens_mu_);
  tokens_ = std::move(auth);
  return absl::OkStatus();
}

absl::Status CallGuard::AuthorizeToken(std::optional<absl::string_view> authorization,
                                      absl::string_view method) const {
  std::shared_ptr<const TokenAuthenticator> tokens;
  {
    std::lock_guard lock(tokens_mu_);
    tokens = tokens_;
  }
  if (!tokens) return absl::OkStatus();
  return tokens->Authorize(authorization, method);
}

grpc::Status CallGuard::Authorize(grpc::CallbackServerContext* context,
                                  absl::string_view method) const {
  std::optional<absl::string_view> authorization;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::Status s = AuthorizeToken(authorization, method);
  return s.ok() ? grpc::Status::OK : Refused(context, method, s);
}

absl::Status CallGuard::EnsureModel(const std::string& model) {
  if (model.empty() || keeper_ == nullptr) return absl::OkStatus();
  // The engine's registry counts the use (keep_alive, LRU) when the request finds it.
  return keeper_->EnsureLoaded(model);
}

grpc::Status CallGuard::AdmitModelUse(grpc::CallbackServerContext* context,
                                      absl::string_view method,
                                      const std::vector<std::string>& models) {
  if (grpc::Status s = Authorize(context, method); !s.ok()) return s;
  for (const std::string& model : models) {
    if (absl::Status s = EnsureModel(model); !s.ok()) return Refused(context, method, s);
  }
  return grpc::Status::OK;
}

grpc::Status CallGuard::AdmitGenerate(grpc::CallbackServerContext* context,
                                      const v1::GenerateRequest& r) {
  constexpr absl::string_view kMethod = "ingot.v1.GenerationService/Generate";
  if (grpc::Status s = AdmitModelUse(context, kMethod, {r.model()}); !s.ok()) return s;
  // Values the engine refuses anyway (max_tokens < 1) are left to its INVALID_ARGUMENT.
  const int64_t max_tokens = r.has_max_tokens() ? r.max_tokens() : SamplingParams{}.max_tokens;
  std::vector<std::string> texts;
  for (const v1::ChatMessage& m : r.messages()) texts.push_back(m.content());
  absl::Status s = CheckGenerateLimits(r.model(), max_tokens, r.prompt(), texts);
  return s.ok() ? grpc::Status::OK : Refused(context, kMethod, s);
}

absl::Status CallGuard::CheckGenerateLimits(const std::string& model, int64_t max_tokens,
                                            const std::string& prompt,
                                            const std::vector<std::string>& message_texts) {
  const LimitsConfig& lim = config_.limits;
  auto refuse = [&](std::string message) {
    // Counted like any other finished request, so refusals show on the dashboards.
    RequestRecord record;
    record.model = engine_->GetModel(model).ok() ? model : "";
    record.code = GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED);
    metrics_->RecordRequest(record);
    return absl::ResourceExhaustedError(message);
  };
  if (lim.max_tokens > 0 && max_tokens > lim.max_tokens) {
    return refuse(absl::StrCat("max_tokens ", max_tokens, " is over limits.max_tokens (",
                               lim.max_tokens, ")"));
  }
  // Running and queued streams the engine holds: a request arriving in the same
  // instant as another may pass both checks (at most one per request thread over).
  if (lim.max_concurrent_streams > 0) {
    const int running = engine_->RunningRequests("");
    if (running >= lim.max_concurrent_streams) {
      return refuse(absl::StrCat("limits.max_concurrent_streams (", lim.max_concurrent_streams,
                                 ") reached: ", running, " generation streams are running; retry "
                                 "later"));
    }
  }
  if (lim.max_queue_per_model > 0) {
    // The engine runs max_batch_sequences_ per model and queues the rest.
    const int held = engine_->RunningRequests(model);
    const int waiting = std::max(0, held - max_batch_sequences_);
    if (waiting >= lim.max_queue_per_model) {
      return refuse(absl::StrCat("limits.max_queue_per_model (", lim.max_queue_per_model,
                                 ") reached: ", waiting, " requests wait for model '", model,
                                 "'; retry later"));
    }
  }
  if (lim.max_prompt_tokens > 0) {
    // Raw prompt: its exact tokens. Chat: the messages' own tokens (the template adds
    // a few). An unknown model is left to the engine's NOT_FOUND.
    int64_t tokens = 0;
    bool known = true;
    auto count = [&](const std::string& text, bool add_special) {
      absl::StatusOr<TokenizeResult> t = engine_->Tokenize(model, text, add_special, true);
      if (!t.ok()) known = false;
      else tokens += static_cast<int64_t>(t->ids.size());
    };
    if (!prompt.empty()) count(prompt, true);
    for (const std::string& text : message_texts) count(text, false);
    if (known && tokens > lim.max_prompt_tokens) {
      return refuse(absl::StrCat("prompt has ", tokens, " tokens, over limits.max_prompt_tokens (",
                                 lim.max_prompt_tokens, ")"));
    }
  }
  return absl::OkStatus();
}

grpc::Status CallGuard::AdmitPath(grpc::CallbackServerContext* context, absl::string_view method,
                                  absl::string_view field, const std::string& path,
                                  bool for_write) const {
  if (grpc::Status s = Authorize(context, method); !s.ok()) return s;
  if (path.empty()) return grpc::Status::OK;  // the handler names the missing field
  absl::Status s = CheckPathAllowed(config_, path, for_write);
  if (s.ok()) return grpc::Status::OK;
  return Refused(context, method, absl::Status(s.code(), absl::StrCat(field, ": ", s.message())));
}

// ---------------------------------------------------------------------------------
// The handlers' entry points

namespace {

// INVALID_ARGUMENT for a request that did not parse (proto/unparseable.h).
grpc::Status Parsed(grpc::CallbackServerContext* context, absl::string_view method,
                    const google::protobuf::Message& request) {
  const std::string reason = v1::UnparseableReason(request);
  if (reason.empty()) return grpc::Status::OK;
  return Refused(context, method,
                 absl::InvalidArgumentError(absl::StrCat(
                     "the request could not be parsed as ", request.GetDescriptor()->full_name(),
                     " (", reason, "); string fields must be valid UTF-8")));
}

}  // namespace

void InstallCallGuard(CallGuard* guard) { g_guard.store(guard); }

const ServerConfig* InstalledConfig() {
  CallGuard* g = g_guard.load();
  return g ? &g->config() : nullptr;
}

grpc::Status Admit(grpc::CallbackServerContext* context, absl::string_view method,
                   const google::protobuf::Message& request) {
  CallGuard* g = g_guard.load();
  if (grpc::Status s = g ? g->Authorize(context, method) : grpc::Status::OK; !s.ok()) return s;
  return Parsed(context, method, request);
}

grpc::Status Admit(grpc::CallbackServerContext* context, const v1::GenerateRequest& request) {
  CallGuard* g = g_guard.load();
  if (grpc::Status s = Parsed(context, "ingot.v1.GenerationService/Generate", request); !s.ok()) return s;
  return g ? g->AdmitGenerate(context, request) : grpc::Status::OK;
}

grpc::Status Admit(grpc::CallbackServerContext* context, const v1::TokenizeRequest& request) {
  CallGuard* g = g_guard.load();
  if (grpc::Status s = Parsed(context, "ingot.v1.GenerationService/Tokenize", request); !s.ok()) return s;
  return g ? g->AdmitModelUse(context, "ingot.v1.GenerationService/Tokenize", {request.model()})
           : grpc::Status::OK;
}

grpc::Status Admit(grpc::CallbackServerContext* context, const v1::EvaluateModelRequest& request) {
  CallGuard* g = g_guard.load();
  constexpr absl::string_view kMethod = "ingot.v1.QuantizationService/EvaluateModel";
  if (grpc::Status s = Parsed(context, kMethod, request); !s.ok()) return s;
  if (g == nullptr) return grpc::Status::OK;
  if (grpc::Status s = g->AdmitModelUse(context, kMethod, {request.model(), request.reference_model()});
      !s.ok()) {
    return s;
  }
  // A read-only token may evaluate, so what one call may cost is bounded here.
  const int64_t limit = g->config().limits.max_evaluate_tokens;
  if (limit > 0 && request.max_tokens() > limit) {
    return Refused(context, kMethod,
                   absl::ResourceExhaustedError(absl::StrCat(
                       "max_tokens ", request.max_tokens(), " is over limits.max_evaluate_tokens (",
                       limit, ")")));
  }
  return grpc::Status::OK;
}

grpc::Status Admit(grpc::CallbackServerContext* context, const v1::LoadModelRequest& request) {
  CallGuard* g = g_guard.load();
  constexpr absl::string_view kMethod = "ingot.v1.ModelService/LoadModel";
  if (grpc::Status s = Parsed(context, kMethod, request); !s.ok()) return s;
  if (g == nullptr) return grpc::Status::OK;
  // A Hugging Face repository id is resolved in the cache by the engine, whose file
  // checks then hold the snapshot's files (and their blobs) to the roots.
  const bool hub_id = formats::IsHfRepoSource(request.source(), request.revision());
  if (grpc::Status s = hub_id ? grpc::Status::OK : g->AdmitPath(context, kMethod, "source", request.source(), false);
      !s.ok()) {
    return s;
  }
  // Quantize while loading reads a calibration file too: the same check as QuantizeModel.
  return g->AdmitPath(context, kMethod, "quantization.calibration_file",
                      request.quantization().calibration_file(), false);
}

grpc::Status Admit(grpc::CallbackServerContext* context, const v1::QuantizeModelRequest& request) {
  CallGuard* g = g_guard.load();
  if (grpc::Status s = Parsed(context, "ingot.v1.QuantizationService/QuantizeModel", request); !s.ok()) {
    return s;
  }
  return g ? g->AdmitPath(context, "ingot.v1.QuantizationService/QuantizeModel",
                          "config.calibration_file", request.config().calibration_file(),
                          /*for_write=*/false)
           : grpc::Status::OK;
}

grpc::Status AdmitPath(grpc::CallbackServerContext* context, absl::string_view method,
                       absl::string_view field, const std::string& path, bool for_write,
                       const google::protobuf::Message& request) {
  if (grpc::Status s = Parsed(context, method, request); !s.ok()) return s;
  CallGuard* g = g_guard.load();
  return g ? g->AdmitPath(context, method, field, path, for_write) : grpc::Status::OK;
}

grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context,
                                      const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace ingot::server
