// ingotd: serves resident models over gRPC (ingot.v1) with health checking,
// reflection and a Prometheus endpoint.
//
// Configuration (server/config.h): --config FILE, then INGOT_* environment variables,
// then flags, each overriding the one before. `--check-config FILE` prints every
// problem and exits 0 or 1 without starting.
//
// Signals: SIGTERM/SIGINT drain: health goes NOT_SERVING, new calls are refused,
// running streams get drain_seconds to finish, then whatever is left is cancelled and
// the process exits 0. SIGHUP re-reads the TLS certificate files and the tokens; a file
// with a problem is logged and the ones in force stay.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/formats/file_access.h"
#include "engine/runtime/engine.h"
#include "grpc/health/v1/health.pb.h"
#include "server/config.h"
#include "server/generation_service.h"
#include "server/http_server.h"
#include "server/limits.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/model_service.h"
#include "server/quant_service.h"
#include "server/status.h"
#include "server/tls.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

// Command-line values; each overrides the config only when given.
struct Flags {
  std::string config_file;
  std::string check_config_file;
  bool syntax_only = false;
  ServerConfig values;              // defaults shown by --help
  std::vector<std::string> models;  // NAME=PATH
  std::string model_device = "cpu", model_backend = "auto";  // for the --model preloads
  int64_t memory_budget_bytes = 0;
  int kv_block_tokens = 16;  // a flag only: a serving knob under measurement, not config
  CLI::Option* listen = nullptr;
  CLI::Option* metrics_listen = nullptr;
  CLI::Option* http_listen = nullptr;
  CLI::Option* threads = nullptr;
  CLI::Option* log_level = nullptr;
  CLI::Option* log_json = nullptr;
  CLI::Option* memory_budget = nullptr;
  CLI::Option* drain_seconds = nullptr;
};

// Prints the failure the way every fatal start-up error is reported, returns 1.
int Fail(const std::string& what) {
  spdlog::critical("{}", what);
  std::fprintf(stderr, "ingotd: %s\n", what.c_str());
  return 1;
}

EngineSnapshot Snapshot(const Engine& engine) {
  EngineSnapshot snap;
  // Streams of an unloaded model still run (and count toward max_concurrent_streams):
  // they stay in ingot_requests_running under its name until they end.
  std::map<std::string, int> running;
  for (const auto& [name, n] : engine.RunningRequestsByModel()) running[name] = n;
  for (const ModelInfo& m : engine.ListModels()) {
    EngineSnapshot::Model model{m.name, m.device, m.bytes_resident, ModelStateName(m.state), running[m.name]};
    model.waiting_requests = m.requests_waiting;
    model.kv_blocks_total = m.kv_blocks_total;
    model.kv_blocks_used = m.kv_blocks_used;
    model.prefix_query_tokens = m.prefix_cache_query_tokens;
    model.prefix_hit_tokens = m.prefix_cache_hit_tokens;
    model.preemptions = m.kv_preemptions;
    model.file_backed_bytes = m.file_backed_bytes;
    model.backend = m.backend;
    model.format = m.format;
    model.quantization = m.quantization;
    model.loading_strategy = m.loading_strategy;
    running.erase(m.name);
    // The host tensors stay in host memory whatever the device; a backend's placed
    // copies and the KV cache live on the model's device.
    for (const TensorKindInfo& k : m.tensor_kinds) model.bytes_by_kind.push_back({k.kind, k.bytes, "cpu"});
    if (m.device_weight_bytes > 0) model.bytes_by_kind.push_back({"device_weights", m.device_weight_bytes, m.device});
    model.bytes_by_kind.push_back({"kv_cache", m.kv_cache_bytes, m.device});
    snap.models.push_back(std::move(model));
  }
  for (const auto& [name, n] : running) {
    if (n > 0) snap.models.push_back(EngineSnapshot::Model{name, "", 0, "", n});
  }
  for (const DeviceInfo& d : engine.Devices()) {
    if (d.available) {
      snap.devices.push_back({d.name, d.total_bytes, d.used_bytes, d.free_bytes, d.allocator_allocated_bytes,
                              d.allocator_reserved_bytes});
    }
  }
  snap.quantizations_in_flight = engine.QuantizationsInFlight();
  return snap;
}

// The file (if any), then the environment, then the flags that were given.
ServerConfig Assemble(const Flags& flags, const std::string& file, std::vector<std::string>* problems,
                      std::vector<std::string>* ignored_env) {
  ServerConfig c = file.empty() ? ServerConfig{} : LoadConfigFile(file, problems);
  ApplyEnvironment(IngotEnvironment(), &c, problems, ignored_env);
  const ServerConfig& v = flags.values;
  if (flags.listen->count()) c.listen = v.listen;
  if (flags.metrics_listen->count()) c.metrics_listen = v.metrics_listen;
  if (flags.http_listen->count()) c.http_listen = v.http_listen;
  if (flags.threads->count()) c.threads = v.threads;
  if (flags.log_level->count()) c.log_level = v.log_level;
  if (flags.log_json->count()) c.log_json = v.log_json;
  if (flags.drain_seconds->count()) c.drain_seconds = v.drain_seconds;
  if (flags.memory_budget->count()) c.memory_budget_bytes["cpu"] = flags.memory_budget_bytes;
  for (const std::string& spec : flags.models) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      problems->push_back(absl::StrCat("--model '", spec, "': expected NAME=PATH"));
      continue;
    }
    ModelConfig m;
    m.name = spec.substr(0, eq);
    m.source = spec.substr(eq + 1);
    m.device = flags.model_device;
    m.backend = flags.model_backend;
    m.origin = absl::StrCat("--model ", spec);
    c.models.push_back(std::move(m));
  }
  return c;
}

int CheckConfig(const Flags& flags) {
  std::vector<std::string> problems, ignored;
  ServerConfig c = Assemble(flags, flags.check_config_file, &problems, &ignored);
  for (std::string& p : ValidateConfig(c, /*check_files=*/!flags.syntax_only)) {
    problems.push_back(std::move(p));
  }
  for (const std::string& name : ignored) {
    std::fprintf(stderr, "ingotd: note: %s is not a setting of ingotd (ignored)\n", name.c_str());
  }
  if (!problems.empty()) {
    std::fprintf(stderr, "%s: %zu problem%s\n", flags.check_config_file.c_str(), problems.size(),
                 problems.size() == 1 ? "" : "s");
    for (const std::string& p : problems) std::fprintf(stderr, "  %s\n", p.c_str());
    return 1;
  }
  std::printf("%s: OK (listen %s, %zu model%s, tls %s, auth %s, model roots %s)\n",
              flags.check_config_file.c_str(), c.listen.c_str(), c.models.size(),
              c.models.size() == 1 ? "" : "s",
              !c.tls.enabled() ? "off" : c.tls.mutual() ? "mutual" : "on",
              c.auth.enabled() ? "tokens" : "off",
              c.model_roots.empty() ? "unrestricted" : absl::StrJoin(c.model_roots, ":").c_str());
  return 0;
}

// The drain: gRPC refuses new calls and waits up to drain_seconds for running ones;
// at its deadline it cancels what is left with UNAVAILABLE and no final message. So
// loads and quantizations are cancelled as it starts, and a little before the deadline
// every generation is ended by the engine (status OK, finish reason CANCELLED, usage)
// and every evaluation is cancelled: gRPC finds nothing left to cut. Returns when the
// server is shut down.
void Drain(const ServerConfig& config, grpc::Server* server, HttpServer* http, Engine* engine,
           BackgroundJobs* jobs, Metrics* metrics) {
  using Clock = std::chrono::system_clock;
  const auto drain = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config.drain_seconds));
  const auto deadline = Clock::now() + drain;
  // Loads and quantizations make models this process is about to exit with: stopped
  // now. Streams and evaluations may finish until the margin below.
  jobs->Cancel(BackgroundJobs::Job::kModelChange);
  // Time for the final messages to be written and for background work to notice its
  // cancel (one batch of a calibration or evaluation pass, ~1 s on the 2-core VM)
  // before the deadline: 2 s, or a third of a shorter drain.
  const auto margin = std::min<Clock::duration>(std::chrono::seconds(2), drain / 3);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread shutdown([&] {
    server->Shutdown(deadline);
    if (http != nullptr) http->WaitIdle(deadline);  // the HTTP API's streams, the same way
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  // Stopping /metrics takes a second or more (civetweb's threads notice the stop on
  // their poll timeout): started 2.5 s before the deadline, beside the last writes.
  cv.wait_until(lock, deadline - std::chrono::milliseconds(2500), [&] { return done; });
  std::thread stop_metrics([metrics] { metrics->StopServing(); });
  if (!cv.wait_until(lock, deadline - margin, [&] { return done; })) {
    lock.unlock();
    spdlog::info("drain: ending the {} running generation(s) and cancelling background work "
                 "before the deadline", engine->RunningRequests(""));
    engine->CancelAllGenerations();
    jobs->Cancel();
    lock.lock();
  }
  lock.unlock();
  shutdown.join();
  stop_metrics.join();
  if (http != nullptr) http->Stop();
}

// Waits for SIGHUP (reload) until SIGTERM/SIGINT, which starts the drain.
void HandleSignals(const ServerConfig& config, grpc::Server* server, HttpServer* http,
                   grpc::HealthCheckServiceInterface* health, TlsReloader* tls, CallGuard* guard,
                   Engine* engine, BackgroundJobs* jobs, Metrics* metrics) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  while (true) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      if (tls != nullptr) {
        if (absl::Status s = tls->Reload(); s.ok()) {
          spdlog::info("SIGHUP: TLS certificates reloaded (generation {}): {}", tls->generation(),
                       tls->Describe());
        } else {
          spdlog::error("SIGHUP: TLS certificates not reloaded, the previous ones stay: {}",
                        std::string(s.message()));
        }
      }
      if (http != nullptr && config.tls.enabled()) {
        if (absl::Status s = http->ReloadTls(); !s.ok()) {
          spdlog::error("SIGHUP: HTTP TLS certificates not reloaded, the previous ones stay: {}",
                        std::string(s.message()));
        }
      }
      if (config.auth.enabled()) {
        if (absl::Status s = guard->LoadTokens(); s.ok()) {
          spdlog::info("SIGHUP: tokens reloaded");
        } else {
          spdlog::error("SIGHUP: tokens not reloaded, the previous ones stay: {}",
                        std::string(s.message()));
        }
      }
      continue;
    }
    spdlog::info("received {}: draining for up to {}s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 config.drain_seconds);
    health->Shutdown();  // every service NOT_SERVING
    if (http != nullptr) http->StartDrain();  // 503 from now on
    Drain(config, server, http, engine, jobs, metrics);
    return;
  }
}

int Run(const Flags& flags) {
  std::vector<std::string> problems, ignored_env;
  const ServerConfig config = Assemble(flags, flags.config_file, &problems, &ignored_env);
  for (std::string& p : ValidateConfig(config, /*check_files=*/false)) problems.push_back(std::move(p));
  if (problems.empty()) {
    if (absl::Status s = ConfigureLogging(config.log_level, config.log_json); !s.ok()) {
      problems.emplace_back(s.message());
    }
  }
  if (!problems.empty()) {  // before logging is set up: plain lines on stderr
    for (const std::string& p : problems) std::fprintf(stderr, "ingotd: %s\n", p.c_str());
    return 1;
  }
  for (const std::string& name : ignored_env) {
    spdlog::warn("{} is not a setting of ingotd (ignored)", name);
  }
  const int threads = config.threads > 0
      ? config.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // Destruction runs in reverse: server, services, guard, keeper, metrics, engine.
  EngineOptions options;
  options.threads = threads;
  // Per device; one for a device this build cannot serve binds nothing.
  options.memory_budget_bytes = config.memory_budget_bytes;
  options.default_pinned = config.model_defaults.pinned;
  options.default_keep_alive_s = config.model_defaults.keep_alive_s;
  // Validated with the rest of the config, so this cannot fail here.
  (void)ToLoadingDefaults(config.model_defaults.loading, &options.loading);
  // Every file opened on a client's behalf is checked against the roots
  // (engine/formats/file_access.h), each file of a checkpoint directory included.
  formats::SetReadRoots(config.model_roots);
  options.hf_cache = config.hf_cache;
  options.kv_block_tokens = flags.kv_block_tokens;
  auto engine = std::make_unique<Engine>(options);
  Metrics metrics([e = engine.get()] { return Snapshot(*e); });
  // Evictions, load and unload durations; the sink leaves before `metrics` does.
  struct Unwatch {
    Engine* engine;
    int id;
    ~Unwatch() { engine->StopWatching(id); }
  } unwatch{engine.get(), engine->WatchModels([&metrics](const ModelEvent& e) { metrics.RecordModelEvent(e); },
                                              nullptr)};
  auto keeper = std::make_unique<ModelKeeper>(engine.get(), &metrics, config.models);
  if (absl::Status s = keeper->LoadAll(); !s.ok()) {
    return Fail(absl::StrCat(GrpcCodeName(ToGrpcStatus(s).error_code()), ": ", s.message()));
  }
  if (!config.metrics_listen.empty()) {
    if (absl::Status s = metrics.Serve(config.metrics_listen); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  auto guard = std::make_unique<CallGuard>(config, engine.get(), &metrics, keeper.get(),
                                           options.max_batch_sequences);
  if (absl::Status s = guard->LoadTokens(); !s.ok()) return Fail(std::string(s.message()));
  std::unique_ptr<TlsReloader> tls;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (config.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<TlsReloader>> created = TlsReloader::Create(config.tls);
    if (!created.ok()) return Fail(std::string(created.status().message()));
    tls = *std::move(created);
    credentials = tls->Credentials();
    spdlog::info("tls: {}{}", config.tls.mutual() ? "mutual, client CA " + config.tls.client_ca_file + ", " : "",
                 tls->Describe());
  } else if (config.auth.enabled()) {
    spdlog::warn("auth tokens are configured without tls: they cross the network in clear text "
                 "unless a proxy in front terminates TLS");
  }
  InstallCallGuard(guard.get());

  // Loads, quantizations, evaluations and saves run here; joined when the server has
  // stopped, before the services they report to go.
  BackgroundJobs jobs;
  ModelServiceImpl model_service(engine.get(), &metrics, &jobs, threads);
  model_service.set_max_watch_queue(config.limits.max_watch_queue);
  GenerationServiceImpl generation_service(engine.get(), &metrics);
  QuantizationServiceImpl quant_service(engine.get(), &metrics, &jobs, &model_service);
  grpc::EnableDefaultHealthCheckService(true);
  // gRPC's health service has no protobuf descriptors of its own; touching ours links
  // them in, so reflection can describe grpc.health.v1.Health too.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, credentials, &port);
  // gRPC refuses a larger message with RESOURCE_EXHAUSTED naming both sizes.
  const int64_t max_request = config.limits.max_request_bytes;
  builder.SetMaxReceiveMessageSize(max_request > 0 && max_request < INT_MAX
                                       ? static_cast<int>(max_request) : INT_MAX);
  builder.RegisterService(&model_service);
  builder.RegisterService(&generation_service);
  builder.RegisterService(&quant_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    InstallCallGuard(nullptr);
    return Fail(absl::StrCat("cannot listen on ", config.listen, " (address in use or invalid)"));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus("ingot.v1.ModelService", true);
  health->SetServingStatus("ingot.v1.GenerationService", true);
  health->SetServingStatus("ingot.v1.QuantizationService", true);
  model_service.AttachHealth(health);
  keeper->SetHealthHook([&model_service](const std::string& name, bool serving) {
    model_service.SetModelHealth(name, serving);
  });
  std::unique_ptr<HttpServer> http;
  if (!config.http_listen.empty()) {
    http = std::make_unique<HttpServer>(config, engine.get(), &metrics, guard.get(),
                                        [&model_service](const std::string& name) {
                                          model_service.SetModelHealth(name, false);
                                        });
    if (absl::Status s = http->Start(config.http_listen); !s.ok()) {
      server->Shutdown();
      InstallCallGuard(nullptr);
      return Fail(std::string(s.message()));
    }
    spdlog::info("http (OpenAI-compatible API) listening on {} (port {}, {})", config.http_listen,
                 http->port(), config.tls.enabled() ? "TLS" : "plaintext");
  }

  std::vector<std::string> names;
  for (const ModelInfo& m : engine->ListModels()) names.push_back(m.name);
  const LimitsConfig& lim = config.limits;
  spdlog::info("ingotd {} listening on {} (port {}, {}), metrics on {}, threads={}, models=[{}], "
               "auth={}, model_roots=[{}], limits: max_request_bytes={} max_prompt_tokens={} "
               "max_tokens={} max_concurrent_streams={} max_queue_per_model={} max_watch_queue={}",
               INGOT_VERSION, config.listen, port,
               !config.tls.enabled() ? "plaintext" : config.tls.mutual() ? "mutual TLS" : "TLS",
               config.metrics_listen.empty() ? "nothing (disabled)"
                   : absl::StrCat(config.metrics_listen, " (port ", metrics.port(), ")"),
               threads, absl::StrJoin(names, ","), config.auth.enabled() ? "tokens" : "off",
               absl::StrJoin(config.model_roots, ","), lim.max_request_bytes, lim.max_prompt_tokens,
               lim.max_tokens, lim.max_concurrent_streams, lim.max_queue_per_model, lim.max_watch_queue);

  // The signals are blocked in every thread (see main); this one waits for them.
  std::thread signal_thread(
      [&] { HandleSignals(config, server.get(), http.get(), health, tls.get(), guard.get(), engine.get(),
                          &jobs, &metrics); });
  server->Wait();
  signal_thread.join();
  http.reset();
  server.reset();
  jobs.Join();
  InstallCallGuard(nullptr);
  keeper.reset();
  spdlog::info("ingotd stopped");
  return 0;
}

}  // namespace
}  // namespace ingot::server

int main(int argc, char** argv) {
  // Block the handled signals before any thread exists so all inherit the mask and
  // only the signal thread's sigwait sees them (SIGHUP would otherwise end the process).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // glibc gives threads up to 8 malloc arenas per core, and every load, quantization
  // and evaluation runs on threads of its own: memory freed in those arenas stays with
  // the process. 30 s of quantize/unload/cancelled-evaluate cycles on the 2-core VM:
  // RSS +127 MB with the default (16 arenas), +38 MB with 4, +6 MB with 2. The heavy
  // work allocates few, large blocks (weights, caches, workspaces), so two arenas are
  // enough (not measured on many-core machines); MALLOC_ARENA_MAX in the environment
  // still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);

  ingot::server::Flags flags;
  ingot::server::ServerConfig& v = flags.values;
  CLI::App app{"ingotd: the ingot inference server"};
  app.add_option("--config", flags.config_file,
                 "YAML config file; INGOT_* environment variables override it, flags override "
                 "both")->check(CLI::ExistingFile);
  app.add_option("--check-config", flags.check_config_file,
                 "Validate FILE (with the environment and flags applied), print every problem, "
                 "exit 0 or 1");
  app.add_flag("--syntax-only", flags.syntax_only,
               "With --check-config: skip the checks that read files the config names "
               "(certificates, tokens, model sources)");
  flags.listen = app.add_option("--listen", v.listen, "gRPC address (host:port)")
                     ->capture_default_str();
  flags.metrics_listen = app.add_option("--metrics-listen", v.metrics_listen,
                                        "Prometheus /metrics address (host:port); empty disables")
                             ->capture_default_str();
  flags.http_listen = app.add_option("--http-listen", v.http_listen,
                                     "OpenAI-compatible HTTP API address (host:port); empty (the "
                                     "default) disables");
  app.add_option("--model", flags.models, "Preload a model: NAME=PATH (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--device", flags.model_device, "Device of the --model preloads: cpu or cuda:N")
      ->capture_default_str();
  app.add_option("--backend", flags.model_backend,
                 "Backend of the --model preloads: auto (native on cpu, torch on cuda), native or torch")
      ->capture_default_str();
  flags.threads = app.add_option("--threads", v.threads,
                                 "Compute threads per model step; 0 = all cores")
                      ->capture_default_str()->check(CLI::NonNegativeNumber);
  flags.log_level = app.add_option("--log-level", v.log_level,
                                   "trace, debug, info, warn, error, critical or off")
                        ->capture_default_str();
  flags.log_json = app.add_flag("--log-json", v.log_json, "Log one JSON object per line");
  flags.memory_budget = app.add_option("--memory-budget-bytes", flags.memory_budget_bytes,
                                       "Bytes all models together may hold on cpu (quantization "
                                       "results are checked against it); 0 = what the OS reports "
                                       "available")
                            ->check(CLI::NonNegativeNumber);
  flags.drain_seconds = app.add_option("--drain-seconds", v.drain_seconds,
                                       "On SIGTERM/SIGINT, seconds running streams get to finish")
                            ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--kv-block-tokens", flags.kv_block_tokens,
                 "Positions per paged-KV block of every model (the prefix cache shares whole blocks)")
      ->capture_default_str()->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);
  if (!flags.check_config_file.empty()) return ingot::server::CheckConfig(flags);
  return ingot::server::Run(flags);
}
