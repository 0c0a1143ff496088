// torchao's Int8Tensor as transformers 5 saves it (read only).
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// torchao's Int8Tensor as transformers 5 flattens it into safetensors (the tensor's
// attributes as `<module>._weight_<attr>`, its class in the file's metadata):
// _weight_qdata (rows, cols) int8, _weight_scale and _weight_zero_point (rows, G) for G
// groups of cols / G inputs (PerRow: G = 1); w = (q - zero_point) * scale. Stored as
// kAffine 8-bit codes q + 128 with zero 128 + zero_point (ingot's int8/row when G = 1).
absl::StatusOr<LinearLoad> ReadTorchao(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const std::string p = name + "._weight_";
  ASSIGN_OR_RETURN(const TensorView* q8, Get(ck, p + "qdata", {rows, cols}, {DType::kI8}));
  ASSIGN_OR_RETURN(const TensorView* sc, Get(ck, p + "scale", {}, {DType::kF32, DType::kF16, DType::kBF16}));
  const TensorView* zp = ck.Find(p + "zero_point");
  const int64_t n_groups = sc->numel();
  if (sc->shape.empty() || sc->shape[0] != rows || n_groups % rows != 0 || cols % (n_groups / rows) != 0 ||
      (zp != nullptr && (zp->numel() != n_groups || zp->dtype != DType::kI8))) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "scale' has shape ", Shape(sc->shape),
                                                   zp != nullptr ? absl::StrCat(" and zero_point ", Shape(zp->shape)) : "",
                                                   ", which do not group a ", rows, " x ", cols, " int8 weight"));
  }
  return Int8Groups(*q8, *sc, zp, 1.0f, 0.0f);
}

// torchao's quantization_config as transformers writes it: quant_type is the config
// class serialized by torchao ({"default": {"_type": "Int8WeightOnlyConfig", "_data":
// {...}}}, transformers 4.5x+/5) or, from older releases, a string
// ("int8_weight_only"). The int8 configs are read (the weight is an Int8Tensor either
// way; the dynamic one also quantizes activations per token, which ingot's int8 path
// does per block of 32); the int4 layouts are refused by name.
absl::Status ConfigureTorchao(ConfigSource, const Json& j, const std::string& where, CheckpointQuantConfig* q) {
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
            where, ": torchao quant_type with per-module configs is not supported (one default config)"));
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
      where, ": torchao quant_type '", type.empty() ? std::string("(missing)") : type,
      "' is not supported (Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig)"));
}

}  // namespace ingot::formats::layouts
