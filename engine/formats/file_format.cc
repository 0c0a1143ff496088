#include "engine/formats/file_format.h"

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/npz.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/torch_pickle.h"
#include "nlohmann/json.hpp"

namespace ingot::formats {
namespace {
using Json = nlohmann::json;

// The source was checked to be a regular file or a directory (CheckSource) before.
bool SniffGguf(const std::string& path) {
  absl::StatusOr<OpenFile> file = OpenRegularFile(path);
  char magic[4] = {};
  return file.ok() && ::pread(file->fd(), magic, 4, 0) == 4 && std::string(magic, 4) == "GGUF";
}

absl::StatusOr<OpenedTensors> OpenSafetensors(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsSet> set, SafetensorsSet::Open(path));
  OpenedTensors out;
  for (const TensorView* t : set->tensors()) out.tensors.push_back(*t);
  out.owner = std::shared_ptr<SafetensorsSet>(std::move(set));
  return out;
}

// Plain values of a pickled config (str, numbers, bools, None, lists, dicts with str
// keys) as JSON; anything else as its description.
Json PickleToJson(const PickleValue& v) {
  using K = PickleValue::Kind;
  switch (v.kind()) {
    case K::kNone: return nullptr;
    case K::kBool: return *v.AsBool();
    case K::kInt: return *v.AsInt();
    case K::kFloat: return *v.AsDouble();
    case K::kString: return *v.AsString();
    case K::kList:
    case K::kTuple: {
      Json out = Json::array();
      for (const PickleValue* e : v.items()) out.push_back(PickleToJson(*e));
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

absl::StatusOr<OpenedTensors> OpenTorch(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<TorchCheckpoint> t, TorchCheckpoint::Open(path));
  OpenedTensors out;
  for (const TensorView& v : t->FlattenTensors()) {
    // HQQ's qmodel.pt and some trainers nest the state dict under "state_dict"/"model".
    TensorView copy = v;
    for (const char* prefix : {"state_dict.", "model_state_dict.", "module."}) {
      if (absl::StartsWith(copy.name, prefix)) copy.name = copy.name.substr(std::string(prefix).size());
    }
    out.tensors.push_back(std::move(copy));
  }
  std::shared_ptr<const TorchCheckpoint> owner(std::move(t));
  out.pickled_config = [owner](const char* key) -> std::string {
    const PickleValue* v = owner->root().Get(key);
    return v != nullptr && v->is_dict() ? PickleToJson(*v).dump() : "";
  };
  out.owner = std::const_pointer_cast<TorchCheckpoint>(owner);
  return out;
}

absl::StatusOr<OpenedTensors> OpenNpz(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<NpzFile> z, NpzFile::Open(path));
  OpenedTensors out;
  out.tensors = z->tensors();
  out.owner = std::shared_ptr<NpzFile>(std::move(z));
  return out;
}

const FileFormat kFileFormats[] = {
    {.name = "gguf", .suffixes = {".gguf"}, .sniff = SniffGguf},
    {.name = "hf", .checkpoint = true},
    {.name = "safetensors", .suffixes = {".safetensors", ".index.json"}, .checkpoint = true,
     .open = OpenSafetensors},
    {.name = "torch", .suffixes = {".bin", ".pt", ".pth"}, .checkpoint = true, .open = OpenTorch},
    {.name = "npz", .suffixes = {".npz"}, .checkpoint = true, .open = OpenNpz},
};

}  // namespace

const FileFormat* FindFileFormat(std::string_view name) {
  for (const FileFormat& f : kFileFormats) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

const FileFormat* ContainerOfFile(const std::string& path) {
  for (const FileFormat& f : kFileFormats) {
    if (f.open == nullptr) continue;
    for (const char* s : f.suffixes) {
      if (s != nullptr && absl::EndsWith(path, s)) return &f;
    }
  }
  return nullptr;
}

bool IsGguf(const std::string& format, const std::string& path) {
  const FileFormat* gguf = FindFileFormat("gguf");
  if (format == gguf->name) return true;
  if (format != "auto" && !format.empty()) return false;
  return gguf->sniff(path);
}

std::string LoadFormatNames() {
  std::string out = "auto";
  for (const FileFormat& f : kFileFormats) absl::StrAppend(&out, ", ", f.name);
  return out;
}

}  // namespace ingot::formats
