// SaveModel: one GGUF file (ExportGguf), or a directory in a layout (SaveCheckpoint;
// both in engine/model/save.h) with its model card; with variants, a unified repository
// as the SmolLM3 seed pipeline publishes one: the model at the root and each variant,
// quantized from it without being published, in a subdirectory of its own.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/hf_cache.h"
#include "engine/formats/layouts/layout.h"
#include "engine/model/save.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/registry.h"
#include "engine/runtime/scheduler.h"

namespace ingot {
namespace {
namespace fs = std::filesystem;

absl::Status CheckLayout(const std::string& format, const std::string& field) {
  if (format == "gguf" || formats::FindSaveLayout(format) != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": format '", format,
                                                 "' is not one ingot writes (gguf, ingot, bitsandbytes, mlx, gptq, hqq)"));
}

ModelCardInfo CardOf(const ModelInfo& info, const std::string& title, const std::string& layout) {
  ModelCardInfo c;
  c.title = title;
  c.base_model = info.source;
  c.architecture = info.architecture;
  c.layout = layout;
  c.quantization = info.quantization;
  c.parameters = info.parameter_count;
  c.weight_bytes = info.weight_bytes;
  c.context_length = info.context_length;
  return c;
}

}  // namespace

absl::StatusOr<int64_t> Engine::SaveModel(const std::string& name, const std::string& path,
                                          const std::string& format, bool overwrite) {
  SaveRequest request;
  request.name = name;
  request.path = path;
  request.format = format;
  request.overwrite = overwrite;
  ASSIGN_OR_RETURN(SaveResult r, SaveModel(request));
  return r.bytes;
}

absl::StatusOr<int64_t> Engine::SaveDirectory(const LoadedModel& model, const std::string& path,
                                              const std::string& layout, ModelCardInfo card) const {
  const VocabSpec& vocab = model.tokenizer->spec();
  ASSIGN_OR_RETURN(std::vector<std::string> files, SaveCheckpoint(model.model->weights(), vocab, path, layout));
  const std::string readme = path + "/README.md";
  {
    std::ofstream out(readme, std::ios::binary | std::ios::trunc);
    out << ModelCard(card);
    if (!out) return absl::InternalError(absl::StrCat("writing ", readme, " failed"));
  }
  files.push_back(readme);
  int64_t bytes = 0;
  for (const std::string& f : files) bytes += static_cast<int64_t>(fs::file_size(f));
  return bytes;
}

absl::StatusOr<SaveResult> Engine::SaveModel(const SaveRequest& request, const std::atomic<bool>* cancel) {
  const std::string& path = request.path;
  if (path.empty()) return absl::InvalidArgumentError("path: required");
  const std::string format = request.format.empty() ? "gguf" : request.format == "bnb" ? "bitsandbytes"
                                                                                       : request.format;
  RETURN_IF_ERROR(CheckLayout(format, "format"));
  const bool gguf = format == "gguf";
  if (gguf && !request.variants.empty()) {
    return absl::InvalidArgumentError("variants: a GGUF is one file; save a unified repository as a directory "
                                      "(format ingot, bitsandbytes, mlx, gptq or hqq)");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < request.variants.size(); ++i) {
    const SaveVariant& v = request.variants[i];
    const std::string field = absl::StrCat("variants[", i, "]");
    if (!formats::IsVariantName(v.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: '", v.name, "' must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    if (!names.insert(v.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".name: '", v.name, "' is used twice"));
    }
    if (!v.format.empty()) RETURN_IF_ERROR(CheckLayout(v.format, field + ".format"));
    if (v.format == "gguf") return absl::InvalidArgumentError(field + ".format: a variant is a directory, not gguf");
  }
  std::error_code ec;
  // Opening a FIFO for writing blocks until a reader comes; a device or socket is no
  // place for a model either. status() looks without opening.
  const fs::file_status st = fs::status(path, ec);
  if (!ec && fs::exists(st) && !fs::is_regular_file(st) && !fs::is_directory(st)) {
    return absl::FailedPreconditionError(
        absl::StrCat("path ", path, ": is not a regular file or a directory; a model is not written there"));
  }
  if (!request.overwrite && fs::exists(path, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists (set overwrite to replace it)"));
  }
  if (!gguf && fs::exists(path, ec) && !fs::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a file; a ", format, " checkpoint is a directory"));
  }
  ASSIGN_OR_RETURN(Registry::Ready ready, registry_->Find(request.name));
  const std::shared_ptr<const LoadedModel> base = ready.model;
  return CatchExceptions("saving " + request.name, [&]() -> absl::StatusOr<SaveResult> {
    SaveResult out;
    if (gguf) {
      RETURN_IF_ERROR(ExportGguf(base->model->weights(), base->tokenizer->spec(), path));
      out.bytes = static_cast<int64_t>(fs::file_size(path));
      out.directories.push_back(path);
      return out;
    }
    // Variants first: a quantization that fails leaves nothing half-written at the root.
    struct Made {
      const SaveVariant* variant;
      std::shared_ptr<LoadedModel> model;
      std::string layout;
      ModelCardInfo card;
    };
    std::vector<Made> made;
    EvaluateResult base_eval;
    EvaluateRequest eval;
    eval.context_length = std::min<int32_t>(512, base->context_length);
    eval.max_tokens = request.evaluate_tokens;
    if (request.evaluate && !request.variants.empty()) {
      ASSIGN_OR_RETURN(base_eval, EvaluateLoaded(base, nullptr, eval, cancel));
    }
    for (const SaveVariant& v : request.variants) {
      QuantizeRequest q;
      q.source = request.name;
      q.config = v.config;
      ASSIGN_OR_RETURN(Quantized qm, QuantizeLoaded(q, base, absl::StrCat(request.name, "/", v.name),
                                                    /*replaces_source=*/false, nullptr, cancel));
      const std::string layout = v.format.empty() ? format : v.format;
      ModelCardInfo card = CardOf(qm.model->info, absl::StrCat(request.name, " (", v.name, ")"), layout);
      card.base_model = base->info.source;
      card.bits = v.config.bits;
      card.group_size = v.config.group_size;
      if (request.evaluate) {
        ASSIGN_OR_RETURN(EvaluateResult e, EvaluateLoaded(qm.model, base, eval, cancel));
        card.has_quality = true;
        card.perplexity = e.perplexity;
        card.base_perplexity = base_eval.perplexity;
        card.mean_kl = e.mean_kl;
        card.top1_agreement = e.top1_agreement;
        card.tokens_scored = e.tokens_scored;
      }
      made.push_back({&v, std::move(qm.model), layout, std::move(card)});
    }
    ModelCardInfo root = CardOf(base->info, request.name, format);
    for (const Made& m : made) {
      root.variants.emplace_back(m.variant->name, m.card.quantization.empty() ? m.layout
                                                                              : m.card.quantization + ", " + m.layout);
    }
    ASSIGN_OR_RETURN(out.bytes, SaveDirectory(*base, path, format, root));
    out.directories.push_back(path);
    for (const Made& m : made) {
      const std::string dir = path + "/" + m.variant->name;
      ASSIGN_OR_RETURN(int64_t bytes, SaveDirectory(*m.model, dir, m.layout, m.card));
      out.bytes += bytes;
      out.directories.push_back(dir);
    }
    return out;
  });
}

}  // namespace ingot
