// Module-by-module quantization of a Llama-family model (see quantize_model.h).
// Workers are plain threads, not the engine's compute pool, so the source model's
// generation steps keep running between and during module quantizations.
#include "engine/quant/quantize_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot::quant {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// `w` as f32 rows into `out` (resized; its capacity is kept for the next module).
void DequantizeInto(const kernels::Linear& w, std::vector<float>* out) {
  const int64_t rows = w.rows(), cols = w.cols();
  out->resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) kernels::LinearDequantizeRow(w, r, out->data() + r * cols);
}

std::vector<float> Dequantize(const kernels::Linear& w) {
  std::vector<float> out;
  DequantizeInto(w, &out);
  return out;
}

// Which calibration site feeds a module.
LinearInput SiteOf(LinearSlot slot) {
  switch (slot) {
    case LinearSlot::kQ: case LinearSlot::kK: case LinearSlot::kV: return LinearInput::kAttnIn;
    case LinearSlot::kO: return LinearInput::kAttnOut;
    case LinearSlot::kGate: case LinearSlot::kUp: return LinearInput::kMlpIn;
    case LinearSlot::kDown: return LinearInput::kMlpDown;
  }
  return LinearInput::kAttnIn;
}
constexpr int kSites = 4;

// x x^T summed over tokens into a double matrix (upper triangle, mirrored at the end).
__attribute__((target("avx2,fma"))) void GramAvx2(const float* x, int64_t n, int64_t cols,
                                                   double* h) {
  std::vector<float> acc(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) {
    std::fill(acc.begin() + i, acc.end(), 0.0f);
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * cols;
      const float xi = xt[i];
      if (xi == 0.0f) continue;
      for (int64_t j = i; j < cols; ++j) acc[j] += xi * xt[j];
    }
    double* hrow = h + i * cols;
    for (int64_t j = i; j < cols; ++j) hrow[j] += acc[j];
  }
}

void Gram(const float* x, int64_t n, int64_t cols, double* h) {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    GramAvx2(x, n, cols, h);
    return;
  }
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * cols;
      for (int64_t j = i; j < cols; ++j) h[i * cols + j] += static_cast<double>(xt[i]) * xt[j];
    }
  }
}

// Collects CalibrationStats for the sites of layers [first, last).
class Collector : public ForwardObserver {
 public:
  Collector(int32_t first, int32_t last, bool hessian, int64_t max_samples, int workers)
      : first_(first), last_(last), hessian_(hessian), max_samples_(max_samples),
        workers_(std::max(1, workers)), stats_(static_cast<size_t>(last - first) * kSites) {}

  int32_t StopAfterLayer() const override { return last_ - 1; }
  void OnLinearInput(int32_t layer, LinearInput site, const float* x, int64_t n,
                     int64_t cols) override {
    if (layer < first_ || layer >= last_) return;
    CalibrationStats& s = stats_[Index(layer, site)];
    if (s.cols == 0) {
      s.cols = cols;
      s.act_abs_mean.assign(static_cast<size_t>(cols), 0.0f);
      if (hessian_) s.hessian.assign(static_cast<size_t>(cols * cols), 0.0);
    }
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t c = 0; c < cols; ++c) s.act_abs_mean[c] += std::fabs(x[t * cols + c]);
    }
    // Every k-th token as a sample, spread over the text.
    for (int64_t t = 0; t < n && s.n_samples < max_samples_; t += 4) {
      s.samples.insert(s.samples.end(), x + t * cols, x + (t + 1) * cols);
      ++s.n_samples;
    }
    s.tokens += n;
    if (hessian_) pending_.push_back({&s, std::vector<float>(x, x + n * cols), n});
  }

  // Runs the queued Gram accumulations on worker threads (after each Forward).
  void Flush() {
    std::vector<std::thread> threads;
    std::atomic<size_t> next{0};
    for (int w = 0; w < workers_; ++w) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < pending_.size(); i = next++) {
          Pending& p = pending_[i];
          Gram(p.x.data(), p.n, p.stats->cols, p.stats->hessian.data());
        }
      });
    }
    for (auto& t : threads) t.join();
    pending_.clear();
  }

  // Final statistics: means, mirrored Hessians.
  CalibrationStats& Stats(int32_t layer, LinearInput site) {
    CalibrationStats& s = stats_[Index(layer, site)];
    if (!finished_[Index(layer, site)]) {
      finished_[Index(layer, site)] = true;
      if (s.tokens > 0) {
        for (float& v : s.act_abs_mean) v /= static_cast<float>(s.tokens);
      }
      if (!s.hessian.empty()) {
        for (int64_t i = 0; i < s.cols; ++i) {
          for (int64_t j = 0; j < i; ++j) s.hessian[i * s.cols + j] = s.hessian[j * s.cols + i];
        }
      }
    }
    return s;
  }

 private:
  struct Pending {
    CalibrationStats* stats;
    std::vector<float> x;
    int64_t n;
  };
  size_t Index(int32_t layer, LinearInput site) const {
    return static_cast<size_t>(layer - first_) * kSites + static_cast<size_t>(site);
  }
  int32_t first_, last_;
  bool hessian_;
  int64_t max_samples_;
  int workers_;
  std::vector<CalibrationStats> stats_;
  std::vector<bool> finished_ = std::vector<bool>(stats_.size(), false);
  std::vector<Pending> pending_;
};

// Feeds the calibration tokens through `model` in windows, observed by `collector`.
absl::Status RunCalibration(const LlamaModel& model, const std::vector<int32_t>& tokens,
                            int32_t window, kernels::ThreadPool& pool, Collector& collector,
                            const std::atomic<bool>* cancel) {
  const LlamaConfig& c = model.config();
  ForwardWorkspace ws;
  std::vector<float> logits;
  window = std::max<int32_t>(16, std::min(window, c.context_length));
  for (size_t start = 0; start < tokens.size(); start += window) {
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("quantization cancelled");
    const size_t end = std::min(tokens.size(), start + window);
    std::unique_ptr<KvCache> cache = model.NewKvCache();
    RETURN_IF_ERROR(cache->Reserve(static_cast<int32_t>(end - start)));
    // Sub-batches bound the activation buffers the collector copies.
    constexpr size_t kBatch = 128;
    for (size_t b = start; b < end; b += kBatch) {
      // Per sub-batch, not per window: a window of 512 tokens is seconds of work on a
      // small machine, longer than the drain leaves a cancelled load.
      if (cancel != nullptr && cancel->load()) return absl::CancelledError("quantization cancelled");
      std::vector<BatchToken> batch;
      for (size_t i = b; i < std::min(end, b + kBatch); ++i) {
        batch.push_back({tokens[i], static_cast<int32_t>(i - start), cache.get(), false});
      }
      RETURN_IF_ERROR(model.Forward(batch, pool, ws, &logits, &collector));
      collector.Flush();
    }
  }
  return absl::OkStatus();
}

// One module through its method's row.
absl::StatusOr<QuantizedWeight> QuantizeOne(const ModulePlan& plan, const float* w, int64_t rows,
                                            int64_t cols, const CalibrationStats* calib) {
  if (plan.method->quantize == nullptr) {
    return absl::UnimplementedError(absl::StrCat("method ", plan.method->name, " has no quantizer"));
  }
  return plan.method->quantize(plan, w, rows, cols, calib);
}

// Per module of a layer: the dequantized (and for AWQ, scaled) f32 weights.
struct Work {
  size_t index;  // into modules / plans
  std::vector<float> w;
  std::vector<float> awq_s;  // AWQ: the scales w's columns were multiplied by (empty: none)
};

}  // namespace

int64_t EstimateQuantizedBytes(const LlamaWeights& source, const QuantizationConfig& config) {
  const std::vector<LinearModuleRef> modules = source.LinearModules();
  const std::vector<ModulePlan> plans = PlanModules(config, modules);
  int64_t total = source.weight_bytes;
  const std::vector<LinearModuleRef>& refs = modules;
  for (size_t i = 0; i < modules.size(); ++i) {
    if (plans[i].method == nullptr) continue;
    const bool tied_head = refs[i].layer < 0 && source.config.tied_output;
    if (!tied_head) total -= source.linear(refs[i]).bytes();
    total += static_cast<int64_t>(EstimateBitsPerWeight(plans[i], modules[i].rows, modules[i].cols) /
                                  8.0 * static_cast<double>(modules[i].rows * modules[i].cols));
  }
  return total;
}

absl::StatusOr<QuantizeOutcome> QuantizeLlama(const LlamaModel& source,
                                              const QuantizationConfig& config,
                                              const QuantizeOptions& options) {
  const auto t0 = Clock::now();
  const LlamaWeights& sw = source.weights();
  const std::vector<LinearModuleRef> refs = sw.LinearModules();
  const std::vector<LinearModuleRef>& modules = refs;
  const std::vector<ModulePlan> plans = PlanModules(config, modules);
  const LlamaConfig& c = sw.config;
  QuantizeOutcome outcome;
  // The new model over a copy of the weights (sharing every buffer); modules are
  // replaced in the copy. It runs on native cpu until the caller places it; until its
  // first edit it equals the source, which calibrates then on the source's device.
  outcome.model = std::make_unique<LlamaModel>(sw);
  LlamaModel& target = *outcome.model;
  LlamaWeights& edited = target.mutable_weights();
  bool target_edited = false;

  bool needs_calibration = false, needs_hessian = false, awq = false, true_sequential = false;
  int32_t total = 0;
  for (const ModulePlan& p : plans) {
    if (p.method == nullptr) continue;
    ++total;
    needs_calibration |= p.method->calibration != Calibration::kNone;
    needs_hessian |= p.method->calibration == Calibration::kHessian;
    true_sequential |= p.method->calibration == Calibration::kHessian && p.params.gptq_true_sequential;
    awq |= p.method->calibration == Calibration::kInputScales;
  }
  if (needs_calibration && options.calibration_tokens.size() < 16) {
    return absl::InvalidArgumentError(
        "calibration text is too short: GPTQ/AWQ need at least 16 tokens (2048 recommended)");
  }
  int32_t done = 0;
  std::mutex mu;
  auto report = [&](const std::string& stage, const std::string& module, const std::string& method) {
    if (!options.progress) return;
    QuantizeProgress p;
    p.stage = stage;
    p.step = done;
    p.total = total;
    p.module = module;
    p.method = method;
    p.elapsed_s = Since(t0);
    options.progress(p);
  };
  auto cancelled = [&] { return options.cancel != nullptr && options.cancel->load(); };

  // Layer windows bound the calibration memory (Hessians are cols^2 doubles per site).
  int32_t window = c.n_layer;
  if (needs_hessian) {
    const int64_t per_layer = (3LL * c.n_embd * c.n_embd + static_cast<int64_t>(c.n_ff) * c.n_ff) * 8;
    window = static_cast<int32_t>(std::max<int64_t>(1, (256LL << 20) / std::max<int64_t>(1, per_layer)));
  }
  // True-sequential GPTQ: one layer at a time, its inputs through the layers before it
  // as already quantized (`target`), each pass stopping after the layer it observes
  // (n_layer passes cost about n_layer / 2 full forwards of the calibration text).
  if (true_sequential) window = 1;
  std::unique_ptr<kernels::ThreadPool> calib_pool;
  if (needs_calibration) calib_pool = std::make_unique<kernels::ThreadPool>(std::max(1, options.workers));

  for (int32_t first = 0; first < c.n_layer || (first == 0 && c.n_layer == 0); first += window) {
    const int32_t last = std::min(c.n_layer, first + window);
    std::unique_ptr<Collector> collector;
    if (needs_calibration) {
      report("calibrate", absl::StrCat("layers ", first, "-", last - 1), config.method);
      collector = std::make_unique<Collector>(first, last, needs_hessian, 256, options.workers);
      const LlamaModel& observed = true_sequential && target_edited ? target : source;
      RETURN_IF_ERROR(RunCalibration(observed, options.calibration_tokens, options.calibration_window, *calib_pool,
                                     *collector, options.cancel));
      // Finish the statistics here; workers only read them.
      for (int32_t l = first; l < last; ++l) {
        for (int s = 0; s < kSites; ++s) collector->Stats(l, static_cast<LinearInput>(s));
      }
    }
    // The modules of these layers (plus the head with the last window).
    std::vector<Work> work;
    for (size_t i = 0; i < refs.size(); ++i) {
      const bool in_window = refs[i].layer >= first && refs[i].layer < last;
      const bool head = refs[i].layer < 0 && last == c.n_layer;
      if (!(in_window || head)) continue;
      if (plans[i].method == nullptr) {
        ++outcome.skipped_modules;
        continue;
      }
      // AWQ scales a layer's modules together, so they are dequantized up front; the
      // rest are dequantized by the worker that quantizes them, so that memory holds
      // one f32 module per worker, not the whole dense model.
      work.push_back({i, awq ? Dequantize(sw.linear(refs[i])) : std::vector<float>(), {}});
    }
    if (awq) {
      // AWQ: per layer, scales for (q,k,v), (gate,up) and down, folded into the op that
      // produces each input. o_proj is not scaled (AutoAWQ scales it through v's rows,
      // and only without GQA). The clipping search runs per module on the workers.
      for (int32_t l = first; l < last; ++l) {
        auto find = [&](LinearSlot s) -> Work* {
          for (Work& wk : work) {
            if (refs[wk.index].layer == l && refs[wk.index].slot == s &&
                plans[wk.index].method->calibration == Calibration::kInputScales) {
              return &wk;
            }
          }
          return nullptr;
        };
        struct Group {
          std::vector<LinearSlot> slots;
          LinearInput site;
        };
        const std::vector<Group> groups = {
            {{LinearSlot::kQ, LinearSlot::kK, LinearSlot::kV}, LinearInput::kAttnIn},
            {{LinearSlot::kGate, LinearSlot::kUp}, LinearInput::kMlpIn},
            {{LinearSlot::kDown}, LinearInput::kMlpDown},
        };
        for (const Group& g : groups) {
          std::vector<Work*> members;
          for (LinearSlot s : g.slots) {
            if (Work* wk = find(s)) members.push_back(wk);
          }
          if (members.size() != g.slots.size()) continue;  // a member skipped: leave unscaled
          std::vector<WeightRef> ws;
          for (Work* wk : members) ws.push_back({wk->w.data(), modules[wk->index].rows});
          const int64_t cols = modules[members[0]->index].cols;
          ASSIGN_OR_RETURN(std::vector<float> s,
                           AwqSearchScales(ws, cols, collector->Stats(l, g.site),
                                           plans[members[0]->index].params));
          // The producer of the input: the norm (attn/ffn) or up's rows (down's input).
          if (g.site == LinearInput::kMlpDown) {
            Work* up = find(LinearSlot::kUp);
            if (up == nullptr) continue;
            for (int64_t r = 0; r < cols; ++r) {
              for (int64_t k = 0; k < c.n_embd; ++k) up->w[r * c.n_embd + k] /= s[r];
            }
          } else {
            std::vector<float>* norm = edited.MutableNorm(l, g.site == LinearInput::kMlpIn);
            target_edited = true;
            for (int64_t k = 0; k < cols; ++k) (*norm)[k] /= s[k];
          }
          for (Work* wk : members) {
            const int64_t rows = modules[wk->index].rows;
            for (int64_t r = 0; r < rows; ++r) {
              for (int64_t k = 0; k < cols; ++k) wk->w[r * cols + k] *= s[k];
            }
            wk->awq_s = s;
          }
        }
      }
    }
    // Quantize the window's modules on worker threads.
    std::atomic<size_t> next{0};
    absl::Status failure;
    std::vector<std::thread> threads;
    for (int t = 0; t < std::max(1, options.workers); ++t) {
      threads.emplace_back([&] {
        // One f32 buffer per worker, reused module after module: freed and reallocated
        // buffers fragment the heap around the quantized outputs, and the process
        // would keep the whole dense model's worth of pages.
        std::vector<float> scratch;
        for (size_t k = next++; k < work.size(); k = next++) {
          if (cancelled()) return;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (!failure.ok()) return;
          }
          const size_t i = work[k].index;
          const float* weights = work[k].w.data();
          if (work[k].w.empty()) {
            DequantizeInto(sw.linear(refs[i]), &scratch);
            weights = scratch.data();
          }
          const CalibrationStats* calib =
              collector && refs[i].layer >= 0 ? &collector->Stats(refs[i].layer, SiteOf(refs[i].slot)) : nullptr;
          // AWQ's clipping search, after every scale of the layer is applied (the worker
          // owns this module's scaled weights), on all modules but q/k as AutoAWQ.
          const ModulePlan& plan = plans[i];
          if (plan.method->calibration == Calibration::kInputScales && plan.params.awq_clip &&
              calib != nullptr && calib->n_samples > 0 && refs[i].slot != LinearSlot::kQ &&
              refs[i].slot != LinearSlot::kK) {
            absl::StatusOr<std::vector<float>> max_val =
                AwqSearchClip(work[k].w.data(), modules[i].rows, modules[i].cols, *calib,
                              work[k].awq_s, plan.params);
            if (max_val.ok()) {
              AwqApplyClip(work[k].w.data(), modules[i].rows, modules[i].cols,
                           plan.params.group_size, *max_val);
            } else {
              std::lock_guard<std::mutex> lock(mu);
              if (failure.ok()) {
                failure = absl::Status(max_val.status().code(),
                                       absl::StrCat("module ", modules[i].name, ": ", max_val.status().message()));
              }
              return;
            }
          }
          absl::StatusOr<QuantizedWeight> q =
              QuantizeOne(plans[i], weights, modules[i].rows, modules[i].cols, calib);
          std::lock_guard<std::mutex> lock(mu);
          if (!q.ok()) {
            if (failure.ok()) {
              failure = absl::Status(q.status().code(),
                                     absl::StrCat("module ", modules[i].name, ": ", q.status().message()));
            }
            return;
          }
          auto owned = std::make_shared<QuantizedWeight>(std::move(*q));
          edited.SetLinear(refs[i], owned->view, owned->representation, owned->bytes(), owned);
          target_edited = true;
          work[k].w = {};
          ++done;
          report("quantize", modules[i].name, plans[i].method->name);
        }
      });
    }
    for (auto& t : threads) t.join();
    RETURN_IF_ERROR(failure);
    if (cancelled()) return absl::CancelledError("quantization cancelled");
    outcome.quantized_modules = done;
    if (c.n_layer == 0) break;
  }
  edited.RefreshSummary();
  outcome.seconds = Since(t0);
  report("done", "", config.method);
  return outcome;
}

}  // namespace ingot::quant
