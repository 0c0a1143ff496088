// What validation (validate.cc) and planning (plan.cc) share: a module's effective
// (method, bits, group, quant_type) and the row-driven rules over it. Internal to
// engine/quant.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/quant/config.h"

namespace ingot::quant::internal {

// Effective (method, bits, group, quant_type) of the config or an override.
struct Choice {
  const MethodRow* row = nullptr;
  int32_t bits = 0;
  int64_t group = 0;
  std::string quant_type;
};

// The config's own choice (before defaults).
Choice BaseChoice(const QuantizationConfig& config, const MethodRow* row);
// Fills the row's defaults: quant_type, bits (implied by the quant_type or the
// row's default), group.
Choice WithDefaults(Choice c);
// The choice quantizes whole rows (or fixed blocks): group_size does not apply.
bool IsPerRow(const Choice& c);
// Problems of a choice under `prefix` ("", "layer_overrides[1].").
void CheckChoice(const Choice& c, const std::string& prefix, std::vector<ConfigProblem>* problems);
// Applies backend_options to params through the row's option specs; appends problems
// for unknown keys and bad values when `problems` is given.
void ApplyBackendOptions(const MethodRow& row, const std::map<std::string, std::string>& opts,
                         MethodParams* p, std::vector<ConfigProblem>* problems);

}  // namespace ingot::quant::internal
