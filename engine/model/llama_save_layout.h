// Pieces LlamaModel::SaveCheckpoint (llama_save.cc) shares with the per-tool layouts
// that live in their own files (llama_save_gptq.cc, llama_save_hqq.cc): the tensor list
// being written and the refusal every layout gives for a module with no exact form.
// Internal to engine/model.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/formats/safetensors.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"

namespace ingot::save {

using Json = nlohmann::json;

// The tensors of one model.safetensors, pointing into the model or into storage kept
// here until the file is written.
class LayoutWriter {
 public:
  void Add(const std::string& name, formats::DType dtype, std::vector<int64_t> shape, const void* data) {
    formats::TensorView t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = static_cast<const uint8_t*>(data);
    t.nbytes = static_cast<size_t>(t.numel()) * formats::DTypeSize(dtype);
    tensors_.push_back(std::move(t));
  }
  // A dense F32/F16/BF16 matrix as NAME.weight in its own dtype.
  void AddDense(const std::string& name, const kernels::WeightMatrix& m);
  void AddVector(const std::string& name, const std::vector<float>& v) {
    if (!v.empty()) Add(name, formats::DType::kF32, {static_cast<int64_t>(v.size())}, v.data());
  }

  // A linear module (or the embedding) in its in-memory representation (ingot layout).
  void AddLinear(const std::string& name, const kernels::Linear& w, const std::string& repr);

  // Keeps `bytes` alive until the file is written; returns its data.
  const uint8_t* Keep(std::string bytes) {
    kept_.push_back(std::make_unique<std::string>(std::move(bytes)));
    return reinterpret_cast<const uint8_t*>(kept_.back()->data());
  }
  // n zero-initialized T, kept likewise.
  template <typename T>
  T* KeepArray(size_t n) {
    kept_.push_back(std::make_unique<std::string>(n * sizeof(T), '\0'));
    return reinterpret_cast<T*>(kept_.back()->data());
  }

  const std::vector<formats::TensorView>& tensors() const { return tensors_; }
  const Json& modules() const { return modules_; }

 private:
  std::vector<formats::TensorView> tensors_;
  Json modules_ = Json::object();
  std::vector<std::unique_ptr<std::string>> kept_;
};

inline absl::Status NoForm(const std::string& name, const std::string& repr, const std::string& layout,
                           const std::string& how) {
  return absl::FailedPreconditionError(absl::StrCat("'", name, "' is stored as ", repr, ", which has no ", layout,
                                                    " form; ", how));
}

// A peer layout's Config() when every module stayed dense.
inline absl::Status NothingQuantized() {
  return absl::FailedPreconditionError("no module is quantized: save it as ingot or gguf");
}

inline bool IsFloatType(GgmlType t) { return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16; }
inline bool IsFloatWeight(const kernels::Linear& l) {
  return l.kind == kernels::LinearKind::kGgml && IsFloatType(l.ggml.type);
}
inline formats::DType DTypeOf(GgmlType t) {
  return t == GgmlType::kF32 ? formats::DType::kF32 : t == GgmlType::kF16 ? formats::DType::kF16 : formats::DType::kBF16;
}

inline void LayoutWriter::AddDense(const std::string& name, const kernels::WeightMatrix& m) {
  Add(name + ".weight", DTypeOf(m.type), {m.rows, m.cols}, m.data);
}

// AutoGPTQ's v1 layout as auto-gptq (from_quantized) and transformers + optimum load it
// (llama_save_gptq.cc).
class GptqLayout {
 public:
  // `block`: a linear of the decoder layers (GPTQ's loaders quantize all of those and
  // nothing else); `has_bias`: the model writes NAME.bias itself.
  absl::Status Add(LayoutWriter& w, const std::string& name, const kernels::Linear& lin, const std::string& repr,
                   bool block, bool has_bias);
  // config.json's quantization_config, also written as quantize_config.json.
  absl::StatusOr<Json> Config() const;

 private:
  int bits_ = 0;
  std::vector<int64_t> group_sizes_;  // group_size values every module so far agrees with
  bool sym_ = true;
  bool any_ = false;
};

// transformers' HqqConfig serialization (save_pretrained of a model quantized with
// HqqConfig; llama_save_hqq.cc).
class HqqLayout {
 public:
  absl::Status Add(LayoutWriter& w, const std::string& name, const kernels::Linear& lin, const std::string& repr);
  absl::StatusOr<Json> Config() const;

 private:
  std::map<std::string, Json> params_;  // module -> weight_quant_params
  std::vector<std::string> skip_;       // dense linears
};

}  // namespace ingot::save
