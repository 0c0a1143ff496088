#include "server/model_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/quant_dot.h"
#include "server/convert.h"
#include "server/limits.h"
#include "server/status.h"
#include "server/stream_writer.h"
#include "spdlog/spdlog.h"

#ifndef INGOT_VERSION
#define INGOT_VERSION "0.0.0"
#endif

namespace ingot::server {
namespace {

using Clock = std::chrono::steady_clock;

// A progress message at most every 1% of the load (or on a stage change); the
// engine may report every tensor.
constexpr double kProgressStep = 0.01;

// One LoadModel call: the engine load runs on a service-owned thread, which pushes
// progress and closes the stream as its last act. A client's cancel does not stop the
// load (the model stays registered, as documented in model.proto); the drain does
// (BackgroundJobs::Cancel), so shutdown never waits on a load.
class LoadReactor final : public QueuedWriter<v1::LoadModelResponse> {
 public:
  LoadReactor(ModelServiceImpl* service, grpc::CallbackServerContext* context,
              const v1::LoadModelRequest& request)
      : service_(service), start_(Clock::now()) {
    peer_ = context->peer();
    absl::StatusOr<LoadRequest> converted = FromProto(request);
    if (!converted.ok()) {
      name_ = request.name();
      Close(ToGrpcStatus(converted.status()));
      return;
    }
    name_ = converted->name;
    source_ = converted->source;
    service_->jobs()->Run([this, req = *std::move(converted)] { Run(req); }, cancel_,
                              BackgroundJobs::Job::kModelChange);
  }

 private:
  double Elapsed() const {
    return std::chrono::duration<double>(Clock::now() - start_).count();
  }

  void Run(const LoadRequest& request) {
    spdlog::info("load name={} source={} device={} peer={}", request.name, request.source,
                 request.device, peer_);
    absl::StatusOr<ModelInfo> info = service_->engine()->LoadModel(
        request, [this](const LoadProgress& p) { OnProgress(p); }, cancel_.get());
    const double seconds = Elapsed();
    grpc::Status status = ToGrpcStatus(info.status());
    service_->metrics()->RecordModelLoad(seconds, GrpcCodeName(status.error_code()));
    if (!info.ok()) {
      spdlog::warn("load failed name={} source={} seconds={:.3f} code={} error={}",
                   request.name, request.source, seconds, GrpcCodeName(status.error_code()),
                   status.error_message());
      Close(status);
      return;
    }
    service_->SetModelHealth(info->name, true);
    spdlog::info("loaded name={} device={} params={} bytes_resident={} context={} seconds={:.3f}",
                 info->name, info->device, info->parameter_count, info->bytes_resident,
                 info->context_length, seconds);
    v1::LoadModelResponse last;
    last.mutable_progress()->set_stage("ready");
    last.mutable_progress()->set_fraction(1.0);
    last.set_elapsed_seconds(seconds);
    ToProto(*info, last.mutable_model());
    Push(std::move(last));
    Close(grpc::Status::OK);
  }

  // Called on the load thread only.
  void OnProgress(const LoadProgress& progress) {
    if (progress.stage == last_stage_ && progress.fraction < last_fraction_ + kProgressStep &&
        progress.fraction < 1.0) {
      return;
    }
    last_stage_ = progress.stage;
    last_fraction_ = progress.fraction;
    v1::LoadModelResponse response;
    ToProto(progress, response.mutable_progress());
    response.set_elapsed_seconds(Elapsed());
    Push(std::move(response));
  }

  ModelServiceImpl* service_;
  const Clock::time_point start_;
  std::string peer_;
  std::string name_;
  std::string source_;
  std::string last_stage_;
  double last_fraction_ = -1;
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
};

// One WatchModels call: the snapshot, then every transition the engine reports, until
// the client cancels or the server shuts down. The engine calls the sink under its
// registry lock, so the subscription ends (StopWatching) before the reactor can go.
class WatchReactor final : public QueuedWriter<v1::ModelEvent> {
 public:
  explicit WatchReactor(Engine* engine) : engine_(engine) {
    std::vector<ModelInfo> snapshot;
    std::lock_guard lock(mu_);
    id_ = engine_->WatchModels([this](const ModelEvent& e) { OnEvent(e); }, &snapshot);
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const ModelInfo& m : snapshot) {
      v1::ModelEvent event;
      event.set_time_unix_seconds(now);
      event.set_name(m.name);
      event.set_device(m.device);
      event.set_state(ToProto(m.state));
      event.set_bytes(m.bytes_resident);
      event.set_error(SanitizeUtf8(m.error));
      event.set_snapshot(true);
      ToProto(m, event.mutable_model());
      Push(std::move(event));
    }
    for (v1::ModelEvent& e : pending_) Push(std::move(e));
    pending_.clear();
    started_ = true;
  }

 private:
  void OnEvent(const ModelEvent& e) {
    v1::ModelEvent event;
    ToProto(e, &event);
    std::lock_guard lock(mu_);
    if (started_) {
      Push(std::move(event));
    } else {
      pending_.push_back(std::move(event));
    }
  }
  void Stop() {
    if (!stopped_.exchange(true)) engine_->StopWatching(id_);
  }
  void OnCancel() override {
    Stop();
    Close(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }
  void OnStreamBroken() override { Stop(); }

  Engine* engine_;
  std::mutex mu_;
  int id_ = 0;
  bool started_ = false;  // the snapshot is queued; events go straight out
  std::vector<v1::ModelEvent> pending_;
  std::atomic<bool> stopped_{false};
};


}  // namespace

std::vector<std::string> BuildFeatures() {
  std::vector<std::string> features = {"cpu", "gguf", "chat-template", "grpc-health",
                                       "grpc-reflection", "prometheus"};
  // What the kernels chose at run time on this CPU (kernels/cpu/qmatrix.h, quant_dot.h),
  // not what the compiler was told: the build targets baseline x86-64 and dispatches.
  if (std::string(kernels::LinearImplementation()) == "avx2" &&
      std::string(kernels::DotImplementation()) == "avx2") {
    features.push_back("avx2");
  }
#if defined(__AVX512F__)
  features.push_back("avx512f");
#endif
  for (const kernels::Backend* b : kernels::Backends()) features.push_back(std::string("backend:") + b->name);
  if (kernels::BuiltWithCuda()) features.push_back("cuda");
  return features;
}

ModelServiceImpl::ModelServiceImpl(Engine* engine, Metrics* metrics, BackgroundJobs* jobs, int threads)
    : engine_(engine),
      metrics_(metrics),
      jobs_(jobs),
      threads_(threads),
      start_time_unix_(std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count()) {
  // Health per model follows its state: SERVING once ready, NOT_SERVING from the
  // moment it unloads or fails (a GONE event may come after the name was loaded again).
  health_watch_ = engine_->WatchModels(
      [this](const ModelEvent& e) {
        if (e.state == ModelState::kReady) SetModelHealth(e.name, true);
        if (e.state == ModelState::kUnloading || e.state == ModelState::kFailed) SetModelHealth(e.name, false);
        // Unloads nobody asked for are logged here; requested ones by their handler.
        if (e.state == ModelState::kUnloading && e.reason != kReasonUnloadRequest) {
          spdlog::info("evicted name={} device={} bytes={} reason={}", e.name, e.device, e.bytes, e.reason);
        }
      },
      nullptr);
}

ModelServiceImpl::~ModelServiceImpl() { engine_->StopWatching(health_watch_); }

void ModelServiceImpl::AttachHealth(grpc::HealthCheckServiceInterface* health) {
  health_.store(health);
  if (health == nullptr) return;
  for (const ModelInfo& m : engine_->ListModels()) health->SetServingStatus(m.name, m.state == ModelState::kReady);
}

void ModelServiceImpl::SetModelHealth(const std::string& name, bool serving) {
  if (grpc::HealthCheckServiceInterface* h = health_.load()) h->SetServingStatus(name, serving);
}

grpc::ServerWriteReactor<v1::LoadModelResponse>* ModelServiceImpl::LoadModel(
    grpc::CallbackServerContext* context, const v1::LoadModelRequest* request) {
  if (grpc::Status s = Admit(context, *request); !s.ok())
    return RefuseStream<v1::LoadModelResponse>(s);
  return new LoadReactor(this, context, *request);
}

grpc::ServerUnaryReactor* ModelServiceImpl::UnloadModel(grpc::CallbackServerContext* context,
                                                        const v1::UnloadModelRequest* request,
                                                        v1::UnloadModelResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.ModelService/UnloadModel", *request); !s.ok())
    return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->name().empty()) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("name: required")));
    return reactor;
  }
  const int running = engine_->RunningRequests(request->name());
  absl::Status status = engine_->UnloadModel(request->name());
  if (status.ok()) {
    SetModelHealth(request->name(), false);
    response->set_running_requests(running);
    spdlog::info("unload name={} running_requests={} peer={}", request->name(), running,
                 context->peer());
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* ModelServiceImpl::SaveModel(grpc::CallbackServerContext* context,
                                                      const v1::SaveModelRequest* request,
                                                      v1::SaveModelResponse* response) {
  if (grpc::Status s = AdmitPath(context, "ingot.v1.ModelService/SaveModel", "path", request->path(),
                                 /*for_write=*/true, *request);
      !s.ok())
    return RefuseUnary(context, s);
  if (request->name().empty())
    return RefuseUnary(context, ToGrpcStatus(absl::InvalidArgumentError("name: required")));
  const std::string format = request->format().empty() ? "gguf" : request->format();
  SaveRequest save;
  save.name = request->name();
  save.path = request->path();
  save.format = format;
  save.overwrite = request->overwrite();
  save.evaluate = request->evaluate();
  if (request->evaluate_tokens() > 0) save.evaluate_tokens = request->evaluate_tokens();
  for (int i = 0; i < request->variants_size(); ++i) {
    const v1::SaveVariant& v = request->variants(i);
    absl::StatusOr<quant::QuantizationConfig> config = FromProto(v.config());
    if (!config.ok()) {
      return RefuseUnary(context, ToGrpcStatus(absl::InvalidArgumentError(
                                      absl::StrCat("variants[", i, "].", config.status().message()))));
    }
    save.variants.push_back({v.name(), *std::move(config), v.format()});
  }
  // Saving runs on a background thread, as evaluation does: a variant is quantized here
  // (minutes for GPTQ/AWQ on a large model) and evaluated if asked, and the callback
  // threads must stay free for other calls. A cancelled call (client gone, deadline,
  // drain) stops the quantization or evaluation between layers.
  return new BackgroundUnaryReactor(
      jobs_, [engine = engine_, save = std::move(save), peer = context->peer(), response](const std::atomic<bool>* cancel) {
        const auto start = std::chrono::steady_clock::now();
        absl::StatusOr<SaveResult> saved = engine->SaveModel(save, cancel);
        if (!saved.ok()) return saved.status();
        response->set_path(save.path);
        response->set_format(save.format);
        response->set_bytes(saved->bytes);
        for (const std::string& d : saved->directories) response->add_directories(d);
        response->set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        spdlog::info("save name={} path={} format={} variants={} bytes={} peer={}", save.name, save.path, save.format,
                     save.variants.size(), saved->bytes, peer);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* ModelServiceImpl::ListModels(grpc::CallbackServerContext* context,
                                                       const v1::ListModelsRequest* request,
                                                       v1::ListModelsResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.ModelService/ListModels", *request); !s.ok())
    return RefuseUnary(context, s);
  std::vector<ModelInfo> models = engine_->ListModels();
  std::sort(models.begin(), models.end(),
            [](const ModelInfo& a, const ModelInfo& b) { return a.name < b.name; });
  for (const ModelInfo& m : models) ToProto(m, response->add_models());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ModelServiceImpl::GetModel(grpc::CallbackServerContext* context,
                                                     const v1::GetModelRequest* request,
                                                     v1::GetModelResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.ModelService/GetModel", *request); !s.ok())
    return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->name().empty()) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("name: required")));
    return reactor;
  }
  absl::StatusOr<ModelInfo> info = engine_->GetModel(request->name());
  if (info.ok()) ToProto(*info, response->mutable_model());
  reactor->Finish(ToGrpcStatus(info.status()));
  return reactor;
}

grpc::ServerWriteReactor<v1::ModelEvent>* ModelServiceImpl::WatchModels(
    grpc::CallbackServerContext* context, const v1::WatchModelsRequest* request) {
  if (grpc::Status s = Admit(context, "ingot.v1.ModelService/WatchModels", *request); !s.ok())
    return RefuseStream<v1::ModelEvent>(s);
  return new WatchReactor(engine_);
}

grpc::ServerUnaryReactor* ModelServiceImpl::PlanLoad(grpc::CallbackServerContext* context,
                                                     const v1::LoadModelRequest* request,
                                                     v1::PlanLoadResponse* response) {
  // The same admission as LoadModel: token and the source inside the model roots.
  if (grpc::Status s = Admit(context, *request); !s.ok()) return RefuseUnary(context, s);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<LoadRequest> converted = FromProto(*request);
  if (!converted.ok()) {
    reactor->Finish(ToGrpcStatus(converted.status()));
    return reactor;
  }
  // Headers and a mapping only: milliseconds, so it runs on the callback thread.
  absl::StatusOr<LoadPlan> plan = engine_->PlanLoad(*converted);
  if (plan.ok()) ToProto(*plan, response);
  reactor->Finish(ToGrpcStatus(plan.status()));
  return reactor;
}

grpc::ServerUnaryReactor* ModelServiceImpl::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* request,
    v1::GetServerInfoResponse* response) {
  if (grpc::Status s = Admit(context, "ingot.v1.ModelService/GetServerInfo", *request); !s.ok())
    return RefuseUnary(context, s);
  response->set_version(INGOT_VERSION);
  for (const std::string& f : BuildFeatures()) response->add_features(f);
  for (const DeviceInfo& d : engine_->Devices()) ToProto(d, response->add_devices());
  response->set_threads(threads_);
  response->set_start_time_unix_seconds(start_time_unix_);
  response->set_models_loaded(static_cast<int32_t>(engine_->ListModels().size()));
  for (const quant::MethodRow& row : quant::MethodTable()) ToProto(row, response->add_quantization_methods());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace ingot::server
