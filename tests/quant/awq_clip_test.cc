// AwqSearchClip / AwqApplyClip against AutoAWQ 0.2.9's _compute_best_clip (tests/reference/
// gen_quant_awq.py: the search as AwqQuantizer.quantize runs it after apply_scale, on each
// weight times the peer's duo scales and the inputs divided by them), and the properties
// of the clipped weights as the caller quantizes them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "tests/quant/affine_test_util.h"
#include "tests/test_util.h"

namespace ingot::quant {
namespace {

using ::ingot::quant::testing::AwqInputsFromIndex;
using ::ingot::quant::testing::CorrelatedInputs;
using ::ingot::quant::testing::Dequantize;
using ::ingot::quant::testing::LoadF16AsF32;
using ::ingot::quant::testing::LoadQuantIndex;
using ::ingot::quant::testing::LoadRaw;
using ::ingot::quant::testing::RandomWeights;
using ::ingot::quant::testing::StatsFromInputs;

TEST(AwqClipTest, MatchesAutoAwqClip) {
  const nlohmann::json a = LoadQuantIndex("awq");
  const int64_t cols = a["cols"];
  const CalibrationStats calib = AwqInputsFromIndex(a, "x_mean", "awq");
  ASSERT_GE(a["cases"].size(), 4u);
  int64_t total_clipped = 0, total_groups = 0;
  for (const nlohmann::json& c : a["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    MethodParams p;
    p.bits = c["bits"];
    p.group_size = c["group_size"];
    p.symmetric = c["symmetric"];
    const std::vector<float> s = LoadRaw<float>(c["s"], cols, "awq");
    for (size_t i = 0; i < c["clip"].size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "linear " << i);
      const int64_t rows = a["rows"][i];
      const int64_t n_groups = cols / p.group_size;
      std::vector<float> w = LoadRaw<float>(a["w"][i], rows * cols, "awq");
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < cols; ++k) w[r * cols + k] *= s[k];
      }
      const std::vector<float> peer = LoadRaw<float>(c["clip"][i], rows * n_groups, "awq");
      absl::StatusOr<std::vector<float>> max_val = AwqSearchClip(w.data(), rows, cols, calib, s, p);
      ASSERT_OK(max_val);
      ASSERT_EQ(max_val->size(), peer.size());
      // The chosen shrink is the same in every (row, group) but those where the peer's
      // best two shrinks are within 1e-3 of each other (counted by the generator).
      int64_t differ = 0, clipped = 0;
      for (size_t j = 0; j < peer.size(); ++j) {
        if (std::memcmp(&(*max_val)[j], &peer[j], sizeof(float)) != 0) ++differ;
        float org = 0.0f;
        const int64_t r = static_cast<int64_t>(j) / n_groups, g = static_cast<int64_t>(j) % n_groups;
        for (int64_t k = g * p.group_size; k < (g + 1) * p.group_size; ++k) {
          org = std::max(org, std::fabs(w[r * cols + k]));
        }
        if (peer[j] < org) ++clipped;
      }
      std::cout << c["name"].get<std::string>() << " linear " << i << ": " << clipped << " of "
                << peer.size() << " groups clipped by the peer, " << differ
                << " differ (near-ties " << c["clip_near_ties"][i] << ")\n";
      EXPECT_LE(differ, c["clip_near_ties"][i].get<int64_t>());
      total_clipped += clipped;
      total_groups += static_cast<int64_t>(peer.size());
    }
  }
  // The data exercises the search: a good share of the groups is clipped, not all.
  EXPECT_GT(total_clipped, total_groups / 10);
  EXPECT_LT(total_clipped, total_groups);
}

// Output error over the samples of Q(clamp(w)) - w with the caller's storage
// (QuantizeAffineRtn).
double OutputError(const std::vector<float>& w, const std::vector<float>& clipped, int64_t rows,
                   int64_t cols, const CalibrationStats& calib, const MethodParams& p) {
  absl::StatusOr<QuantizedWeight> q = QuantizeAffineRtn(clipped.data(), rows, cols, p);
  EXPECT_OK(q);
  const std::vector<float> deq = Dequantize(q->view.affine);
  double err = 0.0;
  for (int64_t t = 0; t < calib.n_samples; ++t) {
    const float* xt = &calib.samples[t * cols];
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        d += static_cast<double>(xt[c]) * (w[r * cols + c] - deq[r * cols + c]);
      }
      err += d * d;
    }
  }
  return err;
}

// Weights with a few outliers per row: clipping them lowers the output error of the
// stored (round-to-nearest) weights; max_val never exceeds a group's max |w| and never
// goes below half of it (AutoAWQ's max_shrink 0.5, 10 of 20 grid points).
TEST(AwqClipTest, ClipsOutliersAndLowersOutputError) {
  const int64_t rows = 64, cols = 256, tokens = 256;
  const CalibrationStats calib =
      StatsFromInputs(CorrelatedInputs(tokens, cols, 16, 5), tokens, cols);
  std::vector<float> w = RandomWeights(rows, cols, 6);
  for (int64_t r = 0; r < rows; ++r) w[r * cols + (r * 37) % cols] *= 12.0f;
  for (const bool sym : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "sym " << sym);
    MethodParams p;
    p.bits = 4;
    p.group_size = 64;
    p.symmetric = sym;
    absl::StatusOr<std::vector<float>> max_val = AwqSearchClip(w.data(), rows, cols, calib, {}, p);
    ASSERT_OK(max_val);
    ASSERT_EQ(max_val->size(), static_cast<size_t>(rows * cols / 64));
    int64_t clipped = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < cols / 64; ++g) {
        float org = 0.0f;
        for (int64_t k = g * 64; k < (g + 1) * 64; ++k) org = std::max(org, std::fabs(w[r * cols + k]));
        const float m = (*max_val)[r * (cols / 64) + g];
        EXPECT_LE(m, org);
        EXPECT_GE(m, 0.5f * org);
        if (m < org) ++clipped;
      }
    }
    EXPECT_GT(clipped, rows / 2);  // at least the groups holding an outlier, mostly
    std::vector<float> wc(w);
    AwqApplyClip(wc.data(), rows, cols, p.group_size, *max_val);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) {
        EXPECT_LE(std::fabs(wc[r * cols + k]), (*max_val)[r * (cols / 64) + k / 64]);
      }
    }
    // Stored with the quantizer the search scored (AWQ's method row stores asymmetric
    // groups; QuantizeAffineRtn also stores symmetric ones).
    const double plain = OutputError(w, w, rows, cols, calib, p);
    const double with_clip = OutputError(w, wc, rows, cols, calib, p);
    std::cout << "sym " << sym << ": " << clipped << " groups clipped, output error "
              << plain << " -> " << with_clip << "\n";
    EXPECT_LT(with_clip, 0.9 * plain);
  }
}

// With scales, the search reads the inputs divided by them (as AutoAWQ's apply_scale
// divides the recorded input features): the same as passing X diag(s)^-1 and no scales,
// and not the same as scoring the scaled weights against the undivided inputs.
TEST(AwqClipTest, ScalesDivideTheInputs) {
  const int64_t rows = 64, cols = 128, tokens = 64;
  const CalibrationStats calib = StatsFromInputs(CorrelatedInputs(tokens, cols, 8, 7), tokens, cols);
  std::vector<float> w = RandomWeights(rows, cols, 8);
  for (int64_t r = 0; r < rows; ++r) w[r * cols + (r * 29) % cols] *= 8.0f;
  std::vector<float> s(cols), ws(w), xs(calib.samples);
  for (int64_t k = 0; k < cols; ++k) s[k] = (k % 3 == 0) ? 4.0f : 0.5f;  // exact in f32
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) ws[r * cols + k] *= s[k];
  }
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < cols; ++k) xs[t * cols + k] /= s[k];
  }
  const CalibrationStats divided = StatsFromInputs(xs, tokens, cols);
  MethodParams p;
  p.group_size = 32;
  absl::StatusOr<std::vector<float>> scaled = AwqSearchClip(ws.data(), rows, cols, calib, s, p);
  absl::StatusOr<std::vector<float>> by_hand = AwqSearchClip(ws.data(), rows, cols, divided, {}, p);
  absl::StatusOr<std::vector<float>> undivided = AwqSearchClip(ws.data(), rows, cols, calib, {}, p);
  ASSERT_OK(scaled);
  ASSERT_OK(by_hand);
  ASSERT_OK(undivided);
  EXPECT_EQ(*scaled, *by_hand);
  EXPECT_NE(*scaled, *undivided);
}

TEST(AwqClipTest, RejectsBadInputs) {
  const std::vector<float> w(8 * 64, 0.1f);
  const CalibrationStats calib = StatsFromInputs(std::vector<float>(4 * 64, 1.0f), 4, 64);
  MethodParams p;
  p.group_size = 32;
  EXPECT_THAT(AwqSearchClip(nullptr, 8, 64, calib, {}, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AwqSearchClip(w.data(), 16, 32, calib, {}, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("64 features")));
  EXPECT_THAT(AwqSearchClip(w.data(), 8, 64, calib, std::vector<float>(32, 1.0f), p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("32 scales")));
  p.group_size = 48;
  EXPECT_THAT(AwqSearchClip(w.data(), 8, 64, calib, {}, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ingot::quant
