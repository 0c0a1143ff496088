// AwqSearchScales against AutoAWQ 0.2.9's _search_best_scale (duo_scaling=False: tests/
// reference/gen_quant_gptq.py; duo_scaling=True, AutoAWQ's default: gen_quant_awq.py),
// and the properties of the search as the caller uses it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <utility>
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
using ::ingot::quant::testing::LoadGptqIndex;
using ::ingot::quant::testing::LoadQuantIndex;
using ::ingot::quant::testing::LoadRaw;
using ::ingot::quant::testing::RandomWeights;
using ::ingot::quant::testing::StatsFromInputs;

TEST(AwqTest, MatchesAutoAwqScales) {
  const nlohmann::json index = LoadGptqIndex();
  const nlohmann::json& a = index["awq"];
  const int64_t cols = a["cols"];
  const int64_t r0 = a["rows"][0], r1 = a["rows"][1];
  const std::vector<float> w0 = LoadRaw<float>(a["w"][0], r0 * cols);
  const std::vector<float> w1 = LoadRaw<float>(a["w"][1], r1 * cols);
  const CalibrationStats calib = AwqInputsFromIndex(a, "act_abs_mean", "gptq");
  ASSERT_GE(a["cases"].size(), 3u);
  for (const nlohmann::json& c : a["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    // The data is made so that the best grid point wins clearly; a near-tie would make
    // the comparison meaningless.
    ASSERT_GT(c["relative_gap"].get<double>(), 1e-3);
    MethodParams p;
    p.bits = c["bits"];
    p.group_size = c["group_size"];
    p.symmetric = c["symmetric"];
    p.awq_grid = c["grid"];
    p.awq_duo_scaling = false;
    const std::vector<float> peer = LoadRaw<float>(c["s"], cols);
    absl::StatusOr<std::vector<float>> s =
        AwqSearchScales({{w0.data(), r0}, {w1.data(), r1}}, cols, calib, p);
    ASSERT_OK(s);
    ASSERT_EQ(s->size(), static_cast<size_t>(cols));
    double max_rel = 0.0;
    for (int64_t i = 0; i < cols; ++i) {
      max_rel = std::max(max_rel, std::fabs((*s)[i] - peer[i]) / static_cast<double>(peer[i]));
    }
    std::cout << c["name"].get<std::string>() << ": peer's best grid index "
              << c["best_index"] << ", max relative difference of s " << max_rel << "\n";
    EXPECT_LE(max_rel, 1e-5);
  }
}

// Duo scaling (s from x_mean^r / w_mean^(1-r)) against the peer on gen_quant_awq.py's
// layer: two linears of 64 and 128 rows sharing 1030 input tokens, one weight column
// and a few input channels large.
TEST(AwqTest, MatchesAutoAwqDuoScales) {
  const nlohmann::json a = LoadQuantIndex("awq");
  const int64_t cols = a["cols"];
  const int64_t r0 = a["rows"][0], r1 = a["rows"][1];
  const std::vector<float> w0 = LoadRaw<float>(a["w"][0], r0 * cols, "awq");
  const std::vector<float> w1 = LoadRaw<float>(a["w"][1], r1 * cols, "awq");
  const CalibrationStats calib = AwqInputsFromIndex(a, "x_mean", "awq");
  ASSERT_GE(a["cases"].size(), 4u);
  std::set<int> best_indices;
  for (const nlohmann::json& c : a["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ASSERT_TRUE(c["duo_scaling"].get<bool>());
    ASSERT_GT(c["relative_gap"].get<double>(), 1e-3);  // no near-tie between grid points
    best_indices.insert(c["best_index"].get<int>());
    MethodParams p;  // duo scaling is the default, as in AutoAWQ
    p.bits = c["bits"];
    p.group_size = c["group_size"];
    p.symmetric = c["symmetric"];
    p.awq_grid = c["grid"];
    const std::vector<float> peer = LoadRaw<float>(c["s"], cols, "awq");
    absl::StatusOr<std::vector<float>> s =
        AwqSearchScales({{w0.data(), r0}, {w1.data(), r1}}, cols, calib, p);
    ASSERT_OK(s);
    double max_rel = 0.0;
    for (int64_t i = 0; i < cols; ++i) {
      max_rel = std::max(max_rel, std::fabs((*s)[i] - peer[i]) / static_cast<double>(peer[i]));
    }
    std::cout << c["name"].get<std::string>() << ": peer's best grid index " << c["best_index"]
              << ", max relative difference of s " << max_rel << "\n";
    EXPECT_LE(max_rel, 1e-5);
    // Not the old formulation in disguise: without duo scaling the search lands elsewhere.
    p.awq_duo_scaling = false;
    absl::StatusOr<std::vector<float>> plain =
        AwqSearchScales({{w0.data(), r0}, {w1.data(), r1}}, cols, calib, p);
    ASSERT_OK(plain);
    double plain_rel = 0.0;
    for (int64_t i = 0; i < cols; ++i) {
      plain_rel = std::max(plain_rel, std::fabs((*plain)[i] - peer[i]) / static_cast<double>(peer[i]));
    }
    EXPECT_GT(plain_rel, 1e-2);
  }
  EXPECT_GE(best_indices.size(), 2u);  // the cases do not all pick one grid point
}

// One grid point is ratio 0: without duo scaling s = 1, and quantizing W * s is plain
// round-to-nearest.
TEST(AwqTest, GridOfOneIsRoundToNearest) {
  const int64_t rows = 16, cols = 128, tokens = 64;
  const CalibrationStats calib = StatsFromInputs(CorrelatedInputs(tokens, cols, 8, 1), tokens, cols);
  const std::vector<float> w = RandomWeights(rows, cols, 2);
  MethodParams p;
  p.group_size = 64;
  p.awq_grid = 1;
  p.awq_duo_scaling = false;
  absl::StatusOr<std::vector<float>> s = AwqSearchScales({{w.data(), rows}}, cols, calib, p);
  ASSERT_OK(s);
  std::vector<float> ws(w);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ((*s)[c], 1.0f);
      ws[r * cols + c] *= (*s)[c];
    }
  }
  absl::StatusOr<QuantizedWeight> a = QuantizeAffineRtn(ws.data(), rows, cols, p);
  absl::StatusOr<QuantizedWeight> b = QuantizeAffineRtn(w.data(), rows, cols, p);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(0, std::memcmp(a->view.affine.q, b->view.affine.q, rows * a->view.affine.row_bytes));
  EXPECT_EQ(0, std::memcmp(a->view.affine.scale, b->view.affine.scale, 2 * rows * 2));
}

// Output error over the samples of the caller's recipe: quantize W diag(s) with
// QuantizeAffineRtn and divide the dequantized columns by s.
double OutputError(const std::vector<float>& w, int64_t rows, int64_t cols,
                   const std::vector<float>& s, const CalibrationStats& calib,
                   const MethodParams& p) {
  std::vector<float> ws(w);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) ws[r * cols + c] *= s[c];
  }
  absl::StatusOr<QuantizedWeight> q = QuantizeAffineRtn(ws.data(), rows, cols, p);
  EXPECT_OK(q);
  const std::vector<float> deq = Dequantize(q->view.affine);
  double err = 0.0;
  for (int64_t t = 0; t < calib.n_samples; ++t) {
    const float* xt = &calib.samples[t * cols];
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        d += static_cast<double>(xt[c]) * (w[r * cols + c] - deq[r * cols + c] / s[c]);
      }
      err += d * d;
    }
  }
  return err;
}

// Salient input channels (large mean |x|) get s > 1 and the largest scales, and the caller's recipe with the
// chosen s has less output error than plain round-to-nearest (s = 1).
TEST(AwqTest, ProtectsSalientChannelsAndLowersOutputError) {
  const int64_t rows = 64, cols = 256, tokens = 128;
  std::vector<float> x = CorrelatedInputs(tokens, cols, 16, 3);
  const std::vector<int64_t> salient = {10, 100, 200};
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c : salient) x[t * cols + c] *= 30.0f;
  }
  const CalibrationStats calib = StatsFromInputs(x, tokens, cols);
  const std::vector<float> w = RandomWeights(rows, cols, 4);
  for (const auto& [sym, duo] :
       {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    SCOPED_TRACE(::testing::Message() << "sym " << sym << " duo_scaling " << duo);
    MethodParams p;
    p.bits = 4;
    p.group_size = 64;
    p.symmetric = sym;
    p.awq_duo_scaling = duo;
    absl::StatusOr<std::vector<float>> s = AwqSearchScales({{w.data(), rows}}, cols, calib, p);
    ASSERT_OK(s);
    float s_max = 0.0f, s_min = 1e30f;
    for (float v : *s) {
      s_max = std::max(s_max, v);
      s_min = std::min(s_min, v);
    }
    EXPECT_NEAR(s_max * s_min, 1.0f, 1e-4f);  // s / sqrt(max(s) * min(s))
    // Every salient channel is scaled up above every other channel (with duo scaling
    // s also follows 1 / w_mean, so the margin is smaller than without).
    float others_max = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      if (std::find(salient.begin(), salient.end(), c) == salient.end()) {
        others_max = std::max(others_max, (*s)[c]);
      }
    }
    for (int64_t c : salient) {
      EXPECT_GT((*s)[c], 1.0f) << "channel " << c;
      EXPECT_GT((*s)[c], others_max) << "channel " << c;
    }
    const std::vector<float> ones(cols, 1.0f);
    MethodParams rtn = p;
    rtn.symmetric = false;  // the caller's storage: asymmetric affine groups
    EXPECT_LT(OutputError(w, rows, cols, *s, calib, rtn),
              0.9 * OutputError(w, rows, cols, ones, calib, rtn));
  }
}

TEST(AwqTest, RejectsBadInputs) {
  const std::vector<float> w(8 * 64, 0.1f);
  CalibrationStats calib = StatsFromInputs(std::vector<float>(4 * 64, 1.0f), 4, 64);
  MethodParams p;
  p.group_size = 32;
  EXPECT_THAT(AwqSearchScales({}, 64, calib, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AwqSearchScales({{w.data(), 8}}, 32, calib, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  calib.n_samples = 0;
  EXPECT_THAT(AwqSearchScales({{w.data(), 8}}, 64, calib, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("samples")));
  calib.n_samples = 4;
  p.awq_grid = 0;
  EXPECT_THAT(AwqSearchScales({{w.data(), 8}}, 64, calib, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("awq_grid")));
}

}  // namespace
}  // namespace ingot::quant
