// The seed documents' preset names for quantization (BNB_NF4, HQQ, MLX_INT4, ...), each
// one row mapping onto a method of the table (method.h) with its bits, quant_type and
// group, and the decision tree that recommends one for a purpose, a device and a
// memory budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/quant/config.h"

namespace ingot::quant {

struct Preset {
  const char* name;        // "BNB_NF4"
  const char* method;      // a method row's name
  int32_t bits;            // 0: the method's default
  const char* quant_type;  // "" when the method has none
  int64_t group_size;      // 0: the method's default
  const char* what;        // one line for listings and explanations
};

// Every preset, in the order listings show them.
const std::vector<Preset>& Presets();
// Case-insensitive ("bnb_nf4" too); nullptr when unknown.
const Preset* FindPreset(const std::string& name);

// Applies `preset` (or, with `preset` empty, a preset name given as `config->method`) to
// the config: method, bits, quant_type and group_size come from the preset where the
// config leaves them unset (0 / empty); a method, bits or quant_type set to something
// else is INVALID_ARGUMENT naming both. Unknown preset: INVALID_ARGUMENT listing them.
absl::Status ApplyPreset(const std::string& preset, QuantizationConfig* config);

enum class Purpose { kInference, kFineTuning, kMinMemory, kMaxQuality };
// "inference", "fine_tuning", "min_memory", "max_quality" ("" = inference).
absl::StatusOr<Purpose> ParsePurpose(const std::string& name);
const char* PurposeName(Purpose p);

// The decision tree for `purpose` over the model's modules: each step it took is in
// `steps`, the chosen preset in `preset` (config and bytes as RecommendQuantization).
struct PresetRecommendation {
  Recommendation recommendation;
  std::string preset;
  std::vector<std::string> steps;
};
absl::StatusOr<PresetRecommendation> RecommendPreset(const std::vector<LinearModuleRef>& modules, int64_t fixed_bytes,
                                                     const DeviceCaps& device, int64_t budget_bytes,
                                                     Purpose purpose);

}  // namespace ingot::quant
