// The method table and what reads it: validation (every problem, each with a fix),
// per-module plans (defaults, skips, globs, overrides), fallback, size estimates and
// recommendation.
#include "engine/quant/config.h"
#include "engine/quant/presets.h"

#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"

#include "tests/test_util.h"

namespace ingot::quant {
namespace {

using ::testing::HasSubstr;
using ::ingot::testing::StatusIs;

// The modules of a 2-layer SmolLM-shaped model.
std::vector<LinearModuleRef> Modules() {
  std::vector<LinearModuleRef> out;
  const char* hf[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
  const char* gg[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  const int64_t shapes[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576},
                                {1536, 576}, {1536, 576}, {576, 1536}};
  for (int l = 0; l < 2; ++l) {
    for (int s = 0; s < 7; ++s) {
      out.push_back({"model.layers." + std::to_string(l) + "." + hf[s],
                     "blk." + std::to_string(l) + "." + gg[s], s < 4 ? "attention" : "mlp",
                     shapes[s][0], shapes[s][1]});
    }
  }
  out.push_back({"lm_head", "output", "output", 49152, 576});
  return out;
}

DeviceCaps Cpu() { return DeviceCaps{}; }

QuantizationConfig Config(const std::string& method, int bits = 0, int64_t group = 0) {
  QuantizationConfig c;
  c.method = method;
  c.bits = bits;
  c.group_size = group;
  return c;
}

std::vector<std::string> Fields(const std::vector<ConfigProblem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems) {
    EXPECT_FALSE(p.message.empty()) << p.field;
    EXPECT_FALSE(p.fix.empty()) << p.field;
    out.push_back(p.field);
  }
  return out;
}

TEST(MethodTable, EveryRowIsConsistent) {
  for (const MethodRow& row : MethodTable()) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(FindMethod(row.name), &row);
    EXPECT_FALSE(row.bits.empty());
    EXPECT_NE(std::find(row.bits.begin(), row.bits.end(), row.default_bits), row.bits.end());
    if (!row.group_sizes.empty()) {
      EXPECT_NE(std::find(row.group_sizes.begin(), row.group_sizes.end(), row.default_group),
                row.group_sizes.end());
    }
    EXPECT_TRUE(row.runs_on_cpu);
    if (*row.fallback) EXPECT_NE(FindMethod(row.fallback), nullptr);
    // Every default config validates against a real shape set.
    const auto modules = Modules();
    EXPECT_THAT(Fields(ValidateQuantization(Config(row.name), Cpu(), &modules)), ::testing::IsEmpty());
  }
  EXPECT_EQ(FindMethod("bnb"), FindMethod("bitsandbytes"));
  EXPECT_EQ(FindMethod("optimum-quanto"), FindMethod("quanto"));
  EXPECT_EQ(FindMethod("dense"), FindMethod("none"));
  EXPECT_EQ(FindMethod("HQQ"), FindMethod("hqq"));
  EXPECT_EQ(FindMethod("gptq2"), nullptr);
}

// Every row quantizes, and every option's hint is generated from its range: a value
// outside it is refused with that hint as the fix.
TEST(MethodTable, EveryRowQuantizesAndItsOptionsSayTheirRange) {
  for (const MethodRow& row : MethodTable()) {
    SCOPED_TRACE(row.name);
    EXPECT_NE(row.quantize, nullptr);
    for (const OptionSpec& o : row.options) {
      SCOPED_TRACE(o.key);
      const std::string hint = OptionHint(o);
      EXPECT_THAT(hint, HasSubstr(o.key));
      MethodParams p;
      EXPECT_FALSE(ApplyOption(o, "not-a-value", &p));
      QuantizationConfig c = Config(row.name);
      c.backend_options = {{o.key, "not-a-value"}};
      const auto problems = ValidateQuantization(c, Cpu());
      ASSERT_EQ(problems.size(), 1u);
      EXPECT_EQ(problems[0].fix, hint);
    }
  }
  MethodParams p;
  const MethodRow& hqq = *FindMethod("hqq");
  for (const OptionSpec& o : hqq.options) {
    if (std::string(o.key) == "axis") {
      EXPECT_EQ(OptionHint(o), "axis: an integer in [0, 1]");
      EXPECT_TRUE(ApplyOption(o, "0", &p));
      EXPECT_EQ(p.hqq_axis, 0);
      EXPECT_FALSE(ApplyOption(o, "2", &p));
    }
    if (std::string(o.key) == "lp_norm") EXPECT_EQ(OptionHint(o), "lp_norm: a number in (0, 2]");
  }
}

TEST(Validate, BadFieldsAreNamedWithFixes) {
  EXPECT_THAT(Fields(ValidateQuantization(Config("nope"), Cpu())), ::testing::ElementsAre("method"));
  EXPECT_THAT(Fields(ValidateQuantization(Config(""), Cpu())), ::testing::ElementsAre("method"));
  EXPECT_THAT(Fields(ValidateQuantization(Config("hqq", 5), Cpu())), ::testing::ElementsAre("bits"));
  EXPECT_THAT(Fields(ValidateQuantization(Config("awq", 3), Cpu())), ::testing::ElementsAre("bits"));
  EXPECT_THAT(Fields(ValidateQuantization(Config("hqq", 4, 48), Cpu())), ::testing::ElementsAre("group_size"));
  EXPECT_THAT(Fields(ValidateQuantization(Config("bitsandbytes", 8, 64), Cpu())),
              ::testing::ElementsAre("group_size"));
  QuantizationConfig c = Config("bitsandbytes");
  c.quant_type = "nf3";
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu())), ::testing::ElementsAre("quant_type"));
  c = Config("torchao", 4);
  c.quant_type = "int8_weight_only";
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu())), ::testing::ElementsAre("bits"));
  c = Config("hqq");
  c.double_quant = true;
  c.compute_dtype = "float8";
  c.backend_options = {{"axis", "2"}, {"warp", "9"}};
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu())),
              ::testing::UnorderedElementsAre("double_quant", "compute_dtype", "backend_options.axis",
                                              "backend_options.warp"));
  c = Config("hqq");
  c.calibration_file = "/tmp/x.txt";
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu())), ::testing::ElementsAre("calibration_file"));
}

TEST(Validate, ModelChecksGlobsAndGroupDivisibility) {
  const auto modules = Modules();
  QuantizationConfig c = Config("hqq");
  c.skip_modules = std::vector<std::string>{"lm_head", "*.nothing_here"};
  c.layer_overrides.push_back({"layers.9.*", std::nullopt, 2, std::nullopt, std::nullopt, false});
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu(), &modules)),
              ::testing::ElementsAre("skip_modules[1]", "layer_overrides[0].pattern"));
  // 1536 and 576 are not multiples of 256... 576 % 256 != 0.
  EXPECT_THAT(Fields(ValidateQuantization(Config("hqq", 4, 256), Cpu(), &modules)),
              ::testing::Each("group_size"));
  const auto problems = ValidateQuantization(Config("hqq", 4, 256), Cpu(), &modules);
  ASSERT_FALSE(problems.empty());
  EXPECT_THAT(problems[0].message, HasSubstr("576 input features"));
  // The same group size is fine once the offending modules are skipped... they all
  // have 576 or 1536 columns, so skip all but down_proj: 1536 % 256 == 0.
  c = Config("hqq", 4, 256);
  c.layer_overrides.push_back({"*_proj", std::nullopt, std::nullopt, std::nullopt, std::nullopt, true});
  c.layer_overrides.push_back({"down_proj", std::nullopt, std::nullopt, std::nullopt, std::nullopt, false});
  EXPECT_THAT(Fields(ValidateQuantization(c, Cpu(), &modules)), ::testing::IsEmpty());
}

TEST(Validate, DeviceProblemsArePreconditions) {
  DeviceCaps cuda;
  cuda.name = "cuda:0";
  cuda.kind = DeviceKind::kCuda;
  cuda.available = false;
  cuda.reason = "this ingotd was built without CUDA";
  const auto problems = ValidateQuantization(Config("hqq"), cuda);
  ASSERT_EQ(problems.size(), 1u);  // the device (what runs there is moot)
  EXPECT_THAT(ProblemsToStatus(problems), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ProblemsToStatus(ValidateQuantization(Config("hqq", 7), Cpu())),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits: method hqq has no 7-bit mode")));
}

TEST(Fallback, FollowsTheTableOrRefuses) {
  DeviceCaps gpu;
  gpu.name = "cuda:0";
  gpu.kind = DeviceKind::kCuda;  // available, but no method has CUDA kernels yet
  QuantizationConfig c = Config("gptq", 4, 128);
  EXPECT_THAT(ApplyFallback(c, gpu), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr("allow_fallback")));
  c.allow_fallback = true;
  // gptq -> hqq -> none: none has no CUDA kernels either, so the chain ends refused.
  EXPECT_THAT(ApplyFallback(c, gpu), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr("gptq -> hqq -> none")));
  // On the CPU nothing changes.
  absl::StatusOr<FallbackResult> same = ApplyFallback(c, Cpu());
  ASSERT_OK(same);
  EXPECT_EQ(same->config.method, "gptq");
  EXPECT_TRUE(same->note.empty());
}

TEST(Plan, DefaultsSkipsGlobsAndOverrides) {
  const auto modules = Modules();
  QuantizationConfig c = Config("bnb");
  std::vector<ModulePlan> plans = PlanModules(c, modules);
  ASSERT_EQ(plans.size(), modules.size());
  EXPECT_EQ(plans.back().method, nullptr);  // lm_head skipped by default
  EXPECT_THAT(plans.back().reason, HasSubstr("lm_head"));
  EXPECT_STREQ(plans[0].method->name, "bitsandbytes");
  EXPECT_EQ(plans[0].params.bits, 4);
  EXPECT_EQ(plans[0].params.group_size, 64);
  EXPECT_TRUE(plans[0].params.double_quant);
  EXPECT_EQ(plans[0].quant_type, "nf4");

  c = Config("hqq", 4, 64);
  c.skip_modules = std::vector<std::string>{};  // quantize the head too
  c.backend_options = {{"iters", "5"}};
  c.layer_overrides.push_back({"blk.1.ffn_down", std::nullopt, 8, 128, std::nullopt, false});
  c.layer_overrides.push_back({"layers.0.self_attn.*", std::string("gguf"), std::nullopt, std::nullopt,
                               std::string("q8_0"), false});
  plans = PlanModules(c, modules);
  EXPECT_STREQ(plans.back().method->name, "hqq");
  EXPECT_EQ(plans.back().params.hqq_iters, 5);
  EXPECT_STREQ(plans[13].method->name, "hqq");  // layers.1 down_proj
  EXPECT_EQ(plans[13].params.bits, 8);
  EXPECT_EQ(plans[13].params.group_size, 128);
  for (int s = 0; s < 4; ++s) {
    EXPECT_STREQ(plans[s].method->name, "gguf");
    EXPECT_EQ(plans[s].gguf_type, GgmlType::kQ8_0);
    EXPECT_EQ(plans[s].params.hqq_iters, 20);  // options belong to the config's method
  }
  EXPECT_STREQ(plans[4].method->name, "hqq");
}

TEST(Glob, MatchesNamesSuffixesAndComponentRuns) {
  const LinearModuleRef m{"model.layers.12.mlp.down_proj", "blk.12.ffn_down", "mlp", 576, 1536};
  for (const char* yes : {"down_proj", "mlp.down_proj", "*.down_proj", "layers.12", "layers.1?.*",
                          "blk.12.*", "ffn_down", "model.layers.12.mlp.down_proj", "*"}) {
    EXPECT_TRUE(ModuleMatches(yes, m)) << yes;
  }
  for (const char* no : {"down", "layers.1", "up_proj", "blk.1.*", "lm_head", "mlp.down_proj.x"}) {
    EXPECT_FALSE(ModuleMatches(no, m)) << no;
  }
}

TEST(Estimate, BitsPerWeightFollowTheLayouts) {
  const auto modules = Modules();
  auto bpw = [&](QuantizationConfig c) {
    return EstimateBitsPerWeight(PlanModules(c, modules)[0], 576, 576);
  };
  EXPECT_NEAR(bpw(Config("bnb")), 4.127, 0.001);  // NF4 + double quant
  QuantizationConfig no_dq = Config("bnb");
  no_dq.double_quant = false;
  EXPECT_DOUBLE_EQ(bpw(no_dq), 4.5);
  EXPECT_DOUBLE_EQ(bpw(Config("hqq", 4, 64)), 4.5);
  EXPECT_NEAR(bpw(Config("bnb", 8)), 8.0 + 32.0 / 576, 1e-9);
  QuantizationConfig q = Config("gguf");
  q.quant_type = "q4_k";
  EXPECT_DOUBLE_EQ(bpw(q), 4.5);
}

TEST(Recommend, PicksTheBestThatFits) {
  const auto modules = Modules();
  int64_t linear = 0;
  for (size_t i = 0; i + 1 < modules.size(); ++i) linear += modules[i].rows * modules[i].cols;
  const int64_t fixed = 30'000'000;
  absl::StatusOr<Recommendation> r = RecommendQuantization(modules, fixed, Cpu(), fixed + linear * 2);
  ASSERT_OK(r);
  EXPECT_EQ(r->config.method, "none");
  r = RecommendQuantization(modules, fixed, Cpu(), fixed + linear * 105 / 100);
  ASSERT_OK(r);
  EXPECT_EQ(r->config.method, "bitsandbytes");
  EXPECT_EQ(r->config.bits, 8);
  r = RecommendQuantization(modules, fixed, Cpu(), fixed + linear * 5 / 10);
  ASSERT_OK(r);
  EXPECT_EQ(r->config.method, "hqq");
  EXPECT_EQ(r->config.bits, 3);
  EXPECT_LE(r->estimated_bytes, fixed + linear * 5 / 10);
  EXPECT_THAT(r->why, HasSubstr("budget"));
  EXPECT_THAT(RecommendQuantization(modules, fixed, Cpu(), fixed),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("no quantization fits")));
}

// Every seed preset names a method of the table and validates on the CPU as it is
// (TORCHAO_INT4's tinygemm math and the GGUF types included), in any case.
TEST(Presets, EachMapsOntoAMethodThatValidates) {
  // Dimensions every preset's groups divide (SmolLM2's 576 does not divide 128 or 256).
  std::vector<LinearModuleRef> modules;
  for (const auto& [name, rows, cols] : {std::tuple<const char*, int64_t, int64_t>{"self_attn.q_proj", 1024, 1024},
                                         {"mlp.up_proj", 2816, 1024}, {"mlp.down_proj", 1024, 2816}}) {
    modules.push_back({std::string("model.layers.0.") + name, "", "attention", rows, cols});
  }
  modules.push_back({"lm_head", "output", "output", 32000, 1024});
  for (const Preset& p : Presets()) {
    SCOPED_TRACE(p.name);
    QuantizationConfig c;
    ASSERT_OK(ApplyPreset(p.name, &c));
    EXPECT_NE(FindMethod(c.method), nullptr);
    EXPECT_EQ(c.method, p.method);
    EXPECT_TRUE(ValidateQuantization(c, Cpu(), &modules).empty())
        << ValidateQuantization(c, Cpu(), &modules)[0].message;
    if (FindMethod(absl::AsciiStrToLower(p.name)) != nullptr) continue;  // "hqq" stays the method
    QuantizationConfig by_method;
    by_method.method = absl::AsciiStrToLower(p.name);  // "-m bnb_nf4"
    ASSERT_OK(ApplyPreset("", &by_method));
    EXPECT_EQ(by_method.method, c.method);
    EXPECT_EQ(by_method.bits, c.bits);
    EXPECT_EQ(by_method.quant_type, c.quant_type);
  }
  QuantizationConfig nf4;
  ASSERT_OK(ApplyPreset("BNB_NF4", &nf4));
  EXPECT_EQ(nf4.method, "bitsandbytes");
  EXPECT_EQ(nf4.bits, 4);
  EXPECT_EQ(nf4.quant_type, "nf4");
  QuantizationConfig plain = Config("hqq", 3);  // a method name stays a method
  ASSERT_OK(ApplyPreset("", &plain));
  EXPECT_EQ(plain.method, "hqq");
}

TEST(Presets, ConflictsAndUnknownNamesAreRefusedByName) {
  QuantizationConfig c = Config("hqq");
  EXPECT_THAT(ApplyPreset("BNB_NF4", &c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hqq")));
  c = Config("", 8);
  EXPECT_THAT(ApplyPreset("MLX_INT4", &c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits is 8")));
  c = Config("bitsandbytes", 4, 128);  // unset fields only: the group stays the caller's
  ASSERT_OK(ApplyPreset("bnb_fp4", &c));
  EXPECT_EQ(c.group_size, 128);
  EXPECT_EQ(c.quant_type, "fp4");
  EXPECT_THAT(ApplyPreset("BNB_NF5", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("QUANTO_INT2")));
  EXPECT_THAT(ParsePurpose("speed"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_quality")));
}

// The decision tree: each purpose's first choice when it fits, the next when it does
// not, every step said.
TEST(Presets, DecisionTreeByPurposeAndBudget) {
  const auto modules = Modules();
  int64_t linear = 0;
  for (size_t i = 0; i + 1 < modules.size(); ++i) linear += modules[i].rows * modules[i].cols;
  const int64_t fixed = 30'000'000;
  auto pick = [&](Purpose p, int64_t budget) -> std::string {
    absl::StatusOr<PresetRecommendation> r = RecommendPreset(modules, fixed, Cpu(), budget, p);
    if (!r.ok()) return std::string(r.status().message());
    EXPECT_FALSE(r->steps.empty());
    EXPECT_LE(r->recommendation.estimated_bytes, budget);
    return r->preset;
  };
  const int64_t roomy = fixed + linear * 4;
  EXPECT_EQ(pick(Purpose::kFineTuning, roomy), "BNB_NF4");
  EXPECT_EQ(pick(Purpose::kMaxQuality, roomy), "NONE");
  EXPECT_EQ(pick(Purpose::kMaxQuality, fixed + linear * 105 / 100), "BNB_INT8");
  EXPECT_EQ(pick(Purpose::kMinMemory, roomy), "QUANTO_INT2");
  EXPECT_EQ(pick(Purpose::kInference, roomy), "GGUF_Q8_0");
  // Q6_K and Q4_K need rows of 256 inputs; SmolLM2's 576 are not: Q4_0 is next.
  EXPECT_EQ(pick(Purpose::kInference, fixed + linear * 6 / 10), "GGUF_Q4_0");
  EXPECT_THAT(pick(Purpose::kFineTuning, fixed + linear * 4 / 10), HasSubstr("BNB_NF4: "));
  absl::StatusOr<PresetRecommendation> r =
      RecommendPreset(modules, fixed, Cpu(), fixed + linear * 6 / 10, Purpose::kInference);
  ASSERT_OK(r);
  EXPECT_THAT(r->steps[1], HasSubstr("GGUF_Q8_0"));
  EXPECT_THAT(r->steps[1], HasSubstr("> budget"));
  EXPECT_THAT(r->steps[2], HasSubstr("not a multiple of 256"));
  EXPECT_EQ(r->recommendation.config.quant_type, "q4_0");
}

}  // namespace
}  // namespace ingot::quant
