// torchao 0.18's CUDA int4 weight, Int4TilePackedTo4dTensor (Int4WeightOnlyConfig with
// int4_packing_format "tile_packed_to_4d"), read by engine/formats/layouts/torchao.cc:
//   - the tile index math (UnpackInt4Tile, written from torchao.h's formula) against
//     ingot's own loop-for-loop numpy emulation of ATen's CUDA packing kernel
//     (tests/reference/gen_torchao_int4_tile_pack.py -> torchao-int4-tile-pack.npz);
//   - the reader end to end on a checkpoint written here in torchao's safetensors form;
//   - the config: which Int4WeightOnlyConfig packings read and which are refused;
//   - the model vector torchao-int4-tile-g32, made on a CUDA device by torchao itself
//     (tests/gpu/torchao_int4.sh, then tests/reference/gen_torchao_int4_tile.py): skipped
//     until that vector exists.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/layout.h"
#include "engine/formats/layouts/torchao.h"
#include "engine/formats/npz.h"
#include "engine/formats/safetensors.h"
#include "gtest/gtest.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"
#include "tests/quant/model_util.h"

namespace ingot {
namespace {
namespace fs = std::filesystem;
using formats::layouts::Int4TileAt;
using formats::layouts::UnpackInt4Tile;

std::string DataDir() { return testing_util::FormatsDataDir(); }

struct PackCase {
  int64_t n, k;
  int inner;
  std::string suffix() const { return std::to_string(n) + "x" + std::to_string(k) + "_i" + std::to_string(inner); }
};
// The shapes gen_torchao_int4_tile_pack.py writes (its SHAPES).
constexpr PackCase kPackCases[] = {{20, 256, 8}, {16, 64, 2}, {8, 128, 4}};

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The emulated kernel's output unpacks to the codes it was given, padding rows to 0, and
// the slot of every (n, k) is distinct and inside the tensor (the packing is a bijection).
TEST(TorchaoTile, UnpackMatchesAtenCudaPackEmulation) {
  auto npz = formats::NpzFile::Open(DataDir() + "/torchao-int4-tile-pack.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  for (const PackCase& c : kPackCases) {
    SCOPED_TRACE(c.suffix());
    const formats::TensorView* codes = (*npz)->Find("codes_" + c.suffix());
    const formats::TensorView* packed = (*npz)->Find("packed_" + c.suffix());
    ASSERT_TRUE(codes != nullptr && packed != nullptr);
    const int64_t n_padded = RoundUp(c.n, 8);
    ASSERT_EQ(packed->dtype, formats::DType::kI32);
    ASSERT_EQ(packed->shape, (std::vector<int64_t>{n_padded / 8, c.k / (c.inner * 16), 32, c.inner / 2}));
    std::vector<uint8_t> got(static_cast<size_t>(n_padded * c.k), 0xff);
    UnpackInt4Tile(packed->data, c.k, c.inner, n_padded, c.k, got.data());
    int64_t mismatches = 0;
    for (int64_t i = 0; i < c.n * c.k; ++i) mismatches += got[i] != codes->data[i];
    EXPECT_EQ(mismatches, 0);
    for (int64_t i = c.n * c.k; i < n_padded * c.k; ++i) ASSERT_EQ(got[i], 0) << "padding row code " << i;
    std::set<std::pair<int64_t, int>> slots;
    for (int64_t n = 0; n < n_padded; ++n) {
      for (int64_t k = 0; k < c.k; ++k) {
        const formats::layouts::Int4TileSlot s = Int4TileAt(n, k, c.k, c.inner);
        ASSERT_TRUE(s.word >= 0 && s.word < packed->numel() && s.shift % 4 == 0 && s.shift < 32);
        slots.insert({s.word, s.shift});
      }
    }
    EXPECT_EQ(static_cast<int64_t>(slots.size()), n_padded * c.k);
  }
}

// A corner of the packed matrix (what the reader takes of torchao's zero-padded weight).
TEST(TorchaoTile, UnpackCornerOfPaddedMatrix) {
  auto npz = formats::NpzFile::Open(DataDir() + "/torchao-int4-tile-pack.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  const formats::TensorView* codes = (*npz)->Find("codes_20x256_i8");
  const formats::TensorView* packed = (*npz)->Find("packed_20x256_i8");
  ASSERT_TRUE(codes != nullptr && packed != nullptr);
  const int64_t rows = 13, cols = 96;
  std::vector<uint8_t> got(static_cast<size_t>(rows * cols));
  UnpackInt4Tile(packed->data, 256, 8, rows, cols, got.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[r * cols + c], codes->data[r * 256 + c]) << r << "," << c;
  }
}

uint16_t Bf16(float f) {  // the values used here are exact in bf16
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<uint16_t>(b >> 16);
}

nlohmann::json TileConfig(const nlohmann::json& packing, int group) {
  nlohmann::json data = {{"group_size", group},
                         {"int4_choose_qparams_algorithm", {{"_type", "Int4ChooseQParamsAlgorithm"}, {"_data", "TINYGEMM"}}},
                         {"int4_packing_format", packing},
                         {"int4_tile_packed_ntile", 8},
                         {"set_inductor_config", true}};
  return {{"quantization_config",
           {{"quant_method", "torchao"},
            {"quant_type", {{"default", {{"_type", "Int4WeightOnlyConfig"}, {"_version", 2}, {"_data", data}}}}},
            {"include_input_output_embeddings", false},
            {"untie_embedding_weights", false},
            {"modules_to_not_convert", nullptr}}}};
}

void WriteConfig(const std::string& dir, const nlohmann::json& cfg) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg.dump(1);
}

// torchao's safetensors form of one 20 x 96 weight in groups of 32, packed as torchao
// would pad it (24 rows, 256 columns here; torchao pads to 1024): the emulated qdata and a
// bf16 scale_and_zero (8 groups, 24 rows, 2). The reader gives (q - 8) * scale + zero
// with scale and zero - 8 * scale in f16 (exact for these values).
TEST(TorchaoTile, SafetensorsFormReadsAsTinygemmGroups) {
  auto npz = formats::NpzFile::Open(DataDir() + "/torchao-int4-tile-pack.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  const formats::TensorView* codes = (*npz)->Find("codes_20x256_i8");
  const formats::TensorView* packed = (*npz)->Find("packed_20x256_i8");
  ASSERT_TRUE(codes != nullptr && packed != nullptr);
  const int64_t rows = 20, cols = 96, k_padded = 256, n_padded = 24, group = 32;
  std::vector<uint16_t> sz(static_cast<size_t>(k_padded / group * n_padded * 2));
  auto scale_of = [](int64_t g, int64_t r) { return 0.0625f * static_cast<float>(1 + (g + r) % 4); };
  auto zero_of = [](int64_t g, int64_t r) { return 0.25f * static_cast<float>((g * 3 + r) % 7) - 0.75f; };
  for (int64_t g = 0; g < k_padded / group; ++g) {
    for (int64_t r = 0; r < n_padded; ++r) {
      sz[(g * n_padded + r) * 2] = Bf16(scale_of(g, r));
      sz[(g * n_padded + r) * 2 + 1] = Bf16(zero_of(g, r));
    }
  }
  const std::string dir = ::testing::TempDir() + "/torchao-tile-synthetic";
  WriteConfig(dir, TileConfig({{"_type", "Int4PackingFormat"}, {"_data", "TILE_PACKED_TO_4D"}}, group));
  const std::string name = "model.layers.0.mlp.down_proj";
  formats::TensorView q = *packed, s;
  q.name = name + "._weight_qdata";
  s.name = name + "._weight_scale_and_zero";
  s.dtype = formats::DType::kBF16;
  s.shape = {k_padded / group, n_padded, 2};
  s.data = reinterpret_cast<const uint8_t*>(sz.data());
  s.nbytes = sz.size() * 2;
  const std::string meta = R"({"_type": "Int4TilePackedTo4dTensor", "_data": {"block_size": [1, 32], "shape": [20, 96]},)"
                           R"( "_tensor_data_names": ["qdata", "scale_and_zero"]})";
  ASSERT_TRUE(formats::WriteSafetensors(dir + "/model.safetensors", {q, s}, {{name + ".weight", meta}}).ok());

  auto ck = Checkpoint::Open(dir, "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_STREQ(formats::LayoutName((*ck)->quant().layout), "torchao");
  EXPECT_EQ((*ck)->quant().quant_type, "Int4WeightOnlyConfig");
  EXPECT_EQ((*ck)->quant().bits, 4);
  EXPECT_EQ((*ck)->quant().group_size, 32);
  std::shared_ptr<const Checkpoint> shared(std::move(*ck));
  const LinearLoader load = shared->quant().layout->reader(shared);
  auto lin = load(name, rows, cols);
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ(lin->representation, "affine4/g32");
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    kernels::LinearDequantizeRow(lin->w, r, row.data());
    for (int64_t c = 0; c < cols; ++c) {
      const float want = (static_cast<float>(codes->data[r * k_padded + c]) - 8.0f) * scale_of(c / group, r) +
                         zero_of(c / group, r);
      ASSERT_NEAR(row[c], want, 1e-6f) << r << "," << c;
    }
  }
  // A weight wider than its packing, or a packing that is not tinygemm's, is refused.
  EXPECT_EQ(load(name, rows, 288).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(load(name, 32, cols).status().code(), absl::StatusCode::kInvalidArgument);
}

// The packing is named in the config as torchao serializes the enum or as the string a
// user passed; the other packings (plain, preshuffled, plain_int32) and ROCm's ntile of
// 16 are refused by name.
TEST(TorchaoTile, ConfigPackingsReadAndRefused) {
  const std::string src = ::testing::TempDir() + "/torchao-tile-config";
  struct Case {
    nlohmann::json packing;
    int ntile;
    bool ok;
  };
  const Case cases[] = {
      {{{"_type", "Int4PackingFormat"}, {"_data", "TILE_PACKED_TO_4D"}}, 8, true},
      {"tile_packed_to_4d", 8, true},
      {{{"_type", "Int4PackingFormat"}, {"_data", "PLAIN"}}, 8, false},
      {"preshuffled", 8, false},
      {"plain_int32", 8, false},
      {{{"_type", "Int4PackingFormat"}, {"_data", "TILE_PACKED_TO_4D"}}, 16, false},
      {nullptr, 8, false},  // the default packing, plain
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.packing.dump() + " ntile " + std::to_string(c.ntile));
    nlohmann::json cfg = TileConfig(c.packing, 64);
    auto& data = cfg["quantization_config"]["quant_type"]["default"]["_data"];
    if (c.packing.is_null()) data.erase("int4_packing_format");
    data["int4_tile_packed_ntile"] = c.ntile;
    fs::remove_all(src);
    WriteConfig(src, cfg);
    const std::vector<float> one(64 * 64, 0.0f);
    formats::TensorView t{.name = "x", .dtype = formats::DType::kF32, .shape = {64, 64},
                          .data = reinterpret_cast<const uint8_t*>(one.data()), .nbytes = one.size() * 4};
    ASSERT_TRUE(formats::WriteSafetensors(src + "/model.safetensors", {t}, {}).ok());
    auto ck = Checkpoint::Open(src, "auto");
    if (c.ok) {
      ASSERT_TRUE(ck.ok()) << ck.status();
      EXPECT_EQ((*ck)->quant().group_size, 64);
    } else {
      ASSERT_FALSE(ck.ok());
      EXPECT_EQ(ck.status().code(), absl::StatusCode::kUnimplemented) << ck.status();
      EXPECT_NE(ck.status().message().find("tile_packed_to_4d"), std::string::npos) << ck.status();
    }
  }
}

// The model vector, made by torchao on a CUDA device: torchao's safetensors form (the
// flattening transformers' save_pretrained uses) of the whole model, and torch.save's
// pickle of one weight. Both read to torchao's tinygemm kernel applied to the identity,
// ingot's rows times fixed inputs give the kernel's F.linear outputs, and the model gives
// the logits of transformers' forward over torchao's dequantized weights.
constexpr char kTileVector[] = "torchao-int4-tile-g32";

// max over (r, c) of |ingot's row r - want[r]| / (2^-8 |want| + 1e-3): torchao's kernel
// rounds bf16 fma((q - 8), scale, zero) once (2^-9 relative); ingot keeps
// q * f16(scale) + f16(zero - 8 * scale) in f32 (2^-11 each).
float WorstOverBound(const kernels::Linear& w, const formats::TensorView& want) {
  const int64_t rows = want.shape[0], cols = want.shape[1];
  const float* ref = reinterpret_cast<const float*>(want.data);
  std::vector<float> row(static_cast<size_t>(cols));
  float worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    kernels::LinearDequantizeRow(w, r, row.data());
    for (int64_t c = 0; c < cols; ++c) {
      const float bound = std::fabs(ref[r * cols + c]) * 0x1p-8f + 1e-3f;
      worst = std::max(worst, std::fabs(row[c] - ref[r * cols + c]) / bound);
    }
  }
  return worst;
}

TEST(TorchaoTile, ModelVectorMatchesTorchao) {
  const std::string dir = DataDir() + "/" + kTileVector;
  if (!fs::exists(dir + "/reference.json")) {
    GTEST_SKIP() << "tests/data/formats/" << kTileVector << " does not exist yet: it is made on a CUDA device by "
                 << "`tests/gpu/torchao_int4.sh $OUT` (device tool, carrying .bench/wheels/), then here by "
                 << "`python3 tests/reference/gen_torchao_int4_tile.py <device files>` (see tests/gpu/torchao_int4.sh)";
  }
  std::ifstream in(dir + "/reference.json");
  const nlohmann::json ref = nlohmann::json::parse(in);
  auto npz = formats::NpzFile::Open(dir + "/dequantized.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  ASSERT_EQ((*npz)->tensors().size(), 4u);
  auto linear = formats::NpzFile::Open(dir + "/linear.npz");
  ASSERT_TRUE(linear.ok()) << linear.status();

  // The safetensors form: every dequantized weight, the F.linear outputs, the logits.
  auto hf = testing_util::LoadHf(dir + "/model.safetensors");
  ASSERT_TRUE(hf.ok()) << hf.status();
  const CheckpointQuantConfig& q = hf->checkpoint->quant();
  EXPECT_STREQ(formats::LayoutName(q.layout), "torchao");
  EXPECT_EQ(q.quant_type, "Int4WeightOnlyConfig");
  EXPECT_EQ(q.group_size, 32);
  const LinearLoader load = q.layout->reader(hf->checkpoint);
  for (const formats::TensorView& want : (*npz)->tensors()) {
    SCOPED_TRACE(want.name);
    const int64_t rows = want.shape[0], cols = want.shape[1];
    auto lin = load(want.name, rows, cols);
    ASSERT_TRUE(lin.ok()) << lin.status();
    EXPECT_EQ(lin->representation, "affine4/g32");
    const float worst = WorstOverBound(lin->w, want);
    EXPECT_LE(worst, 1.0f);
    RecordProperty("dequant_error_over_bound_" + want.name, std::to_string(worst));
    // y = x w^T on the device: bf16 x and weights, f32 sums, bf16 out.
    const formats::TensorView* x = (*linear)->Find("x_" + want.name);
    const formats::TensorView* y = (*linear)->Find("y_" + want.name);
    ASSERT_TRUE(x != nullptr && y != nullptr);
    ASSERT_EQ(x->shape, (std::vector<int64_t>{4, cols}));
    ASSERT_EQ(y->shape, (std::vector<int64_t>{4, rows}));
    const float* xf = reinterpret_cast<const float*>(x->data);
    const float* yf = reinterpret_cast<const float*>(y->data);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(lin->w, r, row.data());
      for (int64_t m = 0; m < 4; ++m) {
        // The weights' bound above (2^-8 |w| + 1e-3 each) carried through the sum, and
        // the bf16 rounding of the output.
        double dot = 0, mag = 0, xsum = 0;
        for (int64_t c = 0; c < cols; ++c) {
          dot += static_cast<double>(xf[m * cols + c]) * row[c];
          mag += std::fabs(static_cast<double>(xf[m * cols + c]) * row[c]);
          xsum += std::fabs(xf[m * cols + c]);
        }
        const double got = yf[m * rows + r];
        ASSERT_LE(std::fabs(got - dot), std::fabs(got) * 0x1p-8 + mag * 0x1p-8 + xsum * 1e-3)
            << "x row " << m << ", out " << r;
      }
    }
  }
  const std::vector<float> logits = testing_util::Logits(*hf->model, ref["tokens"].get<std::vector<int32_t>>());
  auto max_d = testing_util::MaxAbsDiffToNpy(dir + "/logits.npy", logits);
  ASSERT_TRUE(max_d.ok()) << max_d.status();
  // As torchao-int4-g32: ingot quantizes activations to 8-bit blocks (0.08 there),
  // against the ~0.6 that int4 itself moves the logits (reference.json).
  EXPECT_LE(*max_d, 0.08f);
  RecordProperty("max_abs_diff", std::to_string(*max_d));

  // torch.save's pickle of layer 0's q_proj: the allow-listed wrapper subclass, read as
  // its state (NAME.weight.qdata, NAME.weight.scale_and_zero), same weight.
  auto ck = Checkpoint::Open(dir + "/pickled_q_proj.bin", "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->container(), "torch");
  std::shared_ptr<const Checkpoint> pickled(std::move(*ck));
  const std::string name = "model.layers.0.self_attn.q_proj";
  ASSERT_NE(pickled->Find(name + ".weight.qdata"), nullptr);
  auto lin = pickled->quant().layout->reader(pickled)(name, 64, 64);
  ASSERT_TRUE(lin.ok()) << lin.status();
  const formats::TensorView* want = (*npz)->Find(name);
  ASSERT_NE(want, nullptr);
  EXPECT_LE(WorstOverBound(lin->w, *want), 1.0f);
}

}  // namespace
}  // namespace ingot
