#include "server/quant_service.h"

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/convert.h"
#include "server/limits.h"
#include "server/status.h"
#include "server/stream_writer.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

using Clock = std::chrono::steady_clock;

// One QuantizeModel call: the engine runs on a service-owned thread and pushes
// progress; a cancelled call (client gone or deadline) cancels the quantization.
class QuantizeReactor final : public QueuedWriter<v1::QuantizeModelResponse> {
 public:
  QuantizeReactor(QuantizationServiceImpl* service, grpc::CallbackServerContext* context,
                  const v1::QuantizeModelRequest& request)
      : service_(service), start_(Clock::now()) {
    absl::StatusOr<quant::QuantizationConfig> config = FromProto(request.config());
    if (request.source().empty()) config = absl::InvalidArgumentError("source: required");
    if (!config.ok()) {
      Close(ToGrpcStatus(config.status()));
      return;
    }
    QuantizeRequest req;
    req.source = request.source();
    req.target = request.target();
    req.config = *std::move(config);
    req.device = request.device();
    req.calibration_text = request.calibration_text();
    peer_ = context->peer();
    service_->jobs()->Run([this, req = std::move(req)] { Run(req); }, cancel_, BackgroundJobs::Job::kModelChange);
  }

  void OnCancel() override { cancel_->store(true); }

 private:
  void OnStreamBroken() override { cancel_->store(true); }

  void Run(const QuantizeRequest& req) {
    spdlog::info("quantize source={} target={} method={} peer={}", req.source, req.target,
                 req.config.method, peer_);
    int32_t last_step = -1;
    std::string last_stage;
    absl::StatusOr<QuantizeResult> result = service_->engine()->QuantizeModel(
        req,
        [&](const quant::QuantizeProgress& p) {
          if (p.step == last_step && p.stage == last_stage) return;
          last_step = p.step;
          last_stage = p.stage;
          v1::QuantizeModelResponse r;
          ToProto(p, r.mutable_progress());
          Push(std::move(r));
        },
        cancel_.get());
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    grpc::Status status = ToGrpcStatus(result.status());
    const quant::MethodRow* row = quant::FindMethod(result.ok() ? result->method_used : req.config.method);
    service_->metrics()->RecordQuantization(row ? row->name : "unknown", seconds,
                                            GrpcCodeName(status.error_code()));
    if (!result.ok()) {
      spdlog::warn("quantize failed source={} code={} error={}", req.source,
                   GrpcCodeName(status.error_code()), status.error_message());
      Close(status);
      return;
    }
    service_->models()->SetModelHealth(result->info.name, true);
    spdlog::info("quantized source={} target={} method={} modules={} bytes {} -> {} seconds={:.2f}",
                 req.source, result->info.name, result->method_used, result->quantized_modules,
                 result->bytes_before, result->bytes_after, result->seconds);
    v1::QuantizeModelResponse last;
    last.mutable_progress()->set_stage("done");
    last.mutable_progress()->set_step(result->quantized_modules);
    last.mutable_progress()->set_total(result->quantized_modules);
    last.mutable_progress()->set_elapsed_seconds(seconds);
    ToProto(result->info, last.mutable_model());
    last.set_method_used(result->method_used);
    last.set_note(result->note);
    last.set_quantized_modules(result->quantized_modules);
    last.set_skipped_modules(result->skipped_modules);
    last.set_bytes_before(result->bytes_before);
    last.set_bytes_after(result->bytes_after);
    last.set_seconds(result->seconds);
    Push(std::move(last));
    Close(grpc::Status::OK);
  }

  QuantizationServiceImpl* service_;
  const Clock::time_point start_;
  std::string peer_;
  // Set by the client's cancel, a broken stream or the drain (BackgroundJobs::Cancel).
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

grpc::ServerWriteReactor<v1::QuantizeModelResponse>* QuantizationServiceImpl::QuantizeModel(
    grpc::CallbackServerContext* context, const v1::QuantizeModelRequest* request) {
  if (grpc::Status s = Admit(context, *request); !s.ok())
    return RefuseStream<v1::QuantizeModelResponse>(s);
  return new QuantizeReactor(this, context, *request);
}

grpc::ServerUnaryReactor* QuantizationServiceImpl::ValidateQuantization(
    grpc::CallbackServerContext* context, const v1::ValidateQuantizationRequest* request,
    v1::ValidateQuantizationResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.QuantizationService/ValidateQuantization", *request); !s.ok())
    return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<quant::QuantizationConfig> config = FromProto(request->config());
  if (!config.ok()) {
    reactor->Finish(ToGrpcStatus(config.status()));
    return reactor;
  }
  absl::StatusOr<std::vector<quant::ConfigProblem>> problems =
      engine_->ValidateQuantization(*config, request->model(), request->device());
  if (problems.ok()) {
    response->set_valid(problems->empty());
    for (const quant::ConfigProblem& p : *problems) ToProto(p, response->add_problems());
  }
  reactor->Finish(ToGrpcStatus(problems.status()));
  return reactor;
}

grpc::ServerUnaryReactor* QuantizationServiceImpl::RecommendQuantization(
    grpc::CallbackServerContext* context, const v1::RecommendQuantizationRequest* request,
    v1::RecommendQuantizationResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.QuantizationService/RecommendQuantization", *request); !s.ok())
    return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::optional<quant::Purpose> purpose;
  switch (request->purpose()) {
    case v1::RECOMMEND_PURPOSE_INFERENCE: purpose = quant::Purpose::kInference; break;
    case v1::RECOMMEND_PURPOSE_FINE_TUNING: purpose = quant::Purpose::kFineTuning; break;
    case v1::RECOMMEND_PURPOSE_MIN_MEMORY: purpose = quant::Purpose::kMinMemory; break;
    case v1::RECOMMEND_PURPOSE_MAX_QUALITY: purpose = quant::Purpose::kMaxQuality; break;
    default: break;
  }
  absl::StatusOr<quant::PresetRecommendation> r = engine_->RecommendQuantization(
      request->model(), request->device(), request->memory_budget_bytes(), purpose);
  if (r.ok()) {
    ToProto(r->recommendation.config, response->mutable_config());
    response->set_estimated_bytes(r->recommendation.estimated_bytes);
    response->set_why(r->recommendation.why);
    response->set_preset(r->preset);
    for (const std::string& step : r->steps) response->add_steps(step);
  }
  reactor->Finish(ToGrpcStatus(r.status()));
  return reactor;
}

grpc::ServerUnaryReactor* QuantizationServiceImpl::EvaluateModel(
    grpc::CallbackServerContext* context, const v1::EvaluateModelRequest* request,
    v1::EvaluateModelResponse* response) {
  if (grpc::Status s = Admit(context, *request); !s.ok()) return RefuseUnary(context, s);
  if (request->model().empty()) {
    return RefuseUnary(context, ToGrpcStatus(absl::InvalidArgumentError("model: required")));
  }
  EvaluateRequest req;
  req.model = request->model();
  req.text = request->text();
  req.context_length = request->context_length() > 0 ? request->context_length() : 512;
  req.max_tokens = request->max_tokens();
  req.reference_model = request->reference_model();
  // Admit refused more than limits.max_evaluate_tokens; "the whole text" stops there.
  const ServerConfig* config = InstalledConfig();
  const int64_t limit = config ? config->limits.max_evaluate_tokens : 0;
  if (limit > 0 && req.max_tokens == 0) req.max_tokens = static_cast<int32_t>(limit);
  // Evaluation takes seconds to minutes: the client's cancel, its deadline or the drain
  // stop it within one batch of tokens.
  return new BackgroundUnaryReactor(jobs(), [engine = engine_, req = std::move(req), response](
                                                  const std::atomic<bool>* cancel) {
    absl::StatusOr<EvaluateResult> r = engine->EvaluateModel(req, cancel);
    if (r.ok()) ToProto(*r, response);
    return r.status();
  });
}

grpc::ServerUnaryReactor* QuantizationServiceImpl::ListQuantizationMethods(
    grpc::CallbackServerContext* context, const v1::ListQuantizationMethodsRequest* request,
    v1::ListQuantizationMethodsResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.QuantizationService/ListQuantizationMethods", *request); !s.ok())
    return RefuseUnary(context, s);
  for (const quant::MethodRow& row : quant::MethodTable()) ToProto(row, response->add_methods());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace ingot::server
