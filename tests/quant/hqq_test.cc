// QuantizeHqq against hqq 0.2.8 itself (tests/reference/gen_quant_hqq.py writes
// tests/data/quant/hqq/: HQQLinear on CPU, float16 compute dtype, axis 1).
//
// What must match and why:
//   * codes, scales and zeros: bit-exact. The scale comes from the min/max init only (the
//     solver never moves it); the zero from ~10-20 float32 solver iterations whose sums
//     (the group means, and the whole-matrix error that decides the early stop) ingot
//     adds in torch's single-threaded order, so nothing differs by even an ulp (the
//     generator runs torch with one thread). Residual risk: pow() (libm vs torch's
//     Sleef, 1 ulp) for residuals above the shrink threshold (~0.17 at beta 10), which
//     real weights do not reach. Diagnostics are printed per case either way.
//   * dequantized weights vs hqq's dequantize(), which computes (q - z) * s in float16
//     (two roundings, 2^-11 relative each) while ingot's kernel uses f32.
#include <chrono>
#include <cmath>
#include <cstdio>
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

std::vector<uint16_t> ReadU16(const std::string& name) {
  const std::string b = ReadFile(DataDir() + name);
  std::vector<uint16_t> v(b.size() / 2);
  std::memcpy(v.data(), b.data(), v.size() * 2);
  return v;
}

std::vector<float> ReadF16AsF32(const std::string& name) {
  std::vector<float> out;
  for (uint16_t h : ReadU16(name)) out.push_back(Fp16ToFp32(h));
  return out;
}

uint32_t Code(const kernels::AffineMatrix& a, int64_t r, int64_t c) {
  const uint8_t* row = a.q + r * a.row_bytes;
  const int64_t bit = c * a.bits;
  uint32_t v = row[bit >> 3] >> (bit & 7);
  if ((bit & 7) + a.bits > 8) v |= static_cast<uint32_t>(row[(bit >> 3) + 1]) << (8 - (bit & 7));
  return v & ((1u << a.bits) - 1u);
}

nlohmann::json Index() {
  const std::string text = ReadFile(DataDir() + "index.json");
  return nlohmann::json::parse(text);
}

TEST(HqqTest, MatchesHqqLibrary) {
  const nlohmann::json index = Index();
  int n_cases = 0;
  for (const auto& c : index["cases"]) {
    if (c["method"] != "hqq") continue;
    ++n_cases;
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const auto& wmeta = index["weights"][c["weight"].get<std::string>()];
    const std::vector<float> w = ReadF16AsF32(wmeta["file"]);
    const int64_t rows = c["rows"], cols = c["cols"], group = c["group"];
    ASSERT_EQ(static_cast<int64_t>(w.size()), rows * cols);
    MethodParams p;
    p.bits = c["bits"];
    p.group_size = group;
    p.hqq_quant_zero = c["quant_zero"];
    p.hqq_quant_scale = c["quant_scale"];
    auto qw = QuantizeHqq(w.data(), rows, cols, p);
    ASSERT_OK(qw);
    const kernels::Linear& lin = qw->view;
    ASSERT_EQ(lin.kind, kernels::LinearKind::kAffine);
    const kernels::AffineMatrix& a = lin.affine;
    EXPECT_EQ(a.zero_kind, kernels::ZeroKind::kZero);
    const int64_t n_groups = rows * cols / group;
    EXPECT_EQ(qw->bytes(), static_cast<int64_t>(rows * a.row_bytes + 4 * n_groups));

    const std::string codes = ReadFile(DataDir() + c["codes"].get<std::string>());
    const std::vector<uint16_t> scale = ReadU16(c["scale"]);
    const std::vector<uint16_t> zero = ReadU16(c["zero"]);
    const std::vector<float> deq = ReadF16AsF32(c["deq"]);
    ASSERT_EQ(static_cast<int64_t>(codes.size()), rows * cols);
    ASSERT_EQ(static_cast<int64_t>(scale.size()), n_groups);

    int64_t code_diff = 0, scale_diff = 0, zero_exact = 0;
    uint32_t max_code_diff = 0;
    double max_zero_diff = 0.0, max_deq_err = 0.0;
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(lin, r, row.data());
      for (int64_t col = 0; col < cols; ++col) {
        const uint32_t mine = Code(a, r, col);
        const uint32_t peer = static_cast<uint8_t>(codes[r * cols + col]);
        const uint32_t d = mine > peer ? mine - peer : peer - mine;
        max_code_diff = std::max(max_code_diff, d);
        code_diff += d != 0;
        const int64_t g = r * (cols / group) + col / group;
        const double s = Fp16ToFp32(scale[g]);
        const double zp = Fp16ToFp32(zero[g]), dz = std::fabs(Fp16ToFp32(a.zero[g]) - zp);
        // A differing code or zero moves the weight by that many scales; hqq computes
        // (q - z) * s in float16 (two roundings, 2^-11 relative each).
        const double tol = std::fabs(s) * (d + dz + (std::fabs(peer - zp) + 1.0) / 1024.0) +
                           1e-3 * std::fabs(deq[r * cols + col]) + 1e-7;
        const double err = std::fabs(row[col] - deq[r * cols + col]);
        max_deq_err = std::max(max_deq_err, err / std::max(std::fabs(s), 1e-12));
        EXPECT_LE(err, tol) << "r=" << r << " c=" << col;
      }
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      scale_diff += a.scale[g] != scale[g];
      const double zm = Fp16ToFp32(a.zero[g]), zp = Fp16ToFp32(zero[g]);
      zero_exact += a.zero[g] == zero[g];
      max_zero_diff = std::max(max_zero_diff, std::fabs(zm - zp));
    }
    EXPECT_EQ(scale_diff, 0);
    EXPECT_EQ(code_diff, 0);
    EXPECT_EQ(zero_exact, n_groups);
    std::printf(
        "%-20s codes differing %lld / %lld (%.3f%%, max %u), zeros exact %lld / %lld (max |dz| %.4g), "
        "scales exact %lld / %lld, max |deq - hqq| %.3g scale\n",
        name.c_str(), static_cast<long long>(code_diff), static_cast<long long>(rows * cols),
        100.0 * code_diff / (rows * cols), max_code_diff, static_cast<long long>(zero_exact),
        static_cast<long long>(n_groups), max_zero_diff,
        static_cast<long long>(n_groups - scale_diff), static_cast<long long>(n_groups),
        max_deq_err);
  }
  EXPECT_GE(n_cases, 8);
}

TEST(HqqTest, RefusesWhatItCannotRepresent) {
  std::vector<float> w(8 * 256, 0.5f);
  MethodParams p;
  p.hqq_axis = 0;
  EXPECT_THAT(QuantizeHqq(w.data(), 8, 256, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("axis")));
  p = MethodParams();
  p.bits = 7;
  EXPECT_THAT(QuantizeHqq(w.data(), 8, 256, p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = MethodParams();
  p.group_size = 48;
  EXPECT_THAT(QuantizeHqq(w.data(), 8, 256, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("group_size")));
  p = MethodParams();
  p.hqq_quant_scale = true;  // 8 * 256 / 64 = 32 scales: not a multiple of 128
  EXPECT_THAT(QuantizeHqq(w.data(), 8, 256, p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("quant_scale")));
  EXPECT_THAT(QuantizeHqq(w.data(), 0, 256, MethodParams()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Constant and zero groups take hqq's |max - min| <= 1e-4 path (scale 1) and come back
// exactly; every bit width packs and unpacks through the kernels' dequantizer.
TEST(HqqTest, AllBitWidthsRoundTrip) {
  const int64_t rows = 5, cols = 96;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = nd(rng);
  for (int64_t c = 0; c < cols; ++c) w[cols + c] = 0.25f;  // row 1 constant
  for (int64_t c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;  // row 2 zero
  for (int32_t bits : {1, 2, 3, 4, 5, 6, 8}) {
    SCOPED_TRACE(bits);
    MethodParams p;
    p.bits = bits;
    p.group_size = 32;
    auto qw = QuantizeHqq(w.data(), rows, cols, p);
    ASSERT_OK(qw);
    EXPECT_EQ(qw->view.affine.row_bytes, static_cast<size_t>((cols * bits + 7) / 8));
    std::vector<float> row(cols);
    double err = 0.0, mag = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(qw->view, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        if (r == 1 || r == 2) {
          EXPECT_NEAR(row[c], w[r * cols + c], 1e-3) << "r=" << r << " c=" << c;
        }
        err += std::fabs(row[c] - w[r * cols + c]);
        mag += std::fabs(w[r * cols + c]);
      }
    }
    // Relative L1 error shrinks with bits (about 2^-bits of the range per weight).
    EXPECT_LT(err / mag, bits == 1 ? 0.8 : 2.5 / (1 << bits)) << "bits " << bits;
  }
}

// The solver lowers the mean |w - dequant(w)| compared with plain min/max rounding.
TEST(HqqTest, SolverBeatsMinMax) {
  const int64_t rows = 64, cols = 256;
  std::mt19937 rng(3);
  std::student_t_distribution<float> td(4.0f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = 0.02f * td(rng);
  auto l1 = [&](bool optimize) {
    MethodParams p;
    p.bits = 3;
    p.hqq_optimize = optimize;
    auto qw = QuantizeHqq(w.data(), rows, cols, p);
    EXPECT_OK(qw);
    std::vector<float> row(cols);
    double err = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(qw->view, r, row.data());
      for (int64_t c = 0; c < cols; ++c) err += std::fabs(row[c] - w[r * cols + c]);
    }
    return err;
  };
  EXPECT_LT(l1(true), 0.97 * l1(false));
}

// One SmolLM2-135M MLP projection (576 x 1536), the default 4-bit g64: the whole model
// (~30 such matrices' worth of weights) is quantized on request.
TEST(HqqTest, Speed576x1536) {
  const int64_t rows = 576, cols = 1536;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = nd(rng);
  MethodParams p;  // 4 bits, group 64, 20 iterations
  const auto t0 = std::chrono::steady_clock::now();
  auto qw = QuantizeHqq(w.data(), rows, cols, p);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_OK(qw);
  std::printf("QuantizeHqq 576x1536 4-bit g64: %.1f ms\n", ms);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(ms, 1000.0);
#endif
}

}  // namespace
}  // namespace ingot::quant
