// Shared by the model and checkpoint tests: the format vectors' directory, a model's
// logits on a token sequence and their distance to a peer's .npy, and a GGUF file or a
// Hugging Face style directory opened as LoadModel opens it (engine/model/load.h, then
// the model over the weights).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "engine/formats/checkpoint.h"
#include "engine/common/status.h"
#include "engine/formats/gguf.h"
#include "engine/model/llama.h"
#include "engine/model/load.h"
#include "engine/formats/layouts/layout.h"
#include "engine/formats/npz.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot::testing_util {

inline std::string FormatsDataDir() { return testing::SourcePath("tests/data/formats"); }

// Logits of every position (tokens.size() x vocab), one thread, a fresh cache.
inline std::vector<float> Logits(const LlamaModel& m, const std::vector<int32_t>& tokens) {
  kernels::ThreadPool pool(1);
  ForwardWorkspace ws;
  std::unique_ptr<KvCache> cache = m.NewKvCache();  // on the model's backend
  EXPECT_TRUE(cache->Reserve(static_cast<int32_t>(tokens.size())).ok());
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], static_cast<int32_t>(i), cache.get(), true});
  std::vector<float> logits;
  const absl::Status st = m.Forward(batch, pool, ws, &logits);
  EXPECT_TRUE(st.ok()) << st;
  return logits;
}

// The largest |got[i] - want[i]| against the f32 array of an .npy file written by a
// peer (its element count must be got's): INVALID_ARGUMENT names a count mismatch.
inline absl::StatusOr<float> MaxAbsDiffToNpy(const std::string& path, const std::vector<float>& got) {
  ASSIGN_OR_RETURN(std::unique_ptr<formats::NpzFile> npy, formats::NpzFile::Open(path));
  const formats::TensorView& want = npy->tensors()[0];
  if (want.numel() != static_cast<int64_t>(got.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " holds ", want.numel(), " values, the model gave ", got.size()));
  }
  const float* w = reinterpret_cast<const float*>(want.data);
  float max_d = 0;
  for (size_t i = 0; i < got.size(); ++i) max_d = std::max(max_d, std::fabs(got[i] - w[i]));
  return max_d;
}

// The model over a GGUF file's weights (on native cpu).
inline absl::StatusOr<std::unique_ptr<LlamaModel>> GgufModel(std::unique_ptr<gguf::File> file) {
  ASSIGN_OR_RETURN(LlamaWeights weights, LoadGgufWeights(std::move(file), nullptr));
  return std::make_unique<LlamaModel>(std::move(weights));
}

// A Hugging Face directory as LoadModel opens it: checkpoint, model, vocabulary.
struct HfModel {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::unique_ptr<LlamaModel> model;
  VocabSpec vocab;
};
inline absl::StatusOr<HfModel> LoadHf(const std::string& dir) {
  auto opened = Checkpoint::Open(dir, "auto");
  if (!opened.ok()) return opened.status();
  HfModel out;
  out.checkpoint = std::move(*opened);
  const Checkpoint& ck = *out.checkpoint;
  auto weights = LoadCheckpointWeights(out.checkpoint, formats::LayoutLinearLoader(out.checkpoint), nullptr);
  if (!weights.ok()) return weights.status();
  out.model = std::make_unique<LlamaModel>(std::move(*weights));
  auto vocab = VocabSpecFromHfDir([&](const char* f) { return ck.ReadSibling(f); }, dir);
  if (!vocab.ok()) return vocab.status();
  out.vocab = std::move(*vocab);
  return out;
}

}  // namespace ingot::testing_util
