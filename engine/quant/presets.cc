#include "engine/quant/presets.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ingot::quant {

const std::vector<Preset>& Presets() {
  static const std::vector<Preset> kPresets = {
      {"NONE", "none", 16, "f16", 0, "no quantization (f16 weights)"},
      {"BNB_NF4", "bitsandbytes", 4, "nf4", 64, "bitsandbytes NF4, double-quantized absmax (QLoRA)"},
      {"BNB_FP4", "bitsandbytes", 4, "fp4", 64, "bitsandbytes FP4, double-quantized absmax"},
      {"BNB_INT8", "bitsandbytes", 8, "", 0, "bitsandbytes LLM.int8 (int8 rows, outliers kept)"},
      {"HQQ", "hqq", 4, "", 64, "HQQ 4-bit, groups of 64, no calibration"},
      {"MLX_INT4", "mlx", 4, "", 64, "MLX affine 4-bit, groups of 64"},
      {"MLX_INT8", "mlx", 8, "", 64, "MLX affine 8-bit, groups of 64"},
      {"QUANTO_INT2", "quanto", 2, "", 64, "optimum-quanto int2, groups of 64"},
      {"QUANTO_INT4", "quanto", 4, "", 128, "optimum-quanto int4, groups of 128"},
      {"QUANTO_INT8", "quanto", 8, "", 0, "optimum-quanto int8, per row"},
      {"TORCHAO_INT8", "torchao", 8, "int8_weight_only", 0, "torchao int8 weight-only, per row"},
      {"TORCHAO_INT8_DYNAMIC", "torchao", 8, "int8_dynamic", 0, "torchao int8 weights, int8 activations per token"},
      {"TORCHAO_INT4", "torchao", 4, "int4_weight_only", 128, "torchao int4 weight-only (tinygemm), groups of 128"},
      {"GPTQ", "gptq", 4, "", 128, "GPTQ 4-bit, groups of 128 (calibrated)"},
      {"AWQ", "awq", 4, "", 128, "AWQ 4-bit, groups of 128 (calibrated)"},
      {"GGUF_Q8_0", "gguf", 0, "q8_0", 0, "llama.cpp Q8_0 (8.5 bits per weight)"},
      {"GGUF_Q6_K", "gguf", 0, "q6_k", 0, "llama.cpp Q6_K (6.56 bits per weight)"},
      {"GGUF_Q5_K", "gguf", 0, "q5_k", 0, "llama.cpp Q5_K (5.5 bits per weight)"},
      {"GGUF_Q4_K", "gguf", 0, "q4_k", 0, "llama.cpp Q4_K (4.5 bits per weight)"},
      {"GGUF_Q4_1", "gguf", 0, "q4_1", 0, "llama.cpp Q4_1 (5 bits per weight)"},
      {"GGUF_Q4_0", "gguf", 0, "q4_0", 0, "llama.cpp Q4_0 (4.5 bits per weight)"},
      {"GGUF_Q3_K", "gguf", 0, "q3_k", 0, "llama.cpp Q3_K (3.44 bits per weight)"},
      {"GGUF_Q2_K", "gguf", 0, "q2_k", 0, "llama.cpp Q2_K (2.63 bits per weight)"},
  };
  return kPresets;
}

const Preset* FindPreset(const std::string& name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  for (const Preset& p : Presets()) {
    if (upper == p.name) return &p;
  }
  return nullptr;
}

absl::Status ApplyPreset(const std::string& preset_name, QuantizationConfig* config) {
  std::string name = preset_name;
  if (name.empty()) {
    // A preset given where the method goes ("-m BNB_NF4"); method names stay methods.
    if (FindMethod(config->method) != nullptr || FindPreset(config->method) == nullptr) return absl::OkStatus();
    name = config->method;
    config->method.clear();
  }
  const Preset* p = FindPreset(name);
  if (p == nullptr) {
    std::vector<std::string> names;
    for (const Preset& q : Presets()) names.push_back(q.name);
    return absl::InvalidArgumentError(
        absl::StrCat("preset: '", name, "' is not one of ", absl::StrJoin(names, ", ")));
  }
  const MethodRow* preset_method = FindMethod(p->method);
  if (!config->method.empty() && FindMethod(config->method) != preset_method) {
    return absl::InvalidArgumentError(absl::StrCat("preset: ", p->name, " is method ", p->method,
                                                   ", but method is '", config->method, "'"));
  }
  if (config->bits != 0 && p->bits != 0 && config->bits != p->bits) {
    return absl::InvalidArgumentError(
        absl::StrCat("preset: ", p->name, " is ", p->bits, "-bit, but bits is ", config->bits));
  }
  if (!config->quant_type.empty() && *p->quant_type != '\0' &&
      absl::AsciiStrToLower(config->quant_type) != p->quant_type) {
    return absl::InvalidArgumentError(absl::StrCat("preset: ", p->name, " is quant_type ", p->quant_type,
                                                   ", but quant_type is '", config->quant_type, "'"));
  }
  config->method = p->method;
  if (config->bits == 0) config->bits = p->bits;
  if (config->quant_type.empty()) config->quant_type = p->quant_type;
  if (config->group_size == 0) config->group_size = p->group_size;
  return absl::OkStatus();
}

absl::StatusOr<Purpose> ParsePurpose(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n.empty() || n == "inference") return Purpose::kInference;
  if (n == "fine_tuning" || n == "finetuning") return Purpose::kFineTuning;
  if (n == "min_memory") return Purpose::kMinMemory;
  if (n == "max_quality") return Purpose::kMaxQuality;
  return absl::InvalidArgumentError(
      absl::StrCat("purpose: '", name, "' is not inference, fine_tuning, min_memory or max_quality"));
}

const char* PurposeName(Purpose p) {
  switch (p) {
    case Purpose::kInference: return "inference";
    case Purpose::kFineTuning: return "fine_tuning";
    case Purpose::kMinMemory: return "min_memory";
    case Purpose::kMaxQuality: return "max_quality";
  }
  return "?";
}

absl::StatusOr<PresetRecommendation> RecommendPreset(const std::vector<LinearModuleRef>& modules, int64_t fixed_bytes,
                                                     const DeviceCaps& device, int64_t budget_bytes,
                                                     Purpose purpose) {
  PresetRecommendation out;
  std::vector<std::string>& steps = out.steps;
  const bool cuda = device.kind == DeviceKind::kCuda;
  // The tree's first branch is the purpose; each branch lists presets best first, and
  // the first that runs on the device, validates for this model and fits is taken.
  std::vector<const char*> order;
  switch (purpose) {
    case Purpose::kFineTuning:
      steps.push_back("purpose fine_tuning: QLoRA trains LoRA adapters over frozen NF4 weights with "
                      "double-quantized absmax (bitsandbytes), the layout PEFT trainers load");
      order = {"BNB_NF4"};
      break;
    case Purpose::kMaxQuality:
      steps.push_back("purpose max_quality: the most bits that fit: dense, then 8-bit, then 4-bit with "
                      "small groups, then fewer bits");
      order = {"NONE", "BNB_INT8", "GGUF_Q8_0", "GGUF_Q6_K", "HQQ", "BNB_NF4", "GGUF_Q3_K", "QUANTO_INT2"};
      break;
    case Purpose::kMinMemory:
      steps.push_back("purpose min_memory: the fewest bytes whatever the quality loss: 2-bit first");
      order = {"QUANTO_INT2", "GGUF_Q2_K", "GGUF_Q3_K", "GGUF_Q4_0", "HQQ"};
      break;
    case Purpose::kInference:
      if (cuda) {
        steps.push_back(absl::StrCat("purpose inference on ", device.name,
                                     ": torchao's int8/int4 weight-only layouts (libtorch kernels), "
                                     "8-bit when it fits"));
        order = {"TORCHAO_INT8", "TORCHAO_INT4", "HQQ", "BNB_NF4", "QUANTO_INT2"};
      } else {
        steps.push_back(absl::StrCat("purpose inference on ", device.name,
                                     ": GGUF blocks, which run on ingot's int8 dot-product kernels "
                                     "(the fastest CPU path), the most bits that fit"));
        order = {"GGUF_Q8_0", "GGUF_Q6_K", "GGUF_Q4_K", "GGUF_Q4_0", "GGUF_Q3_K", "GGUF_Q2_K"};
      }
      break;
  }
  for (const char* name : order) {
    const Preset* p = FindPreset(name);
    QuantizationConfig config;
    if (absl::Status s = ApplyPreset(p->name, &config); !s.ok()) return s;
    const MethodRow* row = FindMethod(config.method);
    if (row == nullptr || !MethodRunsOn(*row, device.kind)) {
      steps.push_back(absl::StrCat(p->name, ": skipped, ", config.method, " does not run on ", device.name));
      continue;
    }
    if (const std::vector<ConfigProblem> problems = ValidateQuantization(config, device, &modules);
        !problems.empty()) {
      steps.push_back(absl::StrCat(p->name, ": skipped, ", problems[0].field, ": ", problems[0].message));
      continue;
    }
    const int64_t est = EstimateConfigBytes(config, modules, fixed_bytes);
    if (est > budget_bytes) {
      steps.push_back(absl::StrCat(p->name, ": ", est, " bytes > budget ", budget_bytes));
      continue;
    }
    steps.push_back(absl::StrCat(p->name, ": ", est, " bytes <= budget ", budget_bytes, ": chosen (", p->what, ")"));
    out.preset = p->name;
    out.recommendation.config = config;
    out.recommendation.estimated_bytes = est;
    out.recommendation.why = absl::StrJoin(steps, "; ");
    return out;
  }
  return absl::ResourceExhaustedError(absl::StrCat("no preset for ", PurposeName(purpose), " fits ", budget_bytes,
                                                   " bytes on ", device.name, ": ", absl::StrJoin(steps, "; ")));
}

}  // namespace ingot::quant
