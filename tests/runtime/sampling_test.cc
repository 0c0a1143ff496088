#include "engine/runtime/sampling.h"

#include <cmath>
#include <map>
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

}  // namespace
}  // namespace ingot
