// The first half of a load (load_open.h): the request's checks and the checkpoint
// opened over its mapped tensors, shared by Engine::LoadModel and Engine::PlanLoad so
// the dry run sees what the load sees.
#include "engine/runtime/load_open.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/file_format.h"
#include "engine/formats/gguf.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/layout.h"
#include "engine/runtime/device.h"

namespace ingot {
namespace {

absl::StatusOr<kernels::KvDtype> ParseKvDtype(const std::string& name) {
  if (name.empty() || name == "f16") return kernels::KvDtype::kF16;
  if (name == "f32") return kernels::KvDtype::kF32;
  if (name == "q8_0") return kernels::KvDtype::kQ8_0;
  return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype '", name, "' is not one of f16, f32, q8_0"));
}

}  // namespace

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
    ASSIGN_OR_RETURN(loaded->model, LlamaModel::FromGguf(std::move(file), tensors_progress));
    format = "gguf";
  } else {
    ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened,
                     Checkpoint::Open(request.source, request.format == "hf" ? "auto" : request.format));
    std::shared_ptr<const Checkpoint> ck(std::move(opened));
    ASSIGN_OR_RETURN(VocabSpec vocab,
                     VocabSpecFromHfDir([&](const char* f) { return ck->ReadSibling(f); }, ck->dir()));
    ASSIGN_OR_RETURN(tokenizer, Tokenizer::Create(std::move(vocab)));
    tensors_progress(0, "");
    ASSIGN_OR_RETURN(loaded->model,
                     LlamaModel::FromCheckpoint(ck, formats::LayoutLinearLoader(ck), tensors_progress));
    const CheckpointQuantConfig& q = ck->quant();
    format = ck->container();
    if (q.layout != nullptr) {
      format = absl::StrCat(format, "/", q.layout->name);
      quantization = absl::StrCat(q.layout->name, q.bits > 0 ? absl::StrCat(" bits=", q.bits) : "",
                                  q.group_size > 0 ? absl::StrCat(" group_size=", q.group_size) : "",
                                  q.quant_type.empty() ? "" : " quant_type=" + q.quant_type);
      note = absl::StrCat("quantization as saved with the checkpoint (", q.where, ")");
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
