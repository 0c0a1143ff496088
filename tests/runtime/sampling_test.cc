#include "engine/runtime/sampling.h"

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, 0.5f, 2.9f, -1.0f}; }

TEST(SamplingTest, GreedyIsArgmax) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 1);
  auto l = Logits();
  EXPECT_EQ(s.Sample(absl::MakeSpan(l), {}), 1);
  EXPECT_EQ(ArgMax(std::vector<float>{2, 5, 5, 1}), 1);  // ties: lowest id
}

// ArgMax against a plain first-index scan on rows of every length around its 16-lane
// blocks, with the maximum in the blocks and in the tail, ties in different lanes, and
// NaNs (which never win).
TEST(SamplingTest, ArgMaxMatchesPlainScan) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-3, 3);
  for (size_t n : {1, 2, 15, 16, 17, 31, 32, 33, 100, 49152}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> v(n);
      for (float& f : v) f = static_cast<float>(small(rng));  // many ties
      if (trial % 3 == 1) v[rng() % n] = std::nanf("");
      if (trial % 5 == 2) v[n - 1] = 100.0f;  // the tail holds the maximum
      int32_t want = -1;
      for (size_t i = 0; i < n; ++i) {
        if (!std::isnan(v[i]) && (want < 0 || v[i] > v[want])) want = static_cast<int32_t>(i);
      }
      if (want < 0) want = 0;
      ASSERT_EQ(ArgMax(v), want) << "n " << n << " trial " << trial;
    }
  }
}

TEST(SamplingTest, SameSeedSameDraws) {
  SamplingParams p;
  p.temperature = 1.5f;
  Sampler a(p, 42), b(p, 42), c(p, 43);
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 200; ++i) {
    auto l1 = Logits(), l2 = Logits(), l3 = Logits();
    da.push_back(a.Sample(absl::MakeSpan(l1), {}));
    db.push_back(b.Sample(absl::MakeSpan(l2), {}));
    dc.push_back(c.Sample(absl::MakeSpan(l3), {}));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(SamplingTest, TopKKeepsOnlyTheBest) {
  SamplingParams p;
  p.top_k = 2;
  Sampler s(p, 5);
  for (int i = 0; i < 300; ++i) {
    auto l = Logits();
    const int32_t t = s.Sample(absl::MakeSpan(l), {});
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
}

TEST(SamplingTest, TopPAndMinPCutTheTail) {
  // Probabilities at T=1: softmax(Logits()).
  SamplingParams p;
  p.top_p = 0.5f;  // p = .40 for token 1; with token 4 (.36) the mass reaches .76
  Sampler s(p, 9);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 500; ++i) {
    auto l = Logits();
    ++seen[s.Sample(absl::MakeSpan(l), {})];
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.count(1) && seen.count(4));

  SamplingParams q;
  q.min_p = 0.5f;  // keeps p >= 0.5 p_max: tokens 1 and 4 (0.90 p_max); token 2 is 0.37
  Sampler m(q, 11);
  seen.clear();
  for (int i = 0; i < 500; ++i) {
    auto l = Logits();
    ++seen[m.Sample(absl::MakeSpan(l), {})];
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST(SamplingTest, TemperatureSharpens) {
  SamplingParams cold;
  cold.temperature = 0.01f;  // logits 3.0 vs 2.9 -> odds e^10 for token 1
  Sampler s(cold, 3);
  int best = 0;
  for (int i = 0; i < 200; ++i) {
    auto l = Logits();
    best += s.Sample(absl::MakeSpan(l), {}) == 1;
  }
  EXPECT_GT(best, 190);
}

TEST(SamplingTest, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  Sampler s(p, 1);
  auto l = Logits();
  const std::vector<int32_t> history = {1, 1, 1};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l), history), 4);  // 3.0 / 2 = 1.5 < 2.9
  EXPECT_FLOAT_EQ(l[1], 1.5f);                          // penalized once, not thrice
  auto neg = std::vector<float>{-1.0f, -2.0f};
  SamplingParams q = p;
  Sampler t(q, 1);
  t.Sample(absl::MakeSpan(neg), std::vector<int32_t>{0});
  EXPECT_FLOAT_EQ(neg[0], -2.0f);  // negative logits are multiplied
}

TEST(SamplingTest, ValidationNamesTheField) {
  SamplingParams p;
  EXPECT_OK(ValidateSamplingParams(p));
  auto bad = [](auto mutate) {
    SamplingParams q;
    mutate(q);
    return ValidateSamplingParams(q);
  };
  EXPECT_THAT(bad([](auto& q) { q.temperature = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature")));
  EXPECT_THAT(bad([](auto& q) { q.temperature = NAN; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature")));
  EXPECT_THAT(bad([](auto& q) { q.top_p = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  EXPECT_THAT(bad([](auto& q) { q.top_p = 1.5f; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  EXPECT_THAT(bad([](auto& q) { q.top_k = -3; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  EXPECT_THAT(bad([](auto& q) { q.min_p = 2; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_p")));
  EXPECT_THAT(bad([](auto& q) { q.repetition_penalty = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repetition_penalty")));
  EXPECT_THAT(bad([](auto& q) { q.max_tokens = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tokens")));
  EXPECT_THAT(bad([](auto& q) { q.stop = {""}; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop")));
}

// presence/frequency penalties count generated tokens only (after prompt_tokens), and
// subtract presence once and frequency per occurrence; bias adds; then greedy.
TEST(SamplingTest, PenaltiesAndBiasFollowTheirDefinitions) {
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{3, 1.0f}};
  Sampler s(p, 1);
  auto l = Logits();  // {1, 3, 2, 0.5, 2.9, -1}
  // history: prompt {1, 1} (not counted), generated {1, 4, 4}
  const std::vector<int32_t> history = {1, 1, 1, 4, 4};
  s.Sample(absl::MakeSpan(l), history, /*prompt_tokens=*/2);
  EXPECT_FLOAT_EQ(l[1], 3.0f - 0.5f - 0.25f * 1);
  EXPECT_FLOAT_EQ(l[4], 2.9f - 0.5f - 0.25f * 2);
  EXPECT_FLOAT_EQ(l[3], 0.5f + 1.0f);
  EXPECT_FLOAT_EQ(l[2], 2.0f);
  auto l2 = Logits();
  EXPECT_EQ(s.Sample(absl::MakeSpan(l2), history, 2), 1);  // 2.25 beats 2.0 and 1.9
  p.frequency_penalty = 1.0f;
  Sampler s2(p, 1);
  auto l3 = Logits();
  EXPECT_EQ(s2.Sample(absl::MakeSpan(l3), history, 2), 2);  // 1.5 < 2.0
}

TEST(SamplingTest, LogprobsAreLogSoftmaxWithTheTopTokens) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -1.0f};
  const TokenLogprob lp = LogprobsOf(l, 2, 3);
  double sum = 0;
  for (float x : l) sum += std::exp(static_cast<double>(x));
  EXPECT_NEAR(lp.logprob, 2.0 - std::log(sum), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);  // tie with 4: the lower id first
  EXPECT_EQ(lp.top[1].first, 4);
  EXPECT_EQ(lp.top[2].first, 2);
  EXPECT_NEAR(lp.top[2].second, lp.logprob, 1e-7);
  EXPECT_TRUE(LogprobsOf(l, 0, 0).top.empty());
}

TEST(SamplingTest, NewFieldsAreRangeChecked) {
  SamplingParams p;
  p.frequency_penalty = -2.5f;
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("frequency_penalty")));
  p = SamplingParams{};
  p.logit_bias = {{5, 101.0f}};
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("logit_bias[5]")));
  p = SamplingParams{};
  p.stop_token_ids = {-1};
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop_token_ids")));
  p = SamplingParams{};
  p.top_logprobs = 21;
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_logprobs")));
}

}  // namespace
}  // namespace ingot
