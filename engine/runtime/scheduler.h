// Per-model scheduler: one thread that owns the model's running sequences and steps
// them together (continuous batching). Each step takes one decode token from every
// running sequence plus a chunk of prompt tokens of sequences still reading their
// prompt (shortest remaining prompt first), runs one forward pass, samples, and streams
// the results.
//
// The prompt chunk is sized by time, not tokens: about kPrefillChunkSeconds of prompt
// work on top of the step's fixed cost (one read of every weight), so a long prompt
// holds the running streams for one bounded chunk at a time; the per-token cost is
// measured on recent steps (it grows along a prompt, attention being linear in the
// position). Measured on the 2-core dev VM (shared, load ~4) with the 135M Q4_1
// model: a step's fixed cost ~55 ms (18 tok/s decode), ~10 ms per prompt token on
// top, so a 0.1 s chunk is ~10 tokens and the old fixed 512-token chunk held running
// streams ~5 s per step. With a stream decoding, a 4,000-token prompt is admitted in
// 76-145 s (throughput given for the bound; the range is the VM's load) while the
// stream's inter-token gaps stay at a median of 0.17 s, worst 0.31-0.55 s
// (Hardening13_11 prints these).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
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
  static constexpr int32_t kPrefillChunk = 512;     // most prompt tokens per step
  static constexpr int32_t kMinPrefillChunk = 8;    // least, so a prompt always advances
  static constexpr int32_t kFirstPrefillChunk = 64;  // before any step was measured
  // Prompt work per step while streams decode, and while none does (nobody waits on
  // the step then but a new arrival: larger chunks pay the fixed cost less often).
  static constexpr double kPrefillChunkSeconds = 0.1;
  static constexpr double kPrefillAloneSeconds = 0.5;
  static constexpr size_t kMaxQueued = 256;

  Scheduler(std::shared_ptr<const LoadedModel> model, kernels::ThreadPool* pool,
            int max_sequences);
  ~Scheduler();  // cancels everything and joins

  // RESOURCE_EXHAUSTED when the queue is full; UNAVAILABLE once draining.
  absl::Status Submit(SequenceRequest request);
  // Stops taking requests; running and queued ones finish, then the thread exits.
  void Drain();
  // Ends every running and queued request at the next step with finish reason
  // CANCELLED and its final chunk; takes no new requests.
  void CancelAll();
  bool Idle() const;  // draining and nothing left
  int Running() const;
  int64_t KvCacheBytes() const;

 private:
  struct Sequence;
  void Loop();
  void Step(std::vector<std::unique_ptr<Sequence>>& active);
  void Emit(Sequence& seq, int32_t token, double now, std::optional<TokenLogprob> logprob);
  void Fail(Sequence& s, const absl::Status& status);
  void Finish(Sequence& seq, FinishReason reason, double now);

  std::shared_ptr<const LoadedModel> model_;
  kernels::ThreadPool* pool_;
  int max_sequences_;
  std::vector<float> raw_row_;  // a logits row before sampling (logprobs)
  ForwardWorkspace ws_;
  std::vector<float> logits_;
  // Moving averages of recent steps (0 = not measured yet): a step's fixed cost, and
  // the cost of each prompt token on top of it.
  double fixed_step_s_ = 0;
  double prefill_token_s_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SequenceRequest> queue_;
  bool draining_ = false;
  bool stop_ = false;
  std::atomic<bool> cancel_all_{false};  // read by Step without mu_
  bool exited_ = false;
  int running_ = 0;
  int64_t kv_bytes_ = 0;
  std::thread thread_;
};

double MonotonicSeconds();

}  // namespace ingot
