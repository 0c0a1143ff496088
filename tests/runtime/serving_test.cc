// Serving many sequences from one paged KV pool (engine/model/kv_cache.h,
// engine/runtime/scheduler.cc), on the default model: admission by blocks, preemption
// and recomputation in a pool too small for the load, the prefix cache, the KV dtypes.
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/runtime/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/runtime/generation_collector.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::Collector;
using ::ingot::testing::DefaultModelPath;
using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;

class ServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::ifstream(DefaultModelPath()).good()) GTEST_SKIP() << "default model missing: run scripts/fetch_model.sh";
    EngineOptions options;
    options.threads = 2;
    options.max_batch_sequences = 64;
    engine_ = std::make_unique<Engine>(options);
  }
  absl::StatusOr<ModelInfo> Load(const std::string& name, int32_t context, int64_t kv_bytes, int32_t max_sequences,
                                 const std::string& dtype = "", bool prefix_cache = true) {
    LoadRequest r;
    r.name = name;
    r.source = DefaultModelPath();
    r.context_length = context;
    r.kv_cache_bytes = kv_bytes;
    r.max_sequences = max_sequences;
    r.kv_cache_dtype = dtype;
    r.prefix_cache = prefix_cache;
    return engine_->LoadModel(r, nullptr);
  }
  static GenerateRequest Greedy(const std::string& model, const std::string& prompt, int max_tokens) {
    GenerateRequest r;
    r.model = model;
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    return r;
  }
  // Runs the requests concurrently; returns their collectors once all ended.
  std::vector<std::unique_ptr<Collector>> RunAll(const std::vector<GenerateRequest>& requests) {
    std::vector<std::unique_ptr<Collector>> out;
    for (const GenerateRequest& r : requests) {
      out.push_back(std::make_unique<Collector>());
      EXPECT_OK(engine_->Generate(r, out.back()->Callbacks()));
    }
    for (auto& c : out) c->Wait();
    return out;
  }
  std::unique_ptr<Engine> engine_;
};

std::vector<std::string> Prompts() {
  std::vector<std::string> p;
  const char* subjects[] = {"The river", "My neighbour's cat", "A small robot", "The old library",
                            "Winter in the mountains", "The baker", "An astronaut", "The city at night"};
  for (int i = 0; i < 8; ++i) p.push_back(absl::StrCat(subjects[i], i % 2 ? " was" : " is", " known for"));
  return p;
}

// 64 sequences in a pool of 9 blocks of 16 tokens (one 128-token context and a block),
// each growing past its first block: requests wait for blocks, running ones are
// preempted and recomputed, and every sequence still ends with exactly the tokens it
// gets alone (greedy). Half of them ask for prompt logprobs: those come once, with the
// values the sequence gets alone, however often it was preempted.
TEST_F(ServingTest, SixtyFourSequencesInATooSmallPoolEndAsTheyDoAlone) {
  constexpr int kTokens = 16;
  ASSERT_OK(Load("alone", 128, 0, 1));
  absl::StatusOr<ModelInfo> tight = Load("tight", 128, 1, 64);
  ASSERT_OK(tight);
  EXPECT_EQ(tight->kv_block_tokens, 16);
  EXPECT_EQ(tight->kv_blocks_total, 128 / 16 + 1) << "the pool is raised to one full context";
  EXPECT_EQ(tight->max_sequences, tight->kv_blocks_total) << "bounded by the pool";
  EXPECT_EQ(tight->kv_cache_dtype, "f16");

  const std::vector<std::string> prompts = Prompts();
  std::vector<GenerateRequest> alone_requests;
  for (const std::string& p : prompts) {
    alone_requests.push_back(Greedy("alone", p, kTokens));
    alone_requests.back().sampling.prompt_logprobs = 2;
  }
  std::vector<std::vector<int32_t>> want;
  std::vector<std::vector<TokenLogprob>> want_prompt;
  for (const GenerateRequest& r : alone_requests) {  // one at a time
    auto c = RunAll({r});
    ASSERT_OK(c[0]->status);
    want.push_back(c[0]->ids);
    want_prompt.push_back(c[0]->prompt_logprobs);
    ASSERT_EQ(c[0]->prompt_logprobs.size(), static_cast<size_t>(c[0]->final.prompt_tokens - 1));
  }
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 64; ++i) {
    requests.push_back(Greedy("tight", prompts[i % prompts.size()], kTokens));
    if (i % 2 == 0) requests.back().sampling.prompt_logprobs = 2;
  }
  auto got = RunAll(requests);
  for (int i = 0; i < 64; ++i) {
    SCOPED_TRACE(absl::StrCat("sequence ", i, ": ", prompts[i % prompts.size()]));
    ASSERT_OK(got[i]->status);
    EXPECT_EQ(got[i]->ids, want[i % prompts.size()]);
    if (i % 2 == 1) {
      EXPECT_EQ(got[i]->prompt_logprob_chunks, 0);
      continue;
    }
    EXPECT_EQ(got[i]->prompt_logprob_chunks, 1);
    const std::vector<TokenLogprob>& w = want_prompt[i % prompts.size()];
    ASSERT_EQ(got[i]->prompt_logprobs.size(), w.size());
    for (size_t k = 0; k < w.size(); ++k) {
      EXPECT_EQ(got[i]->prompt_logprobs[k].token_id, w[k].token_id);
      // Batched with other sequences the sums run in another order: close, not equal.
      EXPECT_NEAR(got[i]->prompt_logprobs[k].logprob, w[k].logprob, 1e-3);
      ASSERT_EQ(got[i]->prompt_logprobs[k].top.size(), 2u);
    }
  }
  absl::StatusOr<ModelInfo> after = engine_->GetModel("tight");
  ASSERT_OK(after);
  EXPECT_GT(after->kv_preemptions, 0) << "the pool was never too small: the test proves nothing";
  EXPECT_EQ(after->kv_blocks_used, 0);
  EXPECT_EQ(after->requests_waiting, 0);
  EXPECT_EQ(after->requests_running, 0);
}

// A second request with the same 300-token prefix computes only its suffix (the
// prefix's full blocks come from the cache) and returns the tokens a cold model gives.
TEST_F(ServingTest, ASharedPrefixIsComputedOnce) {
  ASSERT_OK(Load("cached", 1024, 0, 8));
  ASSERT_OK(Load("cold", 1024, 0, 8, "", /*prefix_cache=*/false));
  std::string prefix = "You are a careful assistant. Answer briefly and cite the rule you used.";
  while (prefix.size() < 1400) prefix += " Rules: be kind, be exact, and never guess a number you cannot check.";
  const std::string first = prefix + "\nQuestion: what is two plus two?\nAnswer:";
  const std::string second = prefix + "\nQuestion: name a colour of the sky.\nAnswer:";

  auto a = RunAll({Greedy("cached", first, 8)});
  ASSERT_OK(a[0]->status);
  EXPECT_EQ(a[0]->final.cached_prompt_tokens, 0);
  const int32_t prompt_tokens = a[0]->final.prompt_tokens;
  ASSERT_GE(prompt_tokens, 300) << "the shared prefix is shorter than the test means";

  auto b = RunAll({Greedy("cached", second, 12)});
  auto cold = RunAll({Greedy("cold", second, 12)});
  ASSERT_OK(b[0]->status);
  ASSERT_OK(cold[0]->status);
  const GenerationChunk& fb = b[0]->final;
  EXPECT_GE(fb.cached_prompt_tokens, 288) << "the prefix's full blocks were computed again";
  EXPECT_EQ(fb.cached_prompt_tokens % 16, 0);
  EXPECT_LT(fb.cached_prompt_tokens, fb.prompt_tokens);
  EXPECT_EQ(b[0]->ids, cold[0]->ids);
  EXPECT_EQ(cold[0]->final.cached_prompt_tokens, 0);

  absl::StatusOr<ModelInfo> info = engine_->GetModel("cached");
  ASSERT_OK(info);
  EXPECT_EQ(info->prefix_cache_hit_tokens, fb.cached_prompt_tokens);
  EXPECT_EQ(info->prefix_cache_query_tokens, prompt_tokens + fb.prompt_tokens);
  EXPECT_GT(info->kv_blocks_cached, 0);
  EXPECT_EQ(info->kv_blocks_used, 0) << "finished sequences hold no blocks";
}

// The block size is an engine option (ingotd --kv-block-tokens): with blocks of 32 the
// pool, the prefix cache (whole 32-token blocks) and attention over the blocks give the
// tokens that blocks of 16 give.
TEST_F(ServingTest, BlocksOf32ServeWhatBlocksOf16Do) {
  EngineOptions options;
  options.threads = 2;
  options.kv_block_tokens = 32;
  Engine engine32(options);
  LoadRequest r;
  r.name = "b32";
  r.source = DefaultModelPath();
  r.context_length = 1024;
  absl::StatusOr<ModelInfo> info = engine32.LoadModel(r, nullptr);
  ASSERT_OK(info);
  EXPECT_EQ(info->kv_block_tokens, 32);
  ASSERT_OK(Load("b16", 1024, 0, 8));
  std::string prefix = "You are a careful assistant. Answer briefly and cite the rule you used.";
  while (prefix.size() < 1400) prefix += " Rules: be kind, be exact, and never guess a number you cannot check.";
  int round = 0;
  for (const char* question : {"what is two plus two?", "name a colour of the sky."}) {
    GenerateRequest g = Greedy("b32", prefix + "\nQuestion: " + question + "\nAnswer:", 12);
    Collector c32;
    ASSERT_OK(engine32.Generate(g, c32.Callbacks()));
    c32.Wait();
    ASSERT_OK(c32.status);
    g.model = "b16";
    auto c16 = RunAll({g});
    ASSERT_OK(c16[0]->status);
    EXPECT_EQ(c32.ids, c16[0]->ids) << question;
    EXPECT_EQ(c32.final.cached_prompt_tokens % 32, 0);
    if (++round == 2) {
      EXPECT_GE(c32.final.cached_prompt_tokens, 288) << "the prefix's blocks of 32 were reused";
    }
  }
}

// n completions: each samples as a single request with seed + i does, the prompt is
// computed once (the others take its blocks from the prefix cache), and the usage
// counts the prompt once and every completion's tokens.
TEST_F(ServingTest, NCompletionsShareThePromptAndSampleAsTheirSeedsDo) {
  ASSERT_OK(Load("n", 512, 0, 8));
  ASSERT_OK(Load("single", 512, 0, 8, "", /*prefix_cache=*/false));
  std::string prompt;
  while (prompt.size() < 400) prompt += "The sea is wide, grey and cold in winter, and the boats stay in the harbour. ";
  prompt += "One morning the old fisherman said that";
  GenerateRequest r = Greedy("n", prompt, 10);
  r.sampling.temperature = 0.9f;
  r.sampling.seed = 11;
  r.sampling.n = 3;
  auto got = RunAll({r});
  ASSERT_OK(got[0]->status);
  const Collector& c = *got[0];
  ASSERT_EQ(c.ids_by_index.size(), 3u);
  int32_t completion_tokens = 0;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    GenerateRequest one = Greedy("single", prompt, 10);
    one.sampling.temperature = 0.9f;
    one.sampling.seed = 11 + i;
    auto alone = RunAll({one});
    ASSERT_OK(alone[0]->status);
    EXPECT_EQ(c.ids_by_index.at(i), alone[0]->ids);
    ASSERT_TRUE(c.finish_by_index.count(i));
    EXPECT_EQ(c.finish_by_index.at(i), alone[0]->final.finish_reason);
    completion_tokens += alone[0]->final.completion_tokens;
  }
  EXPECT_NE(c.ids_by_index.at(0), c.ids_by_index.at(1)) << "completions with different seeds came out the same";
  EXPECT_EQ(c.final.completion_tokens, completion_tokens);
  const int32_t p = c.final.prompt_tokens;
  ASSERT_GT(p, 64);
  absl::StatusOr<ModelInfo> info = engine_->GetModel("n");
  ASSERT_OK(info);
  EXPECT_EQ(info->prefix_cache_hit_tokens, 2 * ((p - 1) / 16) * 16) << "the siblings computed the prompt again";
  GenerateRequest bad = Greedy("n", prompt, 4);
  bad.sampling.n = 17;
  EXPECT_THAT(engine_->Generate(bad, Collector().Callbacks()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("n must be in [1, 16]")));
}

TEST_F(ServingTest, KvDtypesStoreWhatTheySayAndBadOnesAreRefused) {
  absl::StatusOr<ModelInfo> f16 = Load("f16", 128, 0, 4, "f16");
  absl::StatusOr<ModelInfo> f32 = Load("f32", 128, 0, 4, "f32");
  absl::StatusOr<ModelInfo> q8 = Load("q8", 128, 0, 4, "q8_0");
  ASSERT_OK(f16);
  ASSERT_OK(f32);
  ASSERT_OK(q8);
  EXPECT_EQ(f32->kv_bytes_per_token, 2 * f16->kv_bytes_per_token);
  EXPECT_EQ(q8->kv_bytes_per_token * 64, f16->kv_bytes_per_token * 34);  // 34-byte Q8_0 blocks of 32
  EXPECT_EQ(f16->kv_bytes_per_token, int64_t{2} * 2 * f16->layers * 192) << "SmolLM2-135M: 3 KV heads of 64";
  for (const char* model : {"f16", "f32", "q8"}) {
    auto c = RunAll({Greedy(model, "The capital of France is", 6)});
    ASSERT_OK(c[0]->status) << model;
    EXPECT_EQ(c[0]->final.completion_tokens, 6) << model;
    EXPECT_THAT(c[0]->text, HasSubstr("Paris")) << model;
  }
  EXPECT_THAT(Load("bad", 128, 0, 4, "f8"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kv_cache_dtype 'f8'")));
  EXPECT_THAT(Load("bad", 128, -1, 4), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kv_cache_bytes")));
  EXPECT_THAT(Load("bad", 128, 0, 5000), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_sequences")));
  if (kernels::FindBackend("torch") != nullptr) {
    LoadRequest r;
    r.name = "torchq8";
    r.source = DefaultModelPath();
    r.backend = "torch";
    r.context_length = 128;
    r.kv_cache_dtype = "q8_0";
    EXPECT_THAT(engine_->LoadModel(r, nullptr),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("q8_0 is served by backend native on cpu and by torch on cuda")));
  }
  EXPECT_OK(engine_->GetModel("f16")) << "a refused load takes nothing already loaded";
}

}  // namespace
}  // namespace ingot
