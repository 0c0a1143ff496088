// Quantize on request through the engine, on the real default model: representations
// and bytes per tensor kind, the source serving on, in-place replacement, evaluation
// (perplexity, KL, top-1) ordering 8-bit < 4-bit < 2-bit, GPTQ/AWQ with calibration,
// and every refusal with its code.
#include <atomic>
#include <cmath>
#include <iostream>
#include <map>

#include "engine/runtime/engine.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::DefaultModelPath;
using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;

class EngineQuantTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.threads = 2;
    engine_ = new Engine(options);
    LoadRequest load;
    load.name = "src";
    load.source = DefaultModelPath();
    load.context_length = 512;
    ASSERT_OK(engine_->LoadModel(load, nullptr));
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  static absl::StatusOr<QuantizeResult> Quantize(const std::string& target, quant::QuantizationConfig c) {
    QuantizeRequest r;
    r.source = "src";
    r.target = target;
    r.config = std::move(c);
    return engine_->QuantizeModel(r, nullptr, nullptr);
  }
  static quant::QuantizationConfig Config(const std::string& method, int bits = 0, int64_t group = 0,
                                          const std::string& qt = "") {
    quant::QuantizationConfig c;
    c.method = method;
    c.bits = bits;
    c.group_size = group;
    c.quant_type = qt;
    return c;
  }
  static std::map<std::string, TensorKindInfo> Kinds(const ModelInfo& info) {
    std::map<std::string, TensorKindInfo> out;
    for (const auto& k : info.tensor_kinds) out[k.kind] = k;
    return out;
  }
  static EvaluateResult Eval(const std::string& model, const std::string& reference = "") {
    EvaluateRequest r;
    r.model = model;
    r.reference_model = reference;
    r.context_length = 128;
    r.max_tokens = 384;
    absl::StatusOr<EvaluateResult> e = engine_->EvaluateModel(r, nullptr);
    EXPECT_OK(e);
    return e.ok() ? *e : EvaluateResult{};
  }

  static Engine* engine_;
};
Engine* EngineQuantTest::engine_ = nullptr;

TEST_F(EngineQuantTest, RepresentationsAndBytesFollowTheMethod) {
  struct Case {
    quant::QuantizationConfig config;
    const char* representation;
    double bits_per_weight;
  };
  const std::vector<Case> cases = {
      {Config("hqq", 4, 64), "affine4/g64", 4.5},
      {Config("bitsandbytes", 4, 64, "nf4"), "nf4", 4.127},
      {Config("bitsandbytes", 8), "int8", 8.0 + 32.0 / 576},
      {Config("gguf", 0, 0, "q5_1"), "q5_1", 6.0},
      {Config("mlx", 4, 64), "g64", 4.5},
  };
  const ModelInfo src = *engine_->GetModel("src");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.config.method + " " + c.representation);
    absl::StatusOr<QuantizeResult> r = Quantize("q", c.config);
    ASSERT_OK(r);
    EXPECT_EQ(r->quantized_modules, 210);  // 30 layers x 7
    EXPECT_EQ(r->skipped_modules, 1);      // lm_head (tied to the embedding)
    auto kinds = Kinds(r->info);
    for (const char* kind : {"attention", "mlp"}) {
      EXPECT_THAT(kinds[kind].representation, HasSubstr(c.representation));
      const double bpw = 8.0 * static_cast<double>(kinds[kind].bytes) / kinds[kind].parameters;
      // Attention rows of 576 and MLP rows of 1536 differ slightly for per-row scales.
      EXPECT_NEAR(bpw, c.bits_per_weight, 0.03) << kind;
    }
    // Embeddings and norms are untouched and reported separately.
    EXPECT_EQ(kinds["embedding"].bytes, Kinds(src)["embedding"].bytes);
    EXPECT_EQ(kinds["norm"].bytes, Kinds(src)["norm"].bytes);
    EXPECT_EQ(r->info.weight_bytes, r->bytes_after);
    EXPECT_THAT(r->info.quantization, HasSubstr(c.config.method));
    ASSERT_OK(engine_->UnloadModel("q"));
  }
}

TEST_F(EngineQuantTest, QualityOrdersByBitsAndTheSourceKeepsServing) {
  const EvaluateResult base = Eval("src");
  EXPECT_GT(base.perplexity, 1.0);
  EXPECT_LT(base.perplexity, 200.0);  // SmolLM2-135M on plain English prose
  EXPECT_EQ(base.tokens_scored, 384 - 3);  // windows of 128: every token but each window's first
  double prev_kl = -1;
  for (int bits : {8, 4, 2}) {
    SCOPED_TRACE(bits);
    ASSERT_OK(Quantize("h", Config("hqq", bits, bits == 2 ? 16 : 64)));
    const EvaluateResult e = Eval("h", "src");
    EXPECT_TRUE(e.has_reference);
    EXPECT_GT(e.mean_kl, prev_kl);  // fewer bits, further from the source
    if (bits == 8) {
      EXPECT_LT(e.mean_kl, 0.01);
      EXPECT_GT(e.top1_agreement, 0.9);
      EXPECT_NEAR(e.perplexity / base.perplexity, 1.0, 0.01);  // 8-bit within 1%
    }
    prev_kl = e.mean_kl;
    ASSERT_OK(engine_->UnloadModel("h"));
  }
  // The source is untouched by all of it.
  const EvaluateResult again = Eval("src");
  EXPECT_DOUBLE_EQ(again.perplexity, base.perplexity);
}

TEST_F(EngineQuantTest, CalibratedMethodsOnOneLayer) {
  for (const char* method : {"gptq", "awq"}) {
    SCOPED_TRACE(method);
    quant::QuantizationConfig c = Config(method, 4, 64);
    c.calibration_tokens = 256;
    c.skip_modules = std::vector<std::string>{"model.layers.*", "lm_head"};
    c.layer_overrides.push_back({"layers.0", std::nullopt, std::nullopt, std::nullopt, std::nullopt, false});
    absl::StatusOr<QuantizeResult> r = Quantize("c", c);
    ASSERT_OK(r);
    EXPECT_EQ(r->quantized_modules, 7);
    EXPECT_EQ(r->skipped_modules, 30 * 7 - 7 + 1);
    const EvaluateResult e = Eval("c", "src");
    EXPECT_LT(e.mean_kl, 0.05);
    ASSERT_OK(engine_->UnloadModel("c"));
    if (std::string(method) != "awq") continue;
    // AWQ's backend options reach the searches: llm-awq's scale search alone (no duo
    // scaling, no clipping) quantizes the layer differently, and also well.
    c.backend_options = {{"duo_scaling", "false"}, {"clip", "false"}};
    ASSERT_OK(Quantize("c", c));
    const EvaluateResult plain = Eval("c", "src");
    EXPECT_LT(plain.mean_kl, 0.05);
    EXPECT_NE(plain.mean_kl, e.mean_kl);
    std::cout << "AWQ layer 0: KL " << e.mean_kl << " (duo scaling + clip), " << plain.mean_kl
              << " (neither)\n";
    ASSERT_OK(engine_->UnloadModel("c"));
  }
}

TEST_F(EngineQuantTest, InPlaceReplacesTheModel) {
  LoadRequest load;
  load.name = "inplace";
  load.source = DefaultModelPath();
  load.context_length = 256;
  ASSERT_OK(engine_->LoadModel(load, nullptr));
  QuantizeRequest r;
  r.source = "inplace";
  r.config = Config("gguf", 0, 0, "q8_0");
  ASSERT_OK(engine_->QuantizeModel(r, nullptr, nullptr));
  absl::StatusOr<ModelInfo> info = engine_->GetModel("inplace");
  ASSERT_OK(info);
  EXPECT_EQ(Kinds(*info)["mlp"].representation, "q8_0");
  EXPECT_EQ(info->context_length, 256);
  ASSERT_OK(engine_->UnloadModel("inplace"));
}

TEST_F(EngineQuantTest, RefusalsNameTheProblemAndKeepTheSource) {
  EXPECT_THAT(Quantize("x", Config("fancy")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown method \"fancy\"")));
  quant::QuantizationConfig c = Config("hqq", 4, 64);
  c.skip_modules = std::vector<std::string>{"*.nonexistent"};
  EXPECT_THAT(Quantize("x", c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("skip_modules[0]")));
  EXPECT_THAT(Quantize("x", Config("hqq", 4, 256)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("576 input features")));
  // K-quants need rows of 256: SmolLM2's 576 does not fit; the message stays short.
  absl::Status k = Quantize("x", Config("gguf", 0, 0, "q4_k")).status();
  EXPECT_THAT(k, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more modules")));
  EXPECT_LT(k.message().size(), 1500u);
  QuantizeRequest r;
  r.source = "src";
  r.target = "x";
  r.config = Config("hqq");
  r.device = "cuda:0";
  EXPECT_THAT(engine_->QuantizeModel(r, nullptr, nullptr), StatusIs(absl::StatusCode::kFailedPrecondition));
  r.source = "missing";
  r.device = "";
  EXPECT_THAT(engine_->QuantizeModel(r, nullptr, nullptr), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Quantize("src", Config("hqq")).status(), ::ingot::testing::IsOk());  // in place is allowed
  // A taken target name.
  EXPECT_THAT(Quantize("src2", Config("hqq")).status(), ::ingot::testing::IsOk());
  EXPECT_THAT(Quantize("src2", Config("hqq")), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK(engine_->UnloadModel("src2"));
  // Cancelled before it starts: nothing registered.
  std::atomic<bool> cancel{true};
  r.source = "src";
  r.target = "cancelled";
  EXPECT_THAT(engine_->QuantizeModel(r, nullptr, &cancel), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(engine_->GetModel("cancelled"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(engine_->GetModel("src"));
}

TEST(EngineQuantBudget, OverBudgetIsResourceExhaustedAndTheSourceServes) {
  EngineOptions options;
  options.threads = 1;
  options.memory_budget_bytes["cpu"] = 150 << 20;  // the source (~100 MB) fits, a copy does not
  Engine engine(options);
  LoadRequest load;
  load.name = "src";
  load.source = DefaultModelPath();
  load.context_length = 128;
  load.kv_cache_bytes = 1;  // one context's pool: the budget counts it (256 MiB by default)
  ASSERT_OK(engine.LoadModel(load, nullptr));
  QuantizeRequest r;
  r.source = "src";
  r.target = "big";
  r.config.method = "none";
  r.config.quant_type = "f32";
  EXPECT_THAT(engine.QuantizeModel(r, nullptr, nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("memory budget")));
  EXPECT_OK(engine.GetModel("src"));
  EXPECT_THAT(engine.GetModel("big"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace ingot
