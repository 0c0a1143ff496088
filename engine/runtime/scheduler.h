// Per-model scheduler: one thread that owns the model's running sequences and steps
// them together (continuous batching). Each step takes one decode token from every
// running sequence plus up to kPrefillChunk prompt tokens of sequences still reading
// their prompt, runs one forward pass, samples, and streams the results.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/llama.h"
#include "engine/runtime/engine.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot {

// What a model is after loading: immutable, shared by the registry and every request.
struct LoadedModel {
  ModelInfo info;  // as loaded (state, kv bytes are filled in by the registry)
  std::unique_ptr<LlamaModel> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  int32_t context_length = 0;  // served context (<= trained)
};

// A request after validation and tokenization.
struct SequenceRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  uint64_t seed = 0;
  int32_t max_new_tokens = 0;
  GenerationCallbacks callbacks;
  std::shared_ptr<GenerationHandle> handle;
  std::string request_id;
  double submit_time_s = 0;  // monotonic seconds
};

class Scheduler {
 public:
  static constexpr int32_t kPrefillChunk = 512;  // prompt tokens per step
  static constexpr size_t kMaxQueued = 256;

  Scheduler(std::shared_ptr<const LoadedModel> model, kernels::ThreadPool* pool,
            int max_sequences);
  ~Scheduler();  // cancels everything and joins

  // RESOURCE_EXHAUSTED when the queue is full; UNAVAILABLE once draining.
  absl::Status Submit(SequenceRequest request);
  // Stops taking requests; running and queued ones finish, then the thread exits.
  void Drain();
  bool Idle() const;  // draining and nothing left
  int Running() const;
  int64_t KvCacheBytes() const;

 private:
  struct Sequence;
  void Loop();
  void Step(std::vector<std::unique_ptr<Sequence>>& active);
  void Emit(Sequence& seq, int32_t token, double now);
  void Fail(Sequence& s, const absl::Status& status);
  void Finish(Sequence& seq, FinishReason reason, double now);

  std::shared_ptr<const LoadedModel> model_;
  kernels::ThreadPool* pool_;
  int max_sequences_;
  ForwardWorkspace ws_;
  std::vector<float> logits_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SequenceRequest> queue_;
  bool draining_ = false;
  bool stop_ = false;
  bool exited_ = false;
  int running_ = 0;
  int64_t kv_bytes_ = 0;
  std::thread thread_;
};

double MonotonicSeconds();

}  // namespace ingot
