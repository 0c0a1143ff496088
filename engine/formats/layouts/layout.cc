#include "engine/formats/layouts/layout.h"

#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats {

const std::vector<const Layout*>& Layouts() {
  // Detection order. Tensor names: GPTQ before AWQ (GPTQ's names include AWQ's mark).
  // Side files: ingot before bitsandbytes (both name quantization_config.json).
  static const std::vector<const Layout*> kLayouts = {&kIngotLayout, &kHqqLayout,  &kGptqLayout,
                                                      &kAwqLayout,   &kBnb4Layout, &kBnb8Layout,
                                                      &kMlxLayout,   &kQuantoLayout, &kTorchaoLayout};
  return kLayouts;
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
