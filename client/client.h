// The ingot CLI: one function per subcommand, sharing the connection and output
// helpers below. Each returns the process exit code: 0 on success, 1 when the server
// returned an error (printed as "error: CODE: message" on stderr), 2 for bad usage.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "ingot/v1/generation.grpc.pb.h"
#include "ingot/v1/model.grpc.pb.h"
#include "ingot/v1/quantization.grpc.pb.h"
#include "engine/common/read_file.h"

namespace ingot::client {

// The file a flag names into *out (nothing when `path` is empty): "" or why not,
// "<flag>: cannot read '<path>' (<strerror>)".
std::string ReadFlagFile(const char* flag, const std::string& path, std::string* out);

struct Connection {
  std::string server = "127.0.0.1:50051";
  double timeout_s = 0;  // per call; 0 = none
  // Bearer token sent as `authorization` metadata on every call (ingotd auth.tokens_file).
  std::string token;
  // TLS: the CA that signed the server's certificate (empty: plaintext); a client
  // certificate and key for mutual TLS.
  std::string tls_ca, tls_cert, tls_key;
  std::shared_ptr<grpc::Channel> channel;

  // Empty on success, else what is wrong with the TLS files.
  std::string Connect();
  // A context with the deadline applied.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
};

// Sampling flags shared by generate, chat and bench; unset flags stay unset in the
// request so the server's defaults apply.
struct SamplingFlags {
  std::optional<int> max_tokens;
  std::optional<float> temperature;
  std::optional<int> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::optional<float> presence_penalty, frequency_penalty;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::vector<int32_t> stop_token_ids;
  int logprobs = -1;  // -1: off; N >= 0: the chosen token's and the top N alternatives'
  int prompt_logprobs = -1;  // the same for every prompt token after the first
  int completions = 1;  // SamplingParams.n
  // Output constraint (at most one): GBNF text, JSON Schema text, any JSON object.
  std::string grammar, json_schema;
  bool has_grammar = false, has_json_schema = false, json_object = false;
  void ApplyTo(v1::GenerateRequest* request) const;
};

// Prints "error: CODE: message" on stderr and returns 1.
int ReportError(const grpc::Status& status);
// One message as a single line of JSON (proto field names) on stdout.
void PrintJsonLine(const google::protobuf::Message& message);
// 1536 -> "1.5 KiB".
std::string HumanBytes(int64_t bytes);

// One model's details as `ingot info NAME` prints them.
void PrintModel(const v1::ModelInfo& m);

int RunModels(Connection& conn, bool json);
struct LoadFlags {
  std::string name, source, format, device, backend;
  int context_length = 0;
  bool json = false;
  // Quantize while loading (method empty: as saved).
  std::string method, quant_type;
  int bits = 0;
  int64_t group_size = 0;
  int workers = 0;  // quantize-while-loading threads (0 = the server's default)
  int64_t kv_cache_bytes = 0;
  std::string kv_cache_dtype;
  std::string revision;
  std::string variant;
  int max_sequences = 0;
  bool no_prefix_cache = false;
  bool pinned = false;       // never evicted
  double keep_alive_s = -1;  // < 0: the server's default
  // The loading options (LoadModelRequest's); empty / false: the server's default.
  std::string loading_strategy;          // full, low_memory, unified_memory, streaming
  std::vector<std::string> max_memory;   // DEVICE=BYTES
  bool offload_to_cpu = false;
  std::string dtype;
  bool use_safetensors = false, no_safetensors = false;
};
int RunLoad(Connection& conn, const LoadFlags& flags);
// PlanLoad with the same flags as load; exit code 1 when it does not fit.
int RunPlan(Connection& conn, const LoadFlags& flags);
// Lifecycle events until interrupted (or --timeout).
int RunWatch(Connection& conn, bool json);
int RunUnload(Connection& conn, const std::string& name);
int RunSave(Connection& conn, const std::string& name, const std::string& path, const std::string& format,
            bool overwrite, const std::vector<std::string>& variants, bool evaluate);
int RunInfo(Connection& conn, const std::string& name, bool json);
struct TokenizeFlags {
  std::string model, text;
  bool no_special = false, no_parse_special = false, json = false, ids_only = false;
};
int RunTokenize(Connection& conn, const TokenizeFlags& flags);

struct GenerateFlags {
  std::string model, prompt, system;
  bool chat = false, json = false, stats = false;
  SamplingFlags sampling;
};
int RunGenerate(Connection& conn, const GenerateFlags& flags);
int RunChat(Connection& conn, const GenerateFlags& flags);

struct BenchFlags {
  std::string model;
  int prompt_tokens = 128;
  int gen_tokens = 64;
  int runs = 5;
  int warmup = 1;
  bool json = false;
  SamplingFlags constraint;  // only the output constraint is used (runs are greedy)
};
int RunBench(Connection& conn, const BenchFlags& flags);

struct QuantizeFlags {
  std::string source, target, device, calibration_file, calibration_text_file;
  v1::QuantizationConfig config;
  std::vector<std::string> skip;       // --skip (repeatable); "none" = empty list
  std::vector<std::string> overrides;  // --override PATTERN:key=value,...
  std::vector<std::string> options;    // --option key=value
  bool double_quant = true, no_double_quant = false;
  bool validate_only = false, json = false;
};
int RunQuantize(Connection& conn, QuantizeFlags flags);
struct EvalFlags {
  std::string model, text_file, reference;
  int context_length = 512, max_tokens = 0;
  bool json = false;
};
int RunEval(Connection& conn, const EvalFlags& flags);
int RunRecommend(Connection& conn, const std::string& model, int64_t budget_bytes, const std::string& purpose,
                 const std::string& device, bool json);
int RunMethods(Connection& conn, bool json);

}  // namespace ingot::client
