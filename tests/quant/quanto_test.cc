// optimum-quanto quantizers (engine/quant/quanto.cc) against optimum-quanto 0.2.7 itself
// (tests/data/quant/torch/, tests/reference/gen_quant_torch.py): qint8/qint4/qint2 codes
// byte for byte (repacked into ingot's LSB-first rows), scale and bias as f16 of quanto's,
// dequantized values through kernels::LinearDequantizeRow within that f16 rounding, bytes
// per weight, bad parameters.
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

float UlpSlack(float v) { return 3e-7f * std::fabs(v) + 1e-12f; }

TEST(Quanto, CodesExactScalesAndBiasesAreF16OfQuanto) {
  const auto& g = TorchGolden::Get();
  ASSERT_TRUE(g.ok()) << "tests/data/quant/torch/index.json missing: run "
                         "tests/reference/regenerate_quant.sh";
  const auto cases = g.Cases("quanto");
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int64_t rows = c["rows"], cols = c["cols"], group = c["group"];
    const int bits = c["bits"];
    const int64_t gpr = cols / group;
    const auto w = g.Input("w_" + c["weight"].get<std::string>());
    quant::MethodParams p;
    p.bits = bits;
    p.group_size = group;
    auto q = quant::QuantizeQuanto(w.data(), rows, cols, p);
    ASSERT_OK(q);
    const kernels::AffineMatrix& a = q->view.affine;
    ASSERT_EQ(q->view.kind, kernels::LinearKind::kAffine);
    EXPECT_EQ(a.bits, bits);
    EXPECT_EQ(a.group, group);
    EXPECT_EQ(a.zero_kind, c["zero_kind"] == "zero" ? kernels::ZeroKind::kZero
                                                    : kernels::ZeroKind::kBias);
    EXPECT_EQ(a.row_bytes, static_cast<size_t>(cols * bits / 8));
    const auto codes = g.Read<uint8_t>(c["codes"]);
    ASSERT_EQ(codes.size(), a.row_bytes * static_cast<size_t>(rows));
    EXPECT_EQ(CountMismatches(a.q, codes), 0) << "codes differ from quanto's";
    const auto scale = g.Read<uint16_t>(c["scale"]);
    const auto zero = g.Read<uint16_t>(c["zero"]);
    ASSERT_EQ(scale.size(), static_cast<size_t>(rows * gpr));
    for (int64_t gi = 0; gi < rows * gpr; ++gi) {
      EXPECT_EQ(a.scale[gi], scale[gi]) << "group " << gi;
      EXPECT_EQ(a.zero[gi], zero[gi]) << "group " << gi;
    }
    // quanto: q * scale - shift (int2/4) or q * scale (int8), f32; ingot the same with f16
    // scale and bias: |difference| <= qmax * |f16(scale) - scale| + |f16(-shift) + shift|.
    const auto peer = g.Read<float>(c["deq"]);
    const auto peer_scale = g.Read<float>(c["peer_scale"]);
    std::vector<float> peer_shift(peer_scale.size(), 0.0f);
    if (c.contains("peer_zero")) peer_shift = g.Read<float>(c["peer_zero"]);
    const int64_t deq_rows = c["deq_rows"];
    const float qmax = bits == 8 ? 128.0f : static_cast<float>((1 << bits) - 1);
    const auto ours = testing::DequantizeRows(q->view, deq_rows);
    for (int64_t r = 0; r < deq_rows; ++r) {
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t gi = r * gpr + col / group;
        const float ds = std::fabs(HalfToFloat(a.scale[gi]) - peer_scale[gi]);
        const float db = bits == 8 ? 0.0f : std::fabs(HalfToFloat(a.zero[gi]) + peer_shift[gi]);
        const float p = peer[r * cols + col];
        ASSERT_NEAR(ours[r * cols + col], p, qmax * ds + db + UlpSlack(p) + UlpSlack(peer_shift[gi]))
            << "row " << r << " col " << col;
      }
    }
  }
}

// A constant group (max == min) gives quanto 0 / 0 = NaN -> code 0 and dequantizes to
// the constant; an all-zero row gives scale 0 and codes of zero.
TEST(Quanto, ConstantGroupsAndZeroRows) {
  std::vector<float> w(2 * 64, 0.0f);
  std::fill(w.begin(), w.begin() + 32, 0.375f);
  for (int bits : {2, 4, 8}) {
    SCOPED_TRACE(bits);
    quant::MethodParams p;
    p.bits = bits;
    p.group_size = 32;
    auto q = quant::QuantizeQuanto(w.data(), 2, 64, p);
    ASSERT_OK(q);
    const auto d = testing::DequantizeRows(q->view, 2);
    // int2/4: the bias is the constant itself (exact in f16); int8: 127 * f16(0.375 / 127).
    for (int i = 0; i < 128; ++i) EXPECT_NEAR(d[i], w[i], bits == 8 ? 0.375 / 2048 : 0.0) << i;
  }
}

// int4 groups of 128, f16 scale and bias: 4.25 bits; int2: 2.25; int8 per row: 8 + 32/cols.
TEST(Quanto, BytesMatchTheMethodsPromise) {
  const int64_t rows = 32, cols = 4096;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (auto& x : w) x = nd(rng);
  for (auto [bits, expected] : {std::pair{4, 4.25}, std::pair{2, 2.25}, std::pair{8, 8.0 + 32.0 / cols}}) {
    quant::MethodParams p;
    p.bits = bits;
    p.group_size = 128;
    auto q = quant::QuantizeQuanto(w.data(), rows, cols, p);
    ASSERT_OK(q);
    EXPECT_NEAR(testing::BitsPerWeight(*q, rows, cols), expected, 1e-9) << bits;
    EXPECT_EQ(q->view.bytes(), q->bytes());
  }
}

TEST(Quanto, RejectsBadBitsAndGroups) {
  std::vector<float> w(4 * 96, 0.1f);
  quant::MethodParams p;
  p.bits = 3;
  EXPECT_THAT(quant::QuantizeQuanto(w.data(), 4, 96, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits 3")));
  p.bits = 4;
  p.group_size = 64;
  EXPECT_THAT(quant::QuantizeQuanto(w.data(), 4, 96, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("divide")));
  p.group_size = 32;
  EXPECT_OK(quant::QuantizeQuanto(w.data(), 4, 96, p));
  p.bits = 8;
  p.group_size = 64;  // int8 is per row; the group size does not apply
  EXPECT_OK(quant::QuantizeQuanto(w.data(), 4, 96, p));
  EXPECT_THAT(quant::QuantizeQuanto(w.data(), 4, 0, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(quant::QuantizeQuanto(nullptr, 4, 96, p),
              testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ingot
