// The method table (DESIGN.md decision 2): one row per quantization method, in the
// style of ggml's type_traits, holding everything that varies by method — names, bit
// widths, group sizes, devices, the typed backend options with their ranges, and the
// functions (quantize here; the checkpoint layout's detect/read/write through `layout`).
// Validation, recommendation, fallback, the capability listing, QuantizeModel's dispatch,
// checkpoint detection, load and SaveModel all read these rows; nothing else names a
// method. Adding a method is one row here plus its quantizer (engine/quant/<method>.cc)
// and, when it has an on-disk layout, one codec (engine/formats/layouts/<layout>.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/quant/quantizers.h"
#include "kernels/device.h"
#include "kernels/ggml_types.h"

namespace ingot::formats {
struct Layout;  // engine/formats/layouts/layout.h
}

namespace ingot::quant {

struct ModulePlan;  // config.h

// The devices a method row speaks of (kernels/device.h).
using kernels::DeviceKind;
using kernels::DeviceKindName;

// One backend_options key: its type and range (the hint a user sees is generated from
// these, never typed again) and where a valid value goes.
enum class OptionType { kInt, kFloat, kBool };
struct OptionSpec {
  const char* key;
  OptionType type;
  double min = 0, max = 0;        // numbers: the range (kBool: unused)
  bool has_min = false, has_max = false;
  bool min_open = false, max_open = false;  // (min, ...) / (..., max)
  void (*set)(MethodParams& params, double value);  // kBool: 0 or 1
};
// Parses `value` for `spec` into `params`; false when it is not of the type or in range.
bool ApplyOption(const OptionSpec& spec, const std::string& value, MethodParams* params);
// "axis: an integer in [0, 1]", "lp_norm: a number in (0, 2]", "optimize: true|false".
std::string OptionHint(const OptionSpec& spec);

// What a method's quantization feeds on besides the weight.
enum class Calibration {
  kNone,
  kHessian,      // GPTQ: x x^T of each linear's inputs
  kInputScales,  // AWQ: mean |x| per input feature; scales folded into the producer
};

using QuantizeFn = absl::StatusOr<QuantizedWeight> (*)(const ModulePlan& plan, const float* w,
                                                        int64_t rows, int64_t cols,
                                                        const CalibrationStats* calib);

struct MethodRow {
  const char* name;
  const char* description;
  std::vector<std::string> aliases;   // other spellings users type ("bnb")
  std::vector<int32_t> bits;          // supported bit widths
  int32_t default_bits;
  std::vector<int64_t> group_sizes;   // supported; empty: a fixed block layout
  int64_t default_group;
  std::vector<std::string> quant_types;  // allowed quant_type values (first = default); empty: none
  std::vector<OptionSpec> options;       // backend_options
  Calibration calibration = Calibration::kNone;
  bool runs_on_cpu = true;
  bool runs_on_cuda = false;  // with the CUDA kernels of kernels/cuda
  const char* fallback = "";  // nearest method when this one cannot run on a device ("" = none)
  // The bit width that quantizes whole rows and takes no quant_type or double quant
  // (bitsandbytes LLM.int8, quanto int8); 0: none.
  int32_t per_row_bits = 0;
  // The quant_type that quantizes in groups; every other one is per row (torchao:
  // int4_weight_only). nullptr: quant_type does not decide.
  const char* grouped_quant_type = nullptr;
  bool double_quant = false;  // takes QuantizationConfig::double_quant (bitsandbytes 4-bit)
  // Bits a quant_type fixes (torchao, gguf, none), 0 if none; nullptr: quant_type never does.
  int32_t (*implied_bits)(const std::string& quant_type) = nullptr;
  // GGML-typed methods (gguf, none): the block type of a quant_type ("" = the default).
  GgmlType (*ggml_type)(const std::string& quant_type) = nullptr;
  // Storage bits per weight of a plan; nullptr: affine codes + f16 scale and zero per group.
  double (*bits_per_weight)(const ModulePlan& plan, int64_t cols) = nullptr;
  QuantizeFn quantize = nullptr;
  // The on-disk layout checkpoints of this method load from and save to
  // (engine/formats/layouts); nullptr: none. `can_load`: checkpoints of this method load
  // (through `layout`, or a container of its own such as GGUF).
  const formats::Layout* layout = nullptr;
  bool can_load = false;
};

const std::vector<MethodRow>& MethodTable();
// By name or alias, any case ("bnb" -> bitsandbytes); nullptr if unknown.
const MethodRow* FindMethod(const std::string& name);
bool MethodRunsOn(const MethodRow& row, DeviceKind kind);
// The row's names as a user may type them, for "use one of: ..." fixes.
std::vector<std::string> MethodNames();

}  // namespace ingot::quant
