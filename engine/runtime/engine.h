// The engine's public face: what the server calls. Plain structs in (engine/runtime/
// api.h), Status out; no protobuf or gRPC here (server/ converts). Thread-safe: every method may be called
// from any thread at any time.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/api.h"
#include "kernels/backend.h"

namespace ingot {

struct LoadedModel;  // scheduler.h
class Scheduler;

// Places a built (and quantized) model on `device` through `backend` and records the
// placement in its ModelInfo (backend, device bytes and representations).
absl::Status PlaceModel(const kernels::Backend& backend, const kernels::Device& device, LoadedModel* loaded);

class Registry;
namespace kernels { class ThreadPool; }

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();  // cancels running generations and waits for them

  // Synchronous; call it off the request thread. ALREADY_EXISTS for a taken name,
  // NOT_FOUND for a missing file (naming it), INVALID_ARGUMENT for a corrupt file
  // (naming tensor/offset), FAILED_PRECONDITION for an unknown/unavailable device,
  // UNIMPLEMENTED for an unsupported format/architecture, CANCELLED when `cancel`
  // (may be null) is set: it is looked at between stages and inside the long ones.
  absl::StatusOr<ModelInfo> LoadModel(const LoadRequest& request,
                                      const std::function<void(const LoadProgress&)>& progress,
                                      const std::atomic<bool>* cancel = nullptr);
  // LoadModel's dry run: validates as LoadModel does, opens the checkpoint (headers,
  // config, tensors mapped, nothing copied or allocated) and answers the bytes, whether
  // they fit now and what would be evicted. Reserves nothing.
  absl::StatusOr<LoadPlan> PlanLoad(const LoadRequest& request) const;
  // NOT_FOUND when absent. Running generations keep the model until they finish.
  // A FAILED model's entry is removed.
  absl::Status UnloadModel(const std::string& name);
  // Lifecycle events: `sink` gets every transition from now on, in order, on the
  // thread that makes it (keep it short; never call the engine from it); `snapshot`
  // every model's state at that moment. Returns the id for StopWatching.
  int WatchModels(std::function<void(const ModelEvent&)> sink, std::vector<ModelInfo>* snapshot);
  void StopWatching(int id);
  // Writes model `name` to `path` in `format` ("gguf": one file; "ingot", "bitsandbytes",
  // "mlx", "gptq", "hqq": a directory, SaveCheckpoint in engine/model/save.h); returns
  // the bytes written.
  absl::StatusOr<int64_t> SaveModel(const std::string& name, const std::string& path,
                                    const std::string& format, bool overwrite);
  // The same with variants (a unified repository) and model cards; quantizing the
  // variants takes as long as QuantizeModel would (call it off the request thread).
  absl::StatusOr<SaveResult> SaveModel(const SaveRequest& request, const std::atomic<bool>* cancel = nullptr);
  std::vector<ModelInfo> ListModels() const;
  absl::StatusOr<ModelInfo> GetModel(const std::string& name) const;
  std::vector<DeviceInfo> Devices() const;

  absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string& text,
                                          bool add_special, bool parse_special) const;
  // Each token's bytes (may be partial UTF-8; special tokens rendered), e.g. to name
  // the tokens of logprobs. INVALID_ARGUMENT for an id outside the vocabulary.
  absl::StatusOr<std::vector<std::string>> TokenPieces(const std::string& model,
                                                       const std::vector<int32_t>& ids) const;

  // Validates (NOT_FOUND model, INVALID_ARGUMENT params/prompt too long/template) and
  // queues the request; then callbacks report progress. Cancel through the handle.
  absl::StatusOr<std::shared_ptr<GenerationHandle>> Generate(GenerateRequest request,
                                                             GenerationCallbacks callbacks);

  // Quantizes a loaded model (synchronous; call it off the request thread). The source
  // keeps serving until the new model is published. INVALID_ARGUMENT lists the config's
  // problems, FAILED_PRECONDITION a method/device that cannot run (without fallback),
  // RESOURCE_EXHAUSTED a result that does not fit the memory budget, CANCELLED.
  absl::StatusOr<QuantizeResult> QuantizeModel(
      const QuantizeRequest& request,
      const std::function<void(const quant::QuantizeProgress&)>& progress,
      const std::atomic<bool>* cancel);
  // A config that fits `budget_bytes` for a loaded model, and why: with a purpose, the
  // seeds' decision tree over the presets (quant/presets.h), its steps and the preset;
  // without, the best quality that fits (preset and steps empty).
  absl::StatusOr<quant::PresetRecommendation> RecommendQuantization(
      const std::string& model, const std::string& device, int64_t budget_bytes,
      std::optional<quant::Purpose> purpose = std::nullopt) const;
  // Validates a config against a loaded model (when `model` is set) and a device.
  absl::StatusOr<std::vector<quant::ConfigProblem>> ValidateQuantization(
      const quant::QuantizationConfig& config, const std::string& model,
      const std::string& device) const;
  // Perplexity of a text (and KL/top-1 agreement against a reference model).
  absl::StatusOr<EvaluateResult> EvaluateModel(const EvaluateRequest& request,
                                               const std::atomic<bool>* cancel) const;
  int QuantizationsInFlight() const { return quantizing_.load(); }

  // Number of generations currently running or queued for `model` ("" = all,
  // unloaded models still finishing their streams included).
  int RunningRequests(const std::string& model) const;
  // The same by model name, unloaded models still running streams included.
  std::vector<std::pair<std::string, int>> RunningRequestsByModel() const;
  // Ends every generation now with finish reason CANCELLED and its final chunk (the
  // server's drain deadline is near); models take no new requests afterwards.
  void CancelAllGenerations();

 private:
  // QuantizeModel's work on a model that may not be registered yet (quantize while
  // loading): validation, the memory check, calibration, the quantized LoadedModel
  // named `target`. Publishes nothing. `replaces_source`: the source's weights leave
  // the budget when the result arrives.
  struct Quantized {
    QuantizeResult result;
    std::shared_ptr<LoadedModel> model;
  };
  // The request with a Hugging Face repository id resolved to its snapshot and a variant
  // to its subdirectory (revision and variant cleared).
  absl::StatusOr<LoadRequest> ResolveSource(const LoadRequest& request) const;
  // EvaluateModel over models in hand (published or not); `reference` may be null.
  absl::StatusOr<EvaluateResult> EvaluateLoaded(std::shared_ptr<const LoadedModel> model,
                                                std::shared_ptr<const LoadedModel> reference,
                                                const EvaluateRequest& request,
                                                const std::atomic<bool>* cancel) const;
  // One directory of a save: the layout's files plus its model card.
  absl::StatusOr<int64_t> SaveDirectory(const LoadedModel& model, const std::string& path, const std::string& layout,
                                        ModelCardInfo card) const;
  absl::StatusOr<Quantized> QuantizeLoaded(const QuantizeRequest& request,
                                           std::shared_ptr<const LoadedModel> source,
                                           const std::string& target, bool replaces_source,
                                           const std::function<void(const quant::QuantizeProgress&)>& progress,
                                           const std::atomic<bool>* cancel);
  // The model's KV pool (loaded->kv_cache_bytes, dtype) and its scheduler; fills the
  // serving fields of loaded->info. INVALID_ARGUMENT for a dtype the backend cannot
  // store, RESOURCE_EXHAUSTED when the device has no room for the pool.
  absl::StatusOr<std::unique_ptr<Scheduler>> StartScheduler(const std::shared_ptr<LoadedModel>& loaded);
  // The KV pool StartScheduler makes for `loaded`: blocks and bytes (blocks x block bytes).
  struct KvPlan {
    int32_t blocks = 0;
    int64_t bytes = 0;
  };
  KvPlan PlanKv(const LoadedModel& loaded) const;
  // The one admission rule (registry.h) for `bytes` of `name` on `device`, against
  // that device's budget (or its free memory when it has none).
  absl::Status AdmitBytes(const std::string& name, const std::string& what, const std::string& device,
                          int64_t bytes, int64_t credit, const std::vector<std::string>& keep, bool reserve);

  EngineOptions options_;
  std::unique_ptr<kernels::ThreadPool> pool_;  // shared by every model's steps
  std::unique_ptr<Registry> registry_;
  std::atomic<int> quantizing_{0};
};

}  // namespace ingot
