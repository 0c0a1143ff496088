#include "engine/runtime/engine.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "engine/common/status.h"
#include "engine/formats/hf_cache.h"
#include "engine/model/residency.h"
#include "engine/runtime/constraint.h"
#include "engine/runtime/device.h"
#include "engine/runtime/load_open.h"
#include "engine/runtime/registry.h"
#include "engine/runtime/sampling.h"

namespace ingot {

const char* ModelStateName(ModelState s) {
  switch (s) {
    case ModelState::kLoading: return "loading";
    case ModelState::kReady: return "ready";
    case ModelState::kUnloading: return "unloading";
    case ModelState::kFailed: return "failed";
    case ModelState::kGone: return "gone";
  }
  return "unknown";
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEos: return "eos";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kGrammarDeadEnd: return "grammar_dead_end";
  }
  return "unknown";
}

// MemTotal / MemAvailable in bytes: the native row's cpu memory statistics.
void ReadMemInfo(int64_t* total, int64_t* available) {
  const absl::StatusOr<kernels::MemoryStats> m = kernels::NativeBackend().memory(kernels::Device{});
  *total = m.ok() ? m->total_bytes : 0;
  *available = m.ok() ? m->free_bytes : 0;
}

namespace {

int DefaultThreads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '-';
}

}  // namespace

absl::Status PlaceModel(const kernels::Backend& backend, const kernels::Device& device, LoadedModel* loaded) {
  RETURN_IF_ERROR(loaded->model->Place(backend, device));
  ModelInfo& info = loaded->info;
  const Placement& p = loaded->model->placement();
  info.backend = backend.name;
  info.device = device.Name();
  info.device_weight_bytes = p.bytes;
  info.device_representations.clear();
  // Count each (representation, note) the row placed, in first-seen order.
  std::vector<std::pair<std::string, int>> seen;
  auto count = [&](const kernels::Placed& placed) {
    if (placed.representation.empty()) return;
    const std::string key =
        placed.note.empty() ? placed.representation : absl::StrCat(placed.representation, " (", placed.note, ")");
    for (auto& [k, n] : seen) {
      if (k == key) {
        ++n;
        return;
      }
    }
    seen.emplace_back(key, 1);
  };
  for (const Placement::Layer& l : p.layers) {
    for (const kernels::Placed& w : l.w) count(w);
  }
  count(p.output);
  for (const auto& [k, n] : seen) info.device_representations.push_back(absl::StrCat(k, " x ", n));
  // On a GPU the model's resident bytes there are what the backend placed (the host
  // keeps the checkpoint's mapping for embeddings and saves). On the cpu a row that
  // uploads (torch) holds its copies beside the host weights.
  info.bytes_resident = device.kind == kernels::DeviceKind::kCpu ? info.weight_bytes + p.bytes : p.bytes;
  return absl::OkStatus();
}

absl::Status ValidateModelName(absl::string_view name, absl::string_view field) {
  if (name.empty() || name.size() > kMaxModelNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be 1-", kMaxModelNameLength,
                                                   " characters, got ", name.size()));
  }
  // Names are logged, used as metric labels and health service names: a closed set
  // of characters keeps all three safe. "." and ".." read as paths in a CLI.
  const bool all_name_chars = std::all_of(name.begin(), name.end(), IsNameChar);
  if (!all_name_chars || name == "." || name == "..") {
    std::string shown;
    for (char c : name.substr(0, 64)) {
      shown += IsNameChar(c) ? std::string(1, c) : absl::StrCat("\\x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
    return absl::InvalidArgumentError(absl::StrCat(field, ": '", shown, name.size() > 64 ? "..." : "",
                                                   "' may only contain letters, digits and . _ : - ",
                                                   "(and is not . or ..)"));
  }
  return absl::OkStatus();
}

Engine::Engine(EngineOptions options)
    : options_(options), registry_(std::make_unique<Registry>()) {
  if (options_.threads <= 0) options_.threads = DefaultThreads();
  if (options_.kv_block_tokens <= 0) options_.kv_block_tokens = 16;
  pool_ = std::make_unique<kernels::ThreadPool>(options_.threads);
}

Engine::~Engine() { registry_->Shutdown(); }

Engine::KvPlan Engine::PlanKv(const LoadedModel& loaded) const {
  const int32_t bt = options_.kv_block_tokens;
  const kernels::KvSpec spec = loaded.model->KvShape(loaded.kv_dtype, bt);
  const int64_t budget = loaded.kv_cache_bytes > 0 ? loaded.kv_cache_bytes : options_.kv_cache_bytes;
  // One full served context always fits (a request that fits the context never waits
  // forever), plus a block for a preempted sequence's next token.
  const int32_t min_blocks = (loaded.context_length + bt - 1) / bt + 1;
  const int64_t want = std::max<int64_t>(min_blocks, budget / spec.BlockBytes());
  KvPlan plan;
  plan.blocks = static_cast<int32_t>(std::min<int64_t>(want, 1 << 24));
  plan.bytes = static_cast<int64_t>(plan.blocks) * spec.BlockBytes();
  return plan;
}

absl::Status Engine::AdmitBytes(const std::string& name, const std::string& what, const std::string& device,
                                int64_t bytes, int64_t credit, const std::vector<std::string>& keep,
                                bool reserve) {
  ASSIGN_OR_RETURN(const kernels::Device d, kernels::ParseDevice(device));
  Admission a;
  a.what = what;
  a.device = d.Name();
  a.bytes = bytes;
  auto it = options_.memory_budget_bytes.find(a.device);
  a.budget = it == options_.memory_budget_bytes.end() ? 0 : it->second;
  if (a.budget <= 0) a.device_free = DeviceFreeBytes(d);
  a.credit = credit;
  a.keep = keep;
  return registry_->Admit(name, a, reserve);
}

absl::StatusOr<std::unique_ptr<Scheduler>> Engine::StartScheduler(const std::shared_ptr<LoadedModel>& loaded) {
  const LlamaModel& model = *loaded->model;
  const kernels::KvSpec spec = model.KvShape(loaded->kv_dtype, options_.kv_block_tokens);
  const int32_t n_blocks = PlanKv(*loaded).blocks;
  absl::StatusOr<std::shared_ptr<KvPool>> kv = model.NewKvPool(spec.dtype, n_blocks, spec.block_tokens);
  if (!kv.ok()) {
    return absl::Status(kv.status().code(), absl::StrCat("KV pool of ", n_blocks, " blocks (",
                                                         static_cast<int64_t>(n_blocks) * spec.BlockBytes(),
                                                         " bytes) on ", model.device().Name(), ": ",
                                                         kv.status().message()));
  }
  SchedulerOptions so;
  so.max_sequences = loaded->max_sequences > 0 ? loaded->max_sequences : options_.max_batch_sequences;
  so.max_sequences = std::min(so.max_sequences, n_blocks);
  so.prefix_cache = loaded->prefix_cache;
  ModelInfo& info = loaded->info;
  info.kv_cache_dtype = kernels::KvDtypeName(spec.dtype);
  info.kv_bytes_per_token = spec.TokenBytes();
  info.kv_block_tokens = spec.block_tokens;
  info.kv_blocks_total = (*kv)->total_blocks();
  info.kv_cache_bytes = (*kv)->bytes();
  info.max_sequences = so.max_sequences;
  info.prefix_cache = so.prefix_cache;
  return std::make_unique<Scheduler>(loaded, pool_.get(), *std::move(kv), so);
}

absl::StatusOr<LoadRequest> Engine::ResolveSource(const LoadRequest& request) const {
  LoadRequest out = request;
  out.revision.clear();
  out.variant.clear();
  // A repository id (or any source with a revision) is a snapshot in the Hugging Face
  // cache: resolved offline, then loaded as that directory (or GGUF file).
  if (formats::IsHfRepoSource(request.source, request.revision)) {
    ASSIGN_OR_RETURN(out.source,
                     formats::ResolveHfCache(formats::HfCacheDir(options_.hf_cache), request.source, request.revision));
  }
  // A unified repository's variant is a subdirectory of it (SaveModel with variants).
  if (const std::string& v = request.variant; !v.empty()) {
    if (!formats::IsVariantName(v)) {
      return absl::InvalidArgumentError(absl::StrCat("variant: '", v, "' must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    out.source += "/" + v;
  }
  return out;
}

absl::StatusOr<ModelInfo> Engine::LoadModel(const LoadRequest& given,
                                            const std::function<void(const LoadProgress&)>& progress,
                                            const std::atomic<bool>* cancel) {
  if (!given.variant.empty() || formats::IsHfRepoSource(given.source, given.revision)) {
    ASSIGN_OR_RETURN(LoadRequest resolved, ResolveSource(given));
    return LoadModel(resolved, progress, cancel);
  }
  const LoadRequest request = WithLoadingDefaults(given, options_.loading);
  auto report = [&](const std::string& stage, double fraction, const std::string& detail) {
    if (progress) progress(LoadProgress{stage, fraction, detail});
  };
  auto cancelled = [&]() -> absl::Status {
    if (cancel != nullptr && cancel->load()) {
      return absl::CancelledError(absl::StrCat("loading ", request.source, " was cancelled"));
    }
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(const ValidatedLoad valid, ValidateLoad(request));
  const kernels::Device& device = valid.device;
  const kernels::Backend* backend = valid.backend;
  const kernels::KvDtype kv_dtype = valid.kv_dtype;
  LoadRequest resolved = request;
  resolved.device = device.Name();
  resolved.pinned = request.pinned.value_or(options_.default_pinned);
  resolved.keep_alive_s = request.keep_alive_s.value_or(options_.default_keep_alive_s);
  if (*resolved.keep_alive_s < 0) {
    return absl::InvalidArgumentError(absl::StrCat("keep_alive must be >= 0 seconds, got ", *resolved.keep_alive_s));
  }
  const int workers = request.loading_workers > 0    ? request.loading_workers
                      : request.loading_workers < 0  ? DefaultThreads()
                      : options_.quantize_workers > 0 ? options_.quantize_workers
                                                      : options_.threads;
  // max_memory of the model's device caps what it holds there (weights + KV pool).
  auto cap = request.max_memory.find(device.Name());
  const int64_t max_memory = cap == request.max_memory.end() ? 0 : cap->second;
  const bool offload = request.offload_to_cpu.value_or(false);
  auto check_max_memory = [&](int64_t bytes) -> absl::Status {
    if (max_memory <= 0 || bytes <= max_memory) return absl::OkStatus();
    if (offload && device.kind != kernels::DeviceKind::kCpu) {
      return absl::FailedPreconditionError(absl::StrCat(
          "offload_to_cpu: '", request.name, "' needs ", bytes, " bytes on ", device.Name(), ", over max_memory[",
          device.Name(), "] = ", max_memory, "; splitting layers between ", device.Name(),
          " and cpu needs two backend rows in one forward pass, which this build does not have"));
    }
    return absl::ResourceExhaustedError(absl::StrCat("max_memory[", device.Name(), "]: '", request.name, "' needs ",
                                                     bytes, " bytes on ", device.Name(), ", over the cap of ",
                                                     max_memory));
  };
  RETURN_IF_ERROR(registry_->Reserve(request.name, resolved));
  const std::string what = absl::StrCat("loading '", request.name, "' from ", request.source);
  auto result = CatchExceptions("loading " + request.source, [&]() -> absl::StatusOr<ModelInfo> {
    report("open", 0.0, request.source);
    auto tensors_progress = [&](double f, const std::string& detail) { report("tensors", 0.05 + 0.75 * f, detail); };
    RETURN_IF_ERROR(cancelled());
    ASSIGN_OR_RETURN(OpenedCheckpoint opened, OpenCheckpoint(request, tensors_progress));
    std::shared_ptr<LoadedModel> loaded = std::move(opened.loaded);
    std::unique_ptr<Tokenizer> tokenizer = std::move(opened.tokenizer);
    const std::string& format = opened.format;
    const std::string& quantization = opened.quantization;
    const std::string& note = opened.note;
    RETURN_IF_ERROR(cancelled());
    const LlamaConfig& c = loaded->model->config();
    int32_t ctx = request.context_length > 0 ? request.context_length : std::min(c.context_length, 4096);
    ctx = std::min(ctx, c.context_length);
    loaded->context_length = ctx;
    loaded->kv_cache_bytes = request.kv_cache_bytes;
    loaded->kv_dtype = kv_dtype;
    loaded->max_sequences = request.max_sequences;
    loaded->prefix_cache = request.prefix_cache.value_or(true);
    // Admission before the weights are touched (prefault) or made (quantize while
    // loading, which admits its own estimate): the weights as mapped plus the KV pool.
    const bool quantize_here = request.quantization && quantization.empty();
    if (!quantize_here) {
      const int64_t bytes = loaded->model->weights().weight_bytes + PlanKv(*loaded).bytes;
      RETURN_IF_ERROR(check_max_memory(bytes));
      RETURN_IF_ERROR(AdmitBytes(request.name, what, device.Name(), bytes, 0, {}, true));
    }
    // unified_memory reads every page now, so the first request does not; streaming
    // leaves that to the first request (ValidateLoad); full and low_memory copy below.
    if (request.loading_strategy == LoadingStrategy::kUnifiedMemory) {
      report("prefault", 0.8, "");
      RETURN_IF_ERROR(cancelled());
      PrefaultMappedWeights(loaded->model->weights());
    }
    loaded->tokenizer = std::move(tokenizer);

    ModelInfo& info = loaded->info;
    info.name = request.name;
    info.source = request.source;
    info.format = format;
    info.quantization = quantization;
    info.quantization_note = note;
    info.architecture = c.architecture;
    info.parameter_count = loaded->model->weights().parameter_count;
    info.device = device.Name();
    for (const auto& s : loaded->model->weights().summary) {
      info.tensor_kinds.push_back({s.kind, s.representation, s.tensors, s.parameters, s.bytes});
    }
    info.weight_bytes = loaded->model->weights().weight_bytes;
    info.bytes_resident = info.weight_bytes;
    info.context_length = ctx;
    info.vocab_size = c.vocab_size;
    info.layers = c.n_layer;
    info.state = ModelState::kReady;
    info.has_chat_template = !loaded->tokenizer->spec().chat_template.empty();
    if (request.quantization && !quantization.empty()) {
      info.quantization_note = absl::StrCat(note, "; the request's ", request.quantization->method,
                                            " was not applied: a checkpoint's own quantization wins");
    } else if (request.quantization) {
      // Quantize while loading, before anything is published: the name serves only
      // the quantized model. The dense weights are the file's mapping (page cache, not
      // the process's own memory) and each module is quantized from one f32 buffer
      // per worker, so what the load allocates stays near the quantized size.
      QuantizeRequest q;
      q.source = request.name;
      q.config = *request.quantization;
      // low_memory converts one module at a time.
      q.workers = request.loading_strategy == LoadingStrategy::kLowMemory ? 1 : workers;
      ASSIGN_OR_RETURN(Quantized quantized,
                       QuantizeLoaded(q, loaded, request.name, /*replaces_source=*/false,
                                      [&](const quant::QuantizeProgress& p) {
                                        report("quantize",
                                               0.85 + 0.15 * (p.total > 0 ? static_cast<double>(p.step) / p.total : 0.0),
                                               p.module);
                                      },
                                      cancel));
      loaded = std::move(quantized.model);
      loaded->info.quantization_note = absl::StrCat(
          "quantized while loading", quantized.result.note.empty() ? "" : "; " + quantized.result.note);
    }
    RETURN_IF_ERROR(cancelled());
    if (request.loading_strategy == LoadingStrategy::kFull || request.loading_strategy == LoadingStrategy::kLowMemory) {
      const bool low = request.loading_strategy == LoadingStrategy::kLowMemory;
      RETURN_IF_ERROR(CopyMappedWeights(
          &loaded->model->mutable_weights(), low ? 1 : workers, low, [&](double f, const std::string& module) { report("copy", 0.9 + 0.07 * f, module); }));
    }
    ModelInfo& li = loaded->info;
    li.loading_strategy = LoadingStrategyName(request.loading_strategy);
    li.file_backed_bytes = MappedWeightBytes(loaded->model->weights());
    li.dtype = valid.dtype;
    li.max_memory_bytes = max_memory;
    li.offload_to_cpu = offload;
    if (request.loading_strategy == LoadingStrategy::kStreaming) {
      li.loading_note = "streaming: published before any weight was read; each layer is read from the file as "
                        "the first request reaches it";
    }
    const std::string sep = li.loading_note.empty() ? "" : "; ";
    if (offload && device.kind == kernels::DeviceKind::kCpu) {
      absl::StrAppend(&li.loading_note, sep, "offload_to_cpu: the model is on cpu already; nothing to offload");
    } else if (offload) {
      absl::StrAppend(&li.loading_note, sep, "offload_to_cpu: every layer fits on ", device.Name(),
                      "; none offloaded");
    }
    RETURN_IF_ERROR(cancelled());
    report("place", 0.97, absl::StrCat(backend->name, " on ", device.Name()));
    RETURN_IF_ERROR(PlaceModel(*backend, device, loaded.get()));
    // The exact footprint now that the row has placed the weights (a backend's copies
    // included); the same as admitted for native rows.
    RETURN_IF_ERROR(check_max_memory(loaded->info.bytes_resident + PlanKv(*loaded).bytes));
    RETURN_IF_ERROR(AdmitBytes(request.name, what, device.Name(), loaded->info.bytes_resident + PlanKv(*loaded).bytes,
                               0, {}, true));
    ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, StartScheduler(loaded));
    registry_->Publish(request.name, loaded, std::move(scheduler));
    report("ready", 1.0, "");
    // As GetModel describes it: resident bytes with the KV pool, the eviction policy.
    return registry_->Get(request.name).value_or(loaded->info);
  });
  if (!result.ok()) registry_->Fail(request.name, result.status());
  return result;
}

absl::Status Engine::UnloadModel(const std::string& name) {
  return registry_->Unload(name, kReasonUnloadRequest);
}

int Engine::WatchModels(std::function<void(const ModelEvent&)> sink, std::vector<ModelInfo>* snapshot) {
  return registry_->Subscribe(std::move(sink), snapshot);
}

void Engine::StopWatching(int id) { registry_->Unsubscribe(id); }

std::vector<ModelInfo> Engine::ListModels() const { return registry_->List(); }

absl::StatusOr<ModelInfo> Engine::GetModel(const std::string& name) const { return registry_->Get(name); }

std::vector<DeviceInfo> Engine::Devices() const {
  std::vector<DeviceInfo> out;
  for (const DeviceReport& r : ListDevices()) {
    DeviceInfo d;
    d.name = r.device.Name();
    d.kind = kernels::DeviceKindName(r.device.kind);
    d.available = r.available;
    d.reason = r.reason;
    d.backends = r.backends;
    d.total_bytes = r.memory.total_bytes;
    d.free_bytes = r.memory.free_bytes;
    d.allocator_allocated_bytes = r.memory.allocated_bytes;
    d.allocator_reserved_bytes = r.memory.reserved_bytes;
    d.used_bytes = registry_->BytesOnDevice(d.name);
    auto budget = options_.memory_budget_bytes.find(d.name);
    d.budget_bytes = budget == options_.memory_budget_bytes.end() ? 0 : budget->second;
    d.admit_free_bytes = d.budget_bytes > 0 ? std::max<int64_t>(0, d.budget_bytes - d.used_bytes) : d.free_bytes;
    d.models = registry_->ModelsOnDevice(d.name);
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<TokenizeResult> Engine::Tokenize(const std::string& model, const std::string& text,
                                                bool add_special, bool parse_special) const {
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(model));
  const Tokenizer& tok = *ready.model->tokenizer;
  TokenizeResult out;
  out.ids = tok.Encode(text, add_special, parse_special);
  for (int32_t id : out.ids) out.pieces.push_back(tok.TokenBytes(id, true));
  return out;
}

absl::StatusOr<std::vector<std::string>> Engine::TokenPieces(const std::string& model,
                                                             const std::vector<int32_t>& ids) const {
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(model));
  const Tokenizer& tok = *ready.model->tokenizer;
  const int32_t vocab = ready.model->model->config().vocab_size;
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary (",
                                                     vocab, " tokens)"));
    }
    pieces.push_back(tok.TokenBytes(id, true));
  }
  return pieces;
}

absl::StatusOr<std::shared_ptr<GenerationHandle>> Engine::Generate(GenerateRequest request,
                                                                   GenerationCallbacks callbacks) {
  const double submit = MonotonicSeconds();
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(request.model));
  RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  ASSIGN_OR_RETURN(std::shared_ptr<const grammar::Grammar> constraint, CompileConstraint(request.sampling.constraint));
  const LoadedModel& m = *ready.model;
  const int32_t vocab = m.model->config().vocab_size;
  for (const auto& [id, bias] : request.sampling.logit_bias) {
    if (id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: token id ", id, " is outside the vocabulary (",
                                                     vocab, " tokens)"));
    }
  }
  for (int32_t id : request.sampling.stop_token_ids) {
    if (id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: token id ", id, " is outside the vocabulary (",
                                                     vocab, " tokens)"));
    }
  }
  const Tokenizer& tok = *m.tokenizer;
  std::string prompt = request.prompt;
  if (!request.messages.empty()) {
    if (!request.prompt.empty()) {
      return absl::InvalidArgumentError("give either a prompt or chat messages, not both");
    }
    const std::string& tmpl = tok.spec().chat_template;
    if (tmpl.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", request.model, "' has no chat template (tokenizer.chat_template); send a raw prompt"));
    }
    ChatTemplateOptions opts;
    opts.add_generation_prompt = true;
    if (tok.bos_id() >= 0) opts.bos_token = tok.TokenText(tok.bos_id());
    if (tok.eos_id() >= 0) opts.eos_token = tok.TokenText(tok.eos_id());
    ASSIGN_OR_RETURN(prompt, ApplyChatTemplate(tmpl, request.messages, opts));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  SequenceRequest seq;
  seq.prompt = tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (seq.prompt.empty()) return absl::InvalidArgumentError("prompt tokenizes to nothing");
  const int32_t n_prompt = static_cast<int32_t>(seq.prompt.size());
  if (n_prompt >= m.context_length) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", n_prompt, " tokens; the context of '",
                                                   request.model, "' is ", m.context_length, " tokens"));
  }
  seq.sampling = request.sampling;
  // One automaton for the request: its completions share its states and masks.
  if (constraint) seq.automaton = std::make_shared<grammar::Automaton>(constraint);
  seq.max_new_tokens = std::min(request.sampling.max_tokens, m.context_length - n_prompt);
  seq.seed = request.sampling.seed ? *request.sampling.seed : std::random_device{}();
  seq.handle = std::make_shared<GenerationHandle>();
  seq.request_id = request.request_id;
  seq.submit_time_s = submit;
  auto handle = seq.handle;
  const int32_t n = request.sampling.n;
  if (n <= 1) {
    seq.callbacks = std::move(callbacks);
    RETURN_IF_ERROR(ready.scheduler->Submit(std::move(seq)));
    return handle;
  }
  // n completions: each streams its chunks with its index; a completion's last chunk
  // goes out as a normal chunk with its finish reason, and the request ends when the
  // last one does, with the usage of all (the prompt counted once).
  struct Group {
    std::mutex mu;
    GenerationCallbacks callbacks;
    int remaining = 0;
    absl::Status status;
    GenerationChunk final;  // completion 0's, with the usage summed
  };
  auto group = std::make_shared<Group>();
  group->callbacks = std::move(callbacks);
  group->remaining = n;
  auto ready_flag = std::make_shared<std::atomic<bool>>(false);
  std::vector<SequenceRequest> seqs;
  for (int32_t i = 0; i < n; ++i) {
    SequenceRequest s = seq;
    s.seed = seq.seed + static_cast<uint64_t>(i);
    if (m.prefix_cache) s.prompt_ready = ready_flag;  // without it nothing can be shared
    s.leader = i == 0;
    // The prompt's logprobs are the same for every completion: the leader computes
    // them (the others share its blocks) and completion 0's first message has them.
    if (i > 0) s.sampling.prompt_logprobs = -1;
    s.callbacks.on_chunk = [group, i](GenerationChunk c) {
      c.index = i;
      std::lock_guard<std::mutex> lock(group->mu);
      group->callbacks.on_chunk(std::move(c));
    };
    s.callbacks.on_done = [group, i](absl::Status st, GenerationChunk c) {
      std::lock_guard<std::mutex> lock(group->mu);
      if (st.ok()) {
        GenerationChunk last;
        last.index = i;
        last.text = std::exchange(c.text, {});
        last.token_ids = std::exchange(c.token_ids, {});
        last.logprobs = std::exchange(c.logprobs, {});
        last.prompt_logprobs = std::exchange(c.prompt_logprobs, {});
        last.finish_reason = c.finish_reason;
        group->callbacks.on_chunk(std::move(last));
        if (i == 0) {
          const int32_t completions = group->final.completion_tokens;
          group->final = std::move(c);
          group->final.completion_tokens += completions;
        } else {
          group->final.completion_tokens += c.completion_tokens;
        }
      } else if (group->status.ok()) {
        group->status = st;
      }
      if (--group->remaining > 0) return;
      group->final.final = true;
      group->final.index = 0;
      group->callbacks.on_done(group->status, std::move(group->final));
    };
    seqs.push_back(std::move(s));
  }
  RETURN_IF_ERROR(ready.scheduler->SubmitGroup(std::move(seqs)));
  return handle;
}

int Engine::RunningRequests(const std::string& model) const { return registry_->Running(model); }

std::vector<std::pair<std::string, int>> Engine::RunningRequestsByModel() const {
  return registry_->RunningByModel();
}

void Engine::CancelAllGenerations() { registry_->CancelAll(); }

}  // namespace ingot
