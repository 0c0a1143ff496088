#include "server/model_keeper.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/runtime/engine.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/status.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

ModelKeeper::ModelKeeper(Engine* engine, Metrics* metrics, std::vector<ModelConfig> models)
    : engine_(engine), metrics_(metrics), models_(std::move(models)) {}

ModelKeeper::~ModelKeeper() = default;

const ModelConfig* ModelKeeper::Find(const std::string& name) const {
  for (const ModelConfig& m : models_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

void ModelKeeper::SetHealthHook(std::function<void(const std::string&, bool)> hook) {
  std::lock_guard lock(mu_);
  health_hook_ = std::move(hook);
}

absl::Status ModelKeeper::LoadOne(const ModelConfig& m) {
  LoadRequest request;
  request.name = m.name;
  request.source = m.source;
  request.revision = m.revision;
  request.format = m.format;
  request.device = m.device;
  request.backend = m.backend;
  request.context_length = m.context_length;
  request.kv_cache_bytes = m.kv_cache_bytes;
  request.kv_cache_dtype = m.kv_cache_dtype;
  request.max_sequences = m.max_sequences;
  request.prefix_cache = m.prefix_cache;
  request.pinned = m.pinned;
  request.keep_alive_s = m.keep_alive_s;
  RETURN_IF_ERROR(ApplyLoadingConfig(m.loading, &request));
  const auto start = Clock::now();
  absl::StatusOr<ModelInfo> info = engine_->LoadModel(request, [](const LoadProgress&) {});
  const double load_s = SecondsSince(start);
  metrics_->RecordModelLoad(load_s, GrpcCodeName(ToGrpcStatus(info.status()).error_code()));
  if (!info.ok()) {
    return absl::Status(info.status().code(), absl::StrCat(m.origin, " (", m.name, " from ",
                                                           m.source, "): ", info.status().message()));
  }
  spdlog::info("loaded name={} source={} device={} params={} bytes_resident={} context={} "
               "pinned={} keep_alive_s={} seconds={:.3f}", info->name, info->source, info->device,
               info->parameter_count, info->bytes_resident, info->context_length, m.pinned,
               m.keep_alive_s, load_s);
  if (m.quantization) {
    QuantizeRequest q;
    q.source = m.name;  // in place
    q.config = *m.quantization;
    const auto qstart = Clock::now();
    absl::StatusOr<QuantizeResult> result =
        engine_->QuantizeModel(q, [](const quant::QuantizeProgress&) {}, nullptr);
    const double quant_s = SecondsSince(qstart);
    const quant::MethodRow* row =
        quant::FindMethod(result.ok() ? result->method_used : q.config.method);
    metrics_->RecordQuantization(row ? row->name : "unknown", quant_s,
                                 GrpcCodeName(ToGrpcStatus(result.status()).error_code()));
    if (!result.ok()) {
      (void)engine_->UnloadModel(m.name);  // a model that is not as configured is not served
      return absl::Status(result.status().code(),
                          absl::StrCat(m.origin, ".quantization (", m.name,
                                       "): ", result.status().message()));
    }
    spdlog::info("quantized name={} method={} bytes {} -> {} seconds={:.2f}{}{}", m.name,
                 result->method_used, result->bytes_before, result->bytes_after, quant_s,
                 result->note.empty() ? "" : " note=", result->note);
  }
  std::function<void(const std::string&, bool)> hook;
  {
    std::lock_guard lock(mu_);
    hook = health_hook_;
  }
  if (hook) hook(m.name, true);
  return absl::OkStatus();
}

absl::Status ModelKeeper::LoadAll() {
  for (const ModelConfig& m : models_) RETURN_IF_ERROR(LoadOne(m));
  return absl::OkStatus();
}

absl::Status ModelKeeper::EnsureLoaded(const std::string& model) {
  const ModelConfig* m = Find(model);
  if (m == nullptr || m->pinned) return absl::OkStatus();
  std::unique_lock lock(mu_);
  while (true) {
    // Loaded or loading; a FAILED entry (a failed reload) is retried by this request.
    absl::StatusOr<ModelInfo> info = engine_->GetModel(model);
    if (info.ok() && info->state != ModelState::kFailed) return absl::OkStatus();
    if (!loading_.count(model)) break;
    cv_.wait(lock);  // another request is loading it
  }
  loading_.insert(model);
  lock.unlock();
  spdlog::info("keep_alive: loading name={} again for a request", model);
  absl::Status s = LoadOne(*m);
  lock.lock();
  loading_.erase(model);
  cv_.notify_all();
  return s;
}

}  // namespace ingot::server
