// The file formats a model comes in, one row each, in the style of the layout table
// (engine/formats/layouts/layout.h): GGUF (a whole model in one file, llama.cpp's) and the
// containers of a Hugging Face style checkpoint (safetensors, a torch pickle, npz), with
// "hf" for a checkpoint directory whose weights file decides. Each row says how a file
// is recognized (its name's suffix; GGUF also by its magic) and, for a container, how its
// tensors are opened in place. LoadModel's format names, its GGUF-or-checkpoint choice
// and Checkpoint::Open's container choice read only these rows.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/tensor.h"

namespace ingot::formats {

// A container's tensors, mapped: views into `owner`.
struct OpenedTensors {
  std::shared_ptr<void> owner;
  std::vector<TensorView> tensors;
  // A plain-data config pickled beside the tensors under `key` (torch: {"model_state_dict":
  // ..., "quanto_config": {...}}) as compact JSON; "" when there is none.
  std::function<std::string(const char* key)> pickled_config;
};

struct FileFormat {
  const char* name;                              // as LoadModel's `format` names it
  std::array<const char*, 3> suffixes = {};      // file names that say it (null-padded)
  bool checkpoint = false;                       // read through Checkpoint::Open
  bool (*sniff)(const std::string& path) = nullptr;  // the file's bytes say it (GGUF's magic)
  // A container's tensors; null for GGUF (gguf::File) and "hf" (its weights file decides).
  absl::StatusOr<OpenedTensors> (*open)(const std::string& path) = nullptr;
};

// The rows (file_format.cc): gguf, hf, safetensors, torch, npz.
// By name; nullptr if none ("auto" is none: the file decides).
const FileFormat* FindFileFormat(std::string_view name);
// The container a weights file's name says; nullptr if none.
const FileFormat* ContainerOfFile(const std::string& path);
// GGUF when `format` says so or, with "auto"/"", when the file's bytes do.
bool IsGguf(const std::string& format, const std::string& path);
// "auto, gguf, hf, safetensors, torch, npz".
std::string LoadFormatNames();

}  // namespace ingot::formats
