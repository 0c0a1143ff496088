// Engine: quantize on request, recommendation, validation and evaluation.
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/quant/quantize_model.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/device.h"
#include "engine/runtime/registry.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot {
namespace {

absl::StatusOr<quant::DeviceCaps> Caps(const std::string& device) { return ResolveDevice(device); }

std::string Describe(const quant::QuantizationConfig& c) {
  std::string s = c.method;
  if (c.bits) absl::StrAppend(&s, " bits=", c.bits);
  if (c.group_size) absl::StrAppend(&s, " group_size=", c.group_size);
  if (!c.quant_type.empty()) absl::StrAppend(&s, " quant_type=", c.quant_type);
  return s;
}

// Counts a run in QuantizationsInFlight.
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& n) : n_(n) { ++n_; }
  ~InFlight() { --n_; }
 private:
  std::atomic<int>& n_;
};

}  // namespace

absl::StatusOr<std::vector<quant::ConfigProblem>> Engine::ValidateQuantization(
    const quant::QuantizationConfig& config, const std::string& model,
    const std::string& device) const {
  ASSIGN_OR_RETURN(quant::DeviceCaps caps, Caps(device));
  if (model.empty()) return quant::ValidateQuantization(config, caps, nullptr);
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(model));
  const std::vector<LinearModuleRef> modules = ready.model->model->weights().LinearModules();
  return quant::ValidateQuantization(config, caps, &modules);
}

absl::StatusOr<quant::PresetRecommendation> Engine::RecommendQuantization(
    const std::string& model, const std::string& device, int64_t budget_bytes,
    std::optional<quant::Purpose> purpose) const {
  if (budget_bytes <= 0) return absl::InvalidArgumentError("memory budget must be > 0 bytes");
  ASSIGN_OR_RETURN(quant::DeviceCaps caps, Caps(device));
  if (!caps.available) {
    return absl::FailedPreconditionError(absl::StrCat("device ", caps.name, " is unavailable: ", caps.reason));
  }
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(model));
  const LlamaWeights& w = ready.model->model->weights();
  const std::vector<LinearModuleRef> modules = w.LinearModules();
  // What quantization leaves alone: everything but the layers' linear modules (the
  // head is skipped by every recommended config, tied or not).
  int64_t fixed = w.weight_bytes;
  for (const LinearModuleRef& ref : w.LinearModules()) {
    if (ref.layer >= 0) fixed -= w.linear(ref).bytes();
  }
  if (purpose) return quant::RecommendPreset(modules, fixed, caps, budget_bytes, *purpose);
  quant::PresetRecommendation out;
  ASSIGN_OR_RETURN(out.recommendation, quant::RecommendQuantization(modules, fixed, caps, budget_bytes));
  return out;
}

absl::StatusOr<QuantizeResult> Engine::QuantizeModel(
    const QuantizeRequest& request, const std::function<void(const quant::QuantizeProgress&)>& progress,
    const std::atomic<bool>* cancel) {
  InFlight in_flight(quantizing_);
  if (request.source.empty()) return absl::InvalidArgumentError("source model name must not be empty");
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(request.source));
  const bool in_place = request.target.empty() || request.target == request.source;
  const std::string target = in_place ? request.source : request.target;
  if (!in_place) RETURN_IF_ERROR(ValidateModelName(target, "target"));
  // The target name is reserved for the whole run so a concurrent load cannot take it.
  if (!in_place) {
    LoadRequest reserve;
    reserve.name = target;
    reserve.source = ready.model->info.source;
    reserve.device = request.device.empty() ? ready.model->info.device : request.device;
    reserve.pinned = options_.default_pinned;
    reserve.keep_alive_s = options_.default_keep_alive_s;
    RETURN_IF_ERROR(registry_->Reserve(target, reserve));
  }
  auto result = CatchExceptions("quantizing " + request.source, [&]() -> absl::StatusOr<QuantizeResult> {
    ASSIGN_OR_RETURN(Quantized q, QuantizeLoaded(request, ready.model, target, in_place, progress, cancel));
    // A cancel that came after the last module (the client's deadline, the drain) still
    // counts: nobody is there to learn the new model's name, so it is not published.
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("quantization cancelled");
    ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, StartScheduler(q.model));
    if (in_place) {
      RETURN_IF_ERROR(registry_->Replace(target, q.model, std::move(scheduler)));
    } else {
      registry_->Publish(target, q.model, std::move(scheduler));
    }
    return q.result;
  });
  if (!result.ok() && !in_place) registry_->Abandon(target, result.status());
  return result;
}

absl::StatusOr<Engine::Quantized> Engine::QuantizeLoaded(
    const QuantizeRequest& request, std::shared_ptr<const LoadedModel> source, const std::string& target,
    bool replaces_source, const std::function<void(const quant::QuantizeProgress&)>& progress,
    const std::atomic<bool>* cancel) {
  const std::string device = request.device.empty() ? source->info.device : request.device;
  ASSIGN_OR_RETURN(quant::DeviceCaps caps, Caps(device));
  if (!caps.available) {
    return absl::FailedPreconditionError(absl::StrCat("device ", caps.name, " is unavailable: ", caps.reason));
  }
  if (caps.name != source->info.device) {
    return absl::UnimplementedError(absl::StrCat("quantizing onto another device (", source->info.device,
                                                 " -> ", device, ") is not supported yet"));
  }
  ASSIGN_OR_RETURN(quant::FallbackResult fb, quant::ApplyFallback(request.config, caps));
  const quant::QuantizationConfig& config = fb.config;
  const std::vector<LinearModuleRef> modules = source->model->weights().LinearModules();
  RETURN_IF_ERROR(quant::ProblemsToStatus(quant::ValidateQuantization(config, caps, &modules)));

  // Memory: the new weights (estimated) and the new model's KV pool, by the one
  // admission rule. In place, the source's bytes leave once its streams finish; a
  // source being quantized is never evicted for its own result.
  const int64_t estimate = quant::EstimateQuantizedBytes(source->model->weights(), config);
  const int64_t credit = replaces_source ? registry_->Get(target).value_or(ModelInfo{}).bytes_resident : 0;
  if (absl::Status admitted = AdmitBytes(
          target, absl::StrCat("quantizing '", request.source, "' with ", quant::FindMethod(config.method)->name),
          device, estimate + PlanKv(*source).bytes, credit, {request.source}, /*reserve=*/!replaces_source);
      !admitted.ok()) {
    return absl::Status(admitted.code(), absl::StrCat(admitted.message(),
                                                      replaces_source ? "; the source model keeps serving" : ""));
  }

  quant::QuantizeOptions opts;
  opts.workers = request.workers > 0                ? request.workers
                 : options_.quantize_workers > 0 ? options_.quantize_workers
                                                 : options_.threads;
  opts.cancel = cancel;
  opts.progress = progress;
  const quant::MethodRow* row = quant::FindMethod(config.method);
  bool needs_calibration = row->calibration != quant::Calibration::kNone;
  for (const auto& o : config.layer_overrides) {
    if (o.method) {
      const quant::MethodRow* r = quant::FindMethod(*o.method);
      needs_calibration |= r != nullptr && r->calibration != quant::Calibration::kNone;
    }
  }
  if (needs_calibration) {
    std::string text = request.calibration_text;
    if (text.empty() && !config.calibration_file.empty()) {
      // Regular files inside the model roots only, bounded before reading.
      ASSIGN_OR_RETURN(text, formats::ReadFileBounded(config.calibration_file,
                                                      formats::kMaxCalibrationFileBytes,
                                                      "calibration_file"));
    }
    if (text.empty()) text = std::string(quant::ShippedCalibrationText());
    opts.calibration_tokens = source->tokenizer->Encode(text, /*add_special=*/false, /*parse_special=*/false);
    const int32_t want = config.calibration_tokens > 0 ? config.calibration_tokens : 2048;
    if (static_cast<int32_t>(opts.calibration_tokens.size()) > want) opts.calibration_tokens.resize(want);
  }

  ASSIGN_OR_RETURN(quant::QuantizeOutcome outcome, quant::QuantizeLlama(*source->model, config, opts));
  {
    auto loaded = std::make_shared<LoadedModel>();
    loaded->tokenizer = source->tokenizer;
    loaded->context_length = source->context_length;
    loaded->kv_cache_bytes = source->kv_cache_bytes;
    loaded->kv_dtype = source->kv_dtype;
    loaded->max_sequences = source->max_sequences;
    loaded->prefix_cache = source->prefix_cache;
    loaded->model = std::move(outcome.model);
    ModelInfo& info = loaded->info;
    info = source->info;
    info.name = target;
    info.tensor_kinds.clear();
    for (const auto& s : loaded->model->weights().summary) {
      info.tensor_kinds.push_back({s.kind, s.representation, s.tensors, s.parameters, s.bytes});
    }
    info.parameter_count = loaded->model->weights().parameter_count;
    info.weight_bytes = loaded->model->weights().weight_bytes;
    info.bytes_resident = info.weight_bytes;
    info.kv_cache_bytes = 0;
    info.quantization = Describe(config);
    info.quantization_note = fb.note;
    // The quantized model runs where its source does (same backend row and device).
    RETURN_IF_ERROR(PlaceModel(source->model->backend(), source->model->device(), loaded.get()));
    QuantizeResult r;
    r.info = info;
    r.method_used = config.method;
    r.note = fb.note;
    r.seconds = outcome.seconds;
    r.quantized_modules = outcome.quantized_modules;
    r.skipped_modules = outcome.skipped_modules;
    r.bytes_before = source->info.weight_bytes;
    r.bytes_after = info.weight_bytes;
    return Quantized{std::move(r), std::move(loaded)};
  }
}

absl::StatusOr<EvaluateResult> Engine::EvaluateModel(const EvaluateRequest& request,
                                                     const std::atomic<bool>* cancel) const {
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(request.model));
  std::shared_ptr<const LoadedModel> reference;
  if (!request.reference_model.empty()) {
    ASSIGN_OR_RETURN(Registry::Ready ref, registry_->Find(request.reference_model));
    reference = ref.model;
  }
  return EvaluateLoaded(ready.model, reference, request, cancel);
}

absl::StatusOr<EvaluateResult> Engine::EvaluateLoaded(std::shared_ptr<const LoadedModel> model,
                                                      std::shared_ptr<const LoadedModel> reference,
                                                      const EvaluateRequest& request,
                                                      const std::atomic<bool>* cancel) const {
  const double t0 = []() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }();
  if (reference) {
    if (reference->model->config().vocab_size != model->model->config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reference model '", request.reference_model, "' has a vocabulary of ",
          reference->model->config().vocab_size, " tokens, '", request.model, "' has ",
          model->model->config().vocab_size));
    }
  }
  if (request.context_length < 2 || request.context_length > model->context_length) {
    return absl::InvalidArgumentError(absl::StrCat("context_length must be in [2, ", model->context_length,
                                                   "] for '", request.model, "', got ", request.context_length));
  }
  if (request.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  const std::string text = request.text.empty() ? std::string(quant::ShippedHeldoutText()) : request.text;
  std::vector<int32_t> tokens = model->tokenizer->Encode(text, false, false);
  if (request.max_tokens > 0 && static_cast<int32_t>(tokens.size()) > request.max_tokens) {
    tokens.resize(request.max_tokens);
  }
  if (tokens.size() < 2) return absl::InvalidArgumentError("evaluation text has fewer than 2 tokens");

  const int32_t vocab = model->model->config().vocab_size;
  const int32_t ctx = request.context_length;
  EvaluateResult out;
  out.context_length = ctx;
  out.has_reference = reference != nullptr;
  double nll = 0, kl = 0;
  int64_t agree = 0;
  ForwardWorkspace ws, ws_ref;
  std::vector<float> logits, logits_ref;
  // Log-softmax of one row into `out` (double for the sums).
  auto log_softmax = [vocab](const float* x, std::vector<double>& out) {
    double mx = x[0];
    for (int32_t i = 1; i < vocab; ++i) mx = std::max<double>(mx, x[i]);
    double sum = 0;
    for (int32_t i = 0; i < vocab; ++i) sum += std::exp(x[i] - mx);
    const double lse = mx + std::log(sum);
    out.resize(vocab);
    for (int32_t i = 0; i < vocab; ++i) out[i] = x[i] - lse;
  };
  std::vector<double> lp, lp_ref;
  // Non-overlapping windows; every token but the first of a window is scored.
  for (size_t start = 0; start + 1 < tokens.size(); start += ctx) {
    const size_t end = std::min(tokens.size(), start + ctx);
    std::unique_ptr<KvCache> cache = model->model->NewKvCache();
    RETURN_IF_ERROR(cache->Reserve(static_cast<int32_t>(end - start)));
    std::unique_ptr<KvCache> cache_ref;
    if (reference) {
      cache_ref = reference->model->NewKvCache();
      RETURN_IF_ERROR(cache_ref->Reserve(static_cast<int32_t>(end - start)));
    }
    constexpr size_t kBatch = 64;  // bounds the logits buffer (64 x vocab floats)
    for (size_t b = start; b + 1 < end; b += kBatch) {
      if (cancel != nullptr && cancel->load()) return absl::CancelledError("evaluation cancelled");
      const size_t e = std::min(end - 1, b + kBatch);
      std::vector<BatchToken> batch, batch_ref;
      for (size_t i = b; i < e; ++i) {
        batch.push_back({tokens[i], static_cast<int32_t>(i - start), cache.get(), true});
        if (reference) batch_ref.push_back({tokens[i], static_cast<int32_t>(i - start), cache_ref.get(), true});
      }
      RETURN_IF_ERROR(model->model->Forward(batch, *pool_, ws, &logits));
      if (reference) RETURN_IF_ERROR(reference->model->Forward(batch_ref, *pool_, ws_ref, &logits_ref));
      for (size_t i = b; i < e; ++i) {
        const float* row = logits.data() + (i - b) * vocab;
        log_softmax(row, lp);
        nll -= lp[tokens[i + 1]];
        ++out.tokens_scored;
        if (reference) {
          const float* rrow = logits_ref.data() + (i - b) * vocab;
          log_softmax(rrow, lp_ref);
          double k = 0;
          int32_t am = 0, am_ref = 0;
          for (int32_t v = 0; v < vocab; ++v) {
            k += std::exp(lp_ref[v]) * (lp_ref[v] - lp[v]);
            if (lp[v] > lp[am]) am = v;
            if (lp_ref[v] > lp_ref[am_ref]) am_ref = v;
          }
          kl += k;
          agree += am == am_ref;
        }
      }
    }
  }
  out.mean_nll = nll / static_cast<double>(out.tokens_scored);
  out.perplexity = std::exp(out.mean_nll);
  if (reference) {
    out.mean_kl = kl / static_cast<double>(out.tokens_scored);
    out.top1_agreement = static_cast<double>(agree) / static_cast<double>(out.tokens_scored);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count() - t0;
  return out;
}

}  // namespace ingot
