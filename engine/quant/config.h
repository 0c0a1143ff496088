// QuantizationConfig as users of bitsandbytes/HQQ/transformers know it, and what reads
// it against the method table (method.h): validation and fallback (validate.cc),
// per-module plans, size estimates and recommendation (plan.cc).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/device.h"
#include "engine/model/module.h"
#include "engine/quant/method.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {

// Per layer name or glob: what differs from the config's defaults.
struct LayerOverride {
  std::string pattern;
  std::optional<std::string> method;
  std::optional<int32_t> bits;
  std::optional<int64_t> group_size;
  std::optional<std::string> quant_type;
  bool skip = false;
};

struct QuantizationConfig {
  std::string method;          // "bitsandbytes", "hqq", "quanto", "torchao", "mlx", "gptq", "awq", "gguf", "none"
  int32_t bits = 0;            // 0: the method's default
  int64_t group_size = 0;      // 0: the method's default (bitsandbytes: blocksize)
  std::string compute_dtype;   // "", "float32", "float16", "bfloat16"
  std::optional<bool> double_quant;  // bitsandbytes 4-bit; default true
  std::string quant_type;      // bitsandbytes: nf4|fp4; torchao: int8_weight_only|int4_weight_only|int8_dynamic; gguf: q4_0..q6_k; none: f32|f16|bf16
  std::optional<std::vector<std::string>> skip_modules;  // default: {"lm_head"}
  std::vector<LayerOverride> layer_overrides;
  std::map<std::string, std::string> backend_options;  // axis, iters, quant_zero, quant_scale, threshold, damp, act_order, sym, ...
  bool allow_fallback = false;  // replace a method the device cannot run by the nearest one that can
  std::string calibration_file;  // GPTQ/AWQ; empty: the shipped text
  int32_t calibration_tokens = 0;  // 0: default (2048)
};

// What a device can do right now (engine/runtime/device.h ResolveDevice makes these).
struct DeviceCaps {
  kernels::Device device;
  std::string name;   // "cpu", "cuda:0"
  DeviceKind kind = DeviceKind::kCpu;
  bool available = true;
  std::string reason;  // why not available
};

// One problem found in a config, with the fix.
struct ConfigProblem {
  std::string field;    // "bits", "group_size", "layer_overrides[1].pattern", ...
  std::string message;
  std::string fix;
  bool precondition = false;  // the device, not the request, is at fault
};

// Every problem with `config` for `device` (and, when given, the model's modules: group
// sizes dividing rows, globs matching something). Empty: valid.
std::vector<ConfigProblem> ValidateQuantization(const QuantizationConfig& config,
                                                const DeviceCaps& device,
                                                const std::vector<LinearModuleRef>* modules = nullptr);
// INVALID_ARGUMENT (or FAILED_PRECONDITION for device problems) listing the problems.
absl::Status ProblemsToStatus(const std::vector<ConfigProblem>& problems);

// Config with a method that cannot run on the device replaced by the table's fallback
// chain when allow_fallback; `note` says what was used instead and why.
struct FallbackResult {
  QuantizationConfig config;
  std::string note;  // empty when nothing changed
};
absl::StatusOr<FallbackResult> ApplyFallback(const QuantizationConfig& config,
                                             const DeviceCaps& device);

// What one module gets.
struct ModulePlan {
  const MethodRow* method = nullptr;  // nullptr: skipped (kept as loaded)
  MethodParams params;
  std::string quant_type;
  GgmlType gguf_type = GgmlType::kF32;  // gguf / none
  std::string reason;  // why skipped ("skip_modules: lm_head")
};
// Resolves defaults, overrides and skips for each module (config already validated).
std::vector<ModulePlan> PlanModules(const QuantizationConfig& config,
                                    const std::vector<LinearModuleRef>& modules);

// Bits per weight a plan costs for a (rows, cols) matrix, from the representation's
// layout (codes + scales/zeros/absmax).
double EstimateBitsPerWeight(const ModulePlan& plan, int64_t rows, int64_t cols);

// A config that fits `budget_bytes` for the whole model (weights of the modules plus
// `fixed_bytes` that quantization does not touch: embeddings, norms, skipped modules),
// preferring quality; `why` explains the choice. RESOURCE_EXHAUSTED when nothing fits.
struct Recommendation {
  QuantizationConfig config;
  int64_t estimated_bytes = 0;
  std::string why;
};
// Bytes of the model's weights under `config` (plans per module; skipped modules and
// everything not a layer's linear are in `fixed_bytes`).
int64_t EstimateConfigBytes(const QuantizationConfig& config, const std::vector<LinearModuleRef>& modules,
                            int64_t fixed_bytes);
absl::StatusOr<Recommendation> RecommendQuantization(const std::vector<LinearModuleRef>& modules,
                                                     int64_t fixed_bytes,
                                                     const DeviceCaps& device,
                                                     int64_t budget_bytes);

// Glob match for module names: '*' any run, '?' one char. A pattern matches a module
// when it matches the whole HF or GGUF name, or a dotted suffix of it
// ("down_proj", "self_attn.*", "layers.0.*", "blk.0.*").
bool ModuleMatches(const std::string& pattern, const LinearModuleRef& module);

struct QuantizeProgress {
  std::string stage;   // "calibrate", "quantize", "done"
  int32_t step = 0;    // modules done
  int32_t total = 0;   // modules to do
  std::string module;  // the module just finished
  std::string method;
  double elapsed_s = 0;
};

// GGML type from a user's spelling ("q4_k", "Q4_K", "f16"); nullopt if unknown.
std::optional<GgmlType> ParseGgmlTypeName(const std::string& name);

}  // namespace ingot::quant
