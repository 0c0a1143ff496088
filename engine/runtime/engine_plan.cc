// Engine::PlanLoad: LoadModel's dry run. It opens the checkpoint the way a load does
// (load_open.h: headers, config, tensors mapped in place) and asks the registry the
// same admission question a load asks, without reserving or evicting anything. The
// bytes are the load's own figures: the weights as the model reports them (or the
// quantizer's estimate when quantizing while loading) and the KV pool PlanKv sizes.
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/hf_cache.h"
#include "engine/quant/quantize_model.h"
#include "engine/runtime/device.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/load_open.h"
#include "engine/runtime/registry.h"

namespace ingot {

absl::StatusOr<LoadPlan> Engine::PlanLoad(const LoadRequest& given) const {
  // A repository id or a variant is planned as the directory a load would resolve it to.
  if (!given.variant.empty() || formats::IsHfRepoSource(given.source, given.revision)) {
    ASSIGN_OR_RETURN(LoadRequest resolved, ResolveSource(given));
    return PlanLoad(resolved);
  }
  const LoadRequest request = WithLoadingDefaults(given, options_.loading);
  ASSIGN_OR_RETURN(const ValidatedLoad valid, ValidateLoad(request));
  return CatchExceptions("planning " + request.source, [&]() -> absl::StatusOr<LoadPlan> {
    ASSIGN_OR_RETURN(OpenedCheckpoint opened, OpenCheckpoint(request, [](double, const std::string&) {}));
    LoadedModel& loaded = *opened.loaded;
    const LlamaConfig& c = loaded.model->config();
    int32_t ctx = request.context_length > 0 ? request.context_length : std::min(c.context_length, 4096);
    loaded.context_length = std::min(ctx, c.context_length);
    loaded.kv_cache_bytes = request.kv_cache_bytes;
    loaded.kv_dtype = valid.kv_dtype;

    LoadPlan plan;
    plan.device = valid.device.Name();
    plan.backend = valid.backend->name;
    plan.format = opened.format;
    plan.parameter_count = loaded.model->weights().parameter_count;
    plan.context_length = loaded.context_length;
    plan.weight_bytes = loaded.model->weights().weight_bytes;
    if (request.quantization && !opened.quantization.empty()) {
      plan.warnings.push_back(absl::StrCat("the checkpoint is saved quantized (", opened.quantization,
                                           "); the request's ", request.quantization->method,
                                           " would not be applied"));
    } else if (request.quantization) {
      ASSIGN_OR_RETURN(quant::DeviceCaps caps, ResolveDevice(plan.device));
      ASSIGN_OR_RETURN(quant::FallbackResult fb, quant::ApplyFallback(*request.quantization, caps));
      if (!fb.note.empty()) plan.warnings.push_back(fb.note);
      plan.weight_bytes = quant::EstimateQuantizedBytes(loaded.model->weights(), fb.config);
    }
    if (valid.backend->name != std::string("native")) {
      plan.warnings.push_back(absl::StrCat("backend ", valid.backend->name,
                                           " uploads its own copies of the weights; they are counted when placed"));
    }
    const KvPlan kv = PlanKv(loaded);
    plan.kv_cache_bytes = kv.bytes;
    plan.kv_blocks = kv.blocks;
    plan.workspace_bytes = 0;
    plan.total_bytes = plan.weight_bytes + plan.kv_cache_bytes + plan.workspace_bytes;
    auto cap = request.max_memory.find(plan.device);
    const bool over_cap = cap != request.max_memory.end() && plan.total_bytes > cap->second;
    if (over_cap) {
      plan.warnings.push_back(absl::StrCat("max_memory[", plan.device, "] = ", cap->second, " is below the ",
                                           plan.total_bytes, " bytes the model needs; the load would be refused"));
    }

    Admission a;
    a.what = absl::StrCat("loading '", request.name, "'");
    a.device = plan.device;
    a.bytes = plan.total_bytes;
    auto budget = options_.memory_budget_bytes.find(plan.device);
    a.budget = budget == options_.memory_budget_bytes.end() ? 0 : budget->second;
    if (a.budget <= 0) a.device_free = DeviceFreeBytes(valid.device);
    const AdmissionPlan admission = registry_->PlanAdmission(request.name, a);
    plan.fits = admission.fits && !over_cap;  // over max_memory: refused whatever the device has free
    plan.budget_bytes = a.budget;
    plan.free_bytes = admission.free_bytes;
    if (plan.fits) {
      for (const AdmissionPlan::Victim& v : admission.evict) plan.evictions.push_back({v.name, v.bytes, v.idle_seconds});
    }
    if (registry_->Get(request.name).ok() && registry_->Get(request.name)->state != ModelState::kFailed) {
      plan.warnings.push_back(absl::StrCat("a model named '", request.name, "' is already loaded; the load would be "
                                           "refused with ALREADY_EXISTS"));
    }
    return plan;
  });
}

}  // namespace ingot
