// The CUDA kernels' decoders (kernels/cuda/quant_decode.h) on the CPU: the same source
// nvcc compiles into the fused dequantize-GEMV kernels, held to the CPU reference
// (LinearDequantizeRow) chunk by chunk for every representation the kernels serve, and
// the GEMV's partition of a row over a warp's lanes replayed on the host. What is left
// for a GPU (tests/gpu/run.sh: backend_test on cuda:0) is the launch, the shuffles and
// the memory traffic.
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cuda/quant_decode.h"
#include "kernels/cuda/quant_view.h"
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
          float w[kChunk];
          DecodeChunk<QuantFormat::kQ8_0>(v, r, c, w);
          ++visits;
          for (int t = 0; t < m; ++t) {
            float s = 0;
            for (int j = 0; j < kChunk; ++j) s = std::fma(w[j], x[t * cols + c * kChunk + j], s);
            lane_acc[lane][t] += s;
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

TEST(CudaDecodeTest, RefusalsNameTheReason) {
  std::vector<float> wf(16 * 256, 0.01f);
  auto q3 = quant::QuantizeGguf(wf.data(), 16, 256, GgmlType::kQ3_K);
  ASSERT_TRUE(q3.ok());
  QuantFormat f{};
  EXPECT_EQ(QuantFormatFor(q3->view, &f), "q3_K has no CUDA kernel");
  auto int8 = quant::QuantizeBnbInt8(wf.data(), 16, 256, Params(8, 0));
  ASSERT_TRUE(int8.ok());
  EXPECT_EQ(QuantFormatFor(int8->view, &f), "LLM.int8 outlier columns have no CUDA kernel");
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
