// Collects one generation's chunks (Engine::Generate callbacks) and waits for its end.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/runtime/engine.h"

namespace ingot::testing {

struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::Status status;
  std::string text;
  std::vector<int32_t> ids;
  std::map<int, std::vector<int32_t>> ids_by_index;  // n completions: each one's tokens
  std::map<int, FinishReason> finish_by_index;
  GenerationChunk final;
  std::vector<TokenLogprob> logprobs;
  std::vector<TokenLogprob> prompt_logprobs;
  int prompt_logprob_chunks = 0;  // chunks that carried prompt logprobs (at most one)
  int chunks = 0;

  GenerationCallbacks Callbacks() {
    return {[this](GenerationChunk c) {
              std::lock_guard<std::mutex> l(mu);
              text += c.text;
              ids.insert(ids.end(), c.token_ids.begin(), c.token_ids.end());
              ids_by_index[c.index].insert(ids_by_index[c.index].end(), c.token_ids.begin(), c.token_ids.end());
              if (c.finish_reason != FinishReason::kNone) finish_by_index[c.index] = c.finish_reason;
              logprobs.insert(logprobs.end(), c.logprobs.begin(), c.logprobs.end());
              TakePrompt(c);
              ++chunks;
              cv.notify_all();
            },
            [this](absl::Status s, GenerationChunk c) {
              std::lock_guard<std::mutex> l(mu);
              status = s;
              text += c.text;
              ids.insert(ids.end(), c.token_ids.begin(), c.token_ids.end());
              logprobs.insert(logprobs.end(), c.logprobs.begin(), c.logprobs.end());
              TakePrompt(c);
              final = c;
              done = true;
              cv.notify_all();
            }};
  }
  void TakePrompt(const GenerationChunk& c) {
    if (c.prompt_logprobs.empty()) return;
    prompt_logprobs.insert(prompt_logprobs.end(), c.prompt_logprobs.begin(), c.prompt_logprobs.end());
    ++prompt_logprob_chunks;
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done; });
  }
  void WaitForChunks(int n) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return chunks >= n || done; });
  }
};

}  // namespace ingot::testing
