// ingotd: serves resident models over gRPC (ingot.v1) with health checking,
// reflection and a Prometheus endpoint. SIGTERM/SIGINT drain: health goes
// NOT_SERVING, new calls are refused, running streams get --drain-seconds to finish,
// then whatever is left is cancelled and the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/runtime/engine.h"
#include "grpc/health/v1/health.pb.h"
#include "server/generation_service.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/model_service.h"
#include "server/quant_service.h"
#include "server/status.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

struct Flags {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9090";
  std::vector<std::string> models;  // NAME=PATH
  int threads = 0;
  std::string log_level = "info";
  bool log_json = false;
  double drain_seconds = 30;
  int64_t memory_budget_bytes = 0;
};

// Prints the failure the way every fatal start-up error is reported, returns 1.
int Fail(const std::string& what) {
  spdlog::critical("{}", what);
  std::fprintf(stderr, "ingotd: %s\n", what.c_str());
  return 1;
}

EngineSnapshot Snapshot(const Engine& engine) {
  EngineSnapshot snap;
  for (const ModelInfo& m : engine.ListModels()) {
    EngineSnapshot::Model model{m.name, m.device, m.bytes_resident, engine.RunningRequests(m.name), {}};
    for (const TensorKindInfo& k : m.tensor_kinds) model.bytes_by_kind.emplace_back(k.kind, k.bytes);
    model.bytes_by_kind.emplace_back("kv_cache", m.kv_cache_bytes);
    snap.models.push_back(std::move(model));
  }
  for (const DeviceInfo& d : engine.Devices()) {
    if (d.available) snap.devices.push_back({d.name, d.total_bytes, d.used_bytes});
  }
  snap.quantizations_in_flight = engine.QuantizationsInFlight();
  return snap;
}

// Loads every --model NAME=PATH before the server listens; the first failure ends
// start-up.
absl::Status Preload(Engine& engine, Metrics& metrics, const std::vector<std::string>& specs) {
  for (const std::string& spec : specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--model '", spec, "': expected NAME=PATH"));
    }
    LoadRequest request;
    request.name = spec.substr(0, eq);
    request.source = spec.substr(eq + 1);
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<ModelInfo> info = engine.LoadModel(request, [](const LoadProgress&) {});
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics.RecordModelLoad(seconds, GrpcCodeName(ToGrpcStatus(info.status()).error_code()));
    if (!info.ok()) {
      return absl::Status(info.status().code(),
                          absl::StrCat("--model ", spec, ": ", info.status().message()));
    }
    spdlog::info("loaded name={} source={} device={} params={} bytes_resident={} context={} "
                 "seconds={:.3f}", info->name, info->source, info->device,
                 info->parameter_count, info->bytes_resident, info->context_length, seconds);
  }
  return absl::OkStatus();
}

int Run(const Flags& flags) {
  if (absl::Status s = ConfigureLogging(flags.log_level, flags.log_json); !s.ok()) {
    std::fprintf(stderr, "ingotd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  if (flags.threads < 0) return Fail("--threads: must be >= 0 (0 = all cores)");
  if (flags.drain_seconds < 0) return Fail("--drain-seconds: must be >= 0");
  const int threads = flags.threads > 0
      ? flags.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // Destruction runs in reverse: server, services, metrics, engine.
  EngineOptions options;
  options.threads = threads;
  options.memory_budget_bytes = flags.memory_budget_bytes;
  auto engine = std::make_unique<Engine>(options);
  Metrics metrics([e = engine.get()] { return Snapshot(*e); });
  if (absl::Status s = Preload(*engine, metrics, flags.models); !s.ok()) {
    return Fail(absl::StrCat(GrpcCodeName(ToGrpcStatus(s).error_code()), ": ", s.message()));
  }
  if (!flags.metrics_listen.empty()) {
    if (absl::Status s = metrics.Serve(flags.metrics_listen); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }

  ModelServiceImpl model_service(engine.get(), &metrics, threads);
  GenerationServiceImpl generation_service(engine.get(), &metrics);
  QuantizationServiceImpl quant_service(engine.get(), &metrics, &model_service);
  grpc::EnableDefaultHealthCheckService(true);
  // gRPC's health service has no protobuf descriptors of its own; touching ours links
  // them in, so reflection can describe grpc.health.v1.Health too.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&model_service);
  builder.RegisterService(&generation_service);
  builder.RegisterService(&quant_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return Fail(absl::StrCat("cannot listen on ", flags.listen, " (address in use or invalid)"));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus("ingot.v1.ModelService", true);
  health->SetServingStatus("ingot.v1.GenerationService", true);
  health->SetServingStatus("ingot.v1.QuantizationService", true);
  model_service.AttachHealth(health);

  std::vector<std::string> names;
  for (const ModelInfo& m : engine->ListModels()) names.push_back(m.name);
  spdlog::info("ingotd {} listening on {} (port {}), metrics on {}, threads={}, models=[{}]",
               INGOT_VERSION, flags.listen, port,
               flags.metrics_listen.empty() ? "nothing (disabled)"
                   : absl::StrCat(flags.metrics_listen, " (port ", metrics.port(), ")"),
               threads, absl::StrJoin(names, ","));

  // SIGTERM/SIGINT are blocked in every thread (see main); this one waits for them.
  std::thread signal_thread([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("received {}: draining for up to {}s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 flags.drain_seconds);
    health->Shutdown();  // every service NOT_SERVING
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(
                         std::chrono::duration<double>(flags.drain_seconds)));
  });
  server->Wait();
  signal_thread.join();
  server.reset();
  spdlog::info("ingotd stopped");
  return 0;
}

}  // namespace
}  // namespace ingot::server

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread exists so all inherit the mask and
  // only the signal thread's sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ingot::server::Flags flags;
  CLI::App app{"ingotd: the ingot inference server"};
  app.add_option("--listen", flags.listen, "gRPC address (host:port)")->capture_default_str();
  app.add_option("--metrics-listen", flags.metrics_listen,
                 "Prometheus /metrics address (host:port); empty disables")
      ->capture_default_str();
  app.add_option("--model", flags.models, "Preload a model: NAME=PATH (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--threads", flags.threads, "Compute threads per model step; 0 = all cores")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level,
                 "trace, debug, info, warn, error, critical or off")->capture_default_str();
  app.add_flag("--log-json", flags.log_json, "Log one JSON object per line");
  app.add_option("--memory-budget-bytes", flags.memory_budget_bytes,
                 "Bytes all models together may hold on cpu (quantization results are checked "
                 "against it); 0 = what the OS reports available")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--drain-seconds", flags.drain_seconds,
                 "On SIGTERM/SIGINT, seconds running streams get to finish")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return ingot::server::Run(flags);
}
