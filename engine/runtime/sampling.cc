#include "engine/runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace ingot {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (p.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 1, got ", p.max_tokens));
  }
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0 (0 = greedy), got ", p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (0 = off), got ", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be > 0 (1 = off), got ", p.repetition_penalty));
  }
  if (p.n < 1 || p.n > 16) {
    return absl::InvalidArgumentError(absl::StrCat("n must be in [1, 16], got ", p.n));
  }
  if ((p.constraint.kind == OutputConstraint::Kind::kGrammar || p.constraint.kind == OutputConstraint::Kind::kJsonSchema) &&
      p.constraint.text.empty()) {
    return absl::InvalidArgumentError(p.constraint.kind == OutputConstraint::Kind::kGrammar
                                          ? "grammar is empty" : "json_schema is empty");
  }
  if (p.constraint.text.size() > (size_t{1} << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("grammar/json_schema is ", p.constraint.text.size(),
                                                   " bytes; at most 1 MiB"));
  }
  if (p.stop.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("at most 16 stop strings, got ", p.stop.size()));
  }
  for (const auto& s : p.stop) {
    if (s.empty()) return absl::InvalidArgumentError("stop strings must not be empty");
  }
  for (const auto& [name, v] : {std::pair<const char*, float>{"presence_penalty", p.presence_penalty},
                                {"frequency_penalty", p.frequency_penalty}}) {
    if (!(v >= -2.0f && v <= 2.0f)) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be in [-2, 2] (0 = off), got ", v));
    }
  }
  if (p.logit_bias.size() > 300) {
    return absl::InvalidArgumentError(absl::StrCat("logit_bias: at most 300 tokens, got ", p.logit_bias.size()));
  }
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("logit_bias: token id ", id, " is negative"));
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias[", id, "] must be in [-100, 100], got ", bias));
    }
  }
  if (p.stop_token_ids.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("at most 16 stop_token_ids, got ", p.stop_token_ids.size()));
  }
  for (int32_t id : p.stop_token_ids) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: token id ", id, " is negative"));
  }
  if (p.top_logprobs < 0 || p.top_logprobs > 20) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs must be in [0, 20], got ", p.top_logprobs));
  }
  if (p.prompt_logprobs < -1 || p.prompt_logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt_logprobs must be in [0, 20] (or unset), got ", p.prompt_logprobs));
  }
  return absl::OkStatus();
}

int32_t ArgMax(absl::Span<const float> logits) {
  // The maximum in 16 independent lanes (a loop the compiler turns into vector maxima;
  // the index-carrying loop it cannot), then its first index. NaNs never win, as in a
  // plain `>` scan; all-NaN rows give 0.
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
  const size_t n = logits.size(), whole = n - n % kLanes;
  for (size_t i = 0; i < whole; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) lane[l] = logits[i + l] > lane[l] ? logits[i + l] : lane[l];
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (float v : lane) mx = v > mx ? v : mx;
  for (size_t i = whole; i < n; ++i) mx = logits[i] > mx ? logits[i] : mx;
  for (size_t i = 0; i < n; ++i) {
    if (logits[i] == mx) return static_cast<int32_t>(i);
  }
  return 0;
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : params_(params), rng_(seed) {}

TokenLogprob LogprobsOf(absl::Span<const float> logits, int32_t token, int32_t top) {
  double mx = logits[0];
  for (float l : logits) mx = std::max<double>(mx, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob out;
  out.token_id = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  if (top > 0) {
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const size_t k = std::min<size_t>(static_cast<size_t>(top), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], static_cast<float>(logits[ids[i]] - lse));
  }
  return out;
}

int32_t Sampler::Sample(absl::Span<float> logits, absl::Span<const int32_t> history, size_t prompt_tokens) {
  for (const auto& [id, bias] : params_.logit_bias) {
    if (static_cast<size_t>(id) < logits.size()) logits[id] += bias;
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    absl::flat_hash_map<int32_t, int32_t> counts;
    for (size_t i = std::min(prompt_tokens, history.size()); i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [id, n] : counts) {
      if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(n);
    }
  }
  // CTRL-style penalty over the recent window, each token once: positive logits are
  // divided by the penalty, negative ones multiplied.
  if (params_.repetition_penalty != 1.0f) {
    absl::flat_hash_set<int32_t> seen;
    const size_t start = history.size() > kPenaltyWindow ? history.size() - kPenaltyWindow : 0;
    for (size_t i = start; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || static_cast<size_t>(id) >= logits.size() || !seen.insert(id).second) continue;
      float& l = logits[id];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.temperature == 0.0f || params_.top_k == 1) return ArgMax(logits);

  cand_.clear();
  cand_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) cand_.push_back({static_cast<int32_t>(i), logits[i]});
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cand_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    n = static_cast<size_t>(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + n, cand_.end(), by_logit);
    cand_.resize(n);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax at temperature 1 for the top-p / min-p filters (llama.cpp applies them
  // before temperature).
  probs_.resize(n);
  const float mx = cand_[0].logit;
  float sum = 0;
  for (size_t i = 0; i < n; ++i) {
    probs_[i] = std::exp(cand_[i].logit - mx);
    sum += probs_[i];
  }
  if (params_.top_p < 1.0f) {
    float cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += probs_[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (params_.min_p > 0.0f) {
    // probs_[0] is the largest: keep tokens with p >= min_p * p_max.
    size_t keep = 1;
    while (keep < n && probs_[keep] >= params_.min_p * probs_[0]) ++keep;
    n = keep;
  }
  // Temperature, then draw.
  sum = 0;
  for (size_t i = 0; i < n; ++i) {
    probs_[i] = std::exp((cand_[i].logit - mx) / params_.temperature);
    sum += probs_[i];
  }
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  double r = uni(rng_) * sum;
  for (size_t i = 0; i < n; ++i) {
    r -= probs_[i];
    if (r <= 0) return cand_[i].id;
  }
  // Rounding left r above 0: the last token with any probability (never one a
  // constraint masked to -inf).
  while (n > 1 && probs_[n - 1] == 0) --n;
  return cand_[n - 1].id;
}

}  // namespace ingot
