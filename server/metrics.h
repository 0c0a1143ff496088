// Every Prometheus metric ingotd exports, in one place. Request metrics are pushed by
// the services when a call ends; gauges that describe the engine (models, devices,
// running requests) and the process are read from a snapshot at scrape time, so they
// can never drift from the engine's own state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/runtime/engine.h"

namespace prometheus {
class Exposer;
class Registry;
template <typename T> class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace ingot::server {

// What the engine looks like right now; filled by the caller at scrape time.
struct EngineSnapshot {
  struct Model {
    std::string name;
    std::string device;
    int64_t bytes_resident = 0;
    std::string state;         // "loading", "ready", "failed", "unloading"
    int running_requests = 0;  // running or queued generations
    int waiting_requests = 0;  // of those, queued or preempted (holding no KV blocks)
    // The paged KV pool and the prefix cache.
    int64_t kv_blocks_total = 0, kv_blocks_used = 0;
    int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0, preemptions = 0;
    // Resident bytes by tensor kind ("embedding", "attention", "mlp", "output",
    // "norm", "kv_cache", "device_weights": a backend's uploaded copies) and the device
    // that holds them (empty: `device`). A model on cuda:N keeps its host tensors on
    // cpu and its placed weights and KV cache on the GPU.
    struct Bytes {
      std::string kind;
      int64_t bytes = 0;
      std::string device;
    };
    std::vector<Bytes> bytes_by_kind;
    // Of the weights, those read in place from the checkpoint's mapping (page cache).
    int64_t file_backed_bytes = 0;
    // ingot_model_info's labels: what a router needs to know the pod serves this model.
    std::string backend, format, quantization, loading_strategy;
  };
  struct Device {
    std::string name;
    int64_t total_bytes = 0;
    int64_t used_bytes = 0;  // held by this server's models
    int64_t free_bytes = 0;  // the OS's / driver's view
    int64_t allocator_allocated_bytes = 0, allocator_reserved_bytes = 0;  // CUDA caching allocator
  };
  std::vector<Model> models;
  std::vector<Device> devices;
  int quantizations_in_flight = 0;
};

// One finished Generate call.
struct RequestRecord {
  std::string model;         // registry name, or "" when no such model exists
  std::string code;          // gRPC code name ("OK", "NOT_FOUND", ...)
  double duration_s = 0;     // arrival to final status
  double ttft_s = -1;        // arrival to first token; < 0 = no token was produced
  double tpot_s = -1;        // mean seconds per output token after the first; < 0 = n/a
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double queue_s = -1;       // waiting for admission (KV blocks, a batch slot); < 0 = n/a
};

class Metrics {
 public:
  explicit Metrics(std::function<EngineSnapshot()> snapshot);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves GET /metrics on `address` ("127.0.0.1:9090"). UNAVAILABLE naming the
  // address when it cannot be bound.
  absl::Status Serve(const std::string& address);
  // The port actually bound (useful with port 0); 0 when not serving.
  int port() const;
  // Stops serving /metrics. Takes about a second (civetweb's threads notice the stop
  // on their poll timeout), so the drain starts it early, beside its last writes.
  void StopServing();

  // Generation requests of both protocols (gRPC Generate and the HTTP API's
  // completions) go to RecordRequest with the gRPC code name of their status.
  void RecordRequest(const RequestRecord& record);
  // One HTTP API request (server/http_server.h), whatever its route:
  // ingot_http_requests_total{route, status}, the HTTP share of the traffic that the
  // request families above count for both protocols.
  void RecordHttpRequest(const std::string& route, int status);
  // One LoadModel attempt that reached the engine; `code` as in RequestRecord.
  void RecordModelLoad(double seconds, const std::string& code);
  // A lifecycle transition (Engine::WatchModels): evictions by reason, load and
  // unload durations.
  void RecordModelEvent(const ModelEvent& event);
  // One QuantizeModel call that reached the engine.
  void RecordQuantization(const std::string& method, double seconds, const std::string& code);

  // The text exposition format of everything, as a scrape would return it.
  std::string Render() const;

 private:
  class Collector;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;

  prometheus::Family<prometheus::Counter>* requests_total_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Family<prometheus::Histogram>* time_to_first_token_;
  prometheus::Family<prometheus::Histogram>* time_per_output_token_;
  prometheus::Family<prometheus::Histogram>* queue_time_;
  prometheus::Family<prometheus::Counter>* prompt_tokens_total_;
  prometheus::Family<prometheus::Counter>* generated_tokens_total_;
  prometheus::Family<prometheus::Counter>* http_requests_total_;
  prometheus::Family<prometheus::Counter>* model_loads_total_;
  prometheus::Family<prometheus::Histogram>* model_load_duration_;
  prometheus::Family<prometheus::Counter>* model_evictions_total_;
  prometheus::Histogram* model_unload_duration_;
  prometheus::Family<prometheus::Counter>* quantizations_total_;
  prometheus::Family<prometheus::Histogram>* quantization_duration_;
};

}  // namespace ingot::server
