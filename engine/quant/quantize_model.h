// Quantizes a loaded Llama-family model module by module into a new model that shares
// the source's embeddings, norms and file mapping: the source stays untouched and keeps
// serving while this runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/llama.h"
#include "engine/quant/config.h"

namespace ingot::quant {


struct QuantizeOptions {
  int workers = 1;                          // modules quantized in parallel
  std::vector<int32_t> calibration_tokens;  // GPTQ/AWQ: tokenized calibration text
  int32_t calibration_window = 512;         // tokens per calibration sequence
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const QuantizeProgress&)> progress;
};

struct QuantizeOutcome {
  std::unique_ptr<LlamaModel> model;
  int32_t quantized_modules = 0;
  int32_t skipped_modules = 0;
  double seconds = 0;
};

// The config must have passed ValidateQuantization for this model. CANCELLED when
// options.cancel is set during the run; INVALID_ARGUMENT from a quantizer names the module.
absl::StatusOr<QuantizeOutcome> QuantizeLlama(const LlamaModel& source,
                                              const QuantizationConfig& config,
                                              const QuantizeOptions& options);

// Bytes the quantized model's weights will take (embeddings, norms and skipped modules
// as they are now, the rest at the plan's bits per weight).
int64_t EstimateQuantizedBytes(const LlamaWeights& source, const QuantizationConfig& config);

// The calibration text shipped with ingot (engine/quant/data/calibration.txt).
std::string_view ShippedCalibrationText();
// The held-out evaluation text shipped with ingot (engine/quant/data/heldout.txt).
std::string_view ShippedHeldoutText();

}  // namespace ingot::quant
