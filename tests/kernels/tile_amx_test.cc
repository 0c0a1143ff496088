// The AMX-INT8 tile (kernels/cpu/tile_amx.h) against the AVX-512 VNNI one, bit for bit:
// a sequence's tokens must not depend on the batch it was decoded in (the engine tests
// compare greedy tokens alone and batched exactly), and the dispatch runs groups of 16
// tokens on AMX and small rests on VNNI. Against the reference within tolerance: the
// level tests of quant_dot_test.cc and qmatrix_test.cc (CpuLevel::kAmx). Skipped, saying
// so, where the CPU or the OS does not offer AMX.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/qmatrix_internal.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_dot_internal.h"
#include "kernels/cpu/quantize_ref.h"
#include "kernels/ggml_types.h"
#include "tests/kernels/affine_matrix_util.h"
#include "tests/test_util.h"

namespace ingot::kernels {
namespace {

// DotRowsTokens' contract: rows [r0, r1) against n_tok prepared rows -> y[t * ys + r].
using TokensFn = std::function<void(const uint8_t* x, size_t xs, int64_t n_tok, float* y, int64_t ys)>;

struct RowRange {
  int64_t rows, r0, r1;
};

// amx and vnni on 1..40 tokens of random activations (prepare: floats -> one prepared row
// of `stride` bytes), the last token's row ending at a guard page: equal bits in rows
// [r0, r1), nothing written outside.
void ExpectSameBits(const TokensFn& amx, const TokensFn& vnni, int64_t cols, size_t stride, RowRange rr,
                    const std::function<void(const float*, uint8_t*)>& prepare, std::mt19937& rng,
                    const std::string& what) {
  SCOPED_TRACE(what);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n_tok = 1; n_tok <= 40; ++n_tok) {
    ingot::testing::GuardedBytes xa(stride * n_tok);
    std::vector<float> x(cols);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (auto& v : x) v = normal(rng);
      prepare(x.data(), xa.data() + t * stride);
    }
    std::vector<float> y_amx(rr.rows * n_tok, NAN), y_vnni(rr.rows * n_tok, NAN);
    amx(xa.data(), stride, n_tok, y_amx.data(), rr.rows);
    vnni(xa.data(), stride, n_tok, y_vnni.data(), rr.rows);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t r = 0; r < rr.rows; ++r) {
        const float a = y_amx[t * rr.rows + r], v = y_vnni[t * rr.rows + r];
        if (r < rr.r0 || r >= rr.r1) {
          ASSERT_TRUE(std::isnan(a)) << "wrote row " << r << " outside [" << rr.r0 << ", " << rr.r1 << ")";
          continue;
        }
        uint32_t ab, vb;
        std::memcpy(&ab, &a, 4);
        std::memcpy(&vb, &v, 4);
        ASSERT_EQ(ab, vb) << a << " vs " << v << ": cols " << cols << " rows " << rr.rows << " tokens " << n_tok
                          << " t " << t << " r " << r;
      }
    }
  }
}

const RowRange kRowRanges[] = {{1, 0, 1}, {17, 0, 17}, {35, 3, 35}, {48, 16, 41}};

// Q4_0, Q4_1, Q8_0 rows quantized from random floats by the reference quantizers, every
// token count 1..40 through the AMX kernel alone, and DotRowsTokens at kAmx (AMX for
// groups of 9..16 tokens, VNNI for the rest) against it at kAvx512Vnni.
TEST(TileAmxTest, GgmlMatchesVnniBitForBit) {
  if (!CpuHasLevel(CpuLevel::kAmx)) GTEST_SKIP() << "this CPU lacks amx: path not run";
  struct Kernel {
    GgmlType type;
    void (*quantize)(const float*, void*, int64_t);
    internal::DotTokensFn amx, vnni;
  };
  const Kernel kernels[] = {
      {GgmlType::kQ4_0, QuantizeRowQ4_0Ref, internal::DotTokensQ4_0Amx, internal::DotTokensQ4_0Avx512Vnni},
      {GgmlType::kQ4_1, QuantizeRowQ4_1Ref, internal::DotTokensQ4_1Amx, internal::DotTokensQ4_1Avx512Vnni},
      {GgmlType::kQ8_0, QuantizeRowQ8_0Ref, internal::DotTokensQ8_0Amx, internal::DotTokensQ8_0Avx512Vnni},
  };
  std::mt19937 rng(15);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Kernel& k : kernels) {
    for (int64_t blocks : {1, 3, 18, 35}) {
      const int64_t cols = 32 * blocks;
      for (RowRange rr : kRowRanges) {
        const size_t row_bytes = GgmlRowSize(k.type, cols);
        ingot::testing::GuardedBytes storage(row_bytes * rr.rows);
        std::vector<float> row(cols);
        for (int64_t r = 0; r < rr.rows; ++r) {
          for (auto& v : row) v = normal(rng);
          k.quantize(row.data(), storage.data() + r * row_bytes, cols);
        }
        const WeightMatrix w{k.type, rr.rows, cols, row_bytes, storage.data()};
        const ActType act = ActivationTypeFor(k.type);
        auto prepare = [&](const float* x, uint8_t* out) { PrepareActivationsRef(act, x, cols, out); };
        auto kernel = [&](internal::DotTokensFn fn) {
          return [&, fn](const uint8_t* x, size_t xs, int64_t n, float* y, int64_t ys) {
            fn(w, x, xs, n, y, ys, rr.r0, rr.r1);
          };
        };
        auto level = [&](CpuLevel l) {
          return [&, l](const uint8_t* x, size_t xs, int64_t n, float* y, int64_t ys) {
            DotRowsTokens(w, x, xs, n, y, ys, rr.r0, rr.r1, l);
          };
        };
        const std::string what = std::string(GetGgmlTypeTraits(k.type).name) + " cols " + std::to_string(cols) +
                                 " rows " + std::to_string(rr.rows);
        const size_t stride = ActivationRowBytes(act, cols);
        ExpectSameBits(kernel(k.amx), kernel(k.vnni), cols, stride, rr, prepare, rng, what + " kernels");
        ExpectSameBits(level(CpuLevel::kAmx), level(CpuLevel::kAvx512Vnni), cols, stride, rr, prepare, rng,
                       what + " dispatch");
      }
    }
  }
}

// Affine 4- and 8-bit codes, zeros and biases, groups of one and several 32-blocks.
TEST(TileAmxTest, AffineMatchesVnniBitForBit) {
  if (!CpuHasLevel(CpuLevel::kAmx)) GTEST_SKIP() << "this CPU lacks amx: path not run";
  std::mt19937 rng(16);
  for (int bits : {4, 8}) {
    for (int64_t group : {32, 64, 576}) {
      for (ZeroKind kind : {ZeroKind::kZero, ZeroKind::kBias}) {
        for (RowRange rr : kRowRanges) {
          AffineStore s = MakeAffine({bits, rr.rows, 576, group, kind, kind == ZeroKind::kZero}, rng);
          GuardedAffine guard(s);
          const AffineMatrix& a = s.w.affine;
          ASSERT_TRUE(internal::AffineTokensAvx512Vnni(a));
          const ActivationSpec spec = LinearActivation(s.w);
          auto prepare = [&](const float* x, uint8_t* out) { LinearPrepare(spec, x, a.cols, out); };
          auto amx = [&](const uint8_t* x, size_t xs, int64_t n, float* y, int64_t ys) {
            internal::AffineDotTokensAmx(a, x, xs, n, y, ys, rr.r0, rr.r1);
          };
          auto vnni = [&](const uint8_t* x, size_t xs, int64_t n, float* y, int64_t ys) {
            internal::AffineDotTokensAvx512Vnni(a, x, xs, n, y, ys, rr.r0, rr.r1);
          };
          const std::string what = "bits " + std::to_string(bits) + " group " + std::to_string(group) +
                                   (kind == ZeroKind::kZero ? " zero" : " bias") + " rows " + std::to_string(rr.rows);
          ExpectSameBits(amx, vnni, a.cols, LinearActivationBytes(spec, a.cols), rr, prepare, rng, what);
        }
      }
    }
  }
}

// The dispatch's split: whole groups of 16 and rests from kAmxMinTokens on go to AMX.
TEST(TileAmxTest, AmxTokensSplitsGroups) {
  EXPECT_EQ(internal::AmxTokens(1), 0);
  EXPECT_EQ(internal::AmxTokens(internal::kAmxMinTokens - 1), 0);
  EXPECT_EQ(internal::AmxTokens(internal::kAmxMinTokens), internal::kAmxMinTokens);
  EXPECT_EQ(internal::AmxTokens(16), 16);
  EXPECT_EQ(internal::AmxTokens(17), 16);
  EXPECT_EQ(internal::AmxTokens(32 + internal::kAmxMinTokens), 32 + internal::kAmxMinTokens);
}

}  // namespace
}  // namespace ingot::kernels
