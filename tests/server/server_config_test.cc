// ingotd's YAML config: every key read, unknown keys and wrong types named by key
// path, environment overrides, cross-field validation.
#include "server/config.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "engine/runtime/engine.h"
#include "ingot/v1/quant_config.pb.h"
#include "server/convert.h"
#include "tests/test_util.h"

namespace ingot::server {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

// The schema's example, with every key set to something other than its default.
constexpr char kFull[] = R"(
listen: 0.0.0.0:50051
metrics_listen: 0.0.0.0:9090
http: {listen: 0.0.0.0:8080}
threads: 3
drain_seconds: 12.5
log: {level: debug, json: true}
devices: {cpu: {memory_budget_bytes: 123456789}, "cuda:1": {memory_budget_bytes: 42}}
model_defaults: {pinned: true, keep_alive: 90s}
model_roots: [/models, /srv/more]
limits: {max_request_bytes: 1048576, max_prompt_tokens: 1000, max_tokens: 200,
         max_concurrent_streams: 7, max_queue_per_model: 5, max_watch_queue: 9}
tls: {cert_file: /tls/server.pem, key_file: /tls/server.key, client_ca_file: /tls/ca.pem}
auth: {tokens_file: /etc/ingot/tokens}
models:
  - {name: smol, source: /models/x.gguf, device: cpu, pinned: true,
     quantization: {method: hqq, bits: 4, group_size: 64}}
  - name: lazy
    source: /models/y.gguf
    format: gguf
    context_length: 2048
    pinned: false
    keep_alive: 1h30m
)";

ServerConfig Parse(const std::string& yaml, std::vector<std::string>* problems) {
  return ParseConfig(yaml, "test.yaml", problems);
}

TEST(ServerConfig, ReadsEveryKeyOfTheSchema) {
  std::vector<std::string> problems;
  ServerConfig c = Parse(kFull, &problems);
  ASSERT_THAT(problems, IsEmpty());
  EXPECT_EQ(c.listen, "0.0.0.0:50051");
  EXPECT_EQ(c.metrics_listen, "0.0.0.0:9090");
  EXPECT_EQ(c.http_listen, "0.0.0.0:8080");
  EXPECT_EQ(c.threads, 3);
  EXPECT_DOUBLE_EQ(c.drain_seconds, 12.5);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_TRUE(c.log_json);
  EXPECT_EQ(c.memory_budget_bytes.at("cpu"), 123456789);
  EXPECT_EQ(c.memory_budget_bytes.at("cuda:1"), 42);
  EXPECT_TRUE(c.model_defaults.pinned);
  EXPECT_DOUBLE_EQ(c.model_defaults.keep_alive_s, 90);
  EXPECT_THAT(c.model_roots, ElementsAre("/models", "/srv/more"));
  EXPECT_EQ(c.limits.max_request_bytes, 1048576);
  EXPECT_EQ(c.limits.max_prompt_tokens, 1000);
  EXPECT_EQ(c.limits.max_tokens, 200);
  EXPECT_EQ(c.limits.max_concurrent_streams, 7);
  EXPECT_EQ(c.limits.max_queue_per_model, 5);
  EXPECT_EQ(c.limits.max_watch_queue, 9);
  EXPECT_EQ(c.tls.cert_file, "/tls/server.pem");
  EXPECT_EQ(c.tls.key_file, "/tls/server.key");
  EXPECT_EQ(c.tls.client_ca_file, "/tls/ca.pem");
  EXPECT_TRUE(c.tls.mutual());
  EXPECT_EQ(c.auth.tokens_file, "/etc/ingot/tokens");
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].name, "smol");
  EXPECT_EQ(c.models[0].origin, "models[0]");
  EXPECT_TRUE(c.models[0].pinned);
  ASSERT_TRUE(c.models[0].quantization.has_value());
  EXPECT_EQ(c.models[0].quantization->method, "hqq");
  EXPECT_EQ(c.models[0].quantization->bits, 4);
  EXPECT_EQ(c.models[0].quantization->group_size, 64);
  EXPECT_EQ(c.models[1].format, "gguf");
  EXPECT_EQ(c.models[1].context_length, 2048);
  EXPECT_FALSE(c.models[1].pinned);
  EXPECT_DOUBLE_EQ(c.models[1].keep_alive_s, 5400);
  EXPECT_FALSE(c.models[1].quantization.has_value());
  EXPECT_THAT(ValidateConfig(c, /*check_files=*/false), IsEmpty());
}

TEST(ServerConfig, AnEmptyDocumentIsTheDefaults) {
  std::vector<std::string> problems;
  ServerConfig c = Parse("", &problems);
  EXPECT_THAT(problems, IsEmpty());
  ServerConfig d;
  EXPECT_EQ(c.listen, d.listen);
  EXPECT_EQ(c.http_listen, "");  // the HTTP API is off unless asked for
  EXPECT_EQ(c.limits.max_tokens, d.limits.max_tokens);
  EXPECT_TRUE(c.models.empty());
  EXPECT_FALSE(c.tls.enabled());
  EXPECT_FALSE(c.auth.enabled());
}

TEST(ServerConfig, UnknownKeysAreNamedByTheirPath) {
  std::vector<std::string> problems;
  Parse("limits: {max_tokns: 5}\nlistn: x\nmodels:\n  - {name: a, source: /a, pinnned: true}\n"
        "models_extra: 1\n",
        &problems);
  EXPECT_THAT(problems, Contains(StartsWith("limits.max_tokns: unknown key")));
  EXPECT_THAT(problems, Contains(StartsWith("listn: unknown key")));
  EXPECT_THAT(problems, Contains(StartsWith("models[0].pinnned: unknown key")));
  EXPECT_THAT(problems, Contains(StartsWith("models_extra: unknown key")));
  EXPECT_EQ(problems.size(), 4u);
  // The message lists what is allowed and where the key is.
  EXPECT_THAT(problems, Contains(AllOf(HasSubstr("max_tokens"), HasSubstr("test.yaml:1"))));
}

TEST(ServerConfig, WrongTypesNameTheKeyAndTheExpectedType) {
  std::vector<std::string> problems;
  ServerConfig c = Parse(
      "threads: many\ndrain_seconds: [1]\nlog: {json: maybe}\nmodel_roots: /models\n"
      "limits: {max_tokens: 1.5, max_request_bytes: -1}\ntls: on\n"
      "models: {name: a}\n",
      &problems);
  EXPECT_THAT(problems, Contains(StartsWith("threads: expected an integer, got 'many'")));
  EXPECT_THAT(problems, Contains(StartsWith("drain_seconds: expected a number, got a list")));
  EXPECT_THAT(problems, Contains(StartsWith("log.json: expected true or false, got 'maybe'")));
  EXPECT_THAT(problems, Contains(StartsWith("model_roots: expected a list of strings")));
  EXPECT_THAT(problems, Contains(StartsWith("limits.max_tokens: expected an integer, got '1.5'")));
  EXPECT_THAT(problems, Contains(StartsWith("limits.max_request_bytes: must be between 0 and")));
  EXPECT_THAT(problems, Contains(StartsWith("tls: expected a mapping, got 'on'")));
  EXPECT_THAT(problems, Contains(StartsWith("models: expected a list of models, got a mapping")));
  EXPECT_EQ(problems.size(), 8u);
  // Wrong values keep their defaults.
  EXPECT_EQ(c.threads, ServerConfig{}.threads);
  EXPECT_EQ(c.limits.max_tokens, LimitsConfig{}.max_tokens);
}

TEST(ServerConfig, SyntaxErrorsAndDuplicatesSayWhere) {
  std::vector<std::string> problems;
  Parse("listen: a\nlimits: {max_tokens: 1\n", &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("test.yaml:"));
  EXPECT_THAT(problems[0], HasSubstr("YAML syntax error"));
  problems.clear();
  Parse("listen: a\nlisten: b\n", &problems);
  EXPECT_THAT(problems, ElementsAre(StartsWith("listen: duplicate key")));
}

TEST(ServerConfig, ModelsNeedNameAndSourceAndValidKeepAlive) {
  std::vector<std::string> problems;
  Parse("models:\n  - {device: cpu}\n  - {name: b, source: /b, keep_alive: soon}\n"
        "  - {name: c, source: /c, keep_alive: 0s, pinned: false}\n",
        &problems);
  EXPECT_THAT(problems, Contains(StartsWith("models[0].name: required")));
  EXPECT_THAT(problems, Contains(StartsWith("models[0].source: required")));
  EXPECT_THAT(problems, Contains(StartsWith(
                            "models[1].keep_alive: expected a duration like 5m, 90s or 1h30m")));
  EXPECT_THAT(problems, Contains(StartsWith("models[2].keep_alive: must be longer than 0")));
}

TEST(ServerConfig, DurationsAsOperatorsWriteThem) {
  EXPECT_EQ(ParseDurationSeconds("5m"), 300);
  EXPECT_EQ(ParseDurationSeconds("90s"), 90);
  EXPECT_EQ(ParseDurationSeconds("1h30m"), 5400);
  EXPECT_EQ(ParseDurationSeconds("250ms"), 0.25);
  EXPECT_EQ(ParseDurationSeconds("42"), 42);
  EXPECT_EQ(ParseDurationSeconds(" 2.5 "), 2.5);
  EXPECT_EQ(ParseDurationSeconds("soon"), std::nullopt);
  EXPECT_EQ(ParseDurationSeconds("5 minutes"), std::nullopt);
  EXPECT_EQ(ParseDurationSeconds(""), std::nullopt);
  EXPECT_EQ(ParseDurationSeconds("inf"), std::nullopt);
}

TEST(ServerConfig, DevicesAreCpuOrCudaN) {
  std::vector<std::string> problems;
  Parse("devices: {gpu: {memory_budget_bytes: 1}, cpu: {memory_budget: 1}, \"cuda:x\": {}}\n",
        &problems);
  EXPECT_THAT(problems, Contains(StartsWith("devices.gpu: unknown device (expected cpu, cuda:N, mps or mlx)")));
  EXPECT_THAT(problems, Contains(StartsWith("devices.cuda:x: unknown device")));
  EXPECT_THAT(problems, Contains(StartsWith("devices.cpu.memory_budget: unknown key")));
}

TEST(ServerConfig, EnvironmentOverridesTheFile) {
  std::vector<std::string> problems, ignored;
  ServerConfig c = Parse(kFull, &problems);
  ApplyEnvironment({{"INGOT_LISTEN", "127.0.0.1:1"},
                    {"INGOT_THREADS", "5"},
                    {"INGOT_HTTP_LISTEN", "127.0.0.1:2"},
                    {"INGOT_LOG_LEVEL", "warn"},
                    {"INGOT_LOG_JSON", "false"},
                    {"INGOT_MODEL_ROOTS", "/a:/b::/c"},
                    {"INGOT_LIMITS_MAX_TOKENS", "77"},
                    {"INGOT_DEVICES_CPU_MEMORY_BUDGET_BYTES", "1000"},
                    {"INGOT_TLS_CERT_FILE", "/other.pem"},
                    {"INGOT_AUTH_TOKENS", "abc admin ops,def read-only"},
                    {"INGOT_KEEP_LOGS", "1"}},
                   &c, &problems, &ignored);
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_EQ(c.listen, "127.0.0.1:1");
  EXPECT_EQ(c.threads, 5);
  EXPECT_EQ(c.http_listen, "127.0.0.1:2");
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_FALSE(c.log_json);
  EXPECT_THAT(c.model_roots, ElementsAre("/a", "/b", "/c"));
  EXPECT_EQ(c.limits.max_tokens, 77);
  EXPECT_EQ(c.limits.max_prompt_tokens, 1000);  // the file's, untouched
  EXPECT_EQ(c.memory_budget_bytes.at("cpu"), 1000);
  EXPECT_EQ(c.tls.cert_file, "/other.pem");
  EXPECT_EQ(c.auth.tokens_env, "abc admin ops,def read-only");
  EXPECT_THAT(ignored, ElementsAre("INGOT_KEEP_LOGS"));
}

TEST(ServerConfig, BadEnvironmentValuesNameTheVariable) {
  std::vector<std::string> problems, ignored;
  ServerConfig c;
  ApplyEnvironment({{"INGOT_THREADS", "-2"}, {"INGOT_LIMITS_MAX_QUEUE_PER_MODEL", "lots"},
                    {"INGOT_LOG_JSON", "2"}},
                   &c, &problems, &ignored);
  EXPECT_THAT(problems, Contains(StartsWith("INGOT_THREADS: must be between 0 and")));
  EXPECT_THAT(problems, Contains(StartsWith(
                            "INGOT_LIMITS_MAX_QUEUE_PER_MODEL: expected an integer, got 'lots'")));
  EXPECT_THAT(problems, Contains(StartsWith("INGOT_LOG_JSON: expected true or false")));
}

TEST(ServerConfig, ValidationNamesEachCrossFieldProblem) {
  std::vector<std::string> problems;
  ServerConfig c = Parse(R"(
log: {level: loud}
model_roots: [relative/dir]
tls: {cert_file: /a.pem, client_ca_file: /ca.pem}
models:
  - {name: a, source: /m/a.gguf, keep_alive: 5m}
  - {name: a, source: /m/b.gguf, format: safetensorz, device: tpu}
  - {name: q, source: /m/q.gguf, quantization: {method: hqq, bits: 5}}
  - {name: r, source: /m/r.gguf, quantization: {bits: 4, colour: red}}
)", &problems);
  EXPECT_THAT(problems, ElementsAre(StartsWith("models[3].quantization.colour: unknown key"),
                                    StartsWith("models[3].quantization.method: required")));
  std::vector<std::string> v = ValidateConfig(c, /*check_files=*/false);
  EXPECT_THAT(v, Contains(StartsWith("log.level: 'loud' is not one of")));
  EXPECT_THAT(v, Contains(StartsWith("model_roots[0]: 'relative/dir' is not an absolute path")));
  EXPECT_THAT(v, Contains(StartsWith("tls.key_file: required when tls.cert_file is set")));
  EXPECT_THAT(v, Contains(StartsWith("models[0].keep_alive: a pinned model is never unloaded")));
  EXPECT_THAT(v, Contains(StartsWith("models[1].name: 'a' is used by another model")));
  EXPECT_THAT(v, Contains(StartsWith("models[1].format: 'safetensorz'")));
  EXPECT_THAT(v, Contains(StartsWith("models[1].device: 'tpu' is not a device")));
  // The quantization table's own verdict, under the model's key path.
  EXPECT_THAT(v, Contains(AllOf(StartsWith("models[2].quantization.bits:"), HasSubstr("5"))));
}

// A model on a device this binary or machine cannot serve fails validation with the
// reason, so ingotd --check-config and the start fail loudly instead of a crash loop
// (deploy/overlays/gpu on a CPU image, or a GPU image on a node without a GPU).
TEST(ServerConfig, ModelsOnUnavailableDevicesFailWithTheReason) {
  std::vector<std::string> problems;
  ServerConfig c = Parse(R"(
models:
  - {name: g, source: /m/g.gguf, device: "cuda:0"}
  - {name: m, source: /m/m.gguf, device: mps}
  - {name: n, source: /m/n.gguf, device: cpu, backend: native}
  - {name: b, source: /m/b.gguf, device: cpu, backend: tensorrt}
)", &problems);
  ASSERT_THAT(problems, IsEmpty());
  std::vector<std::string> v = ValidateConfig(c, /*check_files=*/false);
  if (!std::filesystem::exists("/dev/nvidia0")) {
    EXPECT_THAT(v, Contains(AllOf(StartsWith("models[0].device: device cuda:0 is not available: "),
                                  ::testing::AnyOf(HasSubstr("built without CUDA"),
                                                   HasSubstr("no CUDA device is visible")))));
  }
  EXPECT_THAT(v, Contains(AllOf(StartsWith("models[1].device: device mps is not available"),
                                HasSubstr("not part of this Linux build"))));
  EXPECT_THAT(v, Not(Contains(StartsWith("models[2]"))));
  EXPECT_THAT(v, Contains(AllOf(StartsWith("models[3].backend: "), HasSubstr("tensorrt"))));
}

// The seeds' preset names: in the config file (preset:, or as the method) and in the
// proto (QuantizationConfig.preset), each onto its method; unknown or conflicting ones
// are named.
TEST(ServerConfig, QuantizationPresetsInTheFileAndTheProto) {
  std::vector<std::string> problems;
  ServerConfig c = Parse("models:\n"
                         "  - {name: a, source: /m/a.gguf, quantization: {preset: BNB_NF4}}\n"
                         "  - {name: b, source: /m/b.gguf, quantization: {method: quanto_int2}}\n"
                         "  - {name: c, source: /m/c.gguf, quantization: {preset: BNB_NF4, bits: 8}}\n"
                         "  - {name: d, source: /m/d.gguf, quantization: {preset: FAST}}\n",
                         &problems);
  ASSERT_EQ(c.models.size(), 4u);
  EXPECT_EQ(c.models[0].quantization->method, "bitsandbytes");
  EXPECT_EQ(c.models[0].quantization->quant_type, "nf4");
  EXPECT_EQ(c.models[1].quantization->method, "quanto");
  EXPECT_EQ(c.models[1].quantization->bits, 2);
  ASSERT_EQ(problems.size(), 2u) << absl::StrJoin(problems, "\n");
  EXPECT_THAT(problems[0], HasSubstr("models[2].quantization.preset"));
  EXPECT_THAT(problems[0], HasSubstr("bits is 8"));
  EXPECT_THAT(problems[1], HasSubstr("'FAST' is not one of"));

  v1::QuantizationConfig proto;
  proto.set_preset(v1::QUANTIZATION_PRESET_TORCHAO_INT4);
  absl::StatusOr<quant::QuantizationConfig> q = FromProto(proto);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->method, "torchao");
  EXPECT_EQ(q->quant_type, "int4_weight_only");
  proto.set_method("hqq");
  EXPECT_THAT(FromProto(proto).status().message(), HasSubstr("config.preset: TORCHAO_INT4 is method torchao"));
}

TEST(ServerConfig, ModelSourcesMustLieInTheRoots) {
  std::vector<std::string> problems;
  ServerConfig c = Parse("model_roots: [/models]\nmodels:\n"
                         "  - {name: a, source: /models/a.gguf}\n"
                         "  - {name: b, source: /models/../etc/b.gguf}\n",
                         &problems);
  ASSERT_THAT(problems, IsEmpty());
  std::vector<std::string> v = ValidateConfig(c, /*check_files=*/false);
  ASSERT_EQ(v.size(), 1u) << ::testing::PrintToString(v);
  EXPECT_THAT(v[0], StartsWith("models[1].source: '/models/../etc/b.gguf' (it resolves to "
                               "'/etc/b.gguf') is outside the model roots (/models)"));
}

TEST(ServerConfig, CheckFilesReportsMissingFiles) {
  std::vector<std::string> problems;
  ServerConfig c = Parse("auth: {tokens_file: /nonexistent/tokens}\n"
                         "tls: {cert_file: /nonexistent/s.pem, key_file: /nonexistent/s.key}\n"
                         "models: [{name: a, source: /nonexistent/a.gguf}]\n",
                         &problems);
  ASSERT_THAT(problems, IsEmpty());
  EXPECT_THAT(ValidateConfig(c, /*check_files=*/false), IsEmpty());
  std::vector<std::string> v = ValidateConfig(c, /*check_files=*/true);
  EXPECT_THAT(v, Contains(StartsWith("tls.cert_file: cannot read '/nonexistent/s.pem'")));
  EXPECT_THAT(v, Contains(StartsWith("tls.key_file: cannot read '/nonexistent/s.key'")));
  EXPECT_THAT(v, Contains(StartsWith("auth.tokens_file: cannot read '/nonexistent/tokens'")));
  EXPECT_THAT(v, Contains(StartsWith("models[0].source: '/nonexistent/a.gguf' does not exist")));
}

// LoadModel calls that name no policy get model_defaults: unpinned and no keep_alive
// unless configured; a bad value names its key.
TEST(ServerConfig, ModelDefaultsAreUnpinnedWithoutKeepAliveAndChecked) {
  std::vector<std::string> problems;
  ServerConfig c = ParseConfig("", "test.yaml", &problems);
  EXPECT_THAT(problems, ::testing::IsEmpty());
  EXPECT_FALSE(c.model_defaults.pinned);
  EXPECT_EQ(c.model_defaults.keep_alive_s, 0);
  ParseConfig("model_defaults: {pinned: maybe, keep_alive: soon, evict: yes}\n", "test.yaml", &problems);
  EXPECT_THAT(problems, ::testing::IsSupersetOf({::testing::HasSubstr("model_defaults.pinned"),
                                                 ::testing::HasSubstr("model_defaults.keep_alive"),
                                                 ::testing::HasSubstr("model_defaults.evict")}));
}

// The seeds' loading options in model_defaults and a models[] entry: read, applied to a
// LoadRequest (what the entry leaves unset stays unset, for the defaults) and to the
// engine's defaults; each bad value is a problem naming its key.
TEST(ServerConfig, LoadingOptionsInModelsAndDefaults) {
  std::vector<std::string> problems;
  ServerConfig c = Parse(R"(
model_defaults: {loading_strategy: low_memory, loading_workers: -1, dtype: f32, use_safetensors: true,
                 max_memory: {cpu: 4000000000}, offload_to_cpu: true}
models:
  - {name: a, source: /m/a, loading_strategy: full, loading_workers: 3, use_safetensors: false}
  - {name: b, source: /m/b}
)", &problems);
  ASSERT_THAT(problems, IsEmpty());
  LoadingDefaults d;
  ASSERT_TRUE(ToLoadingDefaults(c.model_defaults.loading, &d).ok());
  EXPECT_EQ(d.strategy, LoadingStrategy::kLowMemory);
  EXPECT_EQ(d.workers, -1);
  EXPECT_EQ(d.dtype, "f32");
  EXPECT_EQ(d.use_safetensors, std::optional<bool>(true));
  EXPECT_EQ(d.max_memory.at("cpu"), 4000000000);
  EXPECT_TRUE(d.offload_to_cpu);
  ASSERT_EQ(c.models.size(), 2u);
  LoadRequest a, b;
  ASSERT_TRUE(ApplyLoadingConfig(c.models[0].loading, &a).ok());
  ASSERT_TRUE(ApplyLoadingConfig(c.models[1].loading, &b).ok());
  EXPECT_EQ(a.loading_strategy, LoadingStrategy::kFull);
  EXPECT_EQ(a.loading_workers, 3);
  EXPECT_EQ(a.use_safetensors, std::optional<bool>(false));
  EXPECT_EQ(b.loading_strategy, LoadingStrategy::kDefault);
  EXPECT_FALSE(b.use_safetensors.has_value());
  EXPECT_FALSE(b.offload_to_cpu.has_value());

  Parse(R"(
model_defaults: {loading_strategy: fast, dtype: int3}
models:
  - {name: a, source: /m/a, loading_workers: -2, max_memory: {gpu7: 5, cpu: 0}, offload_to_cpu: perhaps}
)", &problems);
  EXPECT_THAT(problems, ::testing::IsSupersetOf({HasSubstr("model_defaults.loading_strategy"),
                                                 HasSubstr("model_defaults.dtype"),
                                                 HasSubstr("models[0].loading_workers"),
                                                 HasSubstr("models[0].max_memory.gpu7"),
                                                 HasSubstr("models[0].max_memory.cpu"),
                                                 HasSubstr("models[0].offload_to_cpu")}));
}


}  // namespace
}  // namespace ingot::server
