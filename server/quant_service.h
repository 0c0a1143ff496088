// ingot.v1.QuantizationService on the gRPC callback API. Quantization and evaluation
// run as background jobs (server/background.h; never on a gRPC thread).
#pragma once

#include "engine/runtime/engine.h"
#include "ingot/v1/quantization.grpc.pb.h"
#include "server/background.h"
#include "server/metrics.h"
#include "server/model_service.h"

namespace ingot::server {

class QuantizationServiceImpl final : public v1::QuantizationService::CallbackService {
 public:
  // `models` publishes the health of the models quantizations make.
  QuantizationServiceImpl(Engine* engine, Metrics* metrics, BackgroundJobs* jobs, ModelServiceImpl* models)
      : engine_(engine), metrics_(metrics), jobs_(jobs), models_(models) {}

  grpc::ServerWriteReactor<v1::QuantizeModelResponse>* QuantizeModel(
      grpc::CallbackServerContext* context, const v1::QuantizeModelRequest* request) override;
  grpc::ServerUnaryReactor* ValidateQuantization(grpc::CallbackServerContext* context,
                                                 const v1::ValidateQuantizationRequest* request,
                                                 v1::ValidateQuantizationResponse* response) override;
  grpc::ServerUnaryReactor* RecommendQuantization(grpc::CallbackServerContext* context,
                                                  const v1::RecommendQuantizationRequest* request,
                                                  v1::RecommendQuantizationResponse* response) override;
  grpc::ServerUnaryReactor* EvaluateModel(grpc::CallbackServerContext* context,
                                          const v1::EvaluateModelRequest* request,
                                          v1::EvaluateModelResponse* response) override;
  grpc::ServerUnaryReactor* ListQuantizationMethods(
      grpc::CallbackServerContext* context, const v1::ListQuantizationMethodsRequest* request,
      v1::ListQuantizationMethodsResponse* response) override;

  Engine* engine() const { return engine_; }
  Metrics* metrics() const { return metrics_; }
  BackgroundJobs* jobs() const { return jobs_; }
  ModelServiceImpl* models() const { return models_; }

 private:
  Engine* engine_;
  Metrics* metrics_;
  BackgroundJobs* jobs_;
  ModelServiceImpl* models_;
};

}  // namespace ingot::server
