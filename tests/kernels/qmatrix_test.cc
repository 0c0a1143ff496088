// qmatrix.h: the canonical Linear views. Dequantization against formulas written here
// from the header's layout; the integer kernels against their references, the
// references against the f32 dot of the dequantized row (bounds derived from the int8
// activation rounding), prompt batches against single tokens, and byte accounting.
#include "kernels/cpu/qmatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"
#include "kernels/cpu/quant_dot.h"
#include "tests/kernels/affine_matrix_util.h"
#include "tests/test_util.h"

namespace ingot::kernels {
namespace {

// ---- storage for random matrices ------------------------------------------------------

struct CodebookStore {
  std::vector<uint8_t> codes, absmax_code;
  std::vector<float> absmax, absmax_scale;
  Linear w;
};

CodebookStore MakeCodebook(Codebook book, int64_t rows, int64_t cols, int64_t block,
                           bool double_quant, int64_t absmax_block, std::mt19937& rng) {
  CodebookStore s;
  CodebookMatrix& m = s.w.codebook;
  s.w.kind = LinearKind::kCodebook;
  m.book = book;
  m.rows = rows;
  m.cols = cols;
  m.block = block;
  std::uniform_int_distribution<int> byte(0, 255);
  s.codes.resize(rows * cols / 2);
  for (auto& b : s.codes) b = static_cast<uint8_t>(byte(rng));
  const int64_t blocks = rows * cols / block;
  std::uniform_real_distribution<float> amax(0.01f, 0.2f);
  if (double_quant) {
    for (int64_t b = 0; b < blocks; ++b) s.absmax_code.push_back(static_cast<uint8_t>(byte(rng)));
    for (int64_t b = 0; b < (blocks + absmax_block - 1) / absmax_block; ++b) {
      s.absmax_scale.push_back(amax(rng) * 0.5f);
    }
    m.absmax_code = s.absmax_code.data();
    m.absmax_scale = s.absmax_scale.data();
    m.absmax_block = absmax_block;
    m.absmax_offset = 0.11f;  // bitsandbytes subtracts the mean absmax before nesting
  } else {
    for (int64_t b = 0; b < blocks; ++b) s.absmax.push_back(amax(rng));
    m.absmax = s.absmax.data();
  }
  m.codes = s.codes.data();
  return s;
}

// ---- independent formulas from the header's layout -----------------------------------

float AffineFormula(const AffineMatrix& a, int64_t r, int64_t c) {
  uint32_t code = 0;
  for (int i = 0; i < a.bits; ++i) {
    const int64_t bit = c * a.bits + i;  // LSB-first bitstream within the row
    code |= ((a.q[r * a.row_bytes + bit / 8] >> (bit % 8)) & 1u) << i;
  }
  const int64_t gi = r * (a.cols / a.group) + c / a.group;
  const float scale = Fp16ToFp32(a.scale[gi]);
  const float zero = a.zero ? Fp16ToFp32(a.zero[gi]) : 0.0f;
  const float q = static_cast<float>(code);
  return a.zero_kind == ZeroKind::kZero ? (q - zero) * scale : q * scale + zero;
}

float CodebookFormula(const CodebookMatrix& m, int64_t r, int64_t c) {
  const int64_t i = r * m.cols + c;
  const int code = i % 2 == 0 ? m.codes[i / 2] >> 4 : m.codes[i / 2] & 15;
  const int64_t b = i / m.block;
  const float absmax = m.absmax_code
                           ? DynamicMap()[m.absmax_code[b]] * m.absmax_scale[b / m.absmax_block] +
                                 m.absmax_offset
                           : m.absmax[b];
  return CodebookValues(m.book)[code] * absmax;
}

// ---- dot-product harness ----------------------------------------------------------------

std::vector<float> RandomX(int64_t cols, std::mt19937& rng, const std::vector<int64_t>& outliers,
                           float outlier_value) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(cols);
  for (auto& v : x) v = normal(rng);
  for (size_t i = 0; i < outliers.size(); ++i) {
    x[outliers[i]] = (i % 2 ? -1.0f : 1.0f) * outlier_value;
  }
  return x;
}

struct DotCheck {
  std::vector<float> y, y_ref, exact, bound, norm;
};

// Runs LinearDotRows / LinearDotRowsRef and the exact double dot of the dequantized rows.
// bound[r]: |ref - exact| allowed: every inlier x_c is rounded to a multiple of its 32-block
// scale d = amax/127 (error <= d/2) with d stored as f16 (2^-11 relative); codebook weights
// add |absmax| / 254 per element for the int8 rounding of the table; outliers are exact.
DotCheck RunDot(const Linear& w, const std::vector<float>& x) {
  const int64_t rows = w.rows(), cols = w.cols();
  const ActivationSpec spec = LinearActivation(w);
  std::vector<uint8_t> xa(LinearActivationBytes(spec, cols));
  LinearPrepare(spec, x.data(), cols, xa.data());
  DotCheck d;
  d.y.assign(rows, NAN);
  d.y_ref.assign(rows, NAN);
  LinearDotRows(w, xa.data(), d.y.data(), 0, rows);
  LinearDotRowsRef(w, xa.data(), d.y_ref.data(), 0, rows);
  const bool quantized = spec.type != ActType::kF32;
  const float thr = spec.outlier_threshold;
  std::vector<float> amax(cols, 0.0f);
  for (int64_t b = 0; quantized && b < cols / 32; ++b) {
    float m = 0;
    for (int64_t c = b * 32; c < b * 32 + 32; ++c) {
      if (!(thr > 0 && std::fabs(x[c]) > thr)) m = std::max(m, std::fabs(x[c]));
    }
    for (int64_t c = b * 32; c < b * 32 + 32; ++c) amax[c] = m;
  }
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    LinearDequantizeRow(w, r, row.data());
    double s = 0, n = 0, e = 0;
    for (int64_t c = 0; c < cols; ++c) {
      s += static_cast<double>(row[c]) * x[c];
      n += std::fabs(static_cast<double>(row[c]) * x[c]);
      const bool outlier = thr > 0 && std::fabs(x[c]) > thr;
      if (quantized && !outlier) e += std::fabs(row[c]) * amax[c] * (1.0 / 254 + 1.0 / 1024);
      if (quantized && w.kind == LinearKind::kCodebook) {
        const int64_t i = r * cols + c;
        const CodebookMatrix& m = w.codebook;
        const int64_t b = i / m.block;
        const double absmax =
            m.absmax_code ? DynamicMap()[m.absmax_code[b]] * m.absmax_scale[b / m.absmax_block] +
                                m.absmax_offset
                          : m.absmax[b];
        e += std::fabs(absmax) / 254.0 * (std::fabs(x[c]) + amax[c] / 100.0);
      }
    }
    d.exact.push_back(static_cast<float>(s));
    d.norm.push_back(static_cast<float>(n));
    d.bound.push_back(static_cast<float>(e + 1e-5 * n + 1e-6));
  }
  return d;
}

void ExpectDotsAgree(const Linear& w, const std::vector<float>& x, const std::string& what) {
  SCOPED_TRACE(what);
  const DotCheck d = RunDot(w, x);
  for (int64_t r = 0; r < w.rows(); ++r) {
    // (1) optimized vs reference: same math, different summation order.
    EXPECT_NEAR(d.y[r], d.y_ref[r], 2e-5 * d.norm[r] + 1e-6) << "row " << r;
    // (2) reference vs the exact dot of the dequantized row.
    EXPECT_NEAR(d.y_ref[r], d.exact[r], d.bound[r]) << "row " << r << " norm " << d.norm[r];
  }
}

// sum_j |w_j x_j| of every row for activation x: kernels that sum in different orders
// (or cancel an 8-bit code offset against its zero) differ by a few ulps of it.
std::vector<double> AbsDotNorms(const Linear& w, const float* x) {
  std::vector<double> norm(w.rows());
  std::vector<float> row(w.cols());
  for (int64_t r = 0; r < w.rows(); ++r) {
    LinearDequantizeRow(w, r, row.data());
    for (int64_t c = 0; c < w.cols(); ++c) norm[r] += std::fabs(static_cast<double>(row[c]) * x[c]);
  }
  return norm;
}

// (5) token batches at `level` (at most the CPU's) against the plain reference one token
// at a time: rows [r0, rows), token counts 1..max_tok.
void ExpectTokensMatchReference(const Linear& w, std::mt19937& rng, const std::string& what,
                                CpuLevel level = BestCpuLevel(), int64_t max_tok = 9) {
  SCOPED_TRACE(what);
  const int64_t rows = w.rows(), cols = w.cols();
  const ActivationSpec spec = LinearActivation(w);
  const size_t stride = LinearActivationBytes(spec, cols);
  const int64_t r0 = rows > 2 ? 2 : 0;
  for (int64_t n_tok = 1; n_tok <= max_tok; ++n_tok) {
    std::vector<uint8_t> xa(stride * n_tok);
    std::vector<std::vector<double>> norms;
    for (int64_t t = 0; t < n_tok; ++t) {
      const auto x = RandomX(cols, rng, {t % cols}, spec.outlier_threshold > 0 ? 30.0f : 1.0f);
      LinearPrepare(spec, x.data(), cols, xa.data() + t * stride);
      norms.push_back(AbsDotNorms(w, x.data()));
    }
    std::vector<float> y(rows * n_tok, NAN), want(rows);
    LinearDotRowsTokens(w, xa.data(), stride, n_tok, y.data(), rows, r0, rows, level);
    for (int64_t t = 0; t < n_tok; ++t) {
      LinearDotRowsRef(w, xa.data() + t * stride, want.data(), 0, rows);
      for (int64_t r = 0; r < rows; ++r) {
        if (r < r0) {
          ASSERT_TRUE(std::isnan(y[t * rows + r])) << "wrote outside [r0, r1)";
        } else {
          ASSERT_NEAR(y[t * rows + r], want[r], 2e-5 * norms[t][r] + 1e-6)
              << "tokens " << n_tok << " t " << t << " r " << r;
        }
      }
    }
  }
}

std::string Name(const AffineCase& c) {
  return "bits " + std::to_string(c.bits) + " rows " + std::to_string(c.rows) + " cols " +
         std::to_string(c.cols) + " group " + std::to_string(c.group) +
         (c.kind == ZeroKind::kZero ? " zero" : " bias") + (c.has_zero ? "" : " (no zero)");
}

std::vector<AffineCase> AffineCases() {
  std::vector<AffineCase> cases;
  for (int bits = 1; bits <= 8; ++bits) {
    const ZeroKind k = bits % 2 ? ZeroKind::kZero : ZeroKind::kBias;
    const ZeroKind k2 = bits % 2 ? ZeroKind::kBias : ZeroKind::kZero;
    cases.push_back({bits, 1, 32, 16, k, true});
    cases.push_back({bits, 17, 96, 32, k2, true});
    cases.push_back({bits, 17, 96, 48, k, true});  // 32-blocks straddle groups
    cases.push_back({bits, 64, 1024, 64, k2, true});
    cases.push_back({bits, 17, 1024, 128, k, true});
    cases.push_back({bits, 64, 256, 16, k2, true});
    cases.push_back({bits, 3, 1056, 1056, k, true});  // one group per row
    cases.push_back({bits, 5, 2048, 256, k, false});
  }
  return cases;
}

// ---- tests ------------------------------------------------------------------------------

TEST(QMatrixTest, CodebookTablesAreBitsandbytes) {
  const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f,
                         -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
                         -0.09105003625154495f, 0.0f, 0.07958029955625534f,
                         0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                         0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
  const float fp4_times_12[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12,
                                  -4, -6, -2, -3};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(CodebookValues(Codebook::kNF4)[i], nf4[i]) << i;
    EXPECT_EQ(CodebookValues(Codebook::kFP4)[i], fp4_times_12[i] / 12.0f) << i;
  }
  EXPECT_TRUE(std::signbit(CodebookValues(Codebook::kFP4)[8]));
}

// create_dynamic_map(signed=True) recomputed the way torch does it in float32: linspace
// with a double step (start + step * i below half, end - step * (n - 1 - i) above),
// means and powers of ten in float32, then sorted.
TEST(QMatrixTest, DynamicMapIsBitsandbytesSignedMap) {
  std::vector<float> want;
  for (int i = 0; i < 7; ++i) {
    const int n = (1 << i) + 1;
    std::vector<float> bounds(n);
    const double step = static_cast<double>(1.0f - 0.1f) / (n - 1);
    for (int j = 0; j < n; ++j) {
      bounds[j] = j < n / 2 ? static_cast<float>(0.1f + step * j)
                            : static_cast<float>(1.0f - step * (n - j - 1));
    }
    const float scale = static_cast<float>(std::pow(10.0, -6 + i));
    for (int j = 0; j + 1 < n; ++j) {
      const float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
      want.push_back(scale * mean);
      want.push_back(-scale * mean);
    }
  }
  want.push_back(0.0f);
  want.push_back(1.0f);
  ASSERT_EQ(want.size(), 256u);
  std::sort(want.begin(), want.end());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(DynamicMap()[i], want[i]) << i;
  // Values printed by bitsandbytes (torch float32), including ones a float32 step misses.
  EXPECT_EQ(DynamicMap()[0], -0.992968738079071f);
  EXPECT_EQ(DynamicMap()[20], -0.7117187976837158f);
  EXPECT_EQ(DynamicMap()[41], -0.4164062440395355f);
  EXPECT_EQ(DynamicMap()[127], 0.0f);
  EXPECT_EQ(DynamicMap()[128], 5.500000384017767e-07f);
  EXPECT_EQ(DynamicMap()[255], 1.0f);
}

// (3) LinearDequantizeRow against the header's layout, any shape (groups not multiple of
// 16, columns not multiple of 32, bit widths that straddle bytes).
TEST(QMatrixTest, AffineDequantizeRowMatchesLayout) {
  std::mt19937 rng(1);
  std::vector<AffineCase> cases = AffineCases();
  for (int bits = 1; bits <= 8; ++bits) {
    cases.push_back({bits, 3, 20, 10, ZeroKind::kZero, true});
    cases.push_back({bits, 2, 7, 7, ZeroKind::kBias, true});
    cases.push_back({bits, 4, 33, 11, ZeroKind::kZero, false});
  }
  for (const AffineCase& c : cases) {
    SCOPED_TRACE(Name(c));
    AffineStore s = MakeAffine(c, rng);
    std::vector<float> row(c.cols);
    for (int64_t r = 0; r < c.rows; ++r) {
      LinearDequantizeRow(s.w, r, row.data());
      for (int64_t col = 0; col < c.cols; ++col) {
        ASSERT_EQ(row[col], AffineFormula(s.w.affine, r, col)) << "r " << r << " c " << col;
      }
    }
  }
}

TEST(QMatrixTest, CodebookDequantizeRowMatchesLayout) {
  std::mt19937 rng(2);
  for (Codebook book : {Codebook::kNF4, Codebook::kFP4}) {
    for (bool dq : {false, true}) {
      for (auto [rows, cols, block] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 64},
                                       {17, 128, 64}, {64, 1024, 64}, {3, 96, 32},
                                       {5, 48, 16}, {2, 4096, 4096}}) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " block " +
                     std::to_string(block) + (dq ? " dq" : ""));
        CodebookStore s = MakeCodebook(book, rows, cols, block, dq, 4, rng);
        std::vector<float> row(cols);
        for (int64_t r = 0; r < rows; ++r) {
          LinearDequantizeRow(s.w, r, row.data());
          for (int64_t c = 0; c < cols; ++c) {
            ASSERT_EQ(row[c], CodebookFormula(s.w.codebook, r, c)) << "r " << r << " c " << c;
          }
        }
      }
    }
  }
}

TEST(QMatrixTest, AffineDotsMatchReferenceAndExact) {
  std::mt19937 rng(3);
  for (const AffineCase& c : AffineCases()) {
    AffineStore s = MakeAffine(c, rng);
    ASSERT_EQ(LinearActivation(s.w).type, ActType::kQ8_1) << Name(c);
    ExpectDotsAgree(s.w, RandomX(c.cols, rng, {}, 0), Name(c));
  }
}

// GPTQ act-order: stored columns hold the inputs in a permuted order; the activations are
// gathered when prepared, and the exact dot (over LinearDequantizeRow, in the input's
// order) checks the gather, with and without outlier columns and over token batches.
TEST(QMatrixTest, InputOrderGathersTheActivations) {
  std::mt19937 rng(11);
  for (const AffineCase& c : {AffineCase{4, 17, 256, 32, ZeroKind::kZero, true},
                              AffineCase{3, 8, 128, 64, ZeroKind::kZero, true},
                              AffineCase{8, 5, 96, 96, ZeroKind::kZero, true}}) {
    AffineStore s = MakeAffine(c, rng);
    std::vector<int32_t> order(c.cols);
    for (int64_t j = 0; j < c.cols; ++j) order[j] = static_cast<int32_t>(j);
    std::shuffle(order.begin(), order.end(), rng);
    s.w.input_order = order.data();
    EXPECT_EQ(LinearActivation(s.w).input_order, order.data());
    EXPECT_EQ(s.w.bytes(), static_cast<int64_t>(s.q.size() + 4 * s.scale.size() + 4 * c.cols));
    ExpectDotsAgree(s.w, RandomX(c.cols, rng, {}, 0), Name(c));
    ExpectTokensMatchReference(s.w, rng, Name(c));
    // The dequantized row is in the input's order: stored column j is input order[j].
    Linear stored = s.w;
    stored.input_order = nullptr;
    std::vector<float> in_order(c.cols), as_stored(c.cols);
    LinearDequantizeRow(s.w, 1, in_order.data());
    LinearDequantizeRow(stored, 1, as_stored.data());
    for (int64_t j = 0; j < c.cols; ++j) EXPECT_EQ(in_order[order[j]], as_stored[j]);
    s.w.outlier_threshold = 6.0f;
    ExpectDotsAgree(s.w, RandomX(c.cols, rng, {3, 40}, 500.0f), Name(c) + " outliers");
  }
}

// LLM.int8: with huge outlier columns the bound (which assumes block scales set by the
// inliers) only holds when the outliers take the exact path.
TEST(QMatrixTest, OutlierColumnsTakeTheExactPath) {
  std::mt19937 rng(4);
  for (const AffineCase& c : {AffineCase{8, 17, 96, 96, ZeroKind::kZero, true},
                              AffineCase{8, 64, 1024, 1024, ZeroKind::kZero, true},
                              AffineCase{8, 5, 2048, 128, ZeroKind::kBias, true},
                              AffineCase{4, 17, 256, 16, ZeroKind::kZero, true}}) {
    AffineStore s = MakeAffine(c, rng);
    s.w.outlier_threshold = 6.0f;
    const ActivationSpec spec = LinearActivation(s.w);
    EXPECT_EQ(spec.outlier_threshold, 6.0f);
    EXPECT_EQ(LinearActivationBytes(spec, c.cols),
              ActivationRowBytes(ActType::kQ8_1, c.cols) + 8 + 8 * c.cols);
    for (const std::vector<int64_t>& cols :
         {std::vector<int64_t>{}, {0}, {5, 6, 40, c.cols - 1}, {1, 2, 3, 4, 5, 33, 65}}) {
      ExpectDotsAgree(s.w, RandomX(c.cols, rng, cols, 500.0f),
                      Name(c) + " outliers " + std::to_string(cols.size()));
    }
    ExpectTokensMatchReference(s.w, rng, Name(c) + " outliers");
  }
  // Without a threshold the same activations are one Q8_1 row, shareable with Q4_1 layers.
  AffineStore s = MakeAffine({8, 1, 64, 64, ZeroKind::kZero, true}, rng);
  EXPECT_TRUE(LinearActivation(s.w) == (ActivationSpec{ActType::kQ8_1, 0.0f}));
  EXPECT_EQ(LinearActivationBytes(LinearActivation(s.w), 64), ActivationRowBytes(ActType::kQ8_1, 64));
}

TEST(QMatrixTest, CodebookDotsMatchReferenceAndExact) {
  std::mt19937 rng(5);
  for (Codebook book : {Codebook::kNF4, Codebook::kFP4}) {
    for (bool dq : {false, true}) {
      for (auto [rows, cols, block] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 64},
                                       {17, 96, 32}, {17, 1024, 64}, {64, 2048, 64},
                                       {3, 1024, 256}, {2, 4096, 4096}}) {
        const std::string name = std::string(book == Codebook::kNF4 ? "nf4 " : "fp4 ") +
                                  std::to_string(rows) + "x" + std::to_string(cols) +
                                  " block " + std::to_string(block) + (dq ? " dq" : "");
        CodebookStore s = MakeCodebook(book, rows, cols, block, dq, 256, rng);
        ASSERT_EQ(LinearActivation(s.w).type, ActType::kQ8_0) << name;
        ExpectDotsAgree(s.w, RandomX(cols, rng, {}, 0), name);
      }
    }
  }
}

// Shapes without an integer path take the f32 path: exact up to float rounding.
TEST(QMatrixTest, OddShapesTakeTheF32Path) {
  std::mt19937 rng(6);
  AffineStore a = MakeAffine({3, 5, 48, 16, ZeroKind::kZero, true}, rng);  // cols % 32 != 0
  AffineStore b = MakeAffine({4, 5, 64, 8, ZeroKind::kBias, true}, rng);   // group % 16 != 0
  CodebookStore c = MakeCodebook(Codebook::kNF4, 5, 48, 16, true, 2, rng);
  for (const Linear* w : {&a.w, &b.w, &c.w}) {
    EXPECT_EQ(LinearActivation(*w).type, ActType::kF32);
    ExpectDotsAgree(*w, RandomX(w->cols(), rng, {}, 0), "f32 path");
    ExpectTokensMatchReference(*w, rng, "f32 path");
  }
}

TEST(QMatrixTest, TokenBatchesMatchReference) {
  std::mt19937 rng(7);
  for (int bits : {1, 2, 3, 4, 5, 8}) {
    for (int64_t group : {16, 64, 96}) {
      AffineCase c{bits, 19, 192, group, bits % 2 ? ZeroKind::kZero : ZeroKind::kBias, true};
      AffineStore s = MakeAffine(c, rng);
      ExpectTokensMatchReference(s.w, rng, Name(c));
    }
  }
  for (Codebook book : {Codebook::kNF4, Codebook::kFP4}) {
    for (bool dq : {false, true}) {
      CodebookStore s = MakeCodebook(book, 19, 256, 64, dq, 256, rng);
      ExpectTokensMatchReference(s.w, rng, dq ? "codebook dq" : "codebook");
    }
  }
}

// Every CPU level's token path against the plain reference: every affine shape (bit
// widths, groups straddling 32-blocks, one group per row), LLM.int8 outliers, codebooks,
// token counts 1..17, the weights ending at guard pages. A level this CPU lacks is
// skipped, saying so.
class QMatrixLevelTest : public ::testing::TestWithParam<CpuLevel> {};

TEST_P(QMatrixLevelTest, TokensMatchReference) {
  const CpuLevel level = GetParam();
  if (!CpuHasLevel(level)) GTEST_SKIP() << "this CPU lacks " << CpuLevelName(level) << ": path not run";
  std::mt19937 rng(static_cast<unsigned>(level) + 5);
  std::vector<AffineCase> cases = AffineCases();
  cases.push_back({4, 35, 576, 64, ZeroKind::kBias, true});
  cases.push_back({8, 33, 576, 32, ZeroKind::kZero, false});
  for (const AffineCase& c : cases) {
    AffineStore s = MakeAffine(c, rng);
    GuardedAffine guard(s);
    ExpectTokensMatchReference(s.w, rng, Name(c), level, 17);
    if (c.bits == 8 || c.bits == 4) {
      s.w.outlier_threshold = 6.0f;
      ExpectTokensMatchReference(s.w, rng, Name(c) + " outliers", level, 17);
    }
  }
  for (bool dq : {false, true}) {
    CodebookStore s = MakeCodebook(Codebook::kNF4, 19, 256, 64, dq, 256, rng);
    ExpectTokensMatchReference(s.w, rng, dq ? "codebook dq" : "codebook", level, 17);
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, QMatrixLevelTest,
                         ::testing::Values(CpuLevel::kRef, CpuLevel::kAvx2, CpuLevel::kAvx512Vnni, CpuLevel::kAmx),
                         [](const ::testing::TestParamInfo<CpuLevel>& info) {
                           return std::string(CpuLevelName(info.param));
                         });

// kGgml delegates to quant_dot.h.
TEST(QMatrixTest, GgmlViewDelegatesToQuantDot) {
  std::mt19937 rng(8);
  const int64_t rows = 9, cols = 128;
  std::vector<float> w(rows * cols);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (auto& v : w) v = normal(rng);
  std::vector<uint8_t> data(rows * GgmlRowSize(GgmlType::kQ8_0, cols));
  for (int64_t r = 0; r < rows; ++r) {
    auto* blocks = reinterpret_cast<BlockQ8_0*>(data.data() + r * GgmlRowSize(GgmlType::kQ8_0, cols));
    for (int64_t b = 0; b < cols / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(w[r * cols + b * 32 + j]));
      blocks[b].d = Fp32ToFp16(amax / 127);
      for (int j = 0; j < 32; ++j) {
        blocks[b].qs[j] = static_cast<int8_t>(std::lround(w[r * cols + b * 32 + j] * 127 / amax));
      }
    }
  }
  Linear l;
  l.kind = LinearKind::kGgml;
  l.ggml = WeightMatrix{GgmlType::kQ8_0, rows, cols, GgmlRowSize(GgmlType::kQ8_0, cols), data.data()};
  EXPECT_EQ(l.rows(), rows);
  EXPECT_EQ(l.cols(), cols);
  EXPECT_EQ(l.bytes(), static_cast<int64_t>(data.size()));
  EXPECT_TRUE(LinearActivation(l) == (ActivationSpec{ActType::kQ8_0, 0.0f}));
  const auto x = RandomX(cols, rng, {}, 0);
  std::vector<uint8_t> xa(LinearActivationBytes(LinearActivation(l), cols));
  LinearPrepare(LinearActivation(l), x.data(), cols, xa.data());
  std::vector<float> y(rows), want(rows);
  LinearDotRows(l, xa.data(), y.data(), 0, rows);
  DotRows(l.ggml, xa.data(), want.data(), 0, rows);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(y[r], want[r]);
  ExpectDotsAgree(l, x, "ggml q8_0");
}

// (4) bytes(): what each representation promises per weight.
TEST(QMatrixTest, BytesCountCodesScalesAndZeros) {
  std::mt19937 rng(9);
  AffineStore a4 = MakeAffine({4, 64, 1024, 64, ZeroKind::kZero, true}, rng);
  EXPECT_EQ(a4.w.bytes(), 64 * 512 + 64 * 16 * 2 * 2);  // 4.5 bits per weight
  AffineStore a3 = MakeAffine({3, 3, 1056, 1056, ZeroKind::kZero, false}, rng);
  EXPECT_EQ(a3.w.bytes(), 3 * 396 + 3 * 2);
  AffineStore a1 = MakeAffine({1, 2, 7, 7, ZeroKind::kBias, true}, rng);
  EXPECT_EQ(a1.w.bytes(), 2 * 1 + 2 * 2 * 2);
  CodebookStore nf4 = MakeCodebook(Codebook::kNF4, 64, 2048, 64, false, 256, rng);
  EXPECT_EQ(nf4.w.bytes(), 64 * 1024 + 64 * 32 * 4);  // 4.5 bits per weight
  CodebookStore dq = MakeCodebook(Codebook::kNF4, 64, 2048, 64, true, 256, rng);
  // 2048 blocks: a code byte each, 8 nested f32 scales, the f32 offset: ~4.127 bits.
  EXPECT_EQ(dq.w.bytes(), 64 * 1024 + 2048 + 8 * 4 + 4);
  CodebookStore dq_ragged = MakeCodebook(Codebook::kFP4, 3, 640, 64, true, 256, rng);
  EXPECT_EQ(dq_ragged.w.bytes(), 3 * 320 + 30 + 1 * 4 + 4);
  EXPECT_EQ(dq.w.rows(), 64);
  EXPECT_EQ(dq.w.cols(), 2048);
}

TEST(QMatrixTest, ImplementationIsNamed) {
  const std::string impl = LinearImplementation();
  EXPECT_TRUE(impl == "amx" || impl == "avx512vnni" || impl == "avx2" || impl == "ref") << impl;
}

}  // namespace
}  // namespace ingot::kernels
