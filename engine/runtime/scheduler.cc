#include "engine/runtime/scheduler.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/runtime/constraint.h"
#include "engine/runtime/sampling.h"
#include "spdlog/spdlog.h"

namespace ingot {

double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Scheduler::Sequence {
  Sequence(SequenceRequest r, const LoadedModel& m, std::shared_ptr<KvPool> kv)
      : req(std::move(r)), sampler(req.sampling, req.seed), cache(std::move(kv)), decoder(*m.tokenizer) {
    tokens = req.prompt;
    if (req.automaton) grammar_state = req.automaton->Start();
  }
  SequenceRequest req;
  Sampler sampler;
  KvCache cache;                 // block table over the model's pool
  std::vector<uint64_t> chain;   // prefix-cache hash of each published block (block i: tokens up to its end)
  int32_t cached_prompt_tokens = -1;  // prefix-cache hits at the first admission
  StreamDecoder decoder;
  std::vector<int32_t> tokens;  // prompt + generated
  int32_t n_past = 0;           // tokens whose keys/values are in the cache
  int32_t generated = 0;
  std::string held;             // decoded text not yet sent (could start a stop string)
  std::vector<int32_t> held_ids;
  std::vector<TokenLogprob> held_logprobs;  // parallel to held_ids when logprobs are asked for
  // With sampling.prompt_logprobs: prompt token i + 1's logprob from position i's
  // logits, kept across preemption (positions already here are not asked for again),
  // sent with the first chunk.
  std::vector<TokenLogprob> prompt_logprobs;
  bool prompt_logprobs_sent = false;
  // Prompt positions whose logits are still wanted: [prompt_logprobs.size(), end).
  int32_t PromptLogitsEnd() const {
    if (req.sampling.prompt_logprobs < 0 || prompt_logprobs_sent) return 0;
    return static_cast<int32_t>(req.prompt.size()) - 1;
  }
  double start_time_s = 0;      // admitted
  double first_token_s = 0;
  double last_token_s = 0;
  bool done = false;
  int32_t grammar_state = grammar::Automaton::kDead;  // with req.automaton: the output so far
};

Scheduler::Scheduler(std::shared_ptr<const LoadedModel> model, kernels::ThreadPool* pool,
                     std::shared_ptr<KvPool> kv, SchedulerOptions options)
    : model_(std::move(model)), pool_(pool), kv_(std::move(kv)), options_(options) {
  options_.max_sequences = std::max(1, options_.max_sequences);
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Scheduler::Submit(SequenceRequest request) {
  std::vector<SequenceRequest> one;
  one.push_back(std::move(request));
  return SubmitGroup(std::move(one));
}

absl::Status Scheduler::SubmitGroup(std::vector<SequenceRequest> requests) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stop_) {
      return absl::UnavailableError("model is being unloaded; it takes no new requests");
    }
    if (queue_.size() + requests.size() > kMaxQueued) {
      return absl::ResourceExhaustedError(
          absl::StrCat("queue of this model is full (", kMaxQueued, " waiting requests)"));
    }
    for (SequenceRequest& r : requests) {
      queue_.push_back(std::move(r));
      ++running_;
      ++waiting_;
    }
  }
  cv_.notify_all();
  return absl::OkStatus();
}

void Scheduler::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
}

void Scheduler::CancelAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    cancel_all_.store(true);
  }
  cv_.notify_all();
}

bool Scheduler::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exited_;
}

int Scheduler::Running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

int Scheduler::Waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

int64_t Scheduler::KvCacheBytes() const { return kv_->bytes(); }

Scheduler::KvStats Scheduler::Kv() const {
  KvStats k;
  k.total_blocks = kv_->total_blocks();
  k.prefix_query_tokens = kv_->prefix_query_tokens.load();
  k.prefix_hit_tokens = kv_->prefix_hit_tokens.load();
  std::lock_guard<std::mutex> lock(mu_);
  k.used_blocks = kv_used_blocks_;
  k.cached_blocks = kv_cached_blocks_;
  k.preemptions = preemptions_;
  return k;
}

void Scheduler::Loop() {
  std::vector<std::unique_ptr<Sequence>> active;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || !queue_.empty() || !active.empty() || !preempted_.empty() || draining_;
      });
      if (stop_) {
        // Shutdown: everything still here ends as cancelled, with a status.
        while (!queue_.empty()) {
          auto r = std::move(queue_.front());
          queue_.pop_front();
          lock.unlock();
          r.callbacks.on_done(absl::CancelledError("server is shutting down"), GenerationChunk{});
          lock.lock();
        }
        lock.unlock();
        for (auto& s : preempted_) active.push_back(std::move(s));
        preempted_.clear();
        for (auto& s : active) {
          if (!s->done) Finish(*s, FinishReason::kCancelled, MonotonicSeconds());
        }
        active.clear();
        lock.lock();
        exited_ = true;
        return;
      }
      if (draining_ && queue_.empty() && active.empty() && preempted_.empty()) {
        exited_ = true;
        return;
      }
    }
    Admit(active, MonotonicSeconds());
    if (active.empty()) {
      // Nothing could be admitted although requests wait: cannot happen with an empty
      // batch (the pool holds a full context), but never spin if it did.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(10));
      continue;
    }
    Step(active);
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->done; }),
                 active.end());
    std::lock_guard<std::mutex> lock(mu_);
    kv_used_blocks_ = kv_->used_blocks();
    kv_cached_blocks_ = kv_->cached_blocks();
  }
}

void Scheduler::Retire(Sequence& s) {
  // Before the client hears the end: its blocks are back in the pool and the counts
  // say so, so a caller that saw on_done sees the model idle.
  s.done = true;
  s.cache.Clear();
  if (s.req.prompt_ready) s.req.prompt_ready->store(true);
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  kv_used_blocks_ = kv_->used_blocks();
  kv_cached_blocks_ = kv_->cached_blocks();
}

bool Scheduler::Reserve(Sequence& s, int32_t keep_free) {
  const int32_t bt = kv_->block_tokens();
  const int32_t n = static_cast<int32_t>(s.tokens.size());
  // Shared blocks: at most (n - 1) / bt, so the last token is always computed (its
  // logits give the next token).
  uint64_t parent = 0;
  // Prompt logprobs need the logits of every prompt position not yet seen, so those
  // positions are computed, not taken from the cache.
  int32_t shareable = n - 1;
  if (s.PromptLogitsEnd() > static_cast<int32_t>(s.prompt_logprobs.size())) {
    shareable = std::min<int32_t>(shareable, static_cast<int32_t>(s.prompt_logprobs.size()));
  }
  if (options_.prefix_cache) {
    for (int32_t i = 0; (i + 1) * bt <= shareable; ++i) {
      absl::Span<const int32_t> block(s.tokens.data() + static_cast<size_t>(i) * bt, bt);
      const uint64_t hash = KvPool::ChainHash(parent, block);
      const int32_t b = kv_->Lookup(hash, parent, block);
      if (b < 0) break;
      s.cache.Adopt(b);
      parent = hash;
      s.chain.push_back(hash);
    }
  }
  const int32_t need = (n + bt - 1) / bt - static_cast<int32_t>(s.cache.blocks().size());
  if (kv_->available_blocks() - need < keep_free || !s.cache.Reserve(n).ok()) {
    s.cache.Clear();
    s.chain.clear();
    return false;
  }
  s.n_past = static_cast<int32_t>(s.chain.size()) * bt;
  if (s.cached_prompt_tokens < 0) s.cached_prompt_tokens = s.n_past;
  kv_->prefix_query_tokens += n;
  kv_->prefix_hit_tokens += s.n_past;
  return true;
}

void Scheduler::Admit(std::vector<std::unique_ptr<Sequence>>& active, double now) {
  // Preempted sequences first (oldest first), then the queue in order: a request that
  // does not fit holds back the ones behind it, so none is starved by smaller ones.
  while (!preempted_.empty() && static_cast<int>(active.size()) < options_.max_sequences) {
    Sequence& s = *preempted_.front();
    if (!Reserve(s, static_cast<int32_t>(active.size()))) return;
    active.push_back(std::move(preempted_.front()));
    preempted_.pop_front();
    std::lock_guard<std::mutex> lock(mu_);
    --waiting_;
  }
  if (!preempted_.empty()) return;
  while (true) {
    std::unique_ptr<Sequence> s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      // Cancelled requests are admitted regardless of the batch and the pool: Step
      // ends them with their final chunk at once.
      const bool cancelled = cancel_all_.load() || (queue_.front().handle && queue_.front().handle->cancelled());
      if (!cancelled && static_cast<int>(active.size()) >= options_.max_sequences) return;
      const SequenceRequest& front = queue_.front();
      if (!cancelled && !front.leader && front.prompt_ready && !front.prompt_ready->load()) {
        return;  // a sibling completion waits for its leader's prompt blocks
      }
      s = std::make_unique<Sequence>(std::move(queue_.front()), *model_, kv_);
      if (!cancelled && !Reserve(*s, static_cast<int32_t>(active.size()))) {
        queue_.front() = std::move(s->req);  // waits for blocks
        return;
      }
      queue_.pop_front();
      --waiting_;
    }
    s->start_time_s = now;
    active.push_back(std::move(s));
  }
}

void Scheduler::Preempt(std::unique_ptr<Sequence> s) {
  // Its keys and values are recomputed when it is admitted again (published blocks
  // may still be cached then); what it generated stays in s->tokens.
  s->cache.Clear();
  s->chain.clear();
  s->n_past = 0;
  spdlog::debug("preempted a sequence of {} tokens", s->tokens.size());
  // Preempted newest first, so the front is the oldest: admitted again first.
  preempted_.push_front(std::move(s));
  std::lock_guard<std::mutex> lock(mu_);
  ++waiting_;
  ++preemptions_;
}

void Scheduler::PublishBlocks(Sequence& s) {
  if (!options_.prefix_cache) return;
  const int32_t bt = kv_->block_tokens();
  for (size_t i = s.chain.size(); static_cast<int32_t>((i + 1) * bt) <= s.n_past; ++i) {
    absl::Span<const int32_t> block(s.tokens.data() + i * bt, bt);
    const uint64_t parent = i == 0 ? 0 : s.chain[i - 1];
    const uint64_t hash = KvPool::ChainHash(parent, block);
    kv_->Publish(s.cache.blocks()[i], hash, parent, block);
    s.chain.push_back(hash);
  }
}

void Scheduler::Step(std::vector<std::unique_ptr<Sequence>>& active) {
  const double now = MonotonicSeconds();
  // Cancelled sequences end first (their blocks go back to the pool).
  for (auto& sp : active) {
    if (cancel_all_.load() || (sp->req.handle && sp->req.handle->cancelled())) {
      Finish(*sp, FinishReason::kCancelled, now);
    }
  }
  // Every decoding sequence needs room for its next token; when the pool has none,
  // the most recently admitted sequence gives its blocks back (preemption).
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence& s = *active[i];
    if (s.done) continue;
    while (!s.cache.Reserve(static_cast<int32_t>(s.tokens.size())).ok()) {
      size_t victim = active.size() - 1;
      while (victim > i && active[victim]->done) --victim;
      Preempt(std::move(active[victim]));
      active.erase(active.begin() + static_cast<std::ptrdiff_t>(victim));
      if (victim == i) break;  // it was the newest itself
    }
  }
  std::vector<BatchToken> batch;
  // Logits rows in batch order: rows[r] is the sequence whose token has row r, with
  // the prompt position when the row is for a prompt logprob, -1 for the sampling row.
  struct LogitsRow {
    Sequence* seq;
    int32_t prompt_pos;
  };
  std::vector<LogitsRow> rows;
  // Tokens still to read before the next sample (0 while decoding).
  auto remaining_prompt = [](const Sequence* s) {
    return std::max<int32_t>(0, static_cast<int32_t>(s->tokens.size()) - s->n_past - 1);
  };
  // Decoding sequences first, then prompts by what is left of them: a short prompt
  // gets its first token in the next step instead of waiting behind a long one.
  std::vector<Sequence*> order;
  bool decoding = false;
  for (auto& sp : active) {
    if (sp->done) continue;
    order.push_back(sp.get());
    decoding |= remaining_prompt(sp.get()) == 0;
  }
  std::stable_sort(order.begin(), order.end(), [&](const Sequence* a, const Sequence* b) {
    return remaining_prompt(a) < remaining_prompt(b);
  });
  int32_t prefill_budget = kFirstPrefillChunk;  // until a chunk has been measured
  if (prefill_token_s_ > 0) {
    const double seconds = decoding ? kPrefillChunkSeconds : kPrefillAloneSeconds;
    prefill_budget = static_cast<int32_t>(
        std::clamp<double>(seconds / prefill_token_s_, kMinPrefillChunk, kPrefillChunk));
  }
  int32_t prefill_tokens = 0;
  std::vector<Sequence*> stepped;
  for (Sequence* sp : order) {
    Sequence& s = *sp;
    const int32_t pending = static_cast<int32_t>(s.tokens.size()) - s.n_past;
    int32_t count = pending;
    if (pending > 1) {
      if (prefill_budget <= 0) continue;  // next step
      count = std::min(pending, prefill_budget);
      prefill_budget -= count;
      prefill_tokens += count;
    }
    const int32_t lp_begin = static_cast<int32_t>(s.prompt_logprobs.size()), lp_end = s.PromptLogitsEnd();
    for (int32_t i = 0; i < count; ++i) {
      const int32_t pos = s.n_past + i;
      const bool last = i == count - 1 && pos + 1 == static_cast<int32_t>(s.tokens.size());
      const bool prompt_row = !last && pos >= lp_begin && pos < lp_end;
      batch.push_back({s.tokens[pos], pos, &s.cache, last || prompt_row});
      if (last || prompt_row) rows.push_back({&s, last ? -1 : pos});
    }
    s.n_past += count;
    stepped.push_back(&s);
  }
  if (batch.empty()) return;
  if (absl::Status st = model_->model->Forward(batch, *pool_, ws_, &logits_); !st.ok()) {
    // A backend failure (device out of memory, an ATen error): every sequence of the
    // step ends with it; the model and the server stay up.
    for (auto& sp : active) {
      if (!sp->done) Fail(*sp, st);
    }
    return;
  }
  for (Sequence* sp : stepped) {
    PublishBlocks(*sp);
    // A leader's prompt is in the cache once every prompt token but the last is.
    if (sp->req.leader && sp->n_past + 1 >= static_cast<int32_t>(sp->req.prompt.size())) {
      sp->req.prompt_ready->store(true);
    }
  }
  const double after = MonotonicSeconds();
  // A step costs a fixed part (every weight is read once per forward pass, whatever
  // the batch) plus a part per prompt token: decode-only steps measure the first,
  // steps with a chunk the second. Halving moving averages follow the attention cost
  // growing along a long prompt.
  const double took = after - now;
  auto average = [](double& avg, double x) { avg = avg == 0 ? x : 0.5 * avg + 0.5 * x; };
  if (prefill_tokens == 0) {
    average(fixed_step_s_, took);
  } else if (prefill_tokens >= kMinPrefillChunk) {
    average(prefill_token_s_, std::max(took - fixed_step_s_, 0.1 * took) / prefill_tokens);
  }
  const int32_t vocab = model_->model->config().vocab_size;
  for (size_t i = 0; i < rows.size(); ++i) {
    Sequence& s = *rows[i].seq;
    absl::Span<float> row(logits_.data() + i * vocab, vocab);
    if (const int32_t pos = rows[i].prompt_pos; pos >= 0) {
      // Rows come in position order from prompt_logprobs.size() on (what a preempted
      // sequence had is kept and not asked for again).
      if (pos == static_cast<int32_t>(s.prompt_logprobs.size())) {
        s.prompt_logprobs.push_back(LogprobsOf(row, s.req.prompt[pos + 1], s.req.sampling.prompt_logprobs));
      }
      continue;
    }
    // Logprobs are of the model's own distribution: kept before the sampler's
    // penalties and bias change the row.
    const bool want_logprobs = s.req.sampling.logprobs;
    if (want_logprobs) raw_row_.assign(row.begin(), row.end());
    // The constraint masks first: penalties, top-k/top-p and temperature then see only
    // the tokens the grammar allows.
    if (s.req.automaton) {
      if (!trie_) trie_ = BuildTokenTrie(*model_->tokenizer);
      if (!s.req.automaton->Apply(s.grammar_state, *trie_, row)) {
        Finish(s, FinishReason::kGrammarDeadEnd, after);
        continue;
      }
    }
    const int32_t token = s.sampler.Sample(row, s.tokens, s.req.prompt.size());
    if (s.req.automaton && !model_->tokenizer->IsEndOfGeneration(token)) {
      s.grammar_state = s.req.automaton->Walk(s.grammar_state, trie_->bytes(token));
    }
    std::optional<TokenLogprob> logprob;
    if (want_logprobs) logprob = LogprobsOf(raw_row_, token, s.req.sampling.top_logprobs);
    Emit(s, token, after, std::move(logprob));
  }
}

namespace {
// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t HeldBackLength(const std::string& text, const std::vector<std::string>& stops) {
  size_t keep = 0;
  for (const auto& stop : stops) {
    for (size_t len = std::min(text.size(), stop.size() - 1); len > keep; --len) {
      if (text.compare(text.size() - len, len, stop, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  return keep;
}
}  // namespace

void Scheduler::Emit(Sequence& s, int32_t token, double now, std::optional<TokenLogprob> logprob) {
  if (s.generated == 0) s.first_token_s = now;
  s.last_token_s = now;
  ++s.generated;
  const Tokenizer& tok = *model_->tokenizer;
  if (logprob) s.held_logprobs.push_back(std::move(*logprob));
  const auto& stop_ids = s.req.sampling.stop_token_ids;
  const bool stop_id = std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end();
  if (tok.IsEndOfGeneration(token) || stop_id) {
    s.held_ids.push_back(token);
    Finish(s, stop_id ? FinishReason::kStop : FinishReason::kEos, now);
    return;
  }
  s.tokens.push_back(token);
  s.held += s.decoder.Push(token);
  s.held_ids.push_back(token);
  const auto& stops = s.req.sampling.stop;
  if (!stops.empty()) {
    size_t cut = std::string::npos;
    for (const auto& stop : stops) cut = std::min(cut, s.held.find(stop));
    if (cut != std::string::npos) {
      s.held.resize(cut);
      Finish(s, FinishReason::kStop, now);
      return;
    }
  }
  const bool out_of_context = static_cast<int32_t>(s.tokens.size()) >= model_->context_length;
  if (s.generated >= s.req.max_new_tokens || out_of_context) {
    Finish(s, FinishReason::kLength, now);
    return;
  }
  const size_t hold = stops.empty() ? 0 : HeldBackLength(s.held, stops);
  GenerationChunk chunk;
  chunk.text = s.held.substr(0, s.held.size() - hold);
  s.held.erase(0, s.held.size() - hold);
  chunk.token_ids = std::move(s.held_ids);
  s.held_ids.clear();
  chunk.logprobs = std::move(s.held_logprobs);
  s.held_logprobs.clear();
  TakePromptLogprobs(s, chunk);
  s.req.callbacks.on_chunk(std::move(chunk));
}

void Scheduler::TakePromptLogprobs(Sequence& s, GenerationChunk& chunk) {
  if (s.req.sampling.prompt_logprobs < 0 || s.prompt_logprobs_sent) return;
  chunk.prompt_logprobs = std::move(s.prompt_logprobs);
  s.prompt_logprobs.clear();
  s.prompt_logprobs_sent = true;
}

void Scheduler::Fail(Sequence& s, const absl::Status& status) {
  spdlog::warn("sequence failed: {}", status.ToString());
  Retire(s);
  s.req.callbacks.on_done(status, GenerationChunk{});
}

void Scheduler::Finish(Sequence& s, FinishReason reason, double now) {
  GenerationChunk chunk;
  chunk.final = true;
  chunk.finish_reason = reason;
  chunk.text = std::move(s.held);
  if (reason != FinishReason::kStop) chunk.text += s.decoder.Flush();
  chunk.token_ids = std::move(s.held_ids);
  chunk.logprobs = std::move(s.held_logprobs);
  TakePromptLogprobs(s, chunk);
  chunk.prompt_tokens = static_cast<int32_t>(s.req.prompt.size());
  chunk.completion_tokens = s.generated;
  if (s.generated > 0) {
    chunk.time_to_first_token_s = s.first_token_s - s.req.submit_time_s;
    const double prefill_s = s.first_token_s - s.start_time_s;
    if (prefill_s > 0) chunk.prefill_tokens_per_second = chunk.prompt_tokens / prefill_s;
    if (s.generated > 1 && s.last_token_s > s.first_token_s) {
      chunk.decode_tokens_per_second = (s.generated - 1) / (s.last_token_s - s.first_token_s);
    }
  }
  chunk.total_s = now - s.req.submit_time_s;
  if (s.start_time_s > 0) chunk.queue_s = s.start_time_s - s.req.submit_time_s;
  chunk.cached_prompt_tokens = s.cached_prompt_tokens;
  Retire(s);
  s.req.callbacks.on_done(absl::OkStatus(), std::move(chunk));
}

}  // namespace ingot
