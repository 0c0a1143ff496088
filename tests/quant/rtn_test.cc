// QuantizeAffineRtn against auto-gptq 0.7.1's Quantizer (find_params + quantize per
// group; tests/reference/gen_quant_gptq.py): codes, f16 scales and zeros exact.
#include <cmath>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "tests/quant/affine_test_util.h"
#include "tests/test_util.h"

namespace ingot::quant {
namespace {

using ::ingot::quant::testing::CodeAt;
using ::ingot::quant::testing::Dequantize;
using ::ingot::quant::testing::LoadGptqIndex;
using ::ingot::quant::testing::LoadRaw;
using ::ingot::quant::testing::RandomWeights;
using ::ingot::quant::testing::ScaleAt;
using ::ingot::quant::testing::ZeroAt;

TEST(RtnTest, MatchesAutoGptqQuantizerExactly) {
  const nlohmann::json index = LoadGptqIndex();
  const nlohmann::json& rtn = index["rtn"];
  const int64_t rows = rtn["rows"], cols = rtn["cols"];
  const std::vector<float> w = LoadRaw<float>(rtn["w"], rows * cols);
  ASSERT_GE(rtn["cases"].size(), 5u);
  for (const nlohmann::json& c : rtn["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    MethodParams p;
    p.bits = c["bits"];
    p.group_size = c["group_size"];
    p.symmetric = c["symmetric"];
    const int64_t groups = cols / p.group_size;
    const std::vector<uint8_t> q = LoadRaw<uint8_t>(c["q"], rows * cols);
    const std::vector<float> scale = LoadRaw<float>(c["scale"], rows * groups);
    const std::vector<float> zero = LoadRaw<float>(c["zero"], rows * groups);

    absl::StatusOr<QuantizedWeight> out = QuantizeAffineRtn(w.data(), rows, cols, p);
    ASSERT_OK(out);
    const kernels::AffineMatrix& m = out->view.affine;
    ASSERT_EQ(out->view.kind, kernels::LinearKind::kAffine);
    EXPECT_EQ(m.zero_kind, kernels::ZeroKind::kZero);
    EXPECT_EQ(m.bits, p.bits);
    EXPECT_EQ(m.group, p.group_size);
    EXPECT_EQ(m.row_bytes, static_cast<size_t>((cols * p.bits + 7) / 8));
    EXPECT_EQ(out->representation,
              "affine" + std::to_string(p.bits) + "/g" + std::to_string(p.group_size));
    int code_mismatch = 0, param_mismatch = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t col = 0; col < cols; ++col) {
        if (CodeAt(m, r, col) != q[r * cols + col]) ++code_mismatch;
      }
      for (int64_t g = 0; g < groups; ++g) {
        if (m.scale[r * groups + g] != Fp32ToFp16(scale[r * groups + g]) ||
            m.zero[r * groups + g] != Fp32ToFp16(zero[r * groups + g])) {
          ++param_mismatch;
        }
      }
    }
    EXPECT_EQ(code_mismatch, 0);
    EXPECT_EQ(param_mismatch, 0);
  }
}

TEST(RtnTest, KernelDequantizationIsTheKZeroDefinition) {
  const int64_t rows = 5, cols = 96;
  const std::vector<float> w = RandomWeights(rows, cols, 7);
  for (int bits : {2, 3, 4, 5, 8}) {
    MethodParams p;
    p.bits = bits;
    p.group_size = 32;
    absl::StatusOr<QuantizedWeight> out = QuantizeAffineRtn(w.data(), rows, cols, p);
    ASSERT_OK(out);
    const std::vector<float> ours = Dequantize(out->view.affine);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(out->view, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(row[c], ours[r * cols + c]) << "bits " << bits << " r " << r << " c " << c;
      }
    }
  }
}

// Every width and awkward shapes: codes in range, the error of each weight within half
// a step of its group (plus the f16 rounding of the scale), zeros integers.
TEST(RtnTest, AllWidthsAndOddShapes) {
  struct Shape { int64_t rows, cols, group; };
  for (const Shape s : {Shape{1, 17, 17}, Shape{3, 51, 17}, Shape{7, 129, 43},
                        Shape{2, 1024, 1024}, Shape{4, 96, 0}}) {
    const std::vector<float> w = RandomWeights(s.rows, s.cols, 11 + s.cols, 0.3f);
    for (int bits = 1; bits <= 8; ++bits) {
      for (bool sym : {false, true}) {
        SCOPED_TRACE(::testing::Message() << s.rows << "x" << s.cols << " g" << s.group << " b"
                                        << bits << (sym ? " sym" : " asym"));
        MethodParams p;
        p.bits = bits;
        p.group_size = s.group;
        p.symmetric = sym;
        absl::StatusOr<QuantizedWeight> out = QuantizeAffineRtn(w.data(), s.rows, s.cols, p);
        ASSERT_OK(out);
        const kernels::AffineMatrix& m = out->view.affine;
        EXPECT_EQ(m.group, s.group > 0 ? s.group : s.cols);
        EXPECT_EQ(out->bytes(), static_cast<int64_t>(s.rows * m.row_bytes +
                                                     4 * s.rows * (s.cols / m.group)));
        const std::vector<float> deq = Dequantize(m);
        for (int64_t r = 0; r < s.rows; ++r) {
          for (int64_t c = 0; c < s.cols; ++c) {
            const float z = ZeroAt(m, r, c), sc = ScaleAt(m, r, c);
            ASSERT_EQ(z, std::nearbyint(z));
            ASSERT_LT(CodeAt(m, r, c), 1u << bits);
            const float err = std::fabs(deq[r * s.cols + c] - w[r * s.cols + c]);
            // Half a step, plus the f16 rounding of the scale times |q - zero|.
            const float bound = sc * (0.5f + static_cast<float>(1 << bits) * 4.9e-4f) + 1e-6f;
            ASSERT_LE(err, bound) << "r " << r << " c " << c;
          }
        }
      }
    }
  }
}

TEST(RtnTest, ConstantAndZeroGroups) {
  const int64_t cols = 64;
  std::vector<float> w(2 * cols, 0.0f);  // row 0 all zero
  for (int64_t c = 0; c < cols; ++c) w[cols + c] = 0.25f;  // row 1 constant positive
  MethodParams p;
  p.bits = 4;
  p.group_size = 32;
  absl::StatusOr<QuantizedWeight> out = QuantizeAffineRtn(w.data(), 2, cols, p);
  ASSERT_OK(out);
  const std::vector<float> deq = Dequantize(out->view.affine);
  for (int64_t c = 0; c < cols; ++c) {
    EXPECT_EQ(deq[c], 0.0f);                    // [-1, 1] range, zero maps exactly
    EXPECT_NEAR(deq[cols + c], 0.25f, 1e-3f);   // range [0, 0.25]: the top code
  }
}

TEST(RtnTest, RejectsBadParameters) {
  const std::vector<float> w(64, 1.0f);
  MethodParams p;
  p.group_size = 24;  // does not divide 64
  EXPECT_THAT(QuantizeAffineRtn(w.data(), 1, 64, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("group_size")));
  p.group_size = 32;
  p.bits = 9;
  EXPECT_THAT(QuantizeAffineRtn(w.data(), 1, 64, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::HasSubstr("bits")));
  p.bits = 4;
  EXPECT_THAT(QuantizeAffineRtn(w.data(), 0, 64, p),
              ::ingot::testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ingot::quant
