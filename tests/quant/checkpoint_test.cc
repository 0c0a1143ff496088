// Checkpoints written by the reference tools themselves (tests/reference/gen_formats.py:
// transformers, bitsandbytes, AutoGPTQ, AutoAWQ, MLX, HQQ, optimum-quanto) load into
// ingot's representations and give the tool's own logits on the same tokens.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "engine/formats/gguf.h"
#include "engine/formats/npz.h"
#include "engine/formats/checkpoint.h"
#include "engine/model/llama.h"
#include "engine/model/save.h"
#include "engine/formats/layouts/layout.h"
#include "engine/formats/layouts/torchao.h"
#include "kernels/cpu/qmatrix.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/quant/model_util.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace {
namespace fs = std::filesystem;

using testing_util::LoadHf;
using testing_util::Logits;
using testing_util::MaxAbsDiffToNpy;
std::string DataDir() { return testing_util::FormatsDataDir(); }

struct Variant {
  const char* dir;
  // Bound on max |ingot - tool| over all logits (max |logit| is about 5). Dense f32 is
  // exact up to summation order; f16/bf16 checkpoints are run by the tool in f16/bf16
  // arithmetic, ingot in f32. Quantized variants: the tools compute in f16 and ingot
  // quantizes activations to 8-bit blocks, which costs < 0.15 here, against the
  // 0.7-1.2 the 4-bit quantization itself moves the logits from the dense model (the
  // generator records that as max_abs_diff_vs_dense). GPTQ act-order is kept at 4 bits
  // with its columns regrouped (Linear::input_order), so it is held to plain GPTQ's bound.
  float max_abs;
};

// Sets $ATEN_CPU_CAPABILITY (the int4 packing torchao.cc reads with) for one scope.
class ScopedAtenCapability {
 public:
  explicit ScopedAtenCapability(const std::string& v) {
    if (const char* old = std::getenv("ATEN_CPU_CAPABILITY")) old_ = old;
    setenv("ATEN_CPU_CAPABILITY", v.c_str(), 1);
  }
  ~ScopedAtenCapability() {
    if (old_.empty()) {
      unsetenv("ATEN_CPU_CAPABILITY");
    } else {
      setenv("ATEN_CPU_CAPABILITY", old_.c_str(), 1);
    }
  }

 private:
  std::string old_;
};

class CheckpointTest : public ::testing::TestWithParam<Variant> {};

TEST_P(CheckpointTest, LogitsMatchTheTool) {
  const Variant v = GetParam();
  const std::string dir = DataDir() + "/" + v.dir;
  ASSERT_TRUE(fs::exists(dir + "/reference.json")) << dir << " (run tests/reference/regenerate_formats.sh)";
  std::ifstream in(dir + "/reference.json");
  nlohmann::json ref = nlohmann::json::parse(in);
  // torchao's CPU int4 codes are packed as ATen packs them on the generating machine.
  std::optional<ScopedAtenCapability> capability;
  if (ref.contains("aten_cpu_capability")) capability.emplace(ref["aten_cpu_capability"].get<std::string>());
  auto hf = LoadHf(dir);
  ASSERT_TRUE(hf.ok()) << hf.status();
  const LlamaModel* model = hf->model.get();

  const std::vector<int32_t> tokens = ref["tokens"].get<std::vector<int32_t>>();
  auto npy = formats::NpzFile::Open(dir + "/" + ref.value("logits_file", std::string("logits.npy")));
  ASSERT_TRUE(npy.ok()) << npy.status();
  const formats::TensorView& want = (*npy)->tensors()[0];
  const int64_t vocab_n = model->config().vocab_size;
  ASSERT_EQ(want.shape, (std::vector<int64_t>{static_cast<int64_t>(tokens.size()), vocab_n}));
  const float* w = reinterpret_cast<const float*>(want.data);

  const std::vector<float> logits = Logits(*model, tokens);
  ASSERT_EQ(logits.size(), tokens.size() * vocab_n);
  float max_d = 0, max_ref = 0;
  int argmax_same = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    int64_t a = 0, b = 0;
    for (int64_t j = 0; j < vocab_n; ++j) {
      const float x = logits[t * vocab_n + j], y = w[t * vocab_n + j];
      max_d = std::max(max_d, std::fabs(x - y));
      max_ref = std::max(max_ref, std::fabs(y));
      if (x > logits[t * vocab_n + a]) a = j;
      if (y > w[t * vocab_n + b]) b = j;
    }
    argmax_same += a == b;
  }
  EXPECT_LE(max_d, v.max_abs) << v.dir << ": max |logit| " << max_ref;
  EXPECT_GE(argmax_same, static_cast<int>(tokens.size()) - 1) << v.dir;
  RecordProperty("max_abs_diff", std::to_string(max_d));
}

// HQQ axis=0 (groups down the columns of the reshaped weight, which ingot's affine groups
// cannot hold) is dequantized at load: the f16 weights are hqq's own
// HQQLinear.dequantize() to the bit (dequantized.npz: k_proj, whose 32 outputs are fewer
// than a group of 64, and down_proj), and the load says what it did.
TEST(CheckpointHqq, Axis0IsDequantizedToHqqsOwnWeights) {
  const std::string dir = DataDir() + "/hqq-4bit-g64-axis0";
  auto ck = Checkpoint::Open(dir, "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  const formats::Layout* layout = (*ck)->quant().layout;
  ASSERT_STREQ(formats::LayoutName(layout), "hqq");
  std::shared_ptr<const Checkpoint> shared(std::move(*ck));
  const LinearLoader load = formats::LayoutLinearLoader(shared);
  auto want = formats::NpzFile::Open(dir + "/dequantized.npz");
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ((*want)->tensors().size(), 2u);
  for (const formats::TensorView& w : (*want)->tensors()) {
    ASSERT_EQ(w.dtype, formats::DType::kF16) << w.name;
    auto got = load(w.name, w.shape[0], w.shape[1]);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->w.kind, kernels::LinearKind::kGgml) << w.name;
    ASSERT_EQ(got->w.ggml.type, GgmlType::kF16) << w.name;
    EXPECT_EQ(got->representation, "f16");
    int64_t differ = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      differ += std::memcmp(got->w.ggml.data + 2 * i, w.data + 2 * i, 2) != 0;
    }
    EXPECT_EQ(differ, 0) << w.name << ": of " << w.numel() << " weights";
  }
  ASSERT_NE(layout->load_note, nullptr);
  const std::string note = layout->load_note(*shared);
  EXPECT_NE(note.find("hqq axis=0: the groups of 14 linears"), std::string::npos) << note;
  EXPECT_NE(note.find("dequantized at load to f16"), std::string::npos) << note;
  // Axis 1 keeps hqq's codes: nothing to say.
  auto axis1 = Checkpoint::Open(DataDir() + "/hqq-4bit-g64", "auto");
  ASSERT_TRUE(axis1.ok()) << axis1.status();
  EXPECT_EQ(layout->load_note(**axis1), "");
}

// The single-.pth quanto layout names its quantization inside the pickle.
TEST(CheckpointQuanto, SinglePthCarriesItsConfig) {
  auto ck = Checkpoint::Open(DataDir() + "/quanto-int4-pth", "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->container(), "torch");
  EXPECT_STREQ(formats::LayoutName((*ck)->quant().layout), "quanto");
  EXPECT_EQ((*ck)->quant().quant_type, "qint4");
  EXPECT_NE((*ck)->quant().where.find("model.pth: quanto_config"), std::string::npos) << (*ck)->quant().where;
  EXPECT_NE((*ck)->Find("model.layers.0.mlp.up_proj.weight._scale"), nullptr);
}

// A directory that names its HQQ settings in hqq_config.json (the seeds' layout) is read
// as HQQ from that file, and gives the same model as without it.
TEST(CheckpointHqq, HqqConfigJsonNamesTheQuantization) {
  const std::string src = DataDir() + "/hqq-4bit-g64", dir = ::testing::TempDir() + "/hqq_config_dir";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), dir + "/" + e.path().filename().string());
  std::ofstream(dir + "/hqq_config.json") << R"({"weight_quant_params": {"nbits": 4, "group_size": 64, "axis": 1}})";
  auto with = LoadHf(dir);
  auto without = LoadHf(src);
  ASSERT_TRUE(with.ok() && without.ok()) << with.status() << without.status();
  const CheckpointQuantConfig& q = with->checkpoint->quant();
  EXPECT_STREQ(formats::LayoutName(q.layout), "hqq");
  EXPECT_EQ(q.bits, 4);
  EXPECT_EQ(q.group_size, 64);
  EXPECT_NE(q.where.find("hqq_config.json"), std::string::npos) << q.where;
  const std::vector<int32_t> tokens = {5, 17, 99, 3};
  EXPECT_EQ(Logits(*with->model, tokens), Logits(*without->model, tokens));
  fs::remove_all(dir);
}

// SmolLM3 as transformers 5 saves it: the NoPE pattern from no_rope_layers, theta from
// rope_parameters, and the chat template from chat_template.jinja (tokenizer_config.json
// has none).
TEST(CheckpointSmolLm3, ConfigAndTemplateAsTransformersWroteThem) {
  const std::string dir = DataDir() + "/smollm3-f32";
  auto hf = LoadHf(dir);
  ASSERT_TRUE(hf.ok()) << hf.status();
  const LlamaConfig& c = hf->model->config();
  EXPECT_EQ(c.architecture, "smollm3");
  EXPECT_EQ(c.nope_layers, (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(c.rope_base, 50000.0f);
  EXPECT_TRUE(c.tied_output);
  std::ifstream t(dir + "/chat_template.jinja");
  std::stringstream want;
  want << t.rdbuf();
  ASSERT_FALSE(want.str().empty());
  EXPECT_EQ(hf->vocab.chat_template, want.str());
}

// torchao configs other than the int8 ones are refused by name, not misread.
TEST(CheckpointTorchao, Int4ConfigIsRefusedByName) {
  const std::string src = DataDir() + "/torchao-int8wo";
  const std::string dir = ::testing::TempDir() + "/torchao-int4-config";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), dir + "/" + e.path().filename().string());
  std::ifstream in(dir + "/config.json");
  nlohmann::json cfg = nlohmann::json::parse(in);
  in.close();
  cfg["quantization_config"]["quant_type"]["default"]["_type"] = "Int4WeightOnlyConfig";
  std::ofstream(dir + "/config.json") << cfg.dump();
  auto ck = Checkpoint::Open(dir, "auto");
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kUnimplemented) << ck.status();
  EXPECT_NE(ck.status().message().find("Int4WeightOnlyConfig"), std::string::npos) << ck.status();
}

// ATen's _convert_weight_to_int4pack_for_cpu under each CPU capability (torch 2.15,
// tests/reference/gen_seeds.py torchao_int4): the same codes unpack from each packing,
// full blocks and the pairwise tails (80 rows = 64 + 16; 48 < 64) alike.
TEST(CheckpointTorchao, Int4CpuPackingAsAtenWritesIt) {
  auto npz = formats::NpzFile::Open(DataDir() + "/torchao-int4-pack.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  int checked = 0;
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{80, 64}, {48, 32}}) {
    const std::string shape = std::to_string(n) + "x" + std::to_string(k);
    const formats::TensorView* codes = (*npz)->Find("codes_" + shape);
    ASSERT_NE(codes, nullptr) << shape;
    ASSERT_EQ(codes->shape, (std::vector<int64_t>{n, k}));
    for (const char* cap : {"default", "avx2", "avx512"}) {
      SCOPED_TRACE(std::string(cap) + " " + shape);
      const formats::TensorView* packed = (*npz)->Find(std::string(cap) + "_packed_" + shape);
      ASSERT_NE(packed, nullptr);
      ASSERT_EQ(packed->shape, (std::vector<int64_t>{n, k / 2}));
      formats::layouts::Int4CpuPacking p;
      ASSERT_TRUE(formats::layouts::ParseInt4CpuPacking(cap, &p));
      std::vector<uint8_t> got(static_cast<size_t>(n * k));
      formats::layouts::UnpackInt4Cpu(packed->data, n, k, p, got.data());
      EXPECT_EQ(got, std::vector<uint8_t>(codes->data, codes->data + n * k));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 6);
  // The three packings differ on these codes: reading with the wrong one is visible.
  const formats::TensorView* a = (*npz)->Find("avx2_packed_80x64");
  const formats::TensorView* b = (*npz)->Find("avx512_packed_80x64");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  EXPECT_NE(std::vector<uint8_t>(a->data, a->data + a->nbytes), std::vector<uint8_t>(b->data, b->data + b->nbytes));
  {
    ScopedAtenCapability env("AVX2");
    EXPECT_EQ(formats::layouts::DetectInt4CpuPacking(), formats::layouts::Int4CpuPacking::kAvx2);
  }
}

// torchao 0.18's CPU int4 (PrototypeInt4WeightOnlyConfig -> Int4OpaqueTensor), pickled by
// torch.save since save_pretrained cannot write it: the config is read from config.json,
// each weight from the pickle's wrapper-subclass state (qdata, scale_and_zero), unpacked
// as ATen packed it on the generating machine (reference.json's aten_cpu_capability).
// Weights against torchao's own kernel on the identity; logits against torchao's forward.
TEST(CheckpointTorchao, Int4OpaqueTensorPickleMatchesTorchao) {
  const std::string dir = DataDir() + "/torchao-int4-g32";
  std::ifstream in(dir + "/reference.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  ScopedAtenCapability env(ref["aten_cpu_capability"].get<std::string>());
  auto ck = Checkpoint::Open(dir, "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->container(), "torch");
  const CheckpointQuantConfig& q = (*ck)->quant();
  EXPECT_STREQ(formats::LayoutName(q.layout), "torchao");
  EXPECT_EQ(q.quant_type, "PrototypeInt4WeightOnlyConfig");
  EXPECT_EQ(q.bits, 4);
  EXPECT_EQ(q.group_size, 32);
  std::shared_ptr<const Checkpoint> shared(std::move(*ck));
  const LinearLoader load = q.layout->reader(shared);
  auto npz = formats::NpzFile::Open(dir + "/dequantized.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  ASSERT_EQ((*npz)->tensors().size(), 4u);
  for (const formats::TensorView& want : (*npz)->tensors()) {
    SCOPED_TRACE(want.name);
    const int64_t rows = want.shape[0], cols = want.shape[1];
    auto lin = load(want.name, rows, cols);
    ASSERT_TRUE(lin.ok()) << lin.status();
    EXPECT_EQ(lin->representation, "affine4/g32");
    ASSERT_EQ(lin->w.kind, kernels::LinearKind::kAffine);
    // torchao computes (q - 8) * scale + zero in f32; ingot keeps scale and bias = zero -
    // 8 * scale in f16 (2^-11 relative each): bound each group by its own f32 qparams.
    const formats::TensorView* sz = shared->Find(want.name + ".weight.scale_and_zero");
    ASSERT_NE(sz, nullptr);
    const float* szf = reinterpret_cast<const float*>(sz->data);
    const float* w = reinterpret_cast<const float*>(want.data);
    std::vector<float> row(static_cast<size_t>(cols));
    float worst = 0;  // max |ingot - torchao| / bound
    for (int64_t r = 0; r < rows; ++r) {
      kernels::LinearDequantizeRow(lin->w, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        const float s = szf[((c / 32) * rows + r) * 2], z = szf[((c / 32) * rows + r) * 2 + 1];
        const float bound = (15.0f * std::fabs(s) + std::fabs(z - 8.0f * s)) * 0x1p-11f + 1e-7f;
        worst = std::max(worst, std::fabs(row[c] - w[r * cols + c]) / bound);
      }
    }
    EXPECT_LE(worst, 1.0f);
    RecordProperty("dequant_error_over_bound_" + want.name, std::to_string(worst));
  }

  auto hf = LoadHf(dir);
  ASSERT_TRUE(hf.ok()) << hf.status();
  const std::vector<int32_t> tokens = ref["tokens"].get<std::vector<int32_t>>();
  auto max_d = MaxAbsDiffToNpy(dir + "/logits.npy", Logits(*hf->model, tokens));
  ASSERT_TRUE(max_d.ok()) << max_d.status();
  // torchao runs this forward in f32; ingot quantizes activations to 8-bit blocks, as for
  // torchao int8 weight-only (0.08 there), against 0.66 that int4 itself moves the logits.
  EXPECT_LE(*max_d, 0.08f);
  RecordProperty("max_abs_diff", std::to_string(*max_d));
}

// Read with the wrong packing, the same file gives other weights: the packing matters
// and the test above would see a misread.
TEST(CheckpointTorchao, Int4WrongPackingIsVisible) {
  const std::string dir = DataDir() + "/torchao-int4-g32";
  std::ifstream in(dir + "/reference.json");
  const nlohmann::json ref = nlohmann::json::parse(in);
  ASSERT_EQ(ref["aten_cpu_capability"], "AVX512");
  ScopedAtenCapability env("avx2");
  auto ck = Checkpoint::Open(dir, "auto");
  ASSERT_TRUE(ck.ok()) << ck.status();
  std::shared_ptr<const Checkpoint> shared(std::move(*ck));
  auto lin = shared->quant().layout->reader(shared)("model.layers.0.self_attn.q_proj", 64, 64);
  ASSERT_TRUE(lin.ok()) << lin.status();
  auto npz = formats::NpzFile::Open(dir + "/dequantized.npz");
  ASSERT_TRUE(npz.ok()) << npz.status();
  const formats::TensorView* want = (*npz)->Find("model.layers.0.self_attn.q_proj");
  ASSERT_NE(want, nullptr);
  std::vector<float> row(64);
  float max_d = 0;
  for (int64_t r = 0; r < 64; ++r) {
    kernels::LinearDequantizeRow(lin->w, r, row.data());
    for (int64_t c = 0; c < 64; ++c) {
      max_d = std::max(max_d, std::fabs(row[c] - reinterpret_cast<const float*>(want->data)[r * 64 + c]));
    }
  }
  EXPECT_GT(max_d, 0.01f);
}

// HF checkpoint -> ExportGguf -> LoadGgufWeights: the same logits (q/k rows permuted to
// llama.cpp's order on the way out, the rope style switched back on the way in).
TEST(CheckpointExport, GgufRoundTripKeepsLogits) {
  for (const char* v : {"hf-f32", "hf-f16", "qwen2-f32", "llama-tied", "smollm3-f32"}) {
    SCOPED_TRACE(v);
    const std::string dir = DataDir() + "/" + v;
    auto hf = LoadHf(dir);
    ASSERT_TRUE(hf.ok()) << hf.status();
    const LlamaModel* model = hf->model.get();
    const VocabSpec* vocab = &hf->vocab;
    const std::string out = ::testing::TempDir() + "/export_" + v + ".gguf";
    ASSERT_TRUE(ExportGguf(model->weights(), *vocab, out).ok());
    auto file = gguf::File::Open(out);
    ASSERT_TRUE(file.ok()) << file.status();
    auto back_vocab = VocabSpecFromGguf(**file);
    ASSERT_TRUE(back_vocab.ok()) << back_vocab.status();
    EXPECT_EQ(back_vocab->tokens, vocab->tokens);
    EXPECT_EQ(back_vocab->merges, vocab->merges);
    EXPECT_EQ(back_vocab->chat_template, vocab->chat_template);
    auto back = testing_util::GgufModel(std::move(*file));
    ASSERT_TRUE(back.ok()) << back.status();
    const std::vector<int32_t> tokens = {5, 17, 99, 3, 250, 41, 7, 180};
    const std::vector<float> a = Logits(*model, tokens), b = Logits(**back, tokens);
    ASSERT_EQ(a.size(), b.size());
    float max_d = 0;
    float max_a = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      max_d = std::max(max_d, std::fabs(a[i] - b[i]));
      max_a = std::max(max_a, std::fabs(a[i]));
    }
    // The two rope orders permute the head features, so every q.k sum runs in another
    // order and rounds differently in f32: a few ulps of the largest logit (measured 1.2
    // to 2.5 ulps on these models, whose logits reach 3.4 to 51), bounded at 8.
    EXPECT_LE(max_d, 8 * std::numeric_limits<float>::epsilon() * max_a);
  }
}

// llama.cpp read the GGUF ingot exports from hf-f32 (tests/reference/
// gen_export_llama_cpp.py): the same prompt tokens and 16 greedy tokens as ingot gets
// from its own export.
TEST(CheckpointExport, LlamaCppAgreesOnTheExport) {
  std::ifstream in(DataDir() + "/export/llama_cpp_greedy.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  const std::string dir = DataDir() + "/hf-f32";
  auto hf = LoadHf(dir);
  ASSERT_TRUE(hf.ok()) << hf.status();
  const LlamaModel* model = hf->model.get();
  const VocabSpec* vocab = &hf->vocab;
  const std::string out = ::testing::TempDir() + "/export_llama_cpp_check.gguf";
  ASSERT_TRUE(ExportGguf(model->weights(), *vocab, out).ok());
  auto file = gguf::File::Open(out);
  ASSERT_TRUE(file.ok()) << file.status();
  auto spec = VocabSpecFromGguf(**file);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto tok = Tokenizer::Create(*spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<int32_t> ids = (*tok)->Encode(ref["prompt"].get<std::string>(), false, false);
  EXPECT_EQ(ids, ref["prompt_tokens"].get<std::vector<int32_t>>());
  auto back = testing_util::GgufModel(std::move(*file));
  ASSERT_TRUE(back.ok()) << back.status();
  std::vector<int32_t> greedy;
  const int64_t n_vocab = (*back)->config().vocab_size;
  for (int i = 0; i < 16; ++i) {
    const std::vector<float> logits = Logits(**back, ids);
    const float* last = logits.data() + (ids.size() - 1) * n_vocab;
    const int32_t next = static_cast<int32_t>(std::max_element(last, last + n_vocab) - last);
    greedy.push_back(next);
    ids.push_back(next);
  }
  EXPECT_EQ(greedy, ref["greedy"].get<std::vector<int32_t>>());
}

// GGUF files llama.cpp's own converter made from the same random Llama: ingot's
// logits against llama.cpp's. llama.cpp keeps K/V in f16 (1e-3 on f32 weights); for
// Q8_0 both quantize activations to 8 bits, each its own way, which moves logits by up
// to 0.07 here (Q8_0 itself moves them 0.09 from the dense model).
TEST(CheckpointGguf, LogitsMatchLlamaCpp) {
  for (const auto& [dir, bound] : {std::pair<const char*, float>{"gguf-f32", 2e-3f}, {"gguf-q8_0", 0.1f}}) {
    SCOPED_TRACE(dir);
    const std::string d = DataDir() + "/" + dir;
    std::ifstream in(d + "/reference.json");
    ASSERT_TRUE(in.good());
    const nlohmann::json ref = nlohmann::json::parse(in);
    auto file = gguf::File::Open(d + "/model.gguf");
    ASSERT_TRUE(file.ok()) << file.status();
    auto model = testing_util::GgufModel(std::move(*file));
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<int32_t> tokens = ref["tokens"].get<std::vector<int32_t>>();
    auto max_d = MaxAbsDiffToNpy(d + "/logits.npy", Logits(**model, tokens));
    ASSERT_TRUE(max_d.ok()) << max_d.status();
    EXPECT_LE(*max_d, bound);
  }
}

// SmolLM3 as llama.cpp's own convert_hf_to_gguf.py writes it from smollm3-f32
// (tests/reference/gen_seeds.py smollm3_gguf): arch smollm3 with no NoPE key (llama.cpp's
// smollm3 skips RoPE in every 4th layer), q/k rows permuted, tied output (no
// output.weight), the tokenizer as GGUF metadata. ingot's logits on the file against
// transformers' on the checkpoint converted and llama.cpp's on the file (f32 throughout:
// llama.cpp ran with an f32 K/V cache; its default f16 one moves these logits by 1e-2).
TEST(CheckpointGguf, LlamaCppConvertedSmolLm3MatchesTransformersAndLlamaCpp) {
  const std::string hf_dir = DataDir() + "/smollm3-f32";
  std::ifstream in(hf_dir + "/reference.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  auto file = gguf::File::Open(DataDir() + "/gguf-smollm3-f32/model.gguf");
  ASSERT_TRUE(file.ok()) << file.status();
  // The converter's tokenizer metadata reads back as the checkpoint's tokenizer.
  auto spec = VocabSpecFromGguf(**file);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto hf = LoadHf(hf_dir);
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ(spec->tokens, hf->vocab.tokens);
  EXPECT_EQ(spec->merges, hf->vocab.merges);
  EXPECT_EQ(spec->chat_template, hf->vocab.chat_template);
  auto model = testing_util::GgufModel(std::move(*file));
  ASSERT_TRUE(model.ok()) << model.status();
  const LlamaConfig& c = (*model)->config();
  EXPECT_EQ(c.architecture, "smollm3");
  EXPECT_EQ(c.nope_layers, (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(c.rope_base, 50000.0f);
  EXPECT_TRUE(c.tied_output);
  const std::vector<int32_t> tokens = ref["tokens"].get<std::vector<int32_t>>();
  const std::vector<float> got = Logits(**model, tokens);
  std::ifstream lin(DataDir() + "/gguf-smollm3-f32/reference.json");
  ASSERT_TRUE(lin.good());
  const nlohmann::json lref = nlohmann::json::parse(lin);
  EXPECT_EQ(lref["tool"], "llama-cpp-python");
  EXPECT_EQ(lref["tokens"].get<std::vector<int32_t>>(), tokens);
  for (const std::string& path : {hf_dir + "/logits.npy", DataDir() + "/gguf-smollm3-f32/logits.npy"}) {
    SCOPED_TRACE(path);
    auto max_d = MaxAbsDiffToNpy(path, got);
    ASSERT_TRUE(max_d.ok()) << max_d.status();
    EXPECT_LE(*max_d, 1e-4f);
  }
}

// A quantized representation without a GGUF type is refused, naming the layer.
TEST(CheckpointExport, NonGgufRepresentationIsRefused) {
  auto hf = LoadHf(DataDir() + "/bnb-nf4");
  ASSERT_TRUE(hf.ok()) << hf.status();
  const LlamaModel* model = hf->model.get();
  VocabSpec vocab;
  vocab.model = "gpt2";
  vocab.tokens = {"a"};
  const absl::Status s = ExportGguf(model->weights(), vocab, ::testing::TempDir() + "/nf4.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("blk.0.attn_q.weight"), std::string::npos) << s;
  EXPECT_NE(s.message().find("nf4"), std::string::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(
    Formats, CheckpointTest,
    ::testing::Values(Variant{"hf-f32", 1e-4f}, Variant{"hf-f16", 1e-2f}, Variant{"hf-bf16", 5e-2f},
                      Variant{"hf-sharded", 1e-4f}, Variant{"hf-bin", 1e-2f}, Variant{"qwen2-f32", 1e-4f},
                      Variant{"llama-tied", 1e-4f}, Variant{"smollm3-f32", 1e-4f}, Variant{"bnb-nf4", 0.12f}, Variant{"bnb-fp4", 0.15f},
                      Variant{"bnb-int8", 0.1f}, Variant{"gptq-4bit-g32", 0.08f}, Variant{"gptq-3bit-g32", 0.08f},
                      Variant{"gptq-4bit-g32-actorder", 0.08f}, Variant{"awq-4bit-g32", 0.08f},
                      Variant{"mlx-4bit-g32", 0.1f},
                      // mlx-lm runs this one in bf16: 0.13 from the dense model by itself.
                      Variant{"mlx-8bit-g64", 0.2f}, Variant{"hqq-4bit-g64", 0.1f},
                      Variant{"hqq-4bit-g64-hf", 0.1f}, Variant{"hqq-2bit-g32", 0.1f},
                      // axis=0, dequantized to f16 at load: held to hf-f16's bound (no
                      // activation quantization on f16 weights).
                      Variant{"hqq-4bit-g64-axis0", 1e-2f},
                      Variant{"quanto-int8", 0.1f}, Variant{"quanto-int4", 0.08f}, Variant{"quanto-int4-pth", 0.08f},
                      // torchao int8: its weight-only forward keeps f32 activations, ingot's
                      // int8 path quantizes them to 8-bit blocks (as for quanto int8); the
                      // dynamic config quantizes each token to int8 in torchao too.
                      Variant{"torchao-int8wo", 0.08f}, Variant{"torchao-int8dq", 0.1f},
                      // The same int8 weight-only model pickled by torch.save (Int8Tensor as
                      // a wrapper subclass whose state holds qdata/scale/zero_point).
                      Variant{"torchao-int8wo-bin", 0.08f},
                      // torchao's CPU int4 with HQQ's qparams, packed under AVX-512 (the
                      // vector's aten_cpu_capability, which this test sets).
                      Variant{"torchao-int4-g64-hqq", 0.08f}),
    [](const auto& info) {
      std::string n = info.param.dir;
      for (char& c : n) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

}  // namespace
}  // namespace ingot
