// The first half of a load (load_open.h): the request's checks and the checkpoint
// opened over its mapped tensors, shared by Engine::LoadModel and Engine::PlanLoad so
// the dry run sees what the load sees.
#include "engine/runtime/load_open.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/file_format.h"
#include "engine/formats/gguf.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/layout.h"
#include "engine/model/load.h"
#include "engine/runtime/device.h"

namespace ingot {
namespace {

absl::StatusOr<kernels::KvDtype> ParseKvDtype(const std::string& name) {
  if (name.empty() || name == "f16") return kernels::KvDtype::kF16;
  if (name == "f32") return kernels::KvDtype::kF32;
  if (name == "q8_0") return kernels::KvDtype::kQ8_0;
  return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype '", name, "' is not one of f16, f32, q8_0"));
}

// The compute dtype a backend row runs on `device`, or why it cannot run `asked`.
// native computes in f32 on raw pointers; torch in f32 on cpu and bf16 on cuda:N
// (kernels/torch ComputeDtype), which is not yet a per-model choice.
absl::StatusOr<std::string> ResolveDtype(const std::string& asked, const kernels::Backend& backend,
                                         const kernels::Device& device) {
  if (!asked.empty() && asked != "auto" && asked != "f32" && asked != "bf16" && asked != "f16") {
    return absl::InvalidArgumentError(absl::StrCat("dtype: '", asked, "' is not one of auto, f32, bf16, f16"));
  }
  const std::string runs =
      std::string(backend.name) == "torch" && device.kind == kernels::DeviceKind::kCuda ? "bf16" : "f32";
  if (asked.empty() || asked == "auto" || asked == runs) return runs;
  return absl::FailedPreconditionError(absl::StrCat(
      "dtype: backend ", backend.name, " computes in ", runs, " on ", device.Name(), "; ", asked,
      std::string(backend.name) == "native" ? " needs backend torch" : " is not selectable per model in this build",
      " (leave dtype empty or auto, or ask for ", runs, ")"));
}

bool HasSuffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The path Checkpoint::Open reads under use_safetensors: a directory that has both
// safetensors and pytorch_model.bin is read from the pickle when use_safetensors is
// false; true refuses a source with no safetensors.
absl::StatusOr<std::string> WeightsPath(const LoadRequest& r) {
  if (!r.use_safetensors.has_value()) return r.source;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(r.source, ec)) {
    if (*r.use_safetensors && !HasSuffix(r.source, ".safetensors") && !HasSuffix(r.source, ".safetensors.index.json")) {
      return absl::FailedPreconditionError(
          absl::StrCat("use_safetensors: ", r.source, " is not a safetensors file"));
    }
    return r.source;
  }
  bool has_safetensors = false;
  for (const fs::directory_entry& e : fs::directory_iterator(r.source, ec)) {
    const std::string name = e.path().filename().string();
    has_safetensors |= HasSuffix(name, ".safetensors") || HasSuffix(name, ".safetensors.index.json");
  }
  const std::string pickle = r.source + "/pytorch_model.bin";
  const bool has_pickle = fs::is_regular_file(pickle, ec);
  if (*r.use_safetensors && !has_safetensors) {
    return absl::FailedPreconditionError(absl::StrCat(
        "use_safetensors: ", r.source, " has no .safetensors weights",
        has_pickle ? " (only the pickle pytorch_model.bin; set use_safetensors false to read it)" : ""));
  }
  if (!*r.use_safetensors && has_pickle) return pickle;
  return r.source;
}

}  // namespace

const char* LoadingStrategyName(LoadingStrategy s) {
  switch (s) {
    case LoadingStrategy::kDefault: return "default";
    case LoadingStrategy::kFull: return "full";
    case LoadingStrategy::kLowMemory: return "low_memory";
    case LoadingStrategy::kUnifiedMemory: return "unified_memory";
    case LoadingStrategy::kStreaming: return "streaming";
  }
  return "unknown";
}

absl::StatusOr<LoadingStrategy> ParseLoadingStrategy(absl::string_view name) {
  if (name.empty()) return LoadingStrategy::kDefault;
  for (LoadingStrategy s : {LoadingStrategy::kFull, LoadingStrategy::kLowMemory, LoadingStrategy::kUnifiedMemory,
                            LoadingStrategy::kStreaming}) {
    if (name == LoadingStrategyName(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("loading_strategy: '", name,
                                                 "' is not one of full, low_memory, unified_memory, streaming"));
}

LoadRequest WithLoadingDefaults(const LoadRequest& request, const LoadingDefaults& defaults) {
  LoadRequest r = request;
  if (r.loading_strategy == LoadingStrategy::kDefault) r.loading_strategy = defaults.strategy;
  if (r.loading_strategy == LoadingStrategy::kDefault) r.loading_strategy = LoadingStrategy::kUnifiedMemory;
  if (r.loading_workers == 0) r.loading_workers = defaults.workers;
  if (r.dtype.empty()) r.dtype = defaults.dtype;
  if (!r.use_safetensors) r.use_safetensors = defaults.use_safetensors;
  if (r.max_memory.empty()) r.max_memory = defaults.max_memory;
  if (!r.offload_to_cpu) r.offload_to_cpu = defaults.offload_to_cpu;
  return r;
}

int64_t DeviceFreeBytes(const kernels::Device& device) {
  for (const kernels::Backend* b : kernels::Backends()) {
    for (const kernels::Device& d : b->devices()) {
      if (d.Name() != device.Name()) continue;
      const absl::StatusOr<kernels::MemoryStats> m = b->memory(device);
      if (m.ok()) return m->free_bytes;
    }
  }
  return 0;
}

absl::StatusOr<ValidatedLoad> ValidateLoad(const LoadRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.name, "name"));
  if (request.source.empty()) return absl::InvalidArgumentError("model source path must not be empty");
  // Before anything opens it: a FIFO, device or socket would block or never end; a
  // loop or a path outside the model roots is refused with its own message.
  RETURN_IF_ERROR(formats::CheckSource(request.source).status());
  ValidatedLoad v;
  ASSIGN_OR_RETURN(v.device, kernels::ParseDevice(request.device));
  ASSIGN_OR_RETURN(v.backend, ChooseBackend(request.backend, v.device));
  if (!request.format.empty() && request.format != "auto" && formats::FindFileFormat(request.format) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("format '", request.format, "' is not one of ", formats::LoadFormatNames()));
  }
  if (request.context_length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("context_length must be >= 0, got ", request.context_length));
  }
  ASSIGN_OR_RETURN(v.kv_dtype, ParseKvDtype(request.kv_cache_dtype));
  if (request.kv_cache_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes must be >= 0, got ", request.kv_cache_bytes));
  }
  if (request.max_sequences < 0 || request.max_sequences > kMaxSequences) {
    return absl::InvalidArgumentError(absl::StrCat("max_sequences must be in [0, ", kMaxSequences, "], got ",
                                                   request.max_sequences));
  }
  if (request.loading_workers < -1 || request.loading_workers > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loading_workers: must be in [-1, 64] (0 = the server's default, -1 = every core), got ",
        request.loading_workers));
  }
  ASSIGN_OR_RETURN(v.dtype, ResolveDtype(request.dtype, *v.backend, v.device));
  for (const auto& [name, bytes] : request.max_memory) {
    absl::StatusOr<kernels::Device> d = kernels::ParseDevice(name);
    if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat("max_memory: ", d.status().message()));
    if (bytes <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("max_memory[", name, "]: must be > 0 bytes, got ", bytes));
    }
  }
  // STREAMING is served from the mapping like unified_memory, published before any
  // weight is read: the first request's forward pass faults each layer in from the file
  // as it reaches it (it waits at the first layer not yet read). That holds only where
  // the weights are used in place: nothing to quantize, nothing for a backend to upload.
  if (request.loading_strategy == LoadingStrategy::kStreaming) {
    if (request.quantization) {
      return absl::FailedPreconditionError(
          "loading_strategy: streaming serves the file's weights in place as the first request reads them; "
          "quantizing while loading needs every weight read first (use full, low_memory or unified_memory)");
    }
    if (std::string(v.backend->name) != "native") {
      return absl::FailedPreconditionError(absl::StrCat(
          "loading_strategy: streaming serves the file's weights in place; backend ", v.backend->name,
          " uploads every weight before serving (use full, low_memory or unified_memory)"));
    }
  }
  return v;
}

absl::StatusOr<OpenedCheckpoint> OpenCheckpoint(const LoadRequest& request,
                                                const std::function<void(double, const std::string&)>& tensors_progress) {
  OpenedCheckpoint out;
  auto loaded = std::make_shared<LoadedModel>();
  std::string format, quantization, note;
  std::unique_ptr<Tokenizer> tokenizer;
  // The source was checked to be a regular file or a directory (CheckSource) before.
  if (formats::IsGguf(request.format, request.source)) {
    ASSIGN_OR_RETURN(std::unique_ptr<gguf::File> file, gguf::File::Open(request.source));
    ASSIGN_OR_RETURN(VocabSpec vocab, VocabSpecFromGguf(*file));
    ASSIGN_OR_RETURN(tokenizer, Tokenizer::Create(std::move(vocab)));
    tensors_progress(0, "");
    ASSIGN_OR_RETURN(LlamaWeights model_weights, LoadGgufWeights(std::move(file), tensors_progress));
    loaded->model = std::make_unique<LlamaModel>(std::move(model_weights));
    format = "gguf";
  } else {
    ASSIGN_OR_RETURN(const std::string weights, WeightsPath(request));
    ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened,
                     Checkpoint::Open(weights, request.format == "hf" ? "auto" : request.format));
    std::shared_ptr<const Checkpoint> ck(std::move(opened));
    ASSIGN_OR_RETURN(VocabSpec vocab,
                     VocabSpecFromHfDir([&](const char* f) { return ck->ReadSibling(f); }, ck->dir()));
    ASSIGN_OR_RETURN(tokenizer, Tokenizer::Create(std::move(vocab)));
    tensors_progress(0, "");
    ASSIGN_OR_RETURN(LlamaWeights model_weights,
                     LoadCheckpointWeights(ck, formats::LayoutLinearLoader(ck), tensors_progress));
    loaded->model = std::make_unique<LlamaModel>(std::move(model_weights));
    const CheckpointQuantConfig& q = ck->quant();
    format = ck->container();
    if (q.layout != nullptr) {
      format = absl::StrCat(format, "/", q.layout->name);
      quantization = absl::StrCat(q.layout->name, q.bits > 0 ? absl::StrCat(" bits=", q.bits) : "",
                                  q.group_size > 0 ? absl::StrCat(" group_size=", q.group_size) : "",
                                  q.quant_type.empty() ? "" : " quant_type=" + q.quant_type);
      note = absl::StrCat("quantization as saved with the checkpoint (", q.where, ")");
      if (q.layout->load_note != nullptr) {
        const std::string converted = q.layout->load_note(*ck);
        if (!converted.empty()) absl::StrAppend(&note, "; ", converted);
      }
    }
  }
  if (tokenizer->vocab_size() > loaded->model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(request.source, ": the tokenizer has ", tokenizer->vocab_size(),
                                                   " tokens but the model only ", loaded->model->config().vocab_size));
  }
  out.loaded = std::move(loaded);
  out.tokenizer = std::move(tokenizer);
  out.format = std::move(format);
  out.quantization = std::move(quantization);
  out.note = std::move(note);
  return out;
}

}  // namespace ingot
