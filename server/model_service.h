// ingot.v1.ModelService on the gRPC callback API. Loads run on their own threads
// (never on a gRPC thread) and stream progress back.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/health_check_service_interface.h>

#include "engine/runtime/engine.h"
#include "ingot/v1/model.grpc.pb.h"
#include "server/metrics.h"

namespace ingot::server {

// Compiled-in features reported by GetServerInfo.
std::vector<std::string> BuildFeatures();

class ModelServiceImpl final : public v1::ModelService::CallbackService {
 public:
  ModelServiceImpl(Engine* engine, Metrics* metrics, int threads);
  ~ModelServiceImpl() override;  // joins load threads

  // Set once the gRPC server is built; model names are then published as health
  // services (SERVING while loaded).
  void AttachHealth(grpc::HealthCheckServiceInterface* health);
  void SetModelHealth(const std::string& name, bool serving);

  grpc::ServerWriteReactor<v1::LoadModelResponse>* LoadModel(
      grpc::CallbackServerContext* context, const v1::LoadModelRequest* request) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* SaveModel(grpc::CallbackServerContext* context,
                                      const v1::SaveModelRequest* request,
                                      v1::SaveModelResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const v1::GetModelRequest* request,
                                     v1::GetModelResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;

  grpc::ServerWriteReactor<v1::ModelEvent>* WatchModels(grpc::CallbackServerContext* context,
                                                         const v1::WatchModelsRequest* request) override;
  grpc::ServerUnaryReactor* PlanLoad(grpc::CallbackServerContext* context, const v1::LoadModelRequest* request,
                                     v1::PlanLoadResponse* response) override;

  // limits.max_watch_queue: transitions a WatchModels client may fall behind before
  // its stream ends with RESOURCE_EXHAUSTED; 0 = unbounded. Set before serving.
  void set_max_watch_queue(int64_t n) { max_watch_queue_ = n; }

  Engine* engine() const { return engine_; }
  Metrics* metrics() const { return metrics_; }
  // What a background job makes: a model in this process (load, quantize), which
  // the drain cancels as it starts since the process is about to exit with it; or a
  // result for its caller (evaluate), which may finish until the drain's deadline.
  enum class Job { kModelChange, kResult };
  // Runs `fn` on a new thread owned by the service (joined at destruction). `cancel`
  // (may be null) is the job's cancel flag: CancelBackground() sets it.
  void RunInBackground(std::function<void()> fn, std::shared_ptr<std::atomic<bool>> cancel,
                       Job job);
  // Cancels the background jobs of `kind` (all of them when null), running or started
  // later: the drain has begun, or its deadline is near.
  void CancelBackground(std::optional<Job> kind = std::nullopt);

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    std::shared_ptr<std::atomic<bool>> cancel;
    Job job;
  };

  Engine* engine_;
  Metrics* metrics_;
  int threads_;
  int64_t start_time_unix_;
  std::atomic<grpc::HealthCheckServiceInterface*> health_{nullptr};
  int health_watch_ = 0;  // Engine::WatchModels id
  int64_t max_watch_queue_ = 1024;
  std::mutex workers_mu_;
  std::vector<Worker> workers_;
  std::set<Job> cancelled_;  // guarded by workers_mu_
};

}  // namespace ingot::server
