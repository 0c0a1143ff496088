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
//
// Keys and values live in one paged pool per model (engine/model/kv_cache.h). A request
// is admitted when the blocks of its prompt (after the prefix cache's hits) are free,
// keeping one block per running sequence in hand; until then it waits in the queue.
// When running sequences outgrow the pool, the most recently admitted one is preempted:
// its blocks are released and it waits at the head of the queue to recompute its
// tokens (prompt and what it generated so far; its stream just pauses). Full blocks are
// published to the prefix cache as they fill.
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
#include "engine/grammar/matcher.h"
#include "engine/model/llama.h"
#include "engine/runtime/api.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot {

// What a model is after loading: immutable, shared by the registry and every request.
struct LoadedModel {
  ModelInfo info;  // as loaded (state, kv bytes are filled in by the registry)
  std::unique_ptr<LlamaModel> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  int32_t context_length = 0;  // served context (<= trained)
  // How it is served (from the LoadRequest; a quantized copy inherits them).
  int64_t kv_cache_bytes = 0;
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF16;
  int32_t max_sequences = 0;
  bool prefix_cache = true;
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
  // Completions of one prompt (SamplingParams.n): the first computes the prompt; the
  // others wait for `prompt_ready` (set once its prompt's blocks are published, or it
  // ended) and then share those blocks through the prefix cache.
  std::shared_ptr<std::atomic<bool>> prompt_ready;
  bool leader = false;
  // The output constraint's automaton (null: none), shared by the request's
  // completions; used on the scheduler thread only.
  std::shared_ptr<grammar::Automaton> automaton;
};

struct SchedulerOptions {
  int max_sequences = 16;    // running sequences (one decode token each per step)
  bool prefix_cache = true;  // share published blocks between requests
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

  // `kv` holds at least one full context of the model (plus a block).
  Scheduler(std::shared_ptr<const LoadedModel> model, kernels::ThreadPool* pool, std::shared_ptr<KvPool> kv,
            SchedulerOptions options);
  ~Scheduler();  // cancels everything and joins

  // RESOURCE_EXHAUSTED when the queue is full; UNAVAILABLE once draining.
  absl::Status Submit(SequenceRequest request);
  // Several requests at once (n completions): all are queued or none.
  absl::Status SubmitGroup(std::vector<SequenceRequest> requests);
  // Stops taking requests; running and queued ones finish, then the thread exits.
  void Drain();
  // Ends every running and queued request at the next step with finish reason
  // CANCELLED and its final chunk; takes no new requests.
  void CancelAll();
  bool Idle() const;  // draining and nothing left
  int Running() const;  // requests not finished: waiting + decoding
  int Waiting() const;  // queued or preempted, holding no KV blocks
  int64_t KvCacheBytes() const;  // the pool's bytes on the device
  struct KvStats {
    int32_t total_blocks = 0, used_blocks = 0, cached_blocks = 0;
    int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
    int64_t preemptions = 0;
  };
  KvStats Kv() const;
  int max_sequences() const { return options_.max_sequences; }

 private:
  struct Sequence;
  void Loop();
  // Moves waiting sequences into `active` while the batch and the pool allow.
  void Admit(std::vector<std::unique_ptr<Sequence>>& active, double now);
  // Looks the sequence's tokens up in the prefix cache and reserves blocks for them;
  // false (holding nothing) when the pool cannot hold them now.
  bool Reserve(Sequence& s, int32_t keep_free);
  void Preempt(std::unique_ptr<Sequence> s);
  void PublishBlocks(Sequence& s);
  void Step(std::vector<std::unique_ptr<Sequence>>& active);
  void Emit(Sequence& seq, int32_t token, double now, std::optional<TokenLogprob> logprob);
  // Moves the prompt's logprobs into the sequence's first chunk (once).
  void TakePromptLogprobs(Sequence& s, GenerationChunk& chunk);
  // Ends a sequence's hold on the scheduler: done, blocks released, counts updated.
  void Retire(Sequence& s);
  void Fail(Sequence& s, const absl::Status& status);
  void Finish(Sequence& seq, FinishReason reason, double now);

  std::shared_ptr<const LoadedModel> model_;
  kernels::ThreadPool* pool_;
  std::shared_ptr<KvPool> kv_;
  SchedulerOptions options_;
  std::deque<std::unique_ptr<Sequence>> preempted_;  // scheduler thread only; newest last
  std::vector<float> raw_row_;  // a logits row before sampling (logprobs)
  // The vocabulary's byte trie for constrained requests, built on the first one.
  std::shared_ptr<const grammar::TokenTrie> trie_;
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
  int waiting_ = 0;  // queue_ + preempted_
  int32_t kv_used_blocks_ = 0, kv_cached_blocks_ = 0;
  int64_t preemptions_ = 0;
  std::thread thread_;
};

double MonotonicSeconds();

}  // namespace ingot
