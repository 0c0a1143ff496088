// Checkpoint layouts: how one tool lays quantized linears out in a safetensors / torch /
// npz checkpoint (bitsandbytes, GPTQ, AWQ, HQQ, MLX, optimum-quanto, torchao and ingot's
// own). Each layout is one row of data and functions — how the checkpoint names it, how
// to read a linear into one of ingot's canonical representations (kernels/cpu/qmatrix.h),
// how to write one back — and each codec is one file, engine/formats/layouts/<layout>.cc,
// reading and writing together. Checkpoint::Open detects the layout by walking the rows;
// LoadModel reads through LayoutLinearLoader; SaveModel writes through the row's encoder.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/formats/layouts/linear_load.h"
#include "engine/formats/tensor.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/ggml_types.h"
#include "nlohmann/json.hpp"

namespace ingot {

class Checkpoint;
struct CheckpointQuantConfig;

namespace formats {

using Json = nlohmann::json;

// The tensors of one model.safetensors being saved, pointing into the model or into
// storage kept here until the file is written.
class LayoutWriter {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
    TensorView t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = static_cast<const uint8_t*>(data);
    t.nbytes = static_cast<size_t>(t.numel()) * DTypeSize(dtype);
    tensors_.push_back(std::move(t));
  }
  // A dense F32/F16/BF16 matrix as NAME.weight in its own dtype.
  void AddDense(const std::string& name, const kernels::WeightMatrix& m);
  void AddVector(const std::string& name, const std::vector<float>& v) {
    if (!v.empty()) Add(name, DType::kF32, {static_cast<int64_t>(v.size())}, v.data());
  }
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
  const std::vector<TensorView>& tensors() const { return tensors_; }

 private:
  std::vector<TensorView> tensors_;
  std::vector<std::unique_ptr<std::string>> kept_;
};

// One linear module (or, for an `exact` layout, the embedding) as SaveCheckpoint hands
// it to a layout's encoder; rows already in transformers' order unless the layout is
// `exact`.
struct LinearToSave {
  const std::string& name;  // "model.layers.3.self_attn.q_proj", "lm_head"
  const kernels::Linear& lin;
  const std::string& repr;  // its representation name
  bool block = false;       // a decoder layer's linear (GPTQ's loaders quantize those)
  bool has_bias = false;    // the model writes NAME.bias itself
};

// A layout's writer for one checkpoint: each linear, then what goes into config.json,
// the files beside it and the safetensors metadata.
class LayoutEncoder {
 public:
  virtual ~LayoutEncoder() = default;
  virtual absl::Status Add(LayoutWriter& w, const LinearToSave& m) = 0;
  virtual absl::Status Finish(Json* config, std::map<std::string, std::string>* files,
                              std::map<std::string, std::string>* metadata) = 0;
};

// Where a layout's settings were found (Layout::configure).
enum class ConfigSource {
  kHfConfig,  // config.json: quantization_config (or MLX's "quantization")
  kSideFile,  // the tool's own file beside the weights
  kEmbedded,  // a config pickled with the tensors
};

struct Layout {
  const char* name;  // as LoadModel reports it: "gptq", "bitsandbytes-4bit"
  // Detection, in the order the tools read their own files back (Checkpoint::Open walks
  // the rows once per step): config.json's quantization_config.quant_method naming it
  // (or `config_key`, an object of config.json of its own), then the tool's file beside
  // the weights (`side_config`; when two tools share a file name, `claims` says whose
  // it is), a config pickled with the tensors, a marker file, and last the tensor names:
  // every non-null mark ends some tensor name (`marks_anywhere`: occurs in one).
  const char* quant_method = nullptr;
  const char* config_key = nullptr;
  const char* side_config = nullptr;
  bool (*claims)(const Json& j) = nullptr;
  const char* embedded_config = nullptr;
  const char* side_marker = nullptr;
  std::array<const char*, 2> tensor_marks = {nullptr, nullptr};
  bool marks_anywhere = false;
  // The settings from the config found (`j`, read from `where`) into q: bits, group
  // size, ...; may move q->layout to a sibling row (bitsandbytes 4-bit / int8) or refuse
  // a variant. q->layout is this row on entry.
  absl::Status (*configure)(ConfigSource src, const Json& j, const std::string& where,
                            CheckpointQuantConfig* q) = nullptr;
  // A loader for the checkpoint's linears; modules stored dense are read as dense
  // before it is asked, unless `reads_dense`.
  LinearLoader (*reader)(std::shared_ptr<const Checkpoint> ck) = nullptr;
  bool reads_dense = false;
  // What the reader does to this checkpoint other than keep the tool's own
  // representation (a variant it converts at load), for the load's quantization note;
  // "" when nothing. Null: never converts.
  std::string (*load_note)(const Checkpoint& ck) = nullptr;
  // The SaveModel format that writes this layout ("bitsandbytes"); nullptr: not written.
  const char* save_name = nullptr;
  std::unique_ptr<LayoutEncoder> (*new_encoder)() = nullptr;
  // Keeps every representation exactly as in memory (GGUF row order, nested absmax,
  // act-order columns, the embedding's type): ingot's own.
  bool exact = false;
};

// Each codec's functions, one file each (engine/formats/layouts/<layout>.cc); the rows
// that name them are in layout.cc.
namespace layouts {
using ConfigureFn = absl::Status(ConfigSource src, const Json& j, const std::string& where, CheckpointQuantConfig* q);
using ReadFn = absl::StatusOr<LinearLoad>(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols);
ConfigureFn ConfigureAwq, ConfigureBnb, ConfigureGptq, ConfigureHqq, ConfigureIngot, ConfigureMlx, ConfigureQuanto,
    ConfigureTorchao;
ReadFn ReadAwq, ReadBnb4, ReadBnb8, ReadGptq, ReadHqq, ReadMlx, ReadQuanto, ReadTorchao;
std::string HqqLoadNote(const Checkpoint& ck);
LinearLoader IngotReader(std::shared_ptr<const Checkpoint> ck);
bool IngotClaims(const Json& j);
std::unique_ptr<LayoutEncoder> NewBnbEncoder();
std::unique_ptr<LayoutEncoder> NewGptqEncoder();
std::unique_ptr<LayoutEncoder> NewHqqEncoder();
std::unique_ptr<LayoutEncoder> NewIngotEncoder();
std::unique_ptr<LayoutEncoder> NewMlxEncoder();
}  // namespace layouts

// Every layout, in detection order (the table in layout.cc; Checkpoint::Open walks it in
// this order at each step).
const std::vector<const Layout*>& Layouts();
// By name ("bitsandbytes-int8"); nullptr if none.
const Layout* FindLayout(std::string_view name);
// "none" for a dense checkpoint.
inline const char* LayoutName(const Layout* l) { return l == nullptr ? "none" : l->name; }
// By SaveModel format name; nullptr if none.
const Layout* FindSaveLayout(const std::string& save_name);
// The SaveModel format names for messages: "ingot, hqq, gptq, bitsandbytes or mlx".
std::string SaveLayoutNames();

// Reads each linear of `checkpoint` through its detected layout; dense modules (and
// every module of a dense checkpoint) as f32/f16/bf16 in place.
LinearLoader LayoutLinearLoader(std::shared_ptr<const Checkpoint> checkpoint);

// Settings the tools' side files share (quantize_config.json, quant_config.json,
// mlx_config.json, hqq_config.json, bitsandbytes' quantization_config.json): bits
// (bits / w_bit / nbits), group size (group_size / q_group_size), sym, desc_act, inside
// "weight_quant_params" when there is one.
void ReadSideSettings(const Json& j, CheckpointQuantConfig* q);
// A side file's settings (ReadSideSettings), or config.json's quantization_config bits
// (default 4) and group_size (default `default_group`); true for config.json.
bool ReadSettings(ConfigSource src, const Json& j, int32_t default_group, CheckpointQuantConfig* q);

// Typed JSON reads: a field of another type reads as absent.
int32_t IntOr(const Json& j, const char* key, int32_t def);
bool BoolOr(const Json& j, const char* key, bool def);
std::string StrOr(const Json& j, const char* key, const std::string& def);
std::vector<std::string> StrList(const Json& j, const char* key);

// The refusal every layout gives for a module with no exact form in it.
inline absl::Status NoForm(const std::string& name, const std::string& repr, const std::string& layout,
                           const std::string& how) {
  return absl::FailedPreconditionError(absl::StrCat("'", name, "' is stored as ", repr, ", which has no ", layout,
                                                    " form; ", how));
}
// A peer layout's config when every module stayed dense.
inline absl::Status NothingQuantized() {
  return absl::FailedPreconditionError("no module is quantized: save it as ingot or gguf");
}
inline bool IsFloatType(GgmlType t) { return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16; }
inline bool IsFloatWeight(const kernels::Linear& l) {
  return l.kind == kernels::LinearKind::kGgml && IsFloatType(l.ggml.type);
}
inline DType DTypeOf(GgmlType t) {
  return t == GgmlType::kF32 ? DType::kF32 : t == GgmlType::kF16 ? DType::kF16 : DType::kBF16;
}
inline void LayoutWriter::AddDense(const std::string& name, const kernels::WeightMatrix& m) {
  Add(name + ".weight", DTypeOf(m.type), {m.rows, m.cols}, m.data);
}

}  // namespace formats
}  // namespace ingot
