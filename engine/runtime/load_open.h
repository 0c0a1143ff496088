// The first half of a load, shared by Engine::LoadModel and Engine::PlanLoad: the
// request's checks, and the checkpoint opened into a LlamaModel over its mapped
// tensors (GGUF blocks and safetensors are read in place, nothing placed or
// quantized yet) with its tokenizer.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/runtime/api.h"
#include "engine/runtime/scheduler.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot {

// Free bytes of `device` now, as its backend row reports them (0 when unknown).
int64_t DeviceFreeBytes(const kernels::Device& device);

// `request` with every loading option it leaves unset taken from `defaults`.
LoadRequest WithLoadingDefaults(const LoadRequest& request, const LoadingDefaults& defaults);

struct ValidatedLoad {
  kernels::Device device;
  const kernels::Backend* backend = nullptr;
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF16;
  std::string dtype;  // the backend row's compute dtype on `device` ("f32", "bf16")
};
// Name, source (CheckSource), device, backend, format, context, KV and batch fields,
// and the loading options (strategy, workers, dtype, max_memory), each error naming
// its field.
absl::StatusOr<ValidatedLoad> ValidateLoad(const LoadRequest& request);

struct OpenedCheckpoint {
  std::shared_ptr<LoadedModel> loaded;  // model set; the serving fields are the caller's
  std::unique_ptr<Tokenizer> tokenizer;
  std::string format;        // "gguf", "safetensors/gptq"
  std::string quantization;  // the checkpoint's own; empty when dense
  std::string note;
};
// `tensors_progress(fraction, detail)` as tensors are mapped.
absl::StatusOr<OpenedCheckpoint> OpenCheckpoint(const LoadRequest& request,
                                                const std::function<void(double, const std::string&)>& tensors_progress);

}  // namespace ingot
