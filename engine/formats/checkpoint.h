// A checkpoint in the layouts people download or produce with other tools, opened
// without conversion: a Hugging Face model directory (config.json, tokenizer files,
// safetensors shards or pytorch_model.bin), a single .safetensors / .bin / .pt / .npz
// file with its configs beside it, as saved by transformers, bitsandbytes, HQQ, AutoGPTQ,
// AutoAWQ, MLX or optimum-quanto. The tensors stay in the files' mappings.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/tensor.h"

namespace ingot {

namespace formats { struct Layout; }

struct CheckpointQuantConfig {
  // The tool's layout (engine/formats/layouts/layout.h); null: f32 / f16 / bf16.
  const formats::Layout* layout = nullptr;
  int32_t bits = 0;
  int32_t group_size = 0;
  bool sym = false;             // GPTQ
  bool desc_act = false;        // GPTQ
  std::string quant_type;       // bnb: nf4 / fp4; quanto: qint8 / qint4; torchao: the config class
  std::string where;            // the file the config was read from
  std::string json;             // the config as found (compact JSON)
  std::vector<std::string> skip_modules;  // modules left unquantized by the tool
};

class Checkpoint {
 public:
  // `format`: "auto", "safetensors", "hf", "torch", "npz" (anything else is the caller's).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& path,
                                                          const std::string& format);
  ~Checkpoint();

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }
  // "safetensors", "torch" or "npz".
  const std::string& container() const { return container_; }
  // config.json as compact JSON ("" when absent); parsed by the model builder.
  const std::string& config_json() const { return config_json_; }
  // Text of a file beside the weights ("" when absent): tokenizer.json, ...
  std::string ReadSibling(const std::string& name) const;
  const CheckpointQuantConfig& quant() const { return quant_; }

  const formats::TensorView* Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;
  // Bytes of tensor data in the checkpoint.
  int64_t TensorBytes() const;

 private:
  Checkpoint() = default;
  absl::Status DetectQuantization();

  std::string path_, dir_, container_, config_json_;
  CheckpointQuantConfig quant_;
  std::shared_ptr<void> owner_;  // the container reader
  std::string embedded_quant_;  // a quantization config pickled with the tensors (JSON)
  std::string embedded_quant_where_;
  const formats::Layout* embedded_layout_ = nullptr;  // whose config that is
  std::map<std::string, formats::TensorView, std::less<>> tensors_;
};

}  // namespace ingot
