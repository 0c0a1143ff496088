#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace ingot::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Request latency on a 2-core CPU ranges from ~50 ms (a few tokens) to minutes.
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320};
// Time to first token: queueing plus prefill of up to a few thousand tokens.
const prometheus::Histogram::BucketBoundaries kFirstTokenBuckets = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
// Per output token: 1 ms (small model, GPU) to 1 s (large model, CPU, big batch).
const prometheus::Histogram::BucketBoundaries kPerTokenBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
// Loading: a 100 MB GGUF takes well under a second, a 15 GB one minutes.
const prometheus::Histogram::BucketBoundaries kLoadBuckets = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

ClientMetric Sample(double value, std::vector<ClientMetric::Label> labels, MetricType type) {
  ClientMetric m;
  m.label = std::move(labels);
  std::sort(m.label.begin(), m.label.end());  // as the registry's own families print them
  if (type == MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  return m;
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

// Process start in seconds since the epoch: boot time (/proc/stat btime) plus the
// process's start in clock ticks after boot (/proc/self/stat field 22).
double ProcessStartTime() {
  double btime = 0;
  {
    std::ifstream in("/proc/stat");
    std::string key;
    while (in >> key) {
      if (key == "btime") { in >> btime; break; }
      in.ignore(1 << 20, '\n');
    }
  }
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may contain spaces.
  size_t close = stat.rfind(')');
  if (btime == 0 || close == std::string::npos) {
    return std::chrono::duration<double>(
        std::chrono::system_clock::now().time_since_epoch()).count();
  }
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {}
  return btime + std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int CountOpenFds() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(dir);
    --n;  // the descriptor opendir itself holds
  }
  return n;
}

}  // namespace

// Builds the engine and process gauges at scrape time.
class Metrics::Collector : public prometheus::Collectable {
 public:
  explicit Collector(std::function<EngineSnapshot()> snapshot)
      : snapshot_(std::move(snapshot)), start_time_(ProcessStartTime()) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    EngineSnapshot snap = snapshot_ ? snapshot_() : EngineSnapshot{};

    MetricFamily running = Family("ingot_requests_running",
        "Generate requests running or queued, by model.", MetricType::Gauge);
    MetricFamily model_bytes = Family("ingot_model_memory_bytes",
        "Bytes a model holds, by device and tensor kind (embedding, attention, mlp, "
        "output, norm, kv_cache, device_weights); sum by model for the total.", MetricType::Gauge);
    MetricFamily waiting = Family("ingot_requests_waiting",
        "Generate requests waiting for admission (queued, or preempted to free KV blocks), by model; "
        "included in ingot_requests_running.", MetricType::Gauge);
    MetricFamily kv_usage = Family("ingot_kv_cache_usage_ratio",
        "Fraction of a model's KV pool blocks held by running sequences.", MetricType::Gauge);
    MetricFamily prefix_queries = Family("ingot_prefix_cache_queries_tokens_total",
        "Prompt tokens looked up in the prefix cache (admissions, recomputations included).", MetricType::Counter);
    MetricFamily prefix_hits = Family("ingot_prefix_cache_hit_tokens_total",
        "Prompt tokens whose keys and values came from the prefix cache (not computed).", MetricType::Counter);
    MetricFamily states = Family("ingot_model_state",
        "1 for a registered model's lifecycle state (loading, ready, failed), by model and device.", MetricType::Gauge);
    MetricFamily preemptions = Family("ingot_kv_preemptions_total",
        "Running sequences that gave their KV blocks back to make room (recomputed later).", MetricType::Counter);
    MetricFamily file_backed = Family("ingot_model_file_backed_bytes",
        "Of a model's weights, the bytes read in place from its checkpoint's mapping (page cache, shared "
        "with other readers of the file; loading_strategy unified_memory or streaming).", MetricType::Gauge);
    MetricFamily info = Family("ingot_model_info",
        "1 for every model this server serves (ready), by model, device, backend, format, quantization and "
        "loading_strategy: the served-models list for dashboards and routers.", MetricType::Gauge);
    std::vector<std::string> serving, loading;
    for (const EngineSnapshot::Model& m : snap.models) {
      if (m.state == "loading") loading.push_back(m.name);
      if (m.state == "ready") {
        serving.push_back(m.name);
        info.metric.push_back(Sample(1, {{"model", m.name}, {"device", m.device}, {"backend", m.backend},
                                         {"format", m.format}, {"quantization", m.quantization},
                                         {"loading_strategy", m.loading_strategy}},
                                     MetricType::Gauge));
        file_backed.metric.push_back(Sample(static_cast<double>(m.file_backed_bytes),
                                            {{"model", m.name}, {"device", "cpu"}}, MetricType::Gauge));
      }
      running.metric.push_back(Sample(m.running_requests, {{"model", m.name}},
                                      MetricType::Gauge));
      waiting.metric.push_back(Sample(m.waiting_requests, {{"model", m.name}}, MetricType::Gauge));
      if (!m.state.empty()) {
        states.metric.push_back(
            Sample(1, {{"model", m.name}, {"device", m.device}, {"state", m.state}}, MetricType::Gauge));
      }
      if (m.kv_blocks_total > 0) {
        kv_usage.metric.push_back(Sample(static_cast<double>(m.kv_blocks_used) / m.kv_blocks_total,
                                         {{"model", m.name}}, MetricType::Gauge));
        prefix_queries.metric.push_back(
            Sample(static_cast<double>(m.prefix_query_tokens), {{"model", m.name}}, MetricType::Counter));
        prefix_hits.metric.push_back(
            Sample(static_cast<double>(m.prefix_hit_tokens), {{"model", m.name}}, MetricType::Counter));
        preemptions.metric.push_back(
            Sample(static_cast<double>(m.preemptions), {{"model", m.name}}, MetricType::Counter));
      }
      for (const EngineSnapshot::Model::Bytes& b : m.bytes_by_kind) {
        model_bytes.metric.push_back(Sample(static_cast<double>(b.bytes),
            {{"model", m.name}, {"device", b.device.empty() ? m.device : b.device}, {"kind", b.kind}},
            MetricType::Gauge));
      }
    }
    // vLLM's vllm:lora_requests_info shape, which the Gateway API Inference Extension's
    // endpoint picker reads (--lora-info-metric): its LoRA-affinity scorer sends a
    // request to a pod whose running_lora_adapters name the request's model. Here every
    // served model is such a name (ingot has no adapters; a model is what a request
    // names). max_lora is the served count: ingot loads nothing on a request's demand,
    // so a pod has no free slot for a model it does not serve. The value is the scrape
    // time: the picker reads the newest series.
    MetricFamily lora_info = Family("ingot_lora_requests_info",
        "The served models in the shape of vLLM's vllm:lora_requests_info for the Gateway API Inference "
        "Extension's endpoint picker: running_lora_adapters = models ready, waiting_lora_adapters = models "
        "loading, max_lora = the count ready; the value is the scrape's Unix time.", MetricType::Gauge);
    std::sort(serving.begin(), serving.end());
    std::sort(loading.begin(), loading.end());
    lora_info.metric.push_back(
        Sample(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(),
               {{"running_lora_adapters", absl::StrJoin(serving, ",")},
                {"waiting_lora_adapters", absl::StrJoin(loading, ",")},
                {"max_lora", std::to_string(serving.size())}},
               MetricType::Gauge));
    out.push_back(std::move(lora_info));
    MetricFamily quantizing = Family("ingot_quantizations_in_flight",
        "QuantizeModel calls running now.", MetricType::Gauge);
    quantizing.metric.push_back(Sample(snap.quantizations_in_flight, {}, MetricType::Gauge));
    out.push_back(std::move(quantizing));
    MetricFamily device_used = Family("ingot_device_memory_used_bytes",
        "Bytes held by this server's models on a device.", MetricType::Gauge);
    MetricFamily device_total = Family("ingot_device_memory_total_bytes",
        "Physical memory of a device.", MetricType::Gauge);
    MetricFamily device_free = Family("ingot_device_memory_free_bytes",
        "Memory free on a device (MemAvailable on cpu, the driver's free memory on CUDA).", MetricType::Gauge);
    MetricFamily device_alloc = Family("ingot_device_memory_allocator_bytes",
        "CUDA caching allocator: bytes allocated to tensors and reserved from the driver.", MetricType::Gauge);
    for (const EngineSnapshot::Device& d : snap.devices) {
      device_free.metric.push_back(Sample(static_cast<double>(d.free_bytes), {{"device", d.name}}, MetricType::Gauge));
      if (d.name.rfind("cuda", 0) == 0) {
        device_alloc.metric.push_back(Sample(static_cast<double>(d.allocator_allocated_bytes),
                                             {{"device", d.name}, {"state", "allocated"}}, MetricType::Gauge));
        device_alloc.metric.push_back(Sample(static_cast<double>(d.allocator_reserved_bytes),
                                             {{"device", d.name}, {"state", "reserved"}}, MetricType::Gauge));
      }
      device_used.metric.push_back(Sample(static_cast<double>(d.used_bytes),
          {{"device", d.name}}, MetricType::Gauge));
      device_total.metric.push_back(Sample(static_cast<double>(d.total_bytes),
          {{"device", d.name}}, MetricType::Gauge));
    }
    for (MetricFamily* f : {&running, &waiting, &states, &kv_usage, &prefix_queries, &prefix_hits, &preemptions, &model_bytes,
                            &info, &file_backed,
                            &device_used, &device_total, &device_free, &device_alloc}) {
      if (!f->metric.empty()) out.push_back(std::move(*f));
    }

    // Standard process metrics (names as the Prometheus client libraries use).
    long page = sysconf(_SC_PAGESIZE);
    long long vm_pages = 0, rss_pages = 0;
    if (std::ifstream statm("/proc/self/statm"); statm) statm >> vm_pages >> rss_pages;
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                 (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;

    MetricFamily f = Family("process_resident_memory_bytes",
        "Resident memory size in bytes.", MetricType::Gauge);
    f.metric.push_back(Sample(static_cast<double>(rss_pages) * page, {}, MetricType::Gauge));
    out.push_back(std::move(f));
    f = Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
               MetricType::Gauge);
    f.metric.push_back(Sample(static_cast<double>(vm_pages) * page, {}, MetricType::Gauge));
    out.push_back(std::move(f));
    f = Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               MetricType::Counter);
    f.metric.push_back(Sample(cpu, {}, MetricType::Counter));
    out.push_back(std::move(f));
    f = Family("process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", MetricType::Gauge);
    f.metric.push_back(Sample(start_time_, {}, MetricType::Gauge));
    out.push_back(std::move(f));
    f = Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
    f.metric.push_back(Sample(CountOpenFds(), {}, MetricType::Gauge));
    out.push_back(std::move(f));
    return out;
  }

 private:
  std::function<EngineSnapshot()> snapshot_;
  double start_time_;
};

Metrics::Metrics(std::function<EngineSnapshot()> snapshot)
    : registry_(std::make_shared<prometheus::Registry>()),
      collector_(std::make_shared<Collector>(std::move(snapshot))) {
  requests_total_ = &prometheus::BuildCounter()
      .Name("ingot_requests_total")
      .Help("Generation requests (gRPC Generate and HTTP completions) by model and final gRPC "
            "status code.")
      .Register(*registry_);
  http_requests_total_ = &prometheus::BuildCounter()
      .Name("ingot_http_requests_total")
      .Help("HTTP API requests by route and HTTP status.")
      .Register(*registry_);
  request_duration_ = &prometheus::BuildHistogram()
      .Name("ingot_request_duration_seconds")
      .Help("Generate request latency, arrival to final status, by model.")
      .Register(*registry_);
  time_to_first_token_ = &prometheus::BuildHistogram()
      .Name("ingot_time_to_first_token_seconds")
      .Help("Seconds from a Generate request's arrival to its first token, by model.")
      .Register(*registry_);
  time_per_output_token_ = &prometheus::BuildHistogram()
      .Name("ingot_time_per_output_token_seconds")
      .Help("Mean seconds per generated token after the first, per request, by model.")
      .Register(*registry_);
  queue_time_ = &prometheus::BuildHistogram()
      .Name("ingot_request_queue_seconds")
      .Help("Seconds a Generate request waited for admission (a batch slot and its prompt's KV blocks), by model.")
      .Register(*registry_);
  prompt_tokens_total_ = &prometheus::BuildCounter()
      .Name("ingot_prompt_tokens_total")
      .Help("Prompt tokens processed, by model.")
      .Register(*registry_);
  generated_tokens_total_ = &prometheus::BuildCounter()
      .Name("ingot_generated_tokens_total")
      .Help("Tokens generated, by model.")
      .Register(*registry_);
  model_loads_total_ = &prometheus::BuildCounter()
      .Name("ingot_model_loads_total")
      .Help("LoadModel attempts by final gRPC status code.")
      .Register(*registry_);
  model_load_duration_ = &prometheus::BuildHistogram()
      .Name("ingot_model_load_duration_seconds")
      .Help("Seconds to load a model (reserved to ready), for loads that succeeded, by model and device.")
      .Register(*registry_);
  model_evictions_total_ = &prometheus::BuildCounter()
      .Name("ingot_model_evictions_total")
      .Help("Models (or, for replaced, a model's previous weights) that left memory, by model, device and reason: "
            "idle_timeout, memory_pressure, unload_request, load_failed, replaced.")
      .Register(*registry_);
  model_unload_duration_ = &prometheus::BuildHistogram()
      .Name("ingot_model_unload_duration_seconds")
      .Help("Seconds from a model's unload (any reason) to its memory being freed: its streams' drain plus the free.")
      .Register(*registry_)
      .Add({}, kLoadBuckets);
  quantizations_total_ = &prometheus::BuildCounter()
      .Name("ingot_quantizations_total")
      .Help("QuantizeModel calls by method and final gRPC status code.")
      .Register(*registry_);
  quantization_duration_ = &prometheus::BuildHistogram()
      .Name("ingot_quantization_duration_seconds")
      .Help("Seconds to quantize a model, by method, for runs that succeeded.")
      .Register(*registry_);
}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(collector_);
  return absl::OkStatus();
}

void Metrics::StopServing() { exposer_.reset(); }

int Metrics::port() const {
  if (!exposer_) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::RecordRequest(const RequestRecord& r) {
  const std::string model = r.model.empty() ? "_unknown" : r.model;
  requests_total_->Add({{"model", model}, {"code", r.code}}).Increment();
  request_duration_->Add({{"model", model}}, kRequestBuckets).Observe(r.duration_s);
  if (r.ttft_s >= 0) {
    time_to_first_token_->Add({{"model", model}}, kFirstTokenBuckets).Observe(r.ttft_s);
  }
  if (r.tpot_s >= 0) {
    time_per_output_token_->Add({{"model", model}}, kPerTokenBuckets).Observe(r.tpot_s);
  }
  if (r.queue_s >= 0) queue_time_->Add({{"model", model}}, kFirstTokenBuckets).Observe(r.queue_s);
  if (r.prompt_tokens > 0) {
    prompt_tokens_total_->Add({{"model", model}}).Increment(static_cast<double>(r.prompt_tokens));
  }
  if (r.completion_tokens > 0) {
    generated_tokens_total_->Add({{"model", model}})
        .Increment(static_cast<double>(r.completion_tokens));
  }
}

void Metrics::RecordHttpRequest(const std::string& route, int status) {
  http_requests_total_->Add({{"route", route}, {"status", std::to_string(status)}}).Increment();
}

void Metrics::RecordModelLoad(double seconds, const std::string& code) {
  model_loads_total_->Add({{"code", code}}).Increment();
  (void)seconds;  // ingot_model_load_duration_seconds comes from the READY event
}

void Metrics::RecordModelEvent(const ModelEvent& e) {
  switch (e.state) {
    case ModelState::kReady:
      if (e.reason == kReasonReplaced) {
        model_evictions_total_->Add({{"model", e.name}, {"device", e.device}, {"reason", e.reason}}).Increment();
      } else {
        model_load_duration_->Add({{"model", e.name}, {"device", e.device}}, kLoadBuckets).Observe(e.seconds);
      }
      break;
    case ModelState::kUnloading:
    case ModelState::kFailed:
      model_evictions_total_->Add({{"model", e.name}, {"device", e.device}, {"reason", e.reason}}).Increment();
      break;
    case ModelState::kGone:
      if (e.seconds > 0) model_unload_duration_->Observe(e.seconds);
      break;
    case ModelState::kLoading:
      break;
  }
}

void Metrics::RecordQuantization(const std::string& method, double seconds,
                                 const std::string& code) {
  quantizations_total_->Add({{"method", method}, {"code", code}}).Increment();
  if (code == "OK") quantization_duration_->Add({{"method", method}}, kLoadBuckets).Observe(seconds);
}

std::string Metrics::Render() const {
  std::vector<MetricFamily> families = registry_->Collect();
  std::vector<MetricFamily> engine = collector_->Collect();
  families.insert(families.end(), std::make_move_iterator(engine.begin()),
                  std::make_move_iterator(engine.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ingot::server
