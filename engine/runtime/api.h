// The engine's API types: the plain structs (and their small helpers) that go in and
// out of Engine's calls (engine.h), and that the runtime's own parts (scheduler,
// sampling, constraint, load_open) use, so none of them includes the Engine facade.
// No protobuf or gRPC here (server/convert.cc converts).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_card.h"
#include "engine/model/module.h"
#include "engine/quant/config.h"
#include "engine/quant/presets.h"
#include "engine/tokenizer/chat_template.h"
#include "kernels/backend.h"

namespace ingot {

// How a load makes the checkpoint's weights resident (LoadRequest.loading_strategy;
// CopyMappedWeights in engine/model/residency.h does the copying). Measured on the
// default model's f32 Hugging Face directory in docs/loading.md.
enum class LoadingStrategy : uint8_t {
  kDefault,        // the server's model_defaults.loading_strategy (unified_memory unless configured)
  kFull,           // every weight copied into the process's memory, `loading_workers` at a time;
                   // the file's pages are released once all are copied (peak: mapping + copies)
  kLowMemory,      // copied one module at a time, each module's file pages released as soon as
                   // it is copied: the peak above the final size is about the largest module
  kUnifiedMemory,  // served in place from the mapped file where the representation allows
                   // (GGUF blocks, dense safetensors): no copy, counted as file-backed bytes
  kStreaming,      // refused (UNIMPLEMENTED): see ValidateLoad in load_open.cc for why
};
const char* LoadingStrategyName(LoadingStrategy s);  // "full", "low_memory", "unified_memory", ...
// The inverse; "" is kDefault; INVALID_ARGUMENT naming loading_strategy otherwise.
absl::StatusOr<LoadingStrategy> ParseLoadingStrategy(absl::string_view name);

// The loading options a LoadModel may leave unset (ServerConfig.model_defaults).
struct LoadingDefaults {
  LoadingStrategy strategy = LoadingStrategy::kUnifiedMemory;
  int32_t workers = 0;  // 0: EngineOptions.quantize_workers; -1: hardware cores
  std::string dtype;    // "" = auto
  std::optional<bool> use_safetensors;
  std::map<std::string, int64_t> max_memory;
  bool offload_to_cpu = false;
};

struct EngineOptions {
  int threads = 0;            // compute threads per model step; 0 = hardware cores
  int max_batch_sequences = 16;  // sequences decoded together in one step
  // Per device ("cpu", "cuda:0"): the bytes every model on it may hold together
  // (weights, KV pools, a backend's copies); absent or 0 = what the device has free.
  std::map<std::string, int64_t> memory_budget_bytes;
  // Eviction defaults for a load that names none (LoadRequest.pinned / keep_alive_s).
  bool default_pinned = false;
  double default_keep_alive_s = 0;  // 0 = never unloaded for being idle
  int quantize_workers = 0;         // threads quantizing modules; 0 = `threads`
  // KV pool per model when the load names none (LoadRequest.kv_cache_bytes); raised
  // to hold at least one full served context.
  int64_t kv_cache_bytes = int64_t{256} << 20;
  // Positions per paged-KV block of every model (the prefix cache shares whole blocks);
  // <= 0: 16. Measured 16 against 32 in docs/decode-profile.md.
  int32_t kv_block_tokens = 16;
  // Hugging Face cache for sources given as repository ids; empty: HF_HUB_CACHE,
  // HF_HOME/hub, ~/.cache/huggingface/hub.
  std::string hf_cache;
  LoadingDefaults loading;  // for loads that leave the loading options unset
};

// LOADING -> READY -> UNLOADING -> GONE; a load that fails after its name was reserved
// is FAILED, listed with its error until it is unloaded or loaded again. GONE appears
// only in events: the model's memory has been freed.
enum class ModelState { kLoading, kReady, kUnloading, kFailed, kGone };
const char* ModelStateName(ModelState s);

struct ModelInfo {
  std::string name;
  std::string source;          // path as given
  std::string format;          // "gguf"
  std::string architecture;    // "llama"
  int64_t parameter_count = 0;
  std::string device;          // "cpu"
  std::vector<TensorKindInfo> tensor_kinds;
  int64_t bytes_resident = 0;  // weights + KV cache reserved for this model
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int32_t context_length = 0;  // the context this instance serves
  int32_t vocab_size = 0;
  int32_t layers = 0;
  ModelState state = ModelState::kReady;
  bool has_chat_template = false;
  std::string quantization;       // e.g. "hqq bits=4 group_size=64"; empty as loaded
  std::string quantization_note;  // fallback or precedence notes
  std::string backend = "native";  // the backend row that runs it
  int64_t device_weight_bytes = 0;  // uploaded to the device by the backend (0: native reads in place)
  std::vector<std::string> device_representations;  // "int4pack/g32 x 210", with notes
  // The paged KV pool (kv_cache_bytes is its size on the device).
  std::string kv_cache_dtype;        // "f16", "f32", "q8_0"
  int64_t kv_bytes_per_token = 0;    // every layer's keys and values of one position
  int32_t kv_block_tokens = 0;
  int32_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0;
  int32_t max_sequences = 0;         // decoded together in one step
  bool prefix_cache = true;
  int64_t prefix_cache_query_tokens = 0, prefix_cache_hit_tokens = 0;
  int64_t kv_preemptions = 0;
  int32_t requests_waiting = 0, requests_running = 0;
  // Eviction policy and lifecycle.
  bool pinned = false;        // never evicted (memory pressure, keep_alive)
  double keep_alive_s = 0;    // unloaded after this long idle; 0 = never
  double idle_seconds = 0;    // since the last request ended (0 while one runs)
  std::string error;          // kFailed: why the load failed
  // How the weights were made resident (LoadRequest's loading options as applied).
  std::string loading_strategy;    // "full", "low_memory", "unified_memory"
  int64_t file_backed_bytes = 0;   // weights read in place from the file's mapping (page cache)
  std::string dtype;               // compute dtype of the backend row: "f32", "bf16"
  int64_t max_memory_bytes = 0;    // LoadRequest.max_memory of the model's device; 0 = none
  bool offload_to_cpu = false;
  std::string loading_note;        // what an option did not do, and why
};

// Why a model changed state (ModelEvent.reason, the evictions metric's label).
inline constexpr char kReasonLoadRequest[] = "load_request";
inline constexpr char kReasonIdleTimeout[] = "idle_timeout";
inline constexpr char kReasonMemoryPressure[] = "memory_pressure";
inline constexpr char kReasonUnloadRequest[] = "unload_request";
inline constexpr char kReasonLoadFailed[] = "load_failed";
inline constexpr char kReasonReplaced[] = "replaced";  // quantized in place
inline constexpr char kReasonShutdown[] = "shutdown";

// One lifecycle transition of a model.
struct ModelEvent {
  double time_unix_s = 0;
  std::string name;
  std::string device;
  ModelState state = ModelState::kLoading;  // the state entered
  std::string reason;
  int64_t bytes = 0;      // bytes the model holds (READY), held (UNLOADING) or freed (GONE)
  std::string error;      // kFailed
  double seconds = 0;     // READY: load duration; GONE: unload duration (drain + free)
};

// SaveModel of a unified repository: the model at the root, each variant quantized from
// it (not published) into <path>/<name>/, every directory with a model card.
struct SaveVariant {
  std::string name;                 // the subdirectory: [A-Za-z0-9._-], 1-64 characters
  quant::QuantizationConfig config;
  std::string format;               // its layout; empty: the request's (ingot when that is gguf)
};
struct SaveRequest {
  std::string name;    // a loaded model
  std::string path;
  std::string format;  // gguf (a file; no variants), ingot, bitsandbytes, mlx, gptq, hqq
  bool overwrite = false;
  std::vector<SaveVariant> variants;
  // Each variant's card gets perplexity and KL against the model on the shipped held-out
  // text (EvaluateModel's terms, at most `evaluate_tokens` tokens).
  bool evaluate = false;
  int32_t evaluate_tokens = 1024;
};
struct SaveResult {
  int64_t bytes = 0;                      // every file written
  std::vector<std::string> directories;   // the root, then each variant's (a GGUF: the file)
};

struct QuantizeRequest {
  std::string source;  // a loaded model
  std::string target;  // new model name; empty or == source: replace the source in place
  quant::QuantizationConfig config;
  std::string device;  // empty: the source's device
  std::string calibration_text;  // GPTQ/AWQ text given inline (else config.calibration_file, else shipped)
  int32_t workers = 0;  // modules quantized in parallel; 0 = the server's default
};

struct QuantizeResult {
  ModelInfo info;
  std::string method_used;
  std::string note;  // fallback: what was used instead and why
  double seconds = 0;
  int32_t quantized_modules = 0;
  int32_t skipped_modules = 0;
  int64_t bytes_before = 0;  // weight bytes of the source
  int64_t bytes_after = 0;
};

struct EvaluateRequest {
  std::string model;
  std::string text;             // empty: the shipped held-out text
  int32_t context_length = 512; // tokens per evaluation window
  int32_t max_tokens = 0;       // 0: the whole text
  std::string reference_model;  // optional: KL divergence and top-1 agreement against it
};

struct EvaluateResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t tokens_scored = 0;
  int32_t context_length = 0;
  bool has_reference = false;
  double mean_kl = 0;         // KL(reference || model) per token, nats
  double top1_agreement = 0;  // fraction of positions with the same argmax
  double seconds = 0;
};

// The one rule for a model name, however it is created (LoadModel, QuantizeModel's
// target, the config's models): 1-128 characters of letters, digits and . _ : -, and
// not "." or "..". INVALID_ARGUMENT naming `field` otherwise.
inline constexpr size_t kMaxModelNameLength = 128;
absl::Status ValidateModelName(absl::string_view name, absl::string_view field);

struct LoadRequest {
  std::string name;            // registry key; must be unique
  std::string source;          // file or directory path, or a Hugging Face repository id ("org/name")
  std::string revision;        // with a repository id: branch, tag or commit (empty = main)
  std::string variant;         // a unified repository's variant: loads <source>/<variant>
  std::string format = "auto"; // auto, gguf, hf, safetensors, torch, npz
  std::string device = "cpu";  // cpu, cuda:N (mps/mlx named, unavailable here)
  std::string backend = "auto";  // auto (native on cpu, torch on cuda), native, torch
  int32_t context_length = 0;  // 0 = min(model's, 4096)
  // Quantize while loading; ignored (with a note) when the checkpoint is quantized.
  std::optional<quant::QuantizationConfig> quantization;
  // Threads that copy (loading_strategy full) or quantize (quantization) modules;
  // 0 = the server's default, -1 = the hardware's cores.
  int32_t loading_workers = 0;
  // The seeds' loading options; unset: EngineOptions.loading.
  LoadingStrategy loading_strategy = LoadingStrategy::kDefault;
  // Per device ("cpu", "cuda:0"): the most bytes this model may hold there (weights + KV).
  // Over it on the model's device: RESOURCE_EXHAUSTED, or with offload_to_cpu the layers
  // that do not fit would go to the cpu, which needs a layer split across two backends
  // (not built: FAILED_PRECONDITION says so).
  std::map<std::string, int64_t> max_memory;
  std::optional<bool> offload_to_cpu;
  std::string dtype;  // compute dtype: "" / auto, f32, bf16, f16 (as far as the backend row honours it)
  // true: refuse a checkpoint with no safetensors (a pickle-only directory); false: where a
  // directory has both, read pytorch_model.bin. Unset: safetensors first.
  std::optional<bool> use_safetensors;
  // Serving: the KV pool and the batch (0 / empty: the engine's defaults).
  int64_t kv_cache_bytes = 0;    // pool bytes; at least one full context is always held
  std::string kv_cache_dtype;    // f16 (default), f32, q8_0 (backend native only)
  int32_t max_sequences = 0;     // running sequences (<= kMaxSequences); bounded by the pool's blocks
  std::optional<bool> prefix_cache;  // default on
  // Eviction: unset = EngineOptions.default_pinned / default_keep_alive_s.
  std::optional<bool> pinned;
  std::optional<double> keep_alive_s;
};

inline constexpr int32_t kMaxSequences = 1024;  // LoadRequest.max_sequences

// What a load would hold and whether it fits (Engine::PlanLoad). The bytes are the
// ones admission asks for: weights as resident (the quantized estimate when
// quantizing while loading) + the KV pool; workspace (per-step activations, sized by
// the batch) is not counted and is reported 0.
struct LoadPlan {
  std::string device, backend, format;
  int64_t parameter_count = 0;
  int32_t context_length = 0;
  int64_t weight_bytes = 0, kv_cache_bytes = 0, workspace_bytes = 0, total_bytes = 0;
  int32_t kv_blocks = 0;
  bool fits = false;
  int64_t budget_bytes = 0, free_bytes = 0;
  struct Eviction {
    std::string name;
    int64_t bytes = 0;
    double idle_seconds = 0;
  };
  std::vector<Eviction> evictions;  // memory_pressure, least recently used first
  std::vector<std::string> warnings;
};

struct LoadProgress {
  std::string stage;   // "open", "tensors", "ready"
  double fraction = 0; // 0..1 over the whole load
  std::string detail;  // e.g. the tensor being placed
};

struct DeviceInfo {
  std::string name;       // "cpu"
  std::string kind;       // "cpu", "cuda"
  bool available = true;
  std::string reason;     // why not available
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
  int64_t used_bytes = 0; // bytes held by models on this device
  std::vector<std::string> backends;  // rows that serve it
  int64_t allocator_allocated_bytes = 0, allocator_reserved_bytes = 0;  // CUDA caching allocator
  int64_t budget_bytes = 0;      // devices.<name>.memory_budget_bytes; 0 = free_bytes binds
  int64_t admit_free_bytes = 0;  // what a load may still take: budget - used, or free_bytes
  std::vector<std::string> models;  // on this device; "x (unloading)" until its memory is freed
};

// Output forced to match a grammar or a JSON Schema (both APIs convert to this).
struct OutputConstraint {
  enum class Kind { kNone, kGrammar, kJsonSchema, kJsonObject };
  Kind kind = Kind::kNone;
  // kGrammar: llama.cpp GBNF text (root rule `root`); kJsonSchema: the schema as JSON
  // text; kJsonObject: empty (any JSON object). Compiled when the request is submitted
  // (INVALID_ARGUMENT before any token: engine/runtime/constraint.h); each step's
  // logits are then masked to the tokens that keep the output a prefix of the grammar
  // before penalties, bias, top-k/top-p and temperature (engine/grammar/matcher.h);
  // end-of-generation only where the grammar may end.
  std::string text;
};

struct SamplingParams {
  int32_t max_tokens = 256;
  float temperature = 1.0f;     // 0 = greedy
  int32_t top_k = 0;            // 0 = off
  float top_p = 1.0f;           // 1 = off
  float min_p = 0.0f;           // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off (llama.cpp/CTRL style, over the last 64 tokens)
  std::optional<uint64_t> seed;     // unset = random
  std::vector<std::string> stop;    // stop strings (not included in the output)
  // OpenAI-style penalties over the tokens generated so far, in [-2, 2]: a token's
  // logit loses presence_penalty once it has appeared and frequency_penalty per time.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the token's logit, [-100, 100]
  std::vector<int32_t> stop_token_ids;  // ending like EOS (finish reason STOP)
  // Log-probabilities (log-softmax of the model's logits, before penalties, bias and
  // temperature) of each generated token, and of the top_logprobs most likely tokens
  // at that step (0-20).
  bool logprobs = false;
  int32_t top_logprobs = 0;
  // Log-probability of each prompt token after the first, given the tokens before it,
  // with the prompt_logprobs most likely tokens at each position (0-20); -1 = off.
  // Computed in prefill (a logits row per prompt position), so such a request reads
  // its prompt itself: it takes no blocks from the prefix cache (it still publishes
  // its own).
  int32_t prompt_logprobs = -1;
  // Completions of the prompt (1-16); completion i samples with seed + i and shares the
  // prompt's KV blocks.
  int32_t n = 1;
  OutputConstraint constraint;
};
// INVALID_ARGUMENT naming the field and its allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& p);

struct GenerateRequest {
  std::string model;
  std::string prompt;                 // raw prompt, or
  std::vector<ChatMessage> messages;  // chat messages rendered with the model's template
  SamplingParams sampling;
  std::string request_id;             // for logs
};

// kGrammarDeadEnd: the output constraint allows no token of the vocabulary here (and
// the text may not end), so generation cannot go on.
enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled, kGrammarDeadEnd };
const char* FinishReasonName(FinishReason r);

// One generated token's log-probability and the step's most likely alternatives.
struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // (token, logprob), most likely first
};

struct GenerationChunk {
  int32_t index = 0;              // which completion (SamplingParams.n)
  std::string text;               // complete UTF-8 characters only
  std::vector<int32_t> token_ids; // tokens produced since the previous chunk
  std::vector<TokenLogprob> logprobs;  // one per token_ids entry, when asked for
  // With SamplingParams.prompt_logprobs, once, on the first chunk: one per prompt
  // token after the first (entry i is prompt token i + 1).
  std::vector<TokenLogprob> prompt_logprobs;
  // Final chunk only (with n > 1 also a completion's last non-final chunk):
  bool final = false;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double time_to_first_token_s = 0;
  double decode_tokens_per_second = 0;
  double prefill_tokens_per_second = 0;
  double total_s = 0;
  double queue_s = -1;            // submitted to first admitted (waiting for KV blocks / a slot)
  int32_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

// Callbacks run on the model's scheduler thread: keep them short and never block.
struct GenerationCallbacks {
  std::function<void(GenerationChunk)> on_chunk;  // every non-final chunk
  // Exactly once: OK with the final chunk, or the error that ended the request.
  std::function<void(absl::Status, GenerationChunk)> on_done;
};

class GenerationHandle {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
 private:
  std::atomic<bool> cancelled_{false};
};

struct TokenizeResult {
  std::vector<int32_t> ids;
  std::vector<std::string> pieces;  // each token's bytes (may be partial UTF-8)
};

}  // namespace ingot
