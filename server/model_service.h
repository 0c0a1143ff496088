// ingot.v1.ModelService on the gRPC callback API. Loads and saves run as background
// jobs (server/background.h; never on a gRPC thread) and loads stream progress back.
#pragma once

#include <atomic>
#include <functional>
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
#include "server/background.h"
#include "server/metrics.h"

namespace ingot::server {

// Compiled-in features reported by GetServerInfo.
std::vector<std::string> BuildFeatures();

class ModelServiceImpl final : public v1::ModelService::CallbackService {
 public:
  // Loads and saves run as `jobs` (which must outlive the calls' work: main joins it).
  ModelServiceImpl(Engine* engine, Metrics* metrics, BackgroundJobs* jobs, int threads);
  ~ModelServiceImpl() override;

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

  Engine* engine() const { return engine_; }
  Metrics* metrics() const { return metrics_; }
  BackgroundJobs* jobs() const { return jobs_; }

 private:
  Engine* engine_;
  Metrics* metrics_;
  BackgroundJobs* jobs_;
  int threads_;
  int64_t start_time_unix_;
  std::atomic<grpc::HealthCheckServiceInterface*> health_{nullptr};
  int health_watch_ = 0;  // Engine::WatchModels id
};

}  // namespace ingot::server
