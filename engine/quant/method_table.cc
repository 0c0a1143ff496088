// The method table: one row per method (method.h says what each field means).
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/quant/config.h"
#include "engine/quant/method.h"

namespace ingot::quant {
namespace {

bool ParseBool(const std::string& v, bool* out) {
  const std::string s = absl::AsciiStrToLower(v);
  if (s == "1" || s == "true" || s == "yes" || s == "on") { *out = true; return true; }
  if (s == "0" || s == "false" || s == "no" || s == "off") { *out = false; return true; }
  return false;
}

// Option constructors, so that a row reads as key, range, destination.
OptionSpec Int(const char* key, int32_t lo, int32_t hi, void (*set)(MethodParams&, double)) {
  return {.key = key, .type = OptionType::kInt, .min = static_cast<double>(lo), .max = static_cast<double>(hi),
          .has_min = true, .has_max = true, .set = set};
}
OptionSpec Float(const char* key, double lo, bool lo_open, void (*set)(MethodParams&, double)) {
  return {.key = key, .type = OptionType::kFloat, .min = lo, .has_min = true, .min_open = lo_open, .set = set};
}
OptionSpec FloatIn(const char* key, double lo, bool lo_open, double hi, bool hi_open,
                   void (*set)(MethodParams&, double)) {
  return {.key = key, .type = OptionType::kFloat, .min = lo, .max = hi, .has_min = true, .has_max = true,
          .min_open = lo_open, .max_open = hi_open, .set = set};
}
OptionSpec Bool(const char* key, void (*set)(MethodParams&, double)) {
  return {.key = key, .type = OptionType::kBool, .set = set};
}

// Bits implied by a quant_type.
int32_t TorchaoBits(const std::string& qt) { return qt == "int4_weight_only" ? 4 : 8; }
int32_t GgufBits(const std::string& qt) {
  return qt.size() >= 2 && qt[0] == 'q' && std::isdigit(static_cast<unsigned char>(qt[1])) ? qt[1] - '0' : 0;
}
int32_t DenseBits(const std::string& qt) { return qt == "f32" ? 32 : 16; }
GgmlType GgufType(const std::string& qt) { return ParseGgmlTypeName(qt).value_or(GgmlType::kQ4_0); }
GgmlType DenseType(const std::string& qt) { return ParseGgmlTypeName(qt).value_or(GgmlType::kF16); }

double GgmlBitsPerWeight(const ModulePlan& plan, int64_t) {
  const auto& t = GetGgmlTypeTraits(plan.gguf_type);
  return 8.0 * static_cast<double>(t.type_size) / static_cast<double>(t.block_size);
}
// 4-bit codes + the absmax per block (f32, or u8 codes + an f32 per 256 blocks); LLM.int8
// as affine rows.
double BnbBitsPerWeight(const ModulePlan& plan, int64_t cols) {
  const MethodParams& p = plan.params;
  if (p.bits != 4) return static_cast<double>(p.bits) + 32.0 / static_cast<double>(p.group_size > 0 ? p.group_size : cols);
  const double block = static_cast<double>(p.group_size);
  return p.double_quant ? 4.0 + 8.0 / block + 32.0 / (block * 256.0) : 4.0 + 32.0 / block;
}

// The rows' quantize functions. Methods with one quantizer over the plan's params:
using ParamsQuantizer = absl::StatusOr<QuantizedWeight> (*)(const float*, int64_t, int64_t, const MethodParams&);
template <ParamsQuantizer F>
absl::StatusOr<QuantizedWeight> WithParams(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                           const CalibrationStats*) {
  return F(w, rows, cols, plan.params);
}
// The rest pick the method's variant from the plan.
absl::StatusOr<QuantizedWeight> Bnb(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                    const CalibrationStats*) {
  return plan.params.bits == 8 ? QuantizeBnbInt8(w, rows, cols, plan.params) : QuantizeBnb4(w, rows, cols, plan.params);
}
absl::StatusOr<QuantizedWeight> Torchao(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                        const CalibrationStats*) {
  if (plan.quant_type == "int4_weight_only") return QuantizeTorchaoInt4(w, rows, cols, plan.params);
  return QuantizeTorchaoInt8(w, rows, cols, plan.quant_type == "int8_dynamic", plan.params);
}
absl::StatusOr<QuantizedWeight> Gptq(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                     const CalibrationStats* calib) {
  if (calib == nullptr || calib->hessian.empty()) {
    return absl::FailedPreconditionError("GPTQ needs calibration statistics");
  }
  return QuantizeGptq(w, rows, cols, *calib, plan.params);
}
absl::StatusOr<QuantizedWeight> Gguf(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                     const CalibrationStats*) {
  return QuantizeGguf(w, rows, cols, plan.gguf_type);
}
absl::StatusOr<QuantizedWeight> Dense(const ModulePlan& plan, const float* w, int64_t rows, int64_t cols,
                                      const CalibrationStats*) {
  return QuantizeDense(w, rows, cols, plan.gguf_type);
}

}  // namespace

bool ApplyOption(const OptionSpec& spec, const std::string& value, MethodParams* params) {
  double v = 0;
  switch (spec.type) {
    case OptionType::kBool: {
      bool b = false;
      if (!ParseBool(value, &b)) return false;
      v = b ? 1 : 0;
      break;
    }
    case OptionType::kInt: {
      int32_t i = 0;
      if (!absl::SimpleAtoi(value, &i)) return false;
      v = i;
      break;
    }
    case OptionType::kFloat: {
      float f = 0;
      if (!absl::SimpleAtof(value, &f)) return false;
      v = f;
      break;
    }
  }
  if (spec.has_min && (spec.min_open ? v <= spec.min : v < spec.min)) return false;
  if (spec.has_max && (spec.max_open ? v >= spec.max : v > spec.max)) return false;
  spec.set(*params, v);
  return true;
}

std::string OptionHint(const OptionSpec& spec) {
  if (spec.type == OptionType::kBool) return absl::StrCat(spec.key, ": true|false");
  const char* what = spec.type == OptionType::kInt ? "an integer" : "a number";
  if (spec.has_min && spec.has_max) {
    return absl::StrCat(spec.key, ": ", what, " in ", spec.min_open ? "(" : "[", spec.min, ", ", spec.max,
                        spec.max_open ? ")" : "]");
  }
  if (spec.has_min) return absl::StrCat(spec.key, ": ", what, spec.min_open ? " > " : " >= ", spec.min);
  return absl::StrCat(spec.key, ": ", what);
}

const std::vector<MethodRow>& MethodTable() {
  // runs_on_cuda stays false until kernels/cuda has the representation's kernels.
  static const std::vector<MethodRow> table = {
      {.name = "none",
       .description = "dense weights (f32/f16/bf16)",
       .aliases = {"fp16", "dense"},
       .bits = {16, 32}, .default_bits = 16,
       .group_sizes = {}, .default_group = 0,
       .quant_types = {"f16", "bf16", "f32"},
       .implied_bits = DenseBits,
       .ggml_type = DenseType,
       .bits_per_weight = GgmlBitsPerWeight,
       .quantize = Dense,
       .can_load = true},
      {.name = "bitsandbytes",
       .description = "bitsandbytes 4-bit NF4/FP4 blocks (double-quantized absmax) or LLM.int8",
       .aliases = {"bnb"},
       .bits = {4, 8}, .default_bits = 4,
       .group_sizes = {32, 64, 128, 256, 512, 1024, 2048, 4096}, .default_group = 64,
       .quant_types = {"nf4", "fp4"},
       .options = {Float("threshold", 0, false, [](MethodParams& p, double v) { p.int8_threshold = static_cast<float>(v); })},
       .fallback = "hqq",
       .per_row_bits = 8,
       .double_quant = true,
       .bits_per_weight = BnbBitsPerWeight,
       .quantize = Bnb,
       .can_load = true},
      {.name = "hqq",
       .description = "Half-Quadratic Quantization: affine groups, zero/scale by a proximal solver",
       .bits = {1, 2, 3, 4, 8}, .default_bits = 4,
       .group_sizes = {16, 32, 64, 128, 256}, .default_group = 64,
       .options = {Int("axis", 0, 1, [](MethodParams& p, double v) { p.hqq_axis = static_cast<int32_t>(v); }),
                   Int("iters", 0, 1000, [](MethodParams& p, double v) { p.hqq_iters = static_cast<int32_t>(v); }),
                   FloatIn("lp_norm", 0, true, 2, false, [](MethodParams& p, double v) { p.hqq_lp_norm = static_cast<float>(v); }),
                   Float("beta", 0, true, [](MethodParams& p, double v) { p.hqq_beta = static_cast<float>(v); }),
                   Float("kappa", 1, false, [](MethodParams& p, double v) { p.hqq_kappa = static_cast<float>(v); }),
                   Bool("optimize", [](MethodParams& p, double v) { p.hqq_optimize = v != 0; }),
                   Bool("quant_zero", [](MethodParams& p, double v) { p.hqq_quant_zero = v != 0; }),
                   Bool("quant_scale", [](MethodParams& p, double v) { p.hqq_quant_scale = v != 0; })},
       .fallback = "none",
       .quantize = WithParams<QuantizeHqq>,
       .can_load = true},
      {.name = "quanto",
       .description = "optimum-quanto int2/int4 affine groups, int8 symmetric per channel",
       .aliases = {"optimum-quanto"},
       .bits = {2, 4, 8}, .default_bits = 4,
       .group_sizes = {32, 64, 128}, .default_group = 128,
       .fallback = "hqq",
       .per_row_bits = 8,
       .quantize = WithParams<QuantizeQuanto>,
       .can_load = true},
      {.name = "torchao",
       .description = "torchao int8/int4 weight-only and int8 dynamic activation",
       .bits = {4, 8}, .default_bits = 8,
       .group_sizes = {32, 64, 128, 256}, .default_group = 128,
       .quant_types = {"int8_weight_only", "int4_weight_only", "int8_dynamic"},
       .fallback = "hqq",
       .grouped_quant_type = "int4_weight_only",
       .implied_bits = TorchaoBits,
       .quantize = Torchao,
       .can_load = false},
      {.name = "mlx",
       .description = "MLX affine groups (scale + bias)",
       .bits = {4, 8}, .default_bits = 4,
       .group_sizes = {32, 64, 128}, .default_group = 64,
       .fallback = "hqq",
       .quantize = WithParams<QuantizeMlx>,
       .can_load = true},
      {.name = "gptq",
       .description = "GPTQ: Hessian-compensated affine groups from calibration text",
       .bits = {2, 3, 4, 8}, .default_bits = 4,
       .group_sizes = {32, 64, 128}, .default_group = 128,
       .options = {FloatIn("damp", 0, true, 1, true, [](MethodParams& p, double v) { p.gptq_damp = static_cast<float>(v); }),
                   Bool("act_order", [](MethodParams& p, double v) { p.gptq_act_order = v != 0; }),
                   Bool("true_sequential", [](MethodParams& p, double v) { p.gptq_true_sequential = v != 0; }),
                   Bool("sym", [](MethodParams& p, double v) { p.symmetric = v != 0; })},
       .calibration = Calibration::kHessian,
       .fallback = "hqq",
       .quantize = Gptq,
       .can_load = true},
      {.name = "awq",
       .description = "AWQ: activation-aware scaled affine groups from calibration text",
       .bits = {4}, .default_bits = 4,
       .group_sizes = {32, 64, 128}, .default_group = 128,
       .options = {Int("grid", 1, 100, [](MethodParams& p, double v) { p.awq_grid = static_cast<int32_t>(v); }),
                   Bool("duo_scaling", [](MethodParams& p, double v) { p.awq_duo_scaling = v != 0; }),
                   Bool("clip", [](MethodParams& p, double v) { p.awq_clip = v != 0; })},
       .calibration = Calibration::kInputScales,
       .fallback = "hqq",
       .quantize = WithParams<QuantizeAffineRtn>,  // scales folded in by QuantizeLlama
       .can_load = true},
      {.name = "gguf",
       .description = "GGUF block types, bytes as llama.cpp's quantizers",
       .bits = {2, 3, 4, 5, 6, 8}, .default_bits = 4,
       .group_sizes = {}, .default_group = 0,
       .quant_types = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"},
       .fallback = "hqq",
       .implied_bits = GgufBits,
       .ggml_type = GgufType,
       .bits_per_weight = GgmlBitsPerWeight,
       .quantize = Gguf,
       .can_load = true},
  };
  return table;
}

const MethodRow* FindMethod(const std::string& raw) {
  const std::string name = absl::AsciiStrToLower(raw);
  for (const MethodRow& row : MethodTable()) {
    if (name == row.name) return &row;
    for (const std::string& alias : row.aliases) {
      if (name == alias) return &row;
    }
  }
  return nullptr;
}

std::vector<std::string> MethodNames() {
  std::vector<std::string> names;
  for (const MethodRow& row : MethodTable()) names.push_back(row.name);
  return names;
}

bool MethodRunsOn(const MethodRow& row, DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu: return row.runs_on_cpu;
    case DeviceKind::kCuda: return row.runs_on_cuda;
    case DeviceKind::kMps:
    case DeviceKind::kMlx: return false;
  }
  return false;
}

std::optional<GgmlType> ParseGgmlTypeName(const std::string& raw) {
  const std::string name = absl::AsciiStrToLower(raw);
  for (uint32_t t = 0; t < 64; ++t) {
    const auto& traits = GetGgmlTypeTraits(t);
    if (traits.name != nullptr && traits.supported && name == absl::AsciiStrToLower(traits.name)) {
      return static_cast<GgmlType>(t);
    }
  }
  return std::nullopt;
}

}  // namespace ingot::quant
