#include "engine/formats/layouts/layout.h"

#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats {

namespace {

// Every layout, one row each, in detection order (Checkpoint::Open walks them in this
// order at each step). Tensor names: HQQ's W_q first, GPTQ before AWQ (GPTQ's names
// include AWQ's mark). Side files: ingot before bitsandbytes (both name
// quantization_config.json; ingot claims it only when it names ingot).
const Layout kLayouts[] = {
    {.name = "ingot", .side_config = "quantization_config.json", .claims = layouts::IngotClaims,
     .configure = layouts::ConfigureIngot, .reader = layouts::IngotReader, .reads_dense = true,
     .save_name = "ingot", .new_encoder = layouts::NewIngotEncoder, .exact = true},
    {.name = "hqq", .quant_method = "hqq", .side_config = "hqq_config.json", .tensor_marks = {".W_q", nullptr},
     .configure = layouts::ConfigureHqq, .reader = layouts::PerModule<layouts::ReadHqq>,
     .load_note = layouts::HqqLoadNote, .save_name = "hqq",
     .new_encoder = layouts::NewHqqEncoder},
    {.name = "gptq", .quant_method = "gptq", .side_config = "quantize_config.json",
     .tensor_marks = {".qweight", ".g_idx"}, .configure = layouts::ConfigureGptq,
     .reader = layouts::PerModule<layouts::ReadGptq>, .save_name = "gptq", .new_encoder = layouts::NewGptqEncoder},
    {.name = "awq", .quant_method = "awq", .side_config = "quant_config.json", .tensor_marks = {".qweight", nullptr},
     .configure = layouts::ConfigureAwq, .reader = layouts::PerModule<layouts::ReadAwq>},
    {.name = "bitsandbytes-4bit", .quant_method = "bitsandbytes", .side_config = "quantization_config.json",
     .tensor_marks = {".weight.absmax", nullptr}, .configure = layouts::ConfigureBnb,
     .reader = layouts::PerModule<layouts::ReadBnb4>, .save_name = "bitsandbytes",
     .new_encoder = layouts::NewBnbEncoder},
    // Found through the 4-bit row's configs (load_in_8bit, bits 8) or its own tensor names.
    {.name = "bitsandbytes-int8", .tensor_marks = {".SCB", nullptr}, .reader = layouts::PerModule<layouts::ReadBnb8>},
    {.name = "mlx", .config_key = "quantization", .side_config = "mlx_config.json",
     .tensor_marks = {".biases", nullptr}, .configure = layouts::ConfigureMlx,
     .reader = layouts::PerModule<layouts::ReadMlx>, .save_name = "mlx", .new_encoder = layouts::NewMlxEncoder},
    // A single .pth may carry the config inside ({"model_state_dict": ..., "quanto_config":
    // {"weights": "qint4", ...}}); a directory may only have quanto_qmap.json.
    {.name = "quanto", .quant_method = "quanto", .embedded_config = "quanto_config",
     .side_marker = "quanto_qmap.json", .tensor_marks = {".weight._data", nullptr}, .marks_anywhere = true,
     .configure = layouts::ConfigureQuanto, .reader = layouts::PerModule<layouts::ReadQuanto>},
    {.name = "torchao", .quant_method = "torchao", .configure = layouts::ConfigureTorchao,
     .reader = layouts::PerModule<layouts::ReadTorchao>},
};

}  // namespace

const std::vector<const Layout*>& Layouts() {
  static const std::vector<const Layout*> kRows = [] {
    std::vector<const Layout*> rows;
    for (const Layout& l : kLayouts) rows.push_back(&l);
    return rows;
  }();
  return kRows;
}

const Layout* FindLayout(std::string_view name) {
  for (const Layout& l : kLayouts) {
    if (name == l.name) return &l;
  }
  return nullptr;
}

const Layout* FindSaveLayout(const std::string& save_name) {
  for (const Layout* l : Layouts()) {
    if (l->save_name != nullptr && save_name == l->save_name) return l;
  }
  return nullptr;
}

std::string SaveLayoutNames() {
  std::vector<std::string> names;
  for (const Layout* l : Layouts()) {
    if (l->save_name != nullptr) names.push_back(l->save_name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : i + 1 == names.size() ? " or " : ", ", names[i]);
  }
  return out;
}

LinearLoader LayoutLinearLoader(std::shared_ptr<const Checkpoint> checkpoint) {
  const Layout* layout = checkpoint->quant().layout;
  LinearLoader read = layout != nullptr ? layout->reader(checkpoint) : nullptr;
  const bool reads_dense = layout != nullptr && layout->reads_dense;
  return [checkpoint, read, reads_dense](const std::string& name, int64_t rows,
                                         int64_t cols) -> absl::StatusOr<LinearLoad> {
    // Modules a tool leaves dense (lm_head, skipped modules) keep a plain .weight.
    if (read == nullptr || (!reads_dense && layouts::StoredDense(*checkpoint, name))) {
      return layouts::ReadDense(*checkpoint, name, rows, cols);
    }
    return read(name, rows, cols);
  };
}

void ReadSideSettings(const Json& side, CheckpointQuantConfig* q) {
  const Json& j =
      side.contains("weight_quant_params") && side["weight_quant_params"].is_object() ? side["weight_quant_params"] : side;
  q->bits = IntOr(j, "bits", IntOr(j, "w_bit", IntOr(j, "nbits", 4)));
  q->group_size = IntOr(j, "group_size", IntOr(j, "q_group_size", 0));
  q->sym = BoolOr(j, "sym", true);
  q->desc_act = BoolOr(j, "desc_act", false);
}

bool ReadSettings(ConfigSource src, const Json& j, int32_t default_group, CheckpointQuantConfig* q) {
  if (src != ConfigSource::kHfConfig) {
    ReadSideSettings(j, q);
    return false;
  }
  q->bits = IntOr(j, "bits", 4);
  q->group_size = IntOr(j, "group_size", default_group);
  return true;
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

}  // namespace ingot::formats
