// ingot.v1.GenerationService on the gRPC callback API.
#pragma once

#include <atomic>
#include <cstdint>

#include "engine/runtime/engine.h"
#include "ingot/v1/generation.grpc.pb.h"
#include "server/metrics.h"

namespace ingot::server {

class GenerationServiceImpl final : public v1::GenerationService::CallbackService {
 public:
  GenerationServiceImpl(Engine* engine, Metrics* metrics) : engine_(engine), metrics_(metrics) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;

  Engine* engine() const { return engine_; }
  Metrics* metrics() const { return metrics_; }
  // "g-<server start>-<n>": unique per server run, sortable.
  std::string NextRequestId();

 private:
  Engine* engine_;
  Metrics* metrics_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace ingot::server
