// Every dot kernel against its plain reference, and the reference against the f32
// dot of the dequantized row, on awkward shapes (test-backend-ops style). Loops over
// the GGML type table, so a type that gains a dot path is tested the day it lands.
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/test_util.h"

namespace ingot::kernels {
namespace {

// Random blocks of `type` made valid: every f16 scale field set to a small finite
// value by building the row from random floats where we can't quantize, i.e. random
// bytes with the scales patched (the block layouts put d/m at known offsets).
std::vector<uint8_t> RandomRow(GgmlType type, int64_t cols, std::mt19937& rng) {
  const auto& t = GetGgmlTypeTraits(type);
  std::vector<uint8_t> row(GgmlRowSize(type, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  auto set_half = [&](size_t off) {
    const ggml_half h = Fp32ToFp16(scale(rng));
    std::memcpy(&row[off], &h, 2);
  };
  for (int64_t b = 0; b < cols / t.block_size; ++b) {
    const size_t base = static_cast<size_t>(b) * t.type_size;
    switch (type) {
      case GgmlType::kQ4_0: case GgmlType::kQ5_0: case GgmlType::kQ8_0:
        set_half(base); break;
      case GgmlType::kQ4_1: case GgmlType::kQ5_1:
        set_half(base); set_half(base + 2); break;
      case GgmlType::kQ4_K: case GgmlType::kQ5_K:
        set_half(base); set_half(base + 2); break;
      case GgmlType::kQ2_K:
        set_half(base + offsetof(BlockQ2_K, d)); set_half(base + offsetof(BlockQ2_K, dmin)); break;
      case GgmlType::kQ3_K: set_half(base + offsetof(BlockQ3_K, d)); break;
      case GgmlType::kQ6_K: set_half(base + offsetof(BlockQ6_K, d)); break;
      case GgmlType::kF16:
        for (int64_t i = 0; i < cols; ++i) set_half(static_cast<size_t>(i) * 2);
        break;
      case GgmlType::kBF16:
        for (int64_t i = 0; i < cols; ++i) {
          const float v = scale(rng);
          uint32_t bits;
          std::memcpy(&bits, &v, 4);
          const uint16_t h = static_cast<uint16_t>(bits >> 16);
          std::memcpy(&row[static_cast<size_t>(i) * 2], &h, 2);
        }
        break;
      case GgmlType::kF32: {
        for (int64_t i = 0; i < cols; ++i) {
          const float v = scale(rng);
          std::memcpy(&row[static_cast<size_t>(i) * 4], &v, 4);
        }
        break;
      }
      default: return {};
    }
  }
  return row;
}

const GgmlType kTypes[] = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_0, GgmlType::kQ4_1,
                           GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ2_K,
                           GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K};

TEST(QuantDotTest, OptimizedMatchesReferenceOnAwkwardShapes) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (GgmlType type : kTypes) {
    const auto& traits = GetGgmlTypeTraits(type);
    SCOPED_TRACE(traits.name);
    ASSERT_TRUE(DotSupported(type));
    // Rows: 1, 17, 33; columns: 1, 3 and 35 blocks (K-quants: 1 and 3 blocks).
    for (int64_t blocks : {1, 3, 35}) {
      const int64_t cols = (traits.block_size == 1 ? 32 : traits.block_size) * blocks;
      if (traits.block_size == kQK_K && blocks > 3) continue;
      for (int64_t rows : {1, 17, 33}) {
        std::vector<uint8_t> data;
        for (int64_t r = 0; r < rows; ++r) {
          auto row = RandomRow(type, cols, rng);
          ASSERT_FALSE(row.empty());
          data.insert(data.end(), row.begin(), row.end());
        }
        WeightMatrix w{type, rows, cols, GgmlRowSize(type, cols), data.data()};
        std::vector<float> x(cols);
        for (auto& v : x) v = normal(rng);
        const ActType act = ActivationTypeFor(type);
        std::vector<uint8_t> xa(ActivationRowBytes(act, cols)), xa_ref(xa.size());
        PrepareActivations(act, x.data(), cols, xa.data());
        PrepareActivationsRef(act, x.data(), cols, xa_ref.data());
        std::vector<float> y(rows), y_ref(rows), y_exact(rows);
        DotRows(w, xa.data(), y.data(), 0, rows);
        DotRowsRef(w, xa_ref.data(), y_ref.data(), 0, rows);
        // Exact: dequantized row . unquantized x, in double.
        std::vector<float> deq(cols);
        double norm = 0;
        for (int64_t r = 0; r < rows; ++r) {
          traits.dequantize(w.Row(r), deq.data(), cols);
          double s = 0, n2 = 0;
          for (int64_t j = 0; j < cols; ++j) {
            s += static_cast<double>(deq[j]) * x[j];
            n2 += std::fabs(static_cast<double>(deq[j]) * x[j]);
          }
          y_exact[r] = static_cast<float>(s);
          norm = std::max(norm, n2);
        }
        for (int64_t r = 0; r < rows; ++r) {
          // Optimized vs reference: same math, different summation order and (for the
          // 8-bit activations) rounding ties: relative to sum |w x|.
          EXPECT_NEAR(y[r], y_ref[r], 1e-4 * norm + 1e-6) << "rows " << rows << " cols " << cols;
          // Reference vs exact: 8-bit activations cost at most ~1/127 of sum |w x|.
          const double bound = act == ActType::kF32 ? 1e-5 * norm + 1e-6 : norm / 100.0;
          EXPECT_NEAR(y_ref[r], y_exact[r], bound) << "rows " << rows << " cols " << cols;
        }
      }
    }
  }
}

// Prompt batches: every token count around the 4-token micro-kernel, vs the reference
// one token at a time.
TEST(QuantDotTest, TokenBatchesMatchReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (GgmlType type : kTypes) {
    const auto& traits = GetGgmlTypeTraits(type);
    SCOPED_TRACE(traits.name);
    const int64_t cols = traits.block_size == kQK_K ? 2 * kQK_K : 96;
    const int64_t rows = 19;
    std::vector<uint8_t> data;
    for (int64_t r = 0; r < rows; ++r) {
      auto row = RandomRow(type, cols, rng);
      data.insert(data.end(), row.begin(), row.end());
    }
    WeightMatrix w{type, rows, cols, GgmlRowSize(type, cols), data.data()};
    const ActType act = ActivationTypeFor(type);
    const size_t stride = ActivationRowBytes(act, cols);
    for (int64_t n_tok : {1, 3, 4, 5, 8, 9, 17}) {
      std::vector<uint8_t> xa(stride * n_tok);
      std::vector<float> x(cols);
      for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : x) v = normal(rng);
        PrepareActivationsRef(act, x.data(), cols, xa.data() + t * stride);
      }
      std::vector<float> y(rows * n_tok, NAN), want(rows);
      DotRowsTokens(w, xa.data(), stride, n_tok, y.data(), rows, 2, rows);  // rows [2, 19)
      for (int64_t t = 0; t < n_tok; ++t) {
        DotRowsRef(w, xa.data() + t * stride, want.data(), 0, rows);
        for (int64_t r = 0; r < rows; ++r) {
          if (r < 2) {
            EXPECT_TRUE(std::isnan(y[t * rows + r])) << "wrote outside [r0, r1)";
          } else {
            EXPECT_NEAR(y[t * rows + r], want[r], 1e-3 * (1 + std::fabs(want[r])))
                << "tokens " << n_tok << " t " << t << " r " << r;
          }
        }
      }
    }
  }
}

// Every CPU level's multi-token path (DotRowsTokens with the level named) against the
// plain reference one token at a time: every table type, token counts 1..17 (tile and
// token-group edges), ragged row ranges and column counts, the matrix ending at a
// guard page. A level this CPU lacks is skipped, saying so.
class QuantDotLevelTest : public ::testing::TestWithParam<CpuLevel> {};

TEST_P(QuantDotLevelTest, TokensMatchReference) {
  const CpuLevel level = GetParam();
  if (!CpuHasLevel(level)) GTEST_SKIP() << "this CPU lacks " << CpuLevelName(level) << ": path not run";
  std::mt19937 rng(static_cast<unsigned>(level) + 21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Rows {
    int64_t rows, r0, r1;
  };
  for (GgmlType type : kTypes) {
    const auto& traits = GetGgmlTypeTraits(type);
    SCOPED_TRACE(traits.name);
    const int64_t unit = traits.block_size == 1 ? 32 : traits.block_size;
    for (int64_t blocks : {1, 3, 18, 35}) {
      if (traits.block_size == kQK_K && blocks > 3) continue;
      const int64_t cols = unit * blocks;
      for (Rows rr : {Rows{1, 0, 1}, Rows{17, 0, 17}, Rows{35, 3, 35}, Rows{48, 16, 41}}) {
        const size_t row_bytes = GgmlRowSize(type, cols);
        ingot::testing::GuardedBytes storage(row_bytes * rr.rows);
        for (int64_t r = 0; r < rr.rows; ++r) {
          auto row = RandomRow(type, cols, rng);
          ASSERT_FALSE(row.empty());
          std::memcpy(storage.data() + r * row_bytes, row.data(), row_bytes);
        }
        WeightMatrix w{type, rr.rows, cols, row_bytes, storage.data()};
        const ActType act = ActivationTypeFor(type);
        const size_t stride = ActivationRowBytes(act, cols);
        // sum_j |w_j x_j| per row bounds the rounding of either summation order.
        std::vector<std::vector<float>> deq(rr.rows, std::vector<float>(cols));
        for (int64_t r = 0; r < rr.rows; ++r) traits.dequantize(w.Row(r), deq[r].data(), cols);
        for (int64_t n_tok = 1; n_tok <= 17; ++n_tok) {
          std::vector<float> x(cols * n_tok);
          for (auto& v : x) v = normal(rng);
          std::vector<uint8_t> xa(stride * n_tok);
          for (int64_t t = 0; t < n_tok; ++t) PrepareActivationsRef(act, x.data() + t * cols, cols, xa.data() + t * stride);
          std::vector<float> y(rr.rows * n_tok, NAN), want(rr.rows);
          DotRowsTokens(w, xa.data(), stride, n_tok, y.data(), rr.rows, rr.r0, rr.r1, level);
          for (int64_t t = 0; t < n_tok; ++t) {
            DotRowsRef(w, xa.data() + t * stride, want.data(), rr.r0, rr.r1);
            for (int64_t r = 0; r < rr.rows; ++r) {
              const float got = y[t * rr.rows + r];
              if (r < rr.r0 || r >= rr.r1) {
                ASSERT_TRUE(std::isnan(got)) << "wrote row " << r << " outside [" << rr.r0 << ", " << rr.r1 << ")";
                continue;
              }
              double norm = 0;
              for (int64_t j = 0; j < cols; ++j) norm += std::fabs(static_cast<double>(deq[r][j]) * x[t * cols + j]);
              ASSERT_NEAR(got, want[r - rr.r0], 1e-4 * norm + 1e-6)
                  << "cols " << cols << " rows " << rr.rows << " tokens " << n_tok << " t " << t << " r " << r;
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, QuantDotLevelTest,
                         ::testing::Values(CpuLevel::kRef, CpuLevel::kAvx2, CpuLevel::kAvx512Vnni, CpuLevel::kAmx),
                         [](const ::testing::TestParamInfo<CpuLevel>& info) {
                           return std::string(CpuLevelName(info.param));
                         });

TEST(QuantDotTest, F32DotOnRaggedLengths) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n : {1, 7, 8, 17, 64, 1025}) {
    std::vector<float> a(n), b(n);
    for (int64_t i = 0; i < n; ++i) {
      a[i] = normal(rng);
      b[i] = normal(rng);
    }
    double want = 0;
    for (int64_t i = 0; i < n; ++i) want += static_cast<double>(a[i]) * b[i];
    EXPECT_NEAR(DotF32(a.data(), b.data(), n), want, 1e-4 * n);
  }
}

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 5, 1000, 4097}) {
      for (int rep = 0; rep < 50; ++rep) {
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, 7, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << i;
      }
    }
  }
}

}  // namespace
}  // namespace ingot::kernels
