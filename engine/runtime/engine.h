// The engine's public face: what the server calls. Plain structs in, Status out; no
// protobuf or gRPC here (server/ converts). Thread-safe: every method may be called
// from any thread at any time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/chat_template.h"

namespace ingot {

struct EngineOptions {
  int threads = 0;            // compute threads per model step; 0 = hardware cores
  int max_batch_sequences = 16;  // sequences decoded together in one step
};

enum class ModelState { kLoading, kReady, kUnloading };
const char* ModelStateName(ModelState s);

// Resident bytes and representation of one kind of tensor ("attention", "mlp",
// "embedding", "output", "norm").
struct TensorKindInfo {
  std::string kind;
  std::string representation;  // GGUF type name ("q4_1", "q8_0", "f32") or a mix "q4_1+q6_k"
  int64_t tensors = 0;
  int64_t parameters = 0;
  int64_t bytes = 0;
};

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
};

struct LoadRequest {
  std::string name;            // registry key; must be unique
  std::string source;          // file path
  std::string format = "auto"; // "auto" or "gguf"
  std::string device = "cpu";
  int32_t context_length = 0;  // 0 = min(model's, 4096)
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

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled };
const char* FinishReasonName(FinishReason r);

struct GenerationChunk {
  std::string text;               // complete UTF-8 characters only
  std::vector<int32_t> token_ids; // tokens produced since the previous chunk
  // Final chunk only:
  bool final = false;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double time_to_first_token_s = 0;
  double decode_tokens_per_second = 0;
  double prefill_tokens_per_second = 0;
  double total_s = 0;
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

class Registry;
namespace kernels { class ThreadPool; }

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();  // cancels running generations and waits for them

  // Synchronous; call it off the request thread. ALREADY_EXISTS for a taken name,
  // NOT_FOUND for a missing file (naming it), INVALID_ARGUMENT for a corrupt file
  // (naming tensor/offset), FAILED_PRECONDITION for an unknown/unavailable device,
  // UNIMPLEMENTED for an unsupported format/architecture.
  absl::StatusOr<ModelInfo> LoadModel(const LoadRequest& request,
                                      const std::function<void(const LoadProgress&)>& progress);
  // NOT_FOUND when absent. Running generations keep the model until they finish.
  absl::Status UnloadModel(const std::string& name);
  std::vector<ModelInfo> ListModels() const;
  absl::StatusOr<ModelInfo> GetModel(const std::string& name) const;
  std::vector<DeviceInfo> Devices() const;

  absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string& text,
                                          bool add_special, bool parse_special) const;

  // Validates (NOT_FOUND model, INVALID_ARGUMENT params/prompt too long/template) and
  // queues the request; then callbacks report progress. Cancel through the handle.
  absl::StatusOr<std::shared_ptr<GenerationHandle>> Generate(GenerateRequest request,
                                                             GenerationCallbacks callbacks);

  // Number of generations currently running or queued for `model` ("" = all).
  int RunningRequests(const std::string& model) const;

 private:
  EngineOptions options_;
  std::unique_ptr<kernels::ThreadPool> pool_;  // shared by every model's steps
  std::unique_ptr<Registry> registry_;
};

}  // namespace ingot
