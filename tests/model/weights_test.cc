// LlamaWeights apart from the model (engine/model/weights.h, residency.h): a copy is
// edited (SetLinear, MutableNorm) without touching the weights it came from, and the
// residency copy moves every mapped weight into owned memory with the same logits, on
// the tiny GGUF and safetensors vectors (tests/data/formats).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/model/llama.h"
#include "engine/model/load.h"
#include "engine/model/residency.h"
#include "gtest/gtest.h"
#include "tests/quant/model_util.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using testing_util::FormatsDataDir;
using testing_util::Logits;

absl::StatusOr<LlamaWeights> LoadDir(const std::string& name) {
  auto ck = Checkpoint::Open(FormatsDataDir() + "/" + name, "auto");
  if (!ck.ok()) return ck.status();
  std::shared_ptr<const Checkpoint> shared(std::move(*ck));
  return LoadCheckpointWeights(shared, formats::LayoutLinearLoader(shared), nullptr);
}

absl::StatusOr<LlamaWeights> LoadGguf(const std::string& path) {
  auto file = gguf::File::Open(path);
  if (!file.ok()) return file.status();
  return LoadGgufWeights(std::move(*file), nullptr);
}

// A dense f32 (rows, cols) matrix of `value`, with its storage.
std::pair<kernels::Linear, std::shared_ptr<std::vector<float>>> Filled(int64_t rows, int64_t cols, float value) {
  auto storage = std::make_shared<std::vector<float>>(static_cast<size_t>(rows * cols), value);
  kernels::Linear lin;
  lin.kind = kernels::LinearKind::kGgml;
  lin.ggml.type = GgmlType::kF32;
  lin.ggml.rows = rows;
  lin.ggml.cols = cols;
  lin.ggml.row_bytes = static_cast<size_t>(cols) * sizeof(float);
  lin.ggml.data = reinterpret_cast<const uint8_t*>(storage->data());
  return {lin, storage};
}

std::vector<float> LogitsOf(const LlamaWeights& w) {
  return Logits(LlamaModel(w), {1, 5, 9, 2, 7, 3, 11, 4});
}

TEST(LlamaWeights, ACopyIsEditedWithoutTouchingTheOriginal) {
  auto loaded = LoadDir("llama-tied");
  ASSERT_OK(loaded);
  const LlamaWeights& original = *loaded;
  ASSERT_TRUE(original.config.tied_output);
  const std::vector<TensorKindInfo> summary = original.summary;
  const std::vector<float> logits = LogitsOf(original);
  const std::vector<LinearModuleRef> refs = original.LinearModules();
  ASSERT_EQ(refs.size(), static_cast<size_t>(original.config.n_layer) * kLinearSlots + 1);
  const LinearModuleRef& q0 = refs[0];
  const LinearModuleRef& head = refs.back();
  ASSERT_EQ(head.name, "lm_head");
  const uint8_t* q0_data = original.linear(q0).ggml.data;
  const std::vector<float> norm = original.layers[0].attn_norm;

  LlamaWeights copy = original;
  auto [q, q_storage] = Filled(q0.rows, q0.cols, 0.0f);
  copy.SetLinear(q0, q, "f32", q.bytes(), q_storage);
  auto [h, h_storage] = Filled(head.rows, head.cols, 0.5f);
  copy.SetLinear(head, h, "f32", h.bytes(), h_storage);
  (*copy.MutableNorm(0, false))[0] += 1.0f;
  copy.RefreshSummary();

  // The copy: its own modules, its head untied (a replaced head no longer shares the
  // embedding), and the head's bytes now counted.
  EXPECT_EQ(copy.linear(q0).ggml.data, reinterpret_cast<const uint8_t*>(q_storage->data()));
  EXPECT_FALSE(copy.config.tied_output);
  EXPECT_EQ(copy.weight_bytes, original.weight_bytes + h.bytes());
  EXPECT_NE(LogitsOf(copy), logits);
  // The original: as loaded.
  EXPECT_EQ(original.linear(q0).ggml.data, q0_data);
  EXPECT_TRUE(original.config.tied_output);
  EXPECT_EQ(original.layers[0].attn_norm, norm);
  ASSERT_EQ(original.summary.size(), summary.size());
  for (size_t i = 0; i < summary.size(); ++i) {
    EXPECT_EQ(original.summary[i].kind, summary[i].kind);
    EXPECT_EQ(original.summary[i].bytes, summary[i].bytes);
  }
  EXPECT_EQ(LogitsOf(original), logits);
}

TEST(Residency, CopyingTheMappedWeightsKeepsTheLogits) {
  for (const char* source : {"gguf-f32/model.gguf", "hf-f32"}) {
    SCOPED_TRACE(source);
    auto loaded = std::string(source).ends_with(".gguf") ? LoadGguf(FormatsDataDir() + "/" + source) : LoadDir(source);
    ASSERT_OK(loaded);
    const LlamaWeights& mapped = *loaded;
    const int64_t mapped_bytes = MappedWeightBytes(mapped);
    // Every linear and the embedding of these f32 vectors is read in place.
    EXPECT_GT(mapped_bytes, mapped.weight_bytes / 2);
    EXPECT_LE(mapped_bytes, mapped.weight_bytes);
    PrefaultMappedWeights(mapped);
    const std::vector<float> logits = LogitsOf(mapped);

    for (const bool release_each : {false, true}) {
      LlamaWeights copy = mapped;
      std::vector<std::string> modules;
      ASSERT_OK(CopyMappedWeights(&copy, release_each ? 1 : 2, release_each,
                                  [&](double, const std::string& m) { modules.push_back(m); }));
      EXPECT_EQ(MappedWeightBytes(copy), 0);
      // Each layer's linears, the embedding, and the head unless it is the embedding.
      const size_t n_modules = static_cast<size_t>(mapped.config.n_layer) * kLinearSlots + 1 +
                               (mapped.config.tied_output ? 0 : 1);
      EXPECT_EQ(modules.size(), n_modules);
      EXPECT_NE(std::find(modules.begin(), modules.end(), "token_embd"), modules.end());
      EXPECT_EQ(LogitsOf(copy), logits);
      // The weights it was copied from still read the mapping.
      EXPECT_EQ(MappedWeightBytes(mapped), mapped_bytes);
    }
    LlamaWeights copy = mapped;
    EXPECT_EQ(CopyMappedWeights(&copy, 2, /*release_each=*/true, nullptr).code(), absl::StatusCode::kInternal);
  }
}

}  // namespace
}  // namespace ingot
