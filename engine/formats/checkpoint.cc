#include "engine/formats/checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/file_format.h"
#include "engine/formats/layouts/layout.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// Bounded, non-blocking, inside the model roots (formats/file_access.h).
bool ReadText(const std::string& path, std::string* out) {
  absl::StatusOr<std::string> text = formats::ReadFileBounded(path, formats::kMaxJsonFileBytes);
  if (!text.ok()) return false;
  *out = *std::move(text);
  return true;
}

bool IsDir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool Exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// The weights file of a directory, in the order transformers looks for them.
std::string FindWeights(const std::string& dir) {
  for (const char* name : {"model.safetensors.index.json", "model.safetensors", "pytorch_model.bin",
                           "qmodel.pt", "weights.npz", "model.npz"}) {
    if (Exists(dir + "/" + name)) return dir + "/" + name;
  }
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (absl::EndsWith(n, ".safetensors") || absl::EndsWith(n, ".safetensors.index.json") ||
        absl::EndsWith(n, ".bin") || absl::EndsWith(n, ".pt") || absl::EndsWith(n, ".pth") ||
        absl::EndsWith(n, ".npz")) {
      found.push_back(e.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  // An index wins over its shards.
  for (const auto& f : found) {
    if (absl::EndsWith(f, ".index.json")) return f;
  }
  return found.size() == 1 ? found[0] : "";
}

}  // namespace

Checkpoint::~Checkpoint() = default;

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& path,
                                                             const std::string& format) {
  auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
  ck->path_ = path;
  std::string weights;
  if (IsDir(path)) {
    ck->dir_ = path;
    weights = FindWeights(path);
    if (weights.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": no weights found (model.safetensors, model.safetensors.index.json, "
                "pytorch_model.bin, *.safetensors, *.pt, *.npz)"));
    }
  } else {
    if (!Exists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
    weights = path;
    ck->dir_ = fs::path(path).parent_path().string();
    if (ck->dir_.empty()) ck->dir_ = ".";
  }
  const formats::FileFormat* container = formats::FindFileFormat(format);
  if (container == nullptr || container->open == nullptr) container = formats::ContainerOfFile(weights);
  if (container == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(weights, ": not a checkpoint format this build reads "
                                                   "(.safetensors, .bin/.pt/.pth, .npz, .gguf)"));
  }
  ck->container_ = container->name;
  ASSIGN_OR_RETURN(formats::OpenedTensors opened, container->open(weights));
  for (formats::TensorView& t : opened.tensors) ck->tensors_.emplace(t.name, std::move(t));
  // A single .pth with a layout's config inside (Layout::embedded_config).
  for (const formats::Layout* l : formats::Layouts()) {
    if (l->embedded_config == nullptr || opened.pickled_config == nullptr || ck->embedded_layout_ != nullptr) continue;
    if (std::string json = opened.pickled_config(l->embedded_config); !json.empty()) {
      ck->embedded_quant_ = std::move(json);
      ck->embedded_quant_where_ = absl::StrCat(weights, ": ", l->embedded_config);
      ck->embedded_layout_ = l;
    }
  }
  ck->owner_ = std::move(opened.owner);
  ReadText(ck->dir_ + "/config.json", &ck->config_json_);
  RETURN_IF_ERROR(ck->DetectQuantization());
  return ck;
}

std::string Checkpoint::ReadSibling(const std::string& name) const {
  std::string out;
  ReadText(dir_ + "/" + name, &out);
  return out;
}

const formats::TensorView* Checkpoint::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

int64_t Checkpoint::TensorBytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors_) n += static_cast<int64_t>(t.nbytes);
  return n;
}

// The quantization the checkpoint was saved with: its own config files first (as the
// tools that wrote them read them back), then the tensor names as a last resort; each
// step walks the layout rows (engine/formats/layouts/layout.h) in their order.
absl::Status Checkpoint::DetectQuantization() {
  using formats::ConfigSource;
  using formats::Layout;
  using formats::Layouts;
  CheckpointQuantConfig& q = quant_;
  auto parse = [&](const std::string& file, const std::string& text, Json* out) -> absl::Status {
    *out = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (out->is_discarded() || !out->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
    }
    return absl::OkStatus();
  };
  Json config;
  const std::string config_where = dir_ + "/config.json";
  if (!config_json_.empty()) RETURN_IF_ERROR(parse(config_where, config_json_, &config));
  // The row found, its config `j` from `where`.
  auto found = [&](const Layout* l, ConfigSource src, const std::string& where, const Json& j) -> absl::Status {
    q.where = where;
    q.json = j.dump();
    q.layout = l;
    return l->configure != nullptr ? l->configure(src, j, where, &q) : absl::OkStatus();
  };
  // transformers: config.json "quantization_config" naming its quant_method.
  const bool has_method = config.contains("quantization_config") && config["quantization_config"].is_object() &&
                          config["quantization_config"].contains("quant_method");
  if (has_method) {
    const Json& j = config["quantization_config"];
    const std::string m = formats::StrOr(j, "quant_method", "");
    for (const Layout* l : Layouts()) {
      if (l->quant_method != nullptr && m == l->quant_method) return found(l, ConfigSource::kHfConfig, config_where, j);
    }
    q.where = config_where;
    q.json = j.dump();
    if (!m.empty()) {
      return absl::UnimplementedError(
          absl::StrCat(dir_, "/config.json: quantization_config.quant_method '", m, "' is not supported"));
    }
  } else {
    // A tool's own object in config.json (MLX: "quantization": {"group_size": 64, "bits": 4}).
    for (const Layout* l : Layouts()) {
      if (l->config_key != nullptr && config.contains(l->config_key) && config[l->config_key].is_object()) {
        return found(l, ConfigSource::kHfConfig, config_where, config[l->config_key]);
      }
    }
  }
  // Tool-specific files beside the weights.
  for (const Layout* l : Layouts()) {
    if (l->side_config == nullptr) continue;
    const std::string text = ReadSibling(l->side_config);
    if (text.empty()) continue;
    const std::string where = dir_ + "/" + l->side_config;
    Json j;
    if (l->claims != nullptr) {
      // A file name two tools use: this row's only when it says so.
      if (!parse(where, text, &j).ok() || !l->claims(j)) continue;
    } else {
      RETURN_IF_ERROR(parse(where, text, &j));
      if (j.contains("quantization") && j["quantization"].is_object()) j = Json(j["quantization"]);
    }
    return found(l, ConfigSource::kSideFile, where, j);
  }
  if (embedded_layout_ != nullptr) {
    Json j;
    RETURN_IF_ERROR(parse(embedded_quant_where_, embedded_quant_, &j));
    return found(embedded_layout_, ConfigSource::kEmbedded, embedded_quant_where_, j);
  }
  for (const Layout* l : Layouts()) {
    if (l->side_marker != nullptr && !ReadSibling(l->side_marker).empty()) {
      q.layout = l;
      q.where = dir_ + "/" + l->side_marker;
      return absl::OkStatus();
    }
  }
  // Tensor names decide when no config says.
  for (const Layout* l : Layouts()) {
    bool all = l->tensor_marks[0] != nullptr;
    for (const char* mark : l->tensor_marks) {
      if (mark == nullptr || !all) continue;
      bool any = false;
      for (const auto& [name, t] : tensors_) {
        any = l->marks_anywhere ? absl::StrContains(name, mark) : absl::EndsWith(name, mark);
        if (any) break;
      }
      all = any;
    }
    if (all) {
      q.layout = l;
      q.where = "tensor names";
      return absl::OkStatus();
    }
  }
  q.where.clear();
  return absl::OkStatus();
}

}  // namespace ingot
