// QuantizeMlx against mlx 0.32.4's mx.quantize / mx.dequantize on CPU
// (tests/reference/gen_quant_hqq.py writes tests/data/quant/hqq/mlx_*; the generator
// also asserts that a numpy transcription of MLX's formula gives the wheel's results).
//
// MLX is deterministic arithmetic without iteration, so everything is exact:
//   * packed codes: byte-identical to MLX's uint32 words (same LSB-first bitstream);
//   * scales and biases: f16 bits equal to MLX's for f16 weights, and to f16(MLX's f32)
//     for f32 weights (MLX keeps the weight's dtype; ingot stores f16);
//   * dequantized rows: q * scale + bias from the f16 parameters, equal to MLX's own
//     dequantize to f16 rounding (f16 weights) or to its f32 result up to the f16
//     rounding of scale and bias (f32 weights).
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::quant {
namespace {

using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;

std::string DataDir() { return SourcePath("tests/data/quant/hqq/"); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A raw little-endian f16 or f32 file as floats.
std::vector<float> ReadFloats(const std::string& name, const std::string& dtype) {
  const std::string b = ReadFile(DataDir() + name);
  std::vector<float> out;
  if (dtype == "f16") {
    out.resize(b.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      out[i] = Fp16ToFp32(h);
    }
  } else {
    out.resize(b.size() / 4);
    std::memcpy(out.data(), b.data(), out.size() * 4);
  }
  return out;
}

// Largest error of rounding x to f16: half an ulp, 2^-11 relative, or 2^-25 absolute
// among subnormals (|x| < 2^-14, e.g. the scales of a tiny-range row).
double HalfError(double x) { return std::max(std::fabs(x) / 2048.0, 1.0 / (1 << 25)); }

TEST(MlxTest, MatchesMlx) {
  const nlohmann::json index = nlohmann::json::parse(ReadFile(DataDir() + "index.json"));
  int n_cases = 0;
  for (const auto& c : index["cases"]) {
    if (c["method"] != "mlx") continue;
    ++n_cases;
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto& wmeta = index["weights"][c["weight"].get<std::string>()];
    const std::vector<float> w = ReadFloats(wmeta["file"], wmeta["dtype"]);
    const int64_t rows = c["rows"], cols = c["cols"], group = c["group"];
    const std::string dtype = c["dtype"];
    ASSERT_EQ(static_cast<int64_t>(w.size()), rows * cols);
    MethodParams p;
    p.bits = c["bits"];
    p.group_size = group;
    auto qw = QuantizeMlx(w.data(), rows, cols, p);
    ASSERT_OK(qw);
    const kernels::AffineMatrix& a = qw->view.affine;
    ASSERT_EQ(qw->view.kind, kernels::LinearKind::kAffine);
    EXPECT_EQ(a.zero_kind, kernels::ZeroKind::kBias);
    const int64_t n_groups = rows * cols / group;

    const std::string packed = ReadFile(DataDir() + c["packed"].get<std::string>());
    ASSERT_EQ(packed.size(), rows * a.row_bytes);
    EXPECT_EQ(std::memcmp(packed.data(), a.q, packed.size()), 0) << "packed codes differ";

    const std::vector<float> scale = ReadFloats(c["scale"], dtype);
    const std::vector<float> bias = ReadFloats(c["bias"], dtype);
    const std::vector<float> deq = ReadFloats(c["deq"], dtype);
    ASSERT_EQ(static_cast<int64_t>(scale.size()), n_groups);
    int64_t param_diff = 0;
    for (int64_t g = 0; g < n_groups; ++g) {
      param_diff += a.scale[g] != Fp32ToFp16(scale[g]);
      param_diff += a.zero[g] != Fp32ToFp16(bias[g]);
    }
    EXPECT_EQ(param_diff, 0);

    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(qw->view, r, row.data());
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t g = r * (cols / group) + col / group;
        const float peer = deq[r * cols + col];
        // f32: our scale and bias are MLX's rounded to f16.
        const double q = std::fabs(peer - bias[g]) / std::max(std::fabs(scale[g]), 1e-30f);
        // f16: MLX rounds the product q * s to f16, then the sum.
        const double tol = dtype == "f16"
                               ? HalfError(q * scale[g]) + HalfError(peer) + 1e-9
                               : q * HalfError(scale[g]) + HalfError(bias[g]) + 1e-9;
        EXPECT_NEAR(row[col], peer, tol) << "r=" << r << " c=" << col;
      }
    }
  }
  EXPECT_GE(n_cases, 6);
}

// MLX's edge handling: the larger-magnitude end of a group is exact (code 0, bias), an
// all-zero group gives bias 0 and codes 0, a constant group reproduces its value.
TEST(MlxTest, EdgeHandling) {
  const int64_t rows = 3, cols = 64;
  std::vector<float> w(rows * cols);
  for (int64_t c = 0; c < cols; ++c) {
    w[c] = -1.0f + 1.5f * static_cast<float>(c) / (cols - 1);  // min -1 is the edge
    w[cols + c] = 0.0f;
    w[2 * cols + c] = 0.375f;
  }
  for (int32_t bits : {2, 3, 4, 5, 6, 8}) {
    SCOPED_TRACE(bits);
    MethodParams p;
    p.bits = bits;
    p.group_size = 64;
    auto qw = QuantizeMlx(w.data(), rows, cols, p);
    ASSERT_OK(qw);
    std::vector<float> row(cols);
    kernels::LinearDequantizeRow(qw->view, 0, row.data());
    EXPECT_EQ(row[0], -1.0f);
    const float step = 1.5f / static_cast<float>((1 << bits) - 1);
    for (int64_t c = 0; c < cols; ++c) EXPECT_NEAR(row[c], w[c], 0.51f * step + 1e-3f);
    kernels::LinearDequantizeRow(qw->view, 1, row.data());
    for (float v : row) EXPECT_EQ(v, 0.0f);
    kernels::LinearDequantizeRow(qw->view, 2, row.data());
    for (float v : row) EXPECT_EQ(v, 0.375f);
  }
}

TEST(MlxTest, RefusesUnsupportedParams) {
  std::vector<float> w(4 * 128, 0.5f);
  MethodParams p;
  p.group_size = 16;
  EXPECT_THAT(QuantizeMlx(w.data(), 4, 128, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("group_size")));
  p = MethodParams();
  p.bits = 7;
  EXPECT_THAT(QuantizeMlx(w.data(), 4, 128, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("bits")));
  p = MethodParams();
  p.group_size = 128;
  EXPECT_THAT(QuantizeMlx(w.data(), 8, 64, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("divide")));
}

}  // namespace
}  // namespace ingot::quant
