// The CUDA kernels' host-testable halves, on the CPU. The decoders of
// kernels/cuda/quant_decode.h (the same source nvcc compiles into the fused
// dequantize-GEMV kernels) against the CPU reference (LinearDequantizeRow) chunk by
// chunk for every representation the kernels serve, and the GEMV's partition of a row
// over a warp's lanes replayed; the paged attention kernel's lane functions
// (paged_attention.h) replayed as a warp against exact softmax, and its Q8_0 store
// against the native store's bytes. What is left for a GPU (tests/gpu/run.sh:
// backend_test on cuda:0) is the launch, the shuffles and the memory traffic.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/quantize_ref.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/quant_decode.h"
#include "kernels/cuda/quant_gemv.h"
#include "kernels/cuda/quant_view.h"
#include "kernels/cuda/step_ops.h"
#include "kernels/ggml_types.h"

namespace ingot::kernels::cuda {
namespace {

using quant::MethodParams;
using quant::QuantizedWeight;

MethodParams Params(int bits, int64_t group) {
  MethodParams p;
  p.bits = bits;
  p.group_size = group;
  p.hqq_iters = 2;
  return p;
}

struct Rep {
  std::string name;
  int64_t cols;
  std::function<absl::StatusOr<QuantizedWeight>(const float*, int64_t, int64_t)> make;
};

std::vector<Rep> Reps() {
  std::vector<Rep> reps;
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                     GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K}) {
    reps.push_back({GetGgmlTypeTraits(t).name, 768,
                    [t](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, t); }});
  }
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t group : {32, 64, 128}) {
      reps.push_back({"rtn" + std::to_string(bits) + "/g" + std::to_string(group), 768,
                      [=](const float* w, int64_t r, int64_t c) {
                        return quant::QuantizeAffineRtn(w, r, c, Params(bits, group));
                      }});
    }
  }
  reps.push_back({"hqq3/g64", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeHqq(w, r, c, Params(3, 64)); }});
  reps.push_back({"mlx4/g32 (bias)", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeMlx(w, r, c, Params(4, 32)); }});
  reps.push_back({"torchao int8/row", 576, [](const float* w, int64_t r, int64_t c) {
                    return quant::QuantizeTorchaoInt8(w, r, c, false, Params(8, 0));
                  }});
  reps.push_back({"llm.int8", 576, [](const float* w, int64_t r, int64_t c) {
                    return quant::QuantizeBnbInt8(w, r, c, Params(8, 0));
                  }});
  reps.push_back({"nf4/b64+dq", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeBnb4(w, r, c, Params(4, 64)); }});
  reps.push_back({"fp4/b32", 576, [](const float* w, int64_t r, int64_t c) {
                    MethodParams p = Params(4, 32);
                    p.codebook = Codebook::kFP4;
                    p.double_quant = false;
                    return quant::QuantizeBnb4(w, r, c, p);
                  }});
  return reps;
}

template <QuantFormat F>
void DecodeRow(const QuantView& v, int64_t r, float* out) {
  for (int64_t c = 0; c < v.cols / kChunk; ++c) DecodeChunk<F>(v, r, c, out + c * kChunk);
}

void Decode(QuantFormat f, const QuantView& v, int64_t r, float* out) {
  switch (f) {
    case QuantFormat::kQ4_0: return DecodeRow<QuantFormat::kQ4_0>(v, r, out);
    case QuantFormat::kQ4_1: return DecodeRow<QuantFormat::kQ4_1>(v, r, out);
    case QuantFormat::kQ5_0: return DecodeRow<QuantFormat::kQ5_0>(v, r, out);
    case QuantFormat::kQ5_1: return DecodeRow<QuantFormat::kQ5_1>(v, r, out);
    case QuantFormat::kQ8_0: return DecodeRow<QuantFormat::kQ8_0>(v, r, out);
    case QuantFormat::kQ4_K: return DecodeRow<QuantFormat::kQ4_K>(v, r, out);
    case QuantFormat::kQ5_K: return DecodeRow<QuantFormat::kQ5_K>(v, r, out);
    case QuantFormat::kQ6_K: return DecodeRow<QuantFormat::kQ6_K>(v, r, out);
    case QuantFormat::kAffine: return DecodeRow<QuantFormat::kAffine>(v, r, out);
    case QuantFormat::kCodebook: return DecodeRow<QuantFormat::kCodebook>(v, r, out);
  }
}

QuantView HostView(const Linear& w) {
  const QuantArrays a = QuantArraysOf(w);
  return MakeQuantView(w, a.host, CodebookValues(w.codebook.book), DynamicMap());
}

// bf16 round to nearest even, as __float2bfloat16 / __floats2bfloat162_rn do.
float Bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(CudaDecodeTest, HalfBitsIsTheCpuConversionForEveryF16) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = HalfBits(static_cast<uint16_t>(h)), want = Fp16ToFp32(static_cast<uint16_t>(h));
    uint32_t gb, wb;
    std::memcpy(&gb, &got, 4);
    std::memcpy(&wb, &want, 4);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(gb, wb) << "f16 bits " << h;
    }
  }
}

// Every chunk of every row equals the CPU reference (same float operations; at most a
// contracted multiply-add apart).
TEST(CudaDecodeTest, EveryFormatDecodesAsTheCpuReference) {
  int formats_seen[kQuantFormatCount] = {};
  for (const Rep& rep : Reps()) {
    SCOPED_TRACE(rep.name);
    const int64_t rows = 7, cols = rep.cols;
    std::mt19937 rng(static_cast<uint32_t>(cols * 7 + rep.name.size()));
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> wf(static_cast<size_t>(rows * cols));
    for (float& x : wf) x = nd(rng);
    auto q = rep.make(wf.data(), rows, cols);
    if (!q.ok() && q.status().code() == absl::StatusCode::kInvalidArgument) continue;  // a width the method lacks
    ASSERT_TRUE(q.ok()) << q.status();
    const Linear& w = q->view;
    QuantFormat f{};
    ASSERT_EQ(QuantFormatFor(w, &f), "");
    ++formats_seen[static_cast<int>(f)];
    Linear plain = w;
    plain.input_order = nullptr;  // the kernel decodes stored columns; the torch row gathers x
    const QuantView v = HostView(w);
    std::vector<float> got(cols), want(cols);
    for (int64_t r = 0; r < rows; ++r) {
      Decode(f, v, r, got.data());
      LinearDequantizeRow(plain, r, want.data());
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_NEAR(got[c], want[c], 1e-6f * std::fabs(want[c]) + 1e-12f)
            << QuantFormatName(f) << " row " << r << " col " << c;
      }
    }
  }
  for (int i = 0; i < kQuantFormatCount; ++i) {
    EXPECT_GT(formats_seen[i], 0) << QuantFormatName(static_cast<QuantFormat>(i)) << " was not tested";
  }
}

// Where a chunk is one scale times 32 values (Factored), the GEMV takes the scale out of
// the dot product: the factored values times the scale are DecodeChunk's weights bit for
// bit, and every format with such chunks meets the factored path here.
template <QuantFormat F>
int FactoredChunksMatch(const QuantView& v, int64_t rows) {
  if (!Factored<F>(v)) return 0;
  int checked = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < v.cols / kChunk; ++c) {
      float w[kChunk], q[kChunk], scale;
      DecodeChunk<F>(v, r, c, w);
      DecodeChunkFactored<F>(v, r, c, q, &scale);
      for (int j = 0; j < kChunk; ++j) {
        const float p = q[j] * scale;
        EXPECT_EQ(std::memcmp(&p, &w[j], 4), 0) << QuantFormatName(F) << " row " << r << " chunk " << c << " " << j;
      }
      ++checked;
    }
  }
  return checked;
}

TEST(CudaDecodeTest, FactoredChunksAreTheDecodedWeights) {
  std::map<std::string, int> seen;
  for (const Rep& rep : Reps()) {
    const int64_t rows = 3, cols = rep.cols;
    std::vector<float> wf(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = 0.05f * std::sin(0.37f * static_cast<float>(i));
    auto q = rep.make(wf.data(), rows, cols);
    if (!q.ok() && q.status().code() == absl::StatusCode::kInvalidArgument) continue;
    ASSERT_TRUE(q.ok()) << q.status();
    QuantFormat f{};
    ASSERT_EQ(QuantFormatFor(q->view, &f), "");
    const QuantView v = HostView(q->view);
    int n = 0;
    switch (f) {
      case QuantFormat::kQ4_0: n = FactoredChunksMatch<QuantFormat::kQ4_0>(v, rows); break;
      case QuantFormat::kQ8_0: n = FactoredChunksMatch<QuantFormat::kQ8_0>(v, rows); break;
      case QuantFormat::kAffine: n = FactoredChunksMatch<QuantFormat::kAffine>(v, rows); break;
      case QuantFormat::kCodebook: n = FactoredChunksMatch<QuantFormat::kCodebook>(v, rows); break;
      default: EXPECT_FALSE(Factored<QuantFormat::kQ4_1>(v)); break;
    }
    if (n > 0) seen[QuantFormatName(f)] += n;
  }
  for (const char* name : {"Q4_0", "Q8_0", "affine", "codebook"}) EXPECT_GT(seen[name], 0) << name << " never factored";
}

// The GEMV kernel's schedule replayed: lane l takes chunks l, l + 32, ...; each token's
// partial sums are reduced over the 32 lanes by xor shuffles; x is bf16 and the output
// rounded to bf16. Every chunk is counted once and the result is x . W^T.
TEST(CudaDecodeTest, WarpScheduleCoversEveryChunkOnce) {
  for (int64_t cols : {32, 96, 1024, 2080}) {  // fewer, as many and more chunks than lanes
    SCOPED_TRACE(cols);
    const int64_t rows = 3;
    const int m = 5;
    std::mt19937 rng(static_cast<uint32_t>(cols));
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
    for (float& v : wf) v = nd(rng);
    for (float& v : x) v = Bf16(nd(rng) * 20.0f);
    auto q = quant::QuantizeGguf(wf.data(), rows, cols, GgmlType::kQ8_0);
    ASSERT_TRUE(q.ok()) << q.status();
    const QuantView v = HostView(q->view);
    std::vector<float> dense(cols);
    for (int64_t r = 0; r < rows; ++r) {
      LinearDequantizeRow(q->view, r, dense.data());
      float lane_acc[32][m] = {};
      int visits = 0;
      for (int lane = 0; lane < 32; ++lane) {
        for (int64_t c = lane; c < cols / kChunk; c += 32) {
          float w[kChunk], scale;  // Q8_0 is Factored: the scale comes out of the chunk's dot
          ASSERT_TRUE(Factored<QuantFormat::kQ8_0>(v));
          DecodeChunkFactored<QuantFormat::kQ8_0>(v, r, c, w, &scale);
          ++visits;
          for (int t = 0; t < m; ++t) {
            float s = 0;
            for (int j = 0; j < kChunk; ++j) s = std::fma(w[j], x[t * cols + c * kChunk + j], s);
            lane_acc[lane][t] = std::fma(scale, s, lane_acc[lane][t]);
          }
        }
      }
      EXPECT_EQ(visits, cols / kChunk);
      for (int off = 16; off > 0; off >>= 1) {  // __shfl_xor_sync: lane l adds lane l ^ off
        float next[32][m];
        for (int lane = 0; lane < 32; ++lane) {
          for (int t = 0; t < m; ++t) next[lane][t] = lane_acc[lane][t] + lane_acc[lane ^ off][t];
        }
        std::memcpy(lane_acc, next, sizeof(next));
      }
      for (int t = 0; t < m; ++t) {
        double want = 0;
        for (int64_t c = 0; c < cols; ++c) want += static_cast<double>(dense[c]) * x[t * cols + c];
        EXPECT_NEAR(Bf16(lane_acc[0][t]), want, 1e-2 * std::fabs(want) + 1e-4) << "row " << r << " token " << t;
      }
    }
  }
}

// The mma.sync fragment maps (quant_gemv.h, from the PTX ISA's tables) each cover their
// tile exactly once over the warp, and the two elements of a 32-bit register are
// adjacent columns (A) or k (B): the kernel loads them as one word.
TEST(CudaMmaTest, FragmentMapsCoverTheirTilesOnce) {
  int a[16][16] = {}, b[16][8] = {}, c[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      int r, col;
      MmaFragA(lane, i, &r, &col);
      ASSERT_TRUE(r >= 0 && r < 16 && col >= 0 && col < 16) << lane << " " << i;
      ++a[r][col];
      if (i % 2 == 1) {
        int r0, c0;
        MmaFragA(lane, i - 1, &r0, &c0);
        EXPECT_TRUE(r0 == r && c0 + 1 == col) << "A register " << i / 2 << " of lane " << lane;
      }
    }
    for (int i = 0; i < 4; ++i) {
      int k, n;
      MmaFragB(lane, i, &k, &n);
      ASSERT_TRUE(k >= 0 && k < 16 && n >= 0 && n < 8);
      ++b[k][n];
      if (i % 2 == 1) {
        int k0, n0;
        MmaFragB(lane, i - 1, &k0, &n0);
        EXPECT_TRUE(n0 == n && k0 + 1 == k) << "B register " << i / 2 << " of lane " << lane;
      }
      int r, n2;
      MmaFragC(lane, i, &r, &n2);
      ASSERT_TRUE(r >= 0 && r < 16 && n2 >= 0 && n2 < 8);
      ++c[r][n2];
    }
  }
  for (int r = 0; r < 16; ++r) {
    for (int col = 0; col < 16; ++col) EXPECT_EQ(a[r][col], 1) << "A " << r << "," << col;
    for (int n = 0; n < 8; ++n) {
      EXPECT_EQ(b[r][n], 1) << "B " << r << "," << n;
      EXPECT_EQ(c[r][n], 1) << "C " << r << "," << n;
    }
  }
}

// The MMA kernel replayed on the CPU, block by block and warp by warp as quant_gemv.cu
// runs it: decode slots into the bf16 tile, the k16 slices' fragments gathered from the
// tile and x through the fragment maps, each mma as the hardware computes it from the
// registers it is given (A and B rebuilt from the 32 lanes' registers, C handed back
// through the C map), the warps' sums added in the block and written out. Rows not a
// multiple of 16, an odd chunk count (a half-empty last step) and every token-tile count.
TEST(CudaMmaTest, KernelScheduleComputesXTimesWTransposed) {
  const int64_t rows = 37, cols = 544;  // partial last tiles; 17 chunks
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (float& v : wf) v = nd(rng);
  auto q = quant::QuantizeGguf(wf.data(), rows, cols, GgmlType::kQ4_0);
  ASSERT_TRUE(q.ok()) << q.status();
  const QuantView v = HostView(q->view);
  std::vector<float> dense(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) LinearDequantizeRow(q->view, r, dense.data() + r * cols);
  for (int m : {5, 8, 16, 23, 64}) {  // every token-tile instance: 1, 2, 4, 8
    SCOPED_TRACE(m);
    const int nt = MmaTokenTiles(m), rtiles = MmaRowTiles(nt), block_rows = kMmaRows * rtiles;
    std::vector<float> x(static_cast<size_t>(m * cols));
    for (float& f : x) f = Bf16(nd(rng) * 20.0f);
    GemvGroup g;
    g.v[0] = v;
    g.count = 1;
    int64_t first[kMaxGemvGroup + 1];
    GroupBlocks(g, block_rows, first);
    std::vector<float> y(static_cast<size_t>(m * rows), std::nanf(""));
    const int64_t chunks = cols / kChunk, steps = (chunks + 1) / 2;
    for (int64_t blk = 0; blk < first[1]; ++blk) {
      int64_t row0;
      ASSERT_EQ(GroupBlockWeight(first, g.count, blk, block_rows, &row0), 0);
      std::vector<float> sums(static_cast<size_t>(kMmaWarps * block_rows * nt * 8), 0.0f);
      for (int warp = 0; warp < kMmaWarps; ++warp) {
        std::vector<float> acc(static_cast<size_t>(rtiles * nt * 32 * 4), 0.0f);  // [rt][j][lane][i]
        for (int64_t s = warp; s < steps; s += kMmaWarps) {
          std::vector<float> tile(static_cast<size_t>(block_rows * kMmaTileStride), 0.0f);  // the warp's RT tiles
          for (int rt = 0; rt < rtiles; ++rt) {
            for (int lane = 0; lane < 32; ++lane) {
              int tr, half;
              MmaDecodeSlot(lane, &tr, &half);
              const int64_t r = row0 + rt * kMmaRows + tr, c = 2 * s + half;
              float w[kChunk] = {};
              if (r < rows && c < chunks) DecodeChunk<QuantFormat::kQ4_0>(v, r, c, w);
              for (int j = 0; j < kChunk; ++j) tile[(rt * kMmaRows + tr) * kMmaTileStride + half * kChunk + j] = Bf16(w[j]);
            }
          }
          for (int kk = 0; kk < kMmaStepCols / 16; ++kk) {
            const int64_t col = s * kMmaStepCols + kk * 16;
            if (col >= cols) break;
            for (int j = 0; j < nt; ++j) {
              float B[16][8];  // what the lanes' B registers hold, placed where the hardware reads them
              for (int lane = 0; lane < 32; ++lane) {
                for (int i = 0; i < 4; ++i) {
                  int bk, bn;
                  MmaFragB(lane, i, &bk, &bn);
                  const int tok = 8 * j + bn;
                  B[bk][bn] = tok < m ? x[tok * cols + col + bk] : 0.0f;
                }
              }
              for (int rt = 0; rt < rtiles; ++rt) {
                float A[16][16];
                for (int lane = 0; lane < 32; ++lane) {
                  for (int i = 0; i < 8; ++i) {
                    int ar, ac;
                    MmaFragA(lane, i, &ar, &ac);
                    A[ar][ac] = tile[(rt * kMmaRows + ar) * kMmaTileStride + kk * 16 + ac];
                  }
                }
                for (int lane = 0; lane < 32; ++lane) {
                  for (int i = 0; i < 4; ++i) {
                    int cr, cn;
                    MmaFragC(lane, i, &cr, &cn);
                    float d = 0.0f;
                    for (int k = 0; k < 16; ++k) d += A[cr][k] * B[k][cn];
                    acc[((rt * nt + j) * 32 + lane) * 4 + i] += d;
                  }
                }
              }
            }
          }
        }
        for (int rt = 0; rt < rtiles; ++rt) {
          for (int j = 0; j < nt; ++j) {
            for (int lane = 0; lane < 32; ++lane) {
              for (int i = 0; i < 4; ++i) {
                int cr, cn;
                MmaFragC(lane, i, &cr, &cn);
                sums[(warp * block_rows + rt * kMmaRows + cr) * nt * 8 + 8 * j + cn] =
                    acc[((rt * nt + j) * 32 + lane) * 4 + i];
              }
            }
          }
        }
      }
      for (int e = 0; e < block_rows * nt * 8; ++e) {
        const int row = e % block_rows, tok = e / block_rows;
        if (tok >= m || row0 + row >= rows) continue;
        float s = 0.0f;
        for (int k = 0; k < kMmaWarps; ++k) s += sums[(k * block_rows + row) * nt * 8 + tok];
        y[tok * rows + row0 + row] = Bf16(s);
      }
    }
    for (int t = 0; t < m; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double want = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          want += static_cast<double>(dense[r * cols + c]) * x[t * cols + c];
          mag += std::fabs(static_cast<double>(dense[r * cols + c]) * x[t * cols + c]);
        }
        ASSERT_NEAR(y[t * rows + r], want, 1e-2 * mag + 1e-4) << "row " << r << " token " << t;
      }
    }
  }
}

// A group's blocks (q/k/v in one launch; gate/up with SwiGLU) reach every row of every
// weight exactly once, for the GEMV's 4 rows per block and the MMA's 16.
TEST(CudaMmaTest, GroupBlocksReachEveryRowOnce) {
  struct Case {
    std::vector<int64_t> rows;
    GemvEpilogue e;
  };
  for (const Case& cs : {Case{{4096, 1024, 1024}, GemvEpilogue::kNone}, Case{{17, 1, 33}, GemvEpilogue::kNone},
                         Case{{11008, 11008}, GemvEpilogue::kSwiGlu}, Case{{576}, GemvEpilogue::kNone}}) {
    for (int64_t per : {int64_t{4}, int64_t{kMmaRows}, int64_t{2 * kMmaRows}}) {
      GemvGroup g;
      g.count = static_cast<int>(cs.rows.size());
      g.epilogue = cs.e;
      for (int i = 0; i < g.count; ++i) g.v[i].rows = cs.rows[i];
      int64_t first[kMaxGemvGroup + 1];
      GroupBlocks(g, per, first);
      const int weights = cs.e == GemvEpilogue::kSwiGlu ? 1 : g.count;  // SwiGLU: each block does both
      std::vector<std::vector<int>> seen(weights);
      for (int i = 0; i < weights; ++i) seen[i].assign(cs.rows[i], 0);
      for (int64_t b = 0; b < first[g.count]; ++b) {
        int64_t row0;
        const int i = GroupBlockWeight(first, g.count, b, per, &row0);
        ASSERT_LT(i, weights);
        for (int64_t r = row0; r < row0 + per && r < cs.rows[i]; ++r) ++seen[i][r];
        EXPECT_LT(row0, cs.rows[i]) << "block " << b << " has no row";
      }
      for (int i = 0; i < weights; ++i) {
        for (int64_t r = 0; r < cs.rows[i]; ++r) ASSERT_EQ(seen[i][r], 1) << "weight " << i << " row " << r;
      }
    }
  }
}

TEST(CudaDecodeTest, RefusalsNameTheReason) {
  std::vector<float> wf(16 * 256, 0.01f);
  auto q3 = quant::QuantizeGguf(wf.data(), 16, 256, GgmlType::kQ3_K);
  ASSERT_TRUE(q3.ok());
  QuantFormat f{};
  EXPECT_EQ(QuantFormatFor(q3->view, &f), "q3_K has no CUDA kernel");
  // LLM.int8 rows are 8-bit affine rows to the kernels: bf16 activations take every
  // column through the exact path that the CPU keeps for the outlier columns.
  auto int8 = quant::QuantizeBnbInt8(wf.data(), 16, 256, Params(8, 0));
  ASSERT_TRUE(int8.ok());
  ASSERT_GT(int8->view.outlier_threshold, 0.0f);
  EXPECT_EQ(QuantFormatFor(int8->view, &f), "");
  EXPECT_EQ(f, QuantFormat::kAffine);
  std::vector<float> odd(16 * 100, 0.01f);
  auto a4 = quant::QuantizeAffineRtn(odd.data(), 16, 100, Params(4, 20));
  ASSERT_TRUE(a4.ok());
  EXPECT_EQ(QuantFormatFor(a4->view, &f), "cols 100 is not a multiple of 32");
  // The arrays an upload copies are the weight's bytes (codebook tables are shared).
  auto nf4 = quant::QuantizeBnb4(wf.data(), 16, 256, Params(4, 64));
  ASSERT_TRUE(nf4.ok());
  const QuantArrays a = QuantArraysOf(nf4->view);
  int64_t total = 0;
  for (int64_t b : a.bytes) total += b;
  EXPECT_EQ(total, nf4->view.bytes() - 4);  // Linear::bytes counts the f32 absmax offset too
}

}  // namespace
}  // namespace ingot::kernels::cuda

namespace ingot::kernels::cuda {
namespace {

// The paged attention kernel's warp replayed on the host with its own lane functions
// (LaneDot, LaneUpdate, LaneFinish; kernels/cuda/paged_attention.h): each store dtype
// as the native KV store writes it, rows scattered through a table, grouped-query
// heads, against double-precision softmax over the CPU's decoded rows.
TEST(CudaAttentionTest, WarpReplayMatchesExactSoftmaxInEveryStore) {
  const int32_t n_head = 6, n_head_kv = 2;
  for (int head_dim : {64, 96, 128}) {
    const int32_t kvd = n_head_kv * head_dim, qd = n_head * head_dim;
    for (KvStore store : {KvStore::kF32, KvStore::kF16, KvStore::kQ8_0}) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + " store " + std::to_string(static_cast<int>(store)));
      const int64_t row_bytes = store == KvStore::kF32 ? 4 * kvd : store == KvStore::kF16 ? 2 * kvd : kvd / 32 * 34;
      const int32_t n_rows = 40;
      std::mt19937 rng(static_cast<uint32_t>(head_dim * 3 + static_cast<int>(store)));
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<uint8_t> k(n_rows * row_bytes), v(n_rows * row_bytes);
      auto encode = [&](const float* x, uint8_t* row) {
        if (store == KvStore::kF32) std::memcpy(row, x, 4 * kvd);
        if (store == KvStore::kF16) GetQuantizeRowFn(GgmlType::kF16)(x, row, kvd);
        if (store == KvStore::kQ8_0) QuantizeRowQ8_0Ref(x, row, kvd);
      };
      auto decode = [&](const uint8_t* row, std::vector<float>& out) {
        out.resize(kvd);
        const GgmlType t = store == KvStore::kF32 ? GgmlType::kF32 : store == KvStore::kF16 ? GgmlType::kF16 : GgmlType::kQ8_0;
        GetGgmlTypeTraits(t).dequantize(row, out.data(), kvd);
      };
      std::vector<float> x(kvd);
      for (int32_t r = 0; r < n_rows; ++r) {
        for (float& f : x) f = nd(rng);
        encode(x.data(), &k[r * row_bytes]);
        for (float& f : x) f = nd(rng);
        encode(x.data(), &v[r * row_bytes]);
      }
      // Two tokens: positions 0..32 and 0..6 of two sequences, rows out of order.
      std::vector<int32_t> rows;
      for (int p = 0; p < 33; ++p) rows.push_back((p * 7 + 3) % n_rows);
      for (int p = 0; p < 7; ++p) rows.push_back(n_rows - 1 - p);
      const int32_t off[2] = {0, 33}, len[2] = {33, 7};
      std::vector<float> q(2 * qd);
      for (float& f : q) f = nd(rng);
      PagedAttentionArgs a;
      a.k = k.data();
      a.v = v.data();
      a.row_bytes = row_bytes;
      a.store = store;
      a.rows = rows.data();
      a.ctx_off = off;
      a.ctx_len = len;
      a.n = 2;
      a.n_head = n_head;
      a.n_head_kv = n_head_kv;
      a.head_dim = head_dim;
      a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      std::vector<float> kd, vd;
      for (int t = 0; t < 2; ++t) {
        for (int h = 0; h < n_head; ++h) {
          const int kvh = h / (n_head / n_head_kv);
          const float* qh = &q[t * qd + h * head_dim];
          // The block's warps: warp w walks positions w, w + kAttnWarps, ... (token 1's 7
          // positions leave a warp with none); warp 0 then merges the others' states.
          LaneState st[kAttnWarps][32];
          for (int w = 0; w < kAttnWarps; ++w) {
            for (int lane = 0; lane < 32; ++lane) {
              for (int e = 0; e < kMaxLaneDims; ++e) {
                st[w][lane].q[e] = e < LaneDims(head_dim, lane) ? qh[lane + 32 * e] : 0.0f;
                st[w][lane].acc[e] = 0.0f;
              }
            }
          }
          std::vector<double> s(len[t]);
          double mx = -INFINITY;
          for (int p = 0; p < len[t]; ++p) {
            const int64_t r = rows[off[t] + p];
            LaneState* ws = st[p % kAttnWarps];
            float dot = 0;
            for (int lane = 0; lane < 32; ++lane) dot += LaneDot(ws[lane], a, &k[r * row_bytes], kvh, lane);
            for (int lane = 0; lane < 32; ++lane) LaneUpdate(ws[lane], a, dot, &v[r * row_bytes], kvh, lane);
            decode(&k[r * row_bytes], kd);
            double exact = 0;
            for (int i = 0; i < head_dim; ++i) exact += static_cast<double>(qh[i]) * kd[kvh * head_dim + i];
            s[p] = exact / std::sqrt(static_cast<double>(head_dim));
            mx = std::max(mx, s[p]);
          }
          for (int w = 1; w < kAttnWarps; ++w) {
            for (int lane = 0; lane < 32; ++lane) LaneMerge(st[0][lane], st[w][lane].m, st[w][lane].l, st[w][lane].acc);
          }
          double sum = 0;
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (int i = 0; i < head_dim; ++i) {
            double want = 0;
            for (int p = 0; p < len[t]; ++p) {
              decode(&v[rows[off[t] + p] * row_bytes], vd);
              want += s[p] / sum * vd[kvh * head_dim + i];
            }
            const float got = LaneFinish(st[0][i % 32], i / 32);
            ASSERT_NEAR(got, want, 2e-5) << "token " << t << " head " << h << " dim " << i;
          }
        }
      }
    }
  }
}

// The KV store kernel's items (k's, then v's; one value or one Q8_0 block each) reach
// every (k|v, token, unit) once.
TEST(CudaAttentionTest, KvStoreItemsReachEveryValueOnce) {
  for (int32_t n : {1, 3, 16}) {
    for (int32_t per_row : {1, 7, 203}) {
      std::vector<int> seen(static_cast<size_t>(2 * n * per_row), 0);
      for (int64_t i = 0; i < 2 * static_cast<int64_t>(n) * per_row; ++i) {
        int32_t which, t, unit;
        KvStoreItem(i, n, per_row, &which, &t, &unit);
        ASSERT_TRUE(which >= 0 && which < 2 && t >= 0 && t < n && unit >= 0 && unit < per_row) << i;
        ++seen[(static_cast<size_t>(which) * n + t) * per_row + unit];
      }
      for (int c : seen) ASSERT_EQ(c, 1);
    }
  }
}

TEST(CudaAttentionTest, Q8_0StoreIsTheNativeStoresBytes) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int trial = 0; trial < 200; ++trial) {
    float x[32];
    for (float& f : x) f = nd(rng);
    if (trial == 0) std::fill(x, x + 32, 0.0f);
    if (trial == 1) x[5] = 1e-8f;
    uint8_t want[34], got[34];
    QuantizeRowQ8_0Ref(x, want, 32);
    QuantizeQ8_0Block(x, got, [](float d) { return Fp32ToFp16(d); });
    ASSERT_EQ(std::memcmp(got, want, 34), 0) << "trial " << trial;
  }
}

// The step ops' kernels (step_ops.cu) as their threads compute, over whole buffers,
// against the CPU references: rope's pair index math in both layouts with a partial
// rope (q and k head counts differ as with GQA), SwiGLU's value and RMSNorm's scale.
TEST(CudaStepOpsTest, ThreadMathMatchesCpuReferences) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 5;
  const int32_t heads = 3, head_dim = 16, rope_dim = 12, half = rope_dim / 2;
  std::vector<float> cos(n * half), sin(n * half);
  for (int64_t i = 0; i < n * half; ++i) {
    const float angle = 0.37f * static_cast<float>(i);
    cos[i] = std::cos(angle);
    sin[i] = std::sin(angle);
  }
  for (bool neox : {false, true}) {
    std::vector<float> x(n * heads * head_dim);
    for (float& v : x) v = nd(rng);
    std::vector<float> want = x, got = x;
    RopeRef(want.data(), cos.data(), sin.data(), n, heads, head_dim, rope_dim, neox);
    // RopeKernel: one thread per (token, head, pair)
    for (int64_t t = 0; t < n; ++t) {
      for (int32_t h = 0; h < heads; ++h) {
        for (int32_t pair = 0; pair < half; ++pair) {
          float* v = got.data() + (t * heads + h) * head_dim;
          int32_t a, c;
          RopePairDims(pair, half, neox, &a, &c);
          float na, nc;
          RopeRotate(v[a], v[c], cos[t * half + pair], sin[t * half + pair], &na, &nc);
          v[a] = na;
          v[c] = nc;
        }
      }
    }
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::fabs(want[i]))) << (neox ? "neox " : "gguf ") << i;
    }
  }
  std::vector<float> gate(300), up(300);
  for (float& v : gate) v = 4.0f * nd(rng);
  for (float& v : up) v = nd(rng);
  std::vector<float> want = gate;
  SwiGluRef(want.data(), up.data(), static_cast<int64_t>(gate.size()));
  for (size_t i = 0; i < gate.size(); ++i) EXPECT_EQ(SwiGluValue(gate[i], up[i]), want[i]) << i;
  const int64_t rows = 3, cols = 576;
  std::vector<float> xs(rows * cols), w(cols), ref(rows * cols);
  for (float& v : xs) v = nd(rng);
  for (float& v : w) v = 1.0f + 0.1f * nd(rng);
  RmsNormRef(xs.data(), w.data(), ref.data(), rows, cols, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    float ss = 0.0f;  // the block's f32 sum of squares
    for (int64_t c = 0; c < cols; ++c) ss = std::fma(xs[r * cols + c], xs[r * cols + c], ss);
    const float k = RmsNormScale(ss, cols, 1e-5f);
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_NEAR(xs[r * cols + c] * k * w[c], ref[r * cols + c], 1e-5f * (1.0f + std::fabs(ref[r * cols + c])));
    }
  }
}

}  // namespace
}  // namespace ingot::kernels::cuda
