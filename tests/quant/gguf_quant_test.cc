// QuantizeGguf / QuantizeDense (engine/quant/gguf_quant.cc): the weight they return
// (view, owned storage, representation), llama.cpp's bytes through them
// (tests/data/quant/gguf, tests/reference/gen_quant_gguf.py), awkward shapes, and the
// errors for shapes and types they cannot take.
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/quantize_ref.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::quant {
namespace {

using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;

const GgmlType kBlockTypes[] = {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0,
                                GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ2_K,
                                GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K,
                                GgmlType::kQ6_K};
const GgmlType kDenseTypes[] = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> Wave(int64_t n, float scale) {  // deterministic, irregular values
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = scale * static_cast<float>(std::sin(0.37 * i) + 0.5 * std::cos(1.91 * i * i + 0.3));
  }
  return x;
}

// Checks the returned weight's view against the request and its own storage.
void ExpectWellFormed(const QuantizedWeight& q, GgmlType type, int64_t rows, int64_t cols,
                      const char* representation) {
  EXPECT_EQ(q.view.kind, kernels::LinearKind::kGgml);
  EXPECT_EQ(q.view.ggml.type, type);
  EXPECT_EQ(q.view.ggml.rows, rows);
  EXPECT_EQ(q.view.ggml.cols, cols);
  EXPECT_EQ(q.view.ggml.row_bytes, GgmlRowSize(type, cols));
  EXPECT_NE(q.view.ggml.data, nullptr);
  EXPECT_EQ(q.bytes(), static_cast<int64_t>(GgmlRowSize(type, cols) * rows));
  EXPECT_EQ(q.representation, representation);
}

// llama.cpp's bytes for the stored multi-row cases, through the engine entry points.
TEST(GgufQuant, MatchesLlamaCppBytes) {
  const std::string dir = SourcePath("tests/data/quant/gguf/");
  const std::string index_text = ReadFile(dir + "index.json");
  ASSERT_FALSE(index_text.empty())
      << dir << " missing: run tests/reference/regenerate.sh quant_gguf";
  const nlohmann::json index = nlohmann::json::parse(index_text);
  const std::string inputs = ReadFile(dir + "inputs.f32");
  int compared = 0;
  for (const auto& [key, t] : index["types"].items()) {
    SCOPED_TRACE(key);
    const auto type = static_cast<GgmlType>(t["ggml_type"].get<uint32_t>());
    const std::string expected = ReadFile(dir + t["file"].get<std::string>());
    const bool dense = t["block_size"].get<int>() == 1;
    for (size_t c = 0; c < index["cases"].size(); ++c) {
      const nlohmann::json& k = index["cases"][c];
      const int64_t off = t["offsets"][c], rows = k["rows"], cols = k["cols"];
      if (off < 0) continue;
      std::vector<float> x(rows * cols);
      std::memcpy(x.data(), inputs.data() + 4 * k["offset"].get<size_t>(), 4 * x.size());
      absl::StatusOr<QuantizedWeight> q =
          dense ? QuantizeDense(x.data(), rows, cols, type) : QuantizeGguf(x.data(), rows, cols, type);
      ASSERT_OK(q) << k["name"];
      ExpectWellFormed(*q, type, rows, cols, GetGgmlTypeTraits(type).name);  // keys are gguf-py's ("BF16")
      ASSERT_EQ(0, std::memcmp(q->view.ggml.data, expected.data() + off, q->bytes()))
          << k["name"];
      ++compared;
    }
  }
  EXPECT_GE(compared, 13 * 23);
}

// One row or several, one block or many: each row equals the kernel's reference
// quantizer on that row, and dequantizes close to the input.
TEST(GgufQuant, AwkwardShapes) {
  for (GgmlType type : kBlockTypes) {
    const int64_t block = GetGgmlTypeTraits(type).block_size;
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t blocks : {1, 3, 11}) {
        const int64_t cols = blocks * block;
        SCOPED_TRACE(std::string(GetGgmlTypeTraits(type).name) + " " + std::to_string(rows) +
                     " x " + std::to_string(cols));
        const std::vector<float> w = Wave(rows * cols, 0.05f);
        absl::StatusOr<QuantizedWeight> q = QuantizeGguf(w.data(), rows, cols, type);
        ASSERT_OK(q);
        const kernels::WeightMatrix& m = q->view.ggml;
        std::vector<uint8_t> want(m.row_bytes);
        std::vector<float> back(cols);
        double err = 0, ref = 0;
        for (int64_t r = 0; r < rows; ++r) {
          GetQuantizeRowFn(type)(w.data() + r * cols, want.data(), cols);
          ASSERT_EQ(0, std::memcmp(m.Row(r), want.data(), m.row_bytes)) << "row " << r;
          GetGgmlTypeTraits(type).dequantize(m.Row(r), back.data(), cols);
          for (int64_t c = 0; c < cols; ++c) {
            const double d = back[c] - w[r * cols + c];
            err += d * d;
            ref += double(w[r * cols + c]) * w[r * cols + c];
          }
        }
        EXPECT_LT(std::sqrt(err / ref), 0.4);  // Q2_K's worst; the kernel test bounds each type
      }
    }
  }
}

TEST(GgufQuant, DenseCopies) {
  const int64_t rows = 3, cols = 5;  // dense types take any width
  const std::vector<float> w = Wave(rows * cols, 3.0f);
  for (GgmlType type : kDenseTypes) {
    SCOPED_TRACE(GetGgmlTypeTraits(type).name);
    absl::StatusOr<QuantizedWeight> q = QuantizeDense(w.data(), rows, cols, type);
    ASSERT_OK(q);
    const char* name = type == GgmlType::kF32 ? "f32" : type == GgmlType::kF16 ? "f16" : "bf16";
    ExpectWellFormed(*q, type, rows, cols, name);
    std::vector<float> back(cols);
    const double tol = type == GgmlType::kF32 ? 0 : type == GgmlType::kF16 ? 1e-3 : 8e-3;
    for (int64_t r = 0; r < rows; ++r) {
      GetGgmlTypeTraits(type).dequantize(q->view.ggml.Row(r), back.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        EXPECT_NEAR(back[c], w[r * cols + c], tol * std::fabs(w[r * cols + c])) << r << "," << c;
      }
    }
  }
}

TEST(GgufQuant, StorageMovesWithTheWeight) {
  const std::vector<float> w = Wave(2 * 256, 1.0f);
  absl::StatusOr<QuantizedWeight> q = QuantizeGguf(w.data(), 2, 256, GgmlType::kQ4_K);
  ASSERT_OK(q);
  const uint8_t* data = q->view.ggml.data;
  const std::vector<uint8_t> bytes(data, data + q->bytes());
  QuantizedWeight moved = std::move(*q);
  ASSERT_EQ(moved.view.ggml.data, data);
  EXPECT_EQ(std::vector<uint8_t>(data, data + moved.bytes()), bytes);
}

TEST(GgufQuant, RejectsWhatItCannotQuantize) {
  const std::vector<float> w = Wave(4 * 512, 1.0f);
  // Width not a multiple of the block.
  EXPECT_THAT(QuantizeGguf(w.data(), 4, 48, GgmlType::kQ4_0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blocks of 32")));
  EXPECT_THAT(QuantizeGguf(w.data(), 2, 384, GgmlType::kQ6_K),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("384 columns")));
  // Types without a quantizer here (importance-matrix types, activation-only types).
  for (GgmlType type : {GgmlType::kIQ2_XXS, GgmlType::kIQ4_NL, GgmlType::kQ8_K,
                        GgmlType::kQ8_1, GgmlType::kTQ1_0, GgmlType::kI8}) {
    EXPECT_THAT(QuantizeGguf(w.data(), 1, 256, type),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not implemented")))
        << GetGgmlTypeTraits(type).name;
  }
  // Dense types belong to QuantizeDense and block types to QuantizeGguf.
  EXPECT_THAT(QuantizeGguf(w.data(), 1, 256, GgmlType::kF16),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("QuantizeDense")));
  EXPECT_THAT(QuantizeDense(w.data(), 1, 256, GgmlType::kQ8_0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("QuantizeGguf")));
  // Empty or missing weights.
  EXPECT_THAT(QuantizeGguf(w.data(), 0, 256, GgmlType::kQ8_0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(QuantizeGguf(nullptr, 1, 256, GgmlType::kQ8_0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(QuantizeDense(w.data(), 1, 0, GgmlType::kF32),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ingot::quant
