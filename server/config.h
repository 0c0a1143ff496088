// ingotd's configuration: one YAML file for everything the flags set plus the models
// to load at start, overridden by INGOT_* environment variables, which flags override
// in turn. Every problem names its key path ("limits.max_tokns: unknown key") so
// `ingotd --check-config FILE` can print them all at once.
//
//   listen: 0.0.0.0:50051                 metrics_listen: 0.0.0.0:9090 ("" disables)
//   threads: 0                            drain_seconds: 30
//   http: {listen: 0.0.0.0:8080}          the OpenAI-compatible HTTP API; "" (default) off
//   log: {level: info, json: true}
//   devices: {cpu: {memory_budget_bytes: 0}}  every load's bytes count against it
//   model_defaults: {pinned: false, keep_alive: 5m, loading_strategy: unified_memory}
//                                         for LoadModel calls that name none (LoadingConfig's keys)
//   model_roots: [/models]                empty: sources are not restricted
//   limits: {max_request_bytes: 4194304, max_prompt_tokens: 8192, max_tokens: 4096,
//            max_concurrent_streams: 64, max_queue_per_model: 64, max_watch_queue: 1024,
//            max_evaluate_tokens: 16384}   0: no limit
//   tls: {cert_file: "", key_file: "", client_ca_file: ""}  CA set: mutual TLS
//   auth: {tokens_file: ""}               lines "TOKEN admin|read-only [name]"
//   models:
//     - {name: smol, source: /models/x.gguf, device: cpu, pinned: false, keep_alive: 5m,
//        quantization: {method: hqq, bits: 4, group_size: 64}}
//
// Environment: INGOT_ + the key path upper-cased with '.' -> '_' (INGOT_LISTEN,
// INGOT_LOG_LEVEL, INGOT_HTTP_LISTEN, INGOT_LIMITS_MAX_TOKENS, INGOT_TLS_CERT_FILE,
// INGOT_DEVICES_CPU_MEMORY_BUDGET_BYTES, ...); INGOT_MODEL_ROOTS is colon-separated;
// INGOT_AUTH_TOKENS holds token lines separated by ',' or newlines.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/quant/config.h"

namespace ingot {
struct LoadRequest;      // engine/runtime/engine.h
struct LoadingDefaults;  // engine/runtime/engine.h
}  // namespace ingot

namespace ingot::server {

struct LimitsConfig {
  int64_t max_request_bytes = 4 << 20;  // one gRPC message; gRPC's own default
  int64_t max_prompt_tokens = 8192;
  int64_t max_tokens = 4096;            // per request
  int64_t max_concurrent_streams = 64;  // Generate streams, server-wide
  int64_t max_queue_per_model = 64;     // requests waiting beyond a model's batch
  // EvaluateModel tokens per call (about a minute of this machine's CPU for the 135M
  // model); a call asking for more is refused, one asking for the whole text stops here.
  int64_t max_evaluate_tokens = 16384;
  // WatchModels: transitions one client may fall behind before its stream ends with
  // RESOURCE_EXHAUSTED (its queue dropped); 0 = unbounded.
  int64_t max_watch_queue = 1024;
};

struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // set: clients must present a certificate it signed
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

struct AuthConfig {
  std::string tokens_file;
  std::string tokens_env;  // INGOT_AUTH_TOKENS, token lines separated by ',' or '\n'
  bool enabled() const { return !tokens_file.empty() || !tokens_env.empty(); }
};

// The seeds' loading options (LoadModelRequest's) in a models[] entry or model_defaults:
//   {loading_strategy: low_memory, loading_workers: -1, dtype: f32, use_safetensors: true,
//    max_memory: {cpu: 4000000000}, offload_to_cpu: false}
struct LoadingConfig {
  std::string loading_strategy;  // full, low_memory, unified_memory, streaming; "" = the default
  int32_t loading_workers = 0;   // 0: the default; -1: every core
  std::string dtype;             // auto, f32, bf16, f16
  std::optional<bool> use_safetensors;
  std::map<std::string, int64_t> max_memory;  // device -> bytes
  std::optional<bool> offload_to_cpu;
};

struct ModelConfig {
  std::string name;
  std::string source;             // path, or a Hugging Face repository id ("org/name")
  std::string revision;           // with a repository id: branch, tag or commit (empty = main)
  std::string format = "auto";
  std::string device = "cpu";
  std::string backend = "auto";  // auto, native, torch
  int32_t context_length = 0;  // 0: the engine's default
  int64_t kv_cache_bytes = 0;  // 0: the engine's default
  std::string kv_cache_dtype;  // f16 (default), f32, q8_0
  int32_t max_sequences = 0;   // 0: the engine's default
  std::optional<bool> prefix_cache;
  bool pinned = true;          // never unloaded by keep_alive
  double keep_alive_s = 0;     // evictable models: unload after this idle time; 0 = never
  std::optional<quant::QuantizationConfig> quantization;  // applied in place after loading
  LoadingConfig loading;
  std::string origin;          // "models[2]" or "--model": where problems point
};

// The eviction policy of a model loaded by LoadModel without pinned / keep_alive.
struct ModelDefaults {
  bool pinned = false;      // unpinned: evicted under memory pressure when idle
  double keep_alive_s = 0;  // unloaded after this idle time; 0 = never
  LoadingConfig loading;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9090";
  std::string http_listen;  // OpenAI-compatible HTTP API (server/http_server.h); empty: off
  int threads = 0;  // 0: all cores
  double drain_seconds = 30;
  std::string log_level = "info";
  bool log_json = false;
  std::map<std::string, int64_t> memory_budget_bytes;  // device -> bytes; 0 = what is free
  ModelDefaults model_defaults;
  std::vector<std::string> model_roots;
  std::string hf_cache;  // Hugging Face cache for repository ids; empty: HF_HUB_CACHE, HF_HOME/hub, ~/.cache
  LimitsConfig limits;
  TlsConfig tls;
  AuthConfig auth;
  std::vector<ModelConfig> models;
};

// Parses a YAML document (empty: every default). Problems are appended as
// "key.path: what is wrong"; keys that are wrong keep their defaults. `origin` (the
// file name) prefixes syntax errors with their line and column.
ServerConfig ParseConfig(absl::string_view yaml, absl::string_view origin,
                         std::vector<std::string>* problems);
// Reads and parses `path`; a file that cannot be read is one problem.
ServerConfig LoadConfigFile(const std::string& path, std::vector<std::string>* problems);

// The INGOT_* variables of this process.
std::map<std::string, std::string> IngotEnvironment();
// Applies INGOT_* overrides. Problems name the variable; unknown INGOT_* names are
// returned in `ignored` (other tools use the prefix too, so they are not errors).
void ApplyEnvironment(const std::map<std::string, std::string>& env, ServerConfig* config,
                      std::vector<std::string>* problems, std::vector<std::string>* ignored);

// "5m", "90s", "1h30m", "250ms", or a number of seconds.
std::optional<double> ParseDurationSeconds(absl::string_view text);

// A models[] entry's loading options onto `request` (what it leaves unset stays unset,
// for model_defaults to fill), and model_defaults' as the engine's defaults.
absl::Status ApplyLoadingConfig(const LoadingConfig& c, LoadRequest* request);
absl::Status ToLoadingDefaults(const LoadingConfig& c, LoadingDefaults* defaults);

// Cross-field checks (TLS pairs, absolute roots, unique model names, model sources
// inside the roots, keep_alive only for evictable models, quantization configs). With
// `check_files`, also what start-up would find on disk: certificates parse and match
// their key, the tokens file parses, model sources exist.
std::vector<std::string> ValidateConfig(const ServerConfig& config, bool check_files);

// OK when `path` may be read (or, with `for_write`, written) under config.model_roots:
// symlinks and ".." are resolved first, so a path that resolves outside every root is
// PERMISSION_DENIED naming both the path and what it resolves to. No roots: OK.
absl::Status CheckPathAllowed(const ServerConfig& config, const std::string& path,
                              bool for_write);

}  // namespace ingot::server
