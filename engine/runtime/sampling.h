// Token sampling: repetition penalty, then top-k, top-p, min-p, temperature and a
// seeded draw (llama.cpp's default order). Temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "engine/runtime/api.h"

namespace ingot {

class Sampler {
 public:
  // `seed` fixes the stream of draws: the same seed and inputs give the same tokens.
  Sampler(const SamplingParams& params, uint64_t seed);

  // Picks the next token from `logits` (vocab_size values, modified in place by the
  // penalties and bias). `history` is the sequence so far (prompt + generated);
  // `prompt_tokens` of it are the prompt (presence/frequency penalties count only what
  // was generated, as OpenAI's do).
  int32_t Sample(absl::Span<float> logits, absl::Span<const int32_t> history, size_t prompt_tokens = 0);

  // Tokens considered for the repetition penalty (llama.cpp's penalty_last_n).
  static constexpr int kPenaltyWindow = 64;

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  struct Candidate {
    int32_t id;
    float logit;
  };
  std::vector<Candidate> cand_;
  std::vector<float> probs_;
};

// Index of the largest value; ties go to the lowest index.
int32_t ArgMax(absl::Span<const float> logits);

// log-softmax(logits)[token] and the `top` most likely tokens with theirs (most likely
// first, ties to the lower id), in double precision.
TokenLogprob LogprobsOf(absl::Span<const float> logits, int32_t token, int32_t top);

}  // namespace ingot
