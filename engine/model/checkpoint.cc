#include "engine/model/checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/npz.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/torch_pickle.h"
#include "nlohmann/json.hpp"

namespace ingot {
namespace fs = std::filesystem;
using Json = nlohmann::json;

const char* CheckpointQuantName(CheckpointQuant q) {
  switch (q) {
    case CheckpointQuant::kNone: return "none";
    case CheckpointQuant::kBnb4: return "bitsandbytes-4bit";
    case CheckpointQuant::kBnb8: return "bitsandbytes-int8";
    case CheckpointQuant::kHqq: return "hqq";
    case CheckpointQuant::kGptq: return "gptq";
    case CheckpointQuant::kAwq: return "awq";
    case CheckpointQuant::kMlx: return "mlx";
    case CheckpointQuant::kQuanto: return "quanto";
    case CheckpointQuant::kTorchao: return "torchao";
    case CheckpointQuant::kIngot: return "ingot";
  }
  return "?";
}

namespace {

// torchao's quantization_config as transformers writes it: quant_type is the config
// class serialized by torchao ({"default": {"_type": "Int8WeightOnlyConfig", "_data":
// {...}}}, transformers 4.5x+/5) or, from older releases, a string
// ("int8_weight_only"). The int8 configs are read (the weight is an Int8Tensor either
// way; the dynamic one also quantizes activations per token, which ingot's int8 path
// does per block of 32); the int4 layouts are refused by name.
absl::Status TorchaoConfig(const std::string& dir, const Json& j, CheckpointQuantConfig* q) {
  q->method = CheckpointQuant::kTorchao;
  std::string type;
  if (auto it = j.find("quant_type"); it != j.end()) {
    if (it->is_string()) {
      type = it->get<std::string>();
    } else if (it->is_object()) {
      const Json* cfg = it->contains("default") ? &(*it)["default"] : nullptr;
      if (cfg == nullptr && it->size() == 1) cfg = &it->begin().value();
      if (cfg != nullptr && cfg->is_object() && cfg->contains("_type") && (*cfg)["_type"].is_string()) {
        type = (*cfg)["_type"].get<std::string>();
      }
      if (it->size() > 1) {
        return absl::UnimplementedError(absl::StrCat(
            dir, "/config.json: torchao quant_type with per-module configs is not supported (one default config)"));
      }
    }
  }
  static constexpr const char* kInt8[] = {"Int8WeightOnlyConfig", "Int8DynamicActivationInt8WeightConfig",
                                          "int8_weight_only", "int8_dynamic_activation_int8_weight"};
  for (const char* t : kInt8) {
    if (type == t) {
      q->quant_type = type;
      q->bits = 8;
      return absl::OkStatus();
    }
  }
  return absl::UnimplementedError(absl::StrCat(
      dir, "/config.json: torchao quant_type '", type.empty() ? std::string("(missing)") : type,
      "' is not supported (Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig)"));
}

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

// Plain values of a pickled config (str, numbers, bools, None, lists, dicts with str
// keys) as JSON; anything else as its description.
Json PickleToJson(const formats::PickleValue& v) {
  using K = formats::PickleValue::Kind;
  switch (v.kind()) {
    case K::kNone: return nullptr;
    case K::kBool: return *v.AsBool();
    case K::kInt: return *v.AsInt();
    case K::kFloat: return *v.AsDouble();
    case K::kString: return *v.AsString();
    case K::kList:
    case K::kTuple: {
      Json out = Json::array();
      for (const formats::PickleValue* e : v.items()) out.push_back(PickleToJson(*e));
      return out;
    }
    case K::kDict: {
      Json out = Json::object();
      for (const auto& [k, e] : v.entries()) {
        if (k->AsString() != nullptr) out[*k->AsString()] = PickleToJson(*e);
      }
      return out;
    }
    default: return v.DebugString();
  }
}

std::string ContainerOf(const std::string& file) {
  if (absl::EndsWith(file, ".safetensors") || absl::EndsWith(file, ".index.json")) return "safetensors";
  if (absl::EndsWith(file, ".npz")) return "npz";
  if (absl::EndsWith(file, ".bin") || absl::EndsWith(file, ".pt") || absl::EndsWith(file, ".pth")) {
    return "torch";
  }
  return "";
}

int32_t IntOr(const Json& j, const char* key, int32_t def) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int32_t>() : def;
}
bool BoolOr(const Json& j, const char* key, bool def) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}
std::string StrOr(const Json& j, const char* key, const std::string& def) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}
std::vector<std::string> StrList(const Json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it != j.end() && it->is_array()) {
    for (const auto& v : *it) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
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
  std::string container = ContainerOf(weights);
  if (format == "safetensors" || format == "torch" || format == "npz") container = format;
  if (container.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(weights, ": not a checkpoint format this build reads "
                                                   "(.safetensors, .bin/.pt/.pth, .npz, .gguf)"));
  }
  ck->container_ = container;
  if (container == "safetensors") {
    ASSIGN_OR_RETURN(std::unique_ptr<formats::SafetensorsSet> set, formats::SafetensorsSet::Open(weights));
    for (const formats::TensorView* t : set->tensors()) ck->tensors_.emplace(t->name, *t);
    ck->owner_ = std::shared_ptr<formats::SafetensorsSet>(std::move(set));
  } else if (container == "torch") {
    ASSIGN_OR_RETURN(std::unique_ptr<formats::TorchCheckpoint> t, formats::TorchCheckpoint::Open(weights));
    for (const formats::TensorView& v : t->FlattenTensors()) {
      // HQQ's qmodel.pt and some trainers nest the state dict under "state_dict"/"model".
      std::string name = v.name;
      for (const char* prefix : {"state_dict.", "model_state_dict.", "module."}) {
        if (absl::StartsWith(name, prefix)) name = name.substr(std::string(prefix).size());
      }
      formats::TensorView copy = v;
      copy.name = name;
      ck->tensors_.emplace(name, copy);
    }
    // A single .pth with the quantization config inside: {"model_state_dict": ...,
    // "quanto_config": {"weights": "qint4", ...}}.
    if (const formats::PickleValue* qc = t->root().Get("quanto_config"); qc != nullptr && qc->is_dict()) {
      ck->embedded_quant_ = PickleToJson(*qc).dump();
      ck->embedded_quant_where_ = weights + ": quanto_config";
    }
    ck->owner_ = std::shared_ptr<formats::TorchCheckpoint>(std::move(t));
  } else {
    ASSIGN_OR_RETURN(std::unique_ptr<formats::NpzFile> z, formats::NpzFile::Open(weights));
    for (const formats::TensorView& v : z->tensors()) ck->tensors_.emplace(v.name, v);
    ck->owner_ = std::shared_ptr<formats::NpzFile>(std::move(z));
  }
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
// tools that wrote them read them back), then the tensor names as a last resort.
absl::Status Checkpoint::DetectQuantization() {
  CheckpointQuantConfig& q = quant_;
  auto parse = [&](const std::string& file, const std::string& text, Json* out) -> absl::Status {
    *out = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (out->is_discarded() || !out->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
    }
    return absl::OkStatus();
  };
  Json config;
  if (!config_json_.empty()) RETURN_IF_ERROR(parse(dir_ + "/config.json", config_json_, &config));
  auto from = [&](const std::string& where, const Json& j) {
    q.where = where;
    q.json = j.dump();
  };
  // transformers: config.json "quantization_config".
  const bool has_method = config.contains("quantization_config") && config["quantization_config"].is_object() &&
                          config["quantization_config"].contains("quant_method");
  if (has_method) {
    const Json& j = config["quantization_config"];
    const std::string m = StrOr(j, "quant_method", "");
    from(dir_ + "/config.json", j);
    if (m == "bitsandbytes") {
      if (BoolOr(j, "load_in_8bit", false)) {
        q.method = CheckpointQuant::kBnb8;
        q.bits = 8;
      } else {
        q.method = CheckpointQuant::kBnb4;
        q.bits = 4;
        q.quant_type = StrOr(j, "bnb_4bit_quant_type", "fp4");
      }
      q.skip_modules = StrList(j, "llm_int8_skip_modules");
    } else if (m == "gptq") {
      q.method = CheckpointQuant::kGptq;
      q.bits = IntOr(j, "bits", 4);
      q.group_size = IntOr(j, "group_size", 128);
      q.sym = BoolOr(j, "sym", true);
      q.desc_act = BoolOr(j, "desc_act", false);
    } else if (m == "awq") {
      q.method = CheckpointQuant::kAwq;
      q.bits = IntOr(j, "bits", 4);
      q.group_size = IntOr(j, "group_size", 128);
      const std::string version = StrOr(j, "version", "gemm");
      if (version != "gemm" && version != "GEMM") {
        return absl::UnimplementedError(absl::StrCat(dir_, "/config.json: AWQ version '", version,
                                                     "' is not supported (gemm)"));
      }
      q.skip_modules = StrList(j, "modules_to_not_convert");
    } else if (m == "hqq") {
      q.method = CheckpointQuant::kHqq;
    } else if (m == "quanto") {
      q.method = CheckpointQuant::kQuanto;
      q.quant_type = StrOr(j, "weights", "int8");
    } else if (m == "torchao") {
      RETURN_IF_ERROR(TorchaoConfig(dir_, j, &q));
    } else if (!m.empty()) {
      return absl::UnimplementedError(absl::StrCat(dir_, "/config.json: quantization_config.quant_method '",
                                                   m, "' is not supported"));
    }
  } else if (config.contains("quantization") && config["quantization"].is_object()) {
    // MLX: config.json "quantization": {"group_size": 64, "bits": 4}.
    const Json& j = config["quantization"];
    from(dir_ + "/config.json", j);
    q.method = CheckpointQuant::kMlx;
    q.bits = IntOr(j, "bits", 4);
    q.group_size = IntOr(j, "group_size", 64);
  }
  // ingot's own layout names itself in quantization_config.json.
  if (q.method == CheckpointQuant::kNone) {
    const std::string text = ReadSibling("quantization_config.json");
    Json j;
    if (!text.empty() && parse(dir_ + "/quantization_config.json", text, &j).ok() &&
        StrOr(j, "quant_method", "") == "ingot") {
      from(dir_ + "/quantization_config.json", j);
      q.method = CheckpointQuant::kIngot;
      if (IntOr(j, "version", 0) != 1 || !j.contains("modules") || !j["modules"].is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            dir_, "/quantization_config.json: an ingot layout needs \"version\": 1 and a \"modules\" object"));
      }
    }
  }
  // Tool-specific files beside the weights.
  struct Side {
    const char* file;
    CheckpointQuant method;
  };
  for (const Side& s : {Side{"quantize_config.json", CheckpointQuant::kGptq},
                        Side{"quant_config.json", CheckpointQuant::kAwq},
                        Side{"mlx_config.json", CheckpointQuant::kMlx},
                        Side{"hqq_config.json", CheckpointQuant::kHqq},
                        Side{"quantization_config.json", CheckpointQuant::kBnb4}}) {
    if (q.method != CheckpointQuant::kNone) break;
    const std::string text = ReadSibling(s.file);
    if (text.empty()) continue;
    Json j;
    RETURN_IF_ERROR(parse(dir_ + "/" + s.file, text, &j));
    if (j.contains("quantization") && j["quantization"].is_object()) j = j["quantization"];
    from(dir_ + "/" + s.file, j);
    q.method = s.method;
    if (j.contains("weight_quant_params") && j["weight_quant_params"].is_object()) j = j["weight_quant_params"];
    q.bits = IntOr(j, "bits", IntOr(j, "w_bit", IntOr(j, "nbits", 4)));
    q.group_size = IntOr(j, "group_size", IntOr(j, "q_group_size", 0));
    q.sym = BoolOr(j, "sym", true);
    q.desc_act = BoolOr(j, "desc_act", false);
    if (s.method == CheckpointQuant::kBnb4) {
      q.quant_type = StrOr(j, "quant_type", StrOr(j, "bnb_4bit_quant_type", "nf4"));
      if (q.bits == 8) q.method = CheckpointQuant::kBnb8;
    }
  }
  if (q.method == CheckpointQuant::kNone && !embedded_quant_.empty()) {
    Json j;
    RETURN_IF_ERROR(parse(embedded_quant_where_, embedded_quant_, &j));
    from(embedded_quant_where_, j);
    q.method = CheckpointQuant::kQuanto;
    q.quant_type = StrOr(j, "weights", "qint8");
  }
  if (q.method == CheckpointQuant::kNone && !ReadSibling("quanto_qmap.json").empty()) {
    q.method = CheckpointQuant::kQuanto;
    q.where = dir_ + "/quanto_qmap.json";
  }
  // Tensor names decide when no config says (and confirm the configs above).
  bool any_qweight = false, any_gidx = false, any_absmax = false, any_scb = false, any_biases = false,
       any_wq = false, any_data = false;
  for (const auto& [name, t] : tensors_) {
    any_qweight |= absl::EndsWith(name, ".qweight");
    any_gidx |= absl::EndsWith(name, ".g_idx");
    any_absmax |= absl::EndsWith(name, ".weight.absmax");
    any_scb |= absl::EndsWith(name, ".SCB");
    any_biases |= absl::EndsWith(name, ".biases");
    any_wq |= absl::EndsWith(name, ".W_q");
    any_data |= absl::StrContains(name, ".weight._data");
  }
  if (q.method == CheckpointQuant::kNone) {
    q.where = "tensor names";
    if (any_wq) q.method = CheckpointQuant::kHqq;
    else if (any_qweight && any_gidx) q.method = CheckpointQuant::kGptq;
    else if (any_qweight) q.method = CheckpointQuant::kAwq;
    else if (any_absmax) q.method = CheckpointQuant::kBnb4;
    else if (any_scb) q.method = CheckpointQuant::kBnb8;
    else if (any_biases) q.method = CheckpointQuant::kMlx;
    else if (any_data) q.method = CheckpointQuant::kQuanto;
    else q.where.clear();
  }
  return absl::OkStatus();
}

}  // namespace ingot
