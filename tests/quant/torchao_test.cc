// torchao quantizers (engine/quant/torchao.cc) against torchao 0.18.0 itself
// (tests/data/quant/torch/, tests/reference/gen_quant_torch.py): int8 codes and int4 codes
// byte for byte, scales/biases as f16 of torchao's, dequantized values through
// kernels::LinearDequantizeRow within the f16 rounding of scale and bias, int8_dynamic's
// matmul, bytes per weight, bad shapes.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "tests/quant/torch_golden.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::HalfToFloat;
using ::ingot::testing::TorchGolden;
using ::testing::HasSubstr;

int64_t CountMismatches(const uint8_t* a, const std::vector<uint8_t>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < b.size(); ++i) n += a[i] != b[i];
  return n;
}

// f32 rounding slack of one dequantization (a product and a sum of f32 values).
float UlpSlack(float v) { return 3e-7f * std::fabs(v) + 1e-12f; }

TEST(TorchaoInt8, CodesExactScalesAreF16OfTorchao) {
  const auto& g = TorchGolden::Get();
  ASSERT_TRUE(g.ok()) << "tests/data/quant/torch/index.json missing: run "
                         "tests/reference/regenerate_quant.sh";
  const auto cases = g.Cases("torchao_int8");
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int64_t rows = c["rows"], cols = c["cols"], deq_rows = c["deq_rows"];
    const auto w = g.Input("w_" + c["weight"].get<std::string>());
    for (bool dynamic : {false, true}) {
      auto q = quant::QuantizeTorchaoInt8(w.data(), rows, cols, dynamic, {});
      ASSERT_OK(q);
      const kernels::AffineMatrix& a = q->view.affine;
      ASSERT_EQ(q->view.kind, kernels::LinearKind::kAffine);
      EXPECT_EQ(a.bits, 8);
      EXPECT_EQ(a.group, cols);
      EXPECT_EQ(a.zero_kind, kernels::ZeroKind::kZero);
      EXPECT_EQ(q->view.outlier_threshold, 0.0f);
      EXPECT_EQ(q->representation, dynamic ? "int8/row+dyn" : "int8/row");
      const auto codes = g.Read<uint8_t>(c["codes"]);
      ASSERT_EQ(codes.size(), static_cast<size_t>(rows * cols));
      EXPECT_EQ(CountMismatches(a.q, codes), 0) << "qdata + 128 differs from torchao's";
      const auto scale = g.Read<uint16_t>(c["scale"]);
      const auto zero = g.Read<uint16_t>(c["zero"]);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(a.scale[r], scale[r]) << "row " << r;
        EXPECT_EQ(a.zero[r], zero[r]) << "row " << r;
      }
    }
    // torchao dequantizes qdata * scale (f32 scale); ingot (q - 128) * f16(scale):
    // |difference| <= 128 * |f16(scale) - scale| + f32 rounding.
    auto q = quant::QuantizeTorchaoInt8(w.data(), rows, cols, false, {});
    ASSERT_OK(q);
    const auto peer = g.Read<float>(c["deq"]);
    const auto peer_scale = g.Read<float>(c["peer_scale"]);
    const auto ours = testing::DequantizeRows(q->view, deq_rows);
    for (int64_t r = 0; r < deq_rows; ++r) {
      const float ds = std::fabs(HalfToFloat(q->view.affine.scale[r]) - peer_scale[r]);
      for (int64_t col = 0; col < cols; ++col) {
        const float p = peer[r * cols + col];
        ASSERT_NEAR(ours[r * cols + col], p, 128.0f * ds + UlpSlack(p)) << "row " << r << " col " << col;
      }
    }
  }
}

// int8_dynamic: torchao quantizes each token to int8 (absmax / 127.5) and runs an integer
// matmul; ingot's integer path prepares Q8_1 blocks of 32 (absmax / 127). Each path's
// output is within sum_c |W_deq[r][c]| * step / 2 of the exact W_deq x (step = the token's
// absmax / 127.5 for torchao, <= absmax / 127 for ingot): the tolerance is their sum plus
// the f16 scale rounding (2^-11 relative).
TEST(TorchaoInt8, DynamicMatmulMatchesTorchao) {
  const auto& g = TorchGolden::Get();
  ASSERT_TRUE(g.ok());
  int checked = 0;
  for (const auto& c : g.Cases("torchao_int8")) {
    if (!c.contains("y")) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const int64_t rows = c["rows"], cols = c["cols"];
    const auto w = g.Input("w_" + c["weight"].get<std::string>());
    const auto x = g.Input("x_" + c["activation"].get<std::string>());
    const auto y_peer = g.Read<float>(c["y"]);
    const int64_t tokens = static_cast<int64_t>(x.size()) / cols;
    ASSERT_EQ(y_peer.size(), static_cast<size_t>(tokens * rows));
    auto q = quant::QuantizeTorchaoInt8(w.data(), rows, cols, /*dynamic=*/true, {});
    ASSERT_OK(q);
    const auto wd = testing::DequantizeRows(q->view, rows);
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xt = x.data() + t * cols;
      float amax = 0.0f;
      for (int64_t col = 0; col < cols; ++col) amax = std::max(amax, std::fabs(xt[col]));
      for (bool ref : {true, false}) {
        const auto y = testing::MatVec(q->view, xt, ref);
        for (int64_t r = 0; r < rows; ++r) {
          double sum_abs_w = 0.0, sum_abs_wx = 0.0;
          for (int64_t col = 0; col < cols; ++col) {
            sum_abs_w += std::fabs(wd[r * cols + col]);
            sum_abs_wx += std::fabs(wd[r * cols + col] * xt[col]);
          }
          const double tol = sum_abs_w * amax / 127.0 + sum_abs_wx * std::ldexp(1.0, -10) + 1e-5;
          ASSERT_NEAR(y[r], y_peer[t * rows + r], tol)
              << "token " << t << " row " << r << (ref ? " (ref)" : " (fast)");
        }
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

TEST(TorchaoInt4, CodesScalesAndBiasesMatchTorchao) {
  const auto& g = TorchGolden::Get();
  ASSERT_TRUE(g.ok());
  const auto cases = g.Cases("torchao_int4");
  ASSERT_GE(cases.size(), 6u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int64_t rows = c["rows"], cols = c["cols"], group = c["group"];
    const int64_t deq_rows = c["deq_rows"], gpr = cols / group;
    const auto w = g.Input("w_" + c["weight"].get<std::string>());
    quant::MethodParams p;
    p.group_size = group;
    auto q = quant::QuantizeTorchaoInt4(w.data(), rows, cols, p);
    ASSERT_OK(q);
    const kernels::AffineMatrix& a = q->view.affine;
    ASSERT_EQ(q->view.kind, kernels::LinearKind::kAffine);
    EXPECT_EQ(a.bits, 4);
    EXPECT_EQ(a.group, group);
    EXPECT_EQ(a.zero_kind, kernels::ZeroKind::kBias);
    EXPECT_EQ(a.row_bytes, static_cast<size_t>(cols / 2));
    const auto codes = g.Read<uint8_t>(c["codes"]);
    ASSERT_EQ(codes.size(), static_cast<size_t>(rows * cols / 2));
    EXPECT_EQ(CountMismatches(a.q, codes), 0) << "int4 codes differ from torchao's";
    const auto scale = g.Read<uint16_t>(c["scale"]);
    const auto bias = g.Read<uint16_t>(c["zero"]);
    const auto peer_scale = g.Read<float>(c["peer_scale"]);
    const auto peer_zero = g.Read<float>(c["peer_zero"]);
    ASSERT_EQ(scale.size(), static_cast<size_t>(rows * gpr));
    int64_t scale_exact = 0;
    for (int64_t gi = 0; gi < rows * gpr; ++gi) {
      EXPECT_EQ(a.scale[gi], scale[gi]) << "group " << gi;
      EXPECT_EQ(a.zero[gi], bias[gi]) << "group " << gi;
      scale_exact += HalfToFloat(a.scale[gi]) == peer_scale[gi];
    }
    // bf16 scales are f16-exact unless below f16's normal range (the tiny row of "c").
    if (c["weight"] != "c") {
      EXPECT_EQ(scale_exact, rows * gpr);
    }
    // torchao: (q - 8) * scale + zero; ingot: q * f16(scale) + f16(zero - 8 * scale).
    const auto peer = g.Read<float>(c["deq"]);
    const auto ours = testing::DequantizeRows(q->view, deq_rows);
    for (int64_t r = 0; r < deq_rows; ++r) {
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t gi = r * gpr + col / group;
        const float s16 = HalfToFloat(a.scale[gi]), b16 = HalfToFloat(a.zero[gi]);
        const float exact_bias = peer_zero[gi] - 8.0f * peer_scale[gi];
        const float tol = std::fabs(b16 - exact_bias) + 15.0f * std::fabs(s16 - peer_scale[gi]) +
                          UlpSlack(peer[r * cols + col]) + UlpSlack(exact_bias);
        ASSERT_NEAR(ours[r * cols + col], peer[r * cols + col], tol)
            << "row " << r << " col " << col;
      }
    }
  }
}

// int4 groups of 128 with f16 scale and bias: 4 + 32/128 = 4.25 bits per weight;
// int8 per row: 8 + 32 / cols.
TEST(Torchao, BytesMatchTheMethodsPromise) {
  const int64_t rows = 64, cols = 4096;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (auto& x : w) x = nd(rng);
  quant::MethodParams p;
  p.group_size = 128;
  auto q4 = quant::QuantizeTorchaoInt4(w.data(), rows, cols, p);
  ASSERT_OK(q4);
  EXPECT_NEAR(testing::BitsPerWeight(*q4, rows, cols), 4.25, 1e-9);
  EXPECT_EQ(q4->view.bytes(), q4->bytes());
  EXPECT_EQ(q4->representation, "affine4/g128");
  auto q8 = quant::QuantizeTorchaoInt8(w.data(), rows, cols, false, p);
  ASSERT_OK(q8);
  EXPECT_NEAR(testing::BitsPerWeight(*q8, rows, cols), 8.0 + 32.0 / cols, 1e-9);
}

TEST(Torchao, RejectsBadShapesAndGroupSizes) {
  std::vector<float> w(4 * 192, 0.1f);
  quant::MethodParams p;
  p.group_size = 128;  // does not divide 192
  EXPECT_THAT(quant::QuantizeTorchaoInt4(w.data(), 4, 192, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("divide")));
  p.group_size = 48;
  EXPECT_THAT(quant::QuantizeTorchaoInt4(w.data(), 4, 192, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group_size 48")));
  p.group_size = 64;
  EXPECT_OK(quant::QuantizeTorchaoInt4(w.data(), 4, 192, p));
  EXPECT_THAT(quant::QuantizeTorchaoInt4(w.data(), 0, 192, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(quant::QuantizeTorchaoInt8(nullptr, 4, 192, false, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(quant::QuantizeTorchaoInt8(w.data(), 4, -1, true, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ingot
