// LlamaWeights' edits and summary (weights.h).
#include "engine/model/weights.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/ggml_types.h"

namespace ingot {

using kernels::Linear;

std::vector<LinearModuleRef> LlamaWeights::LinearModules() const {
  std::vector<LinearModuleRef> out;
  for (int32_t l = 0; l < config.n_layer; ++l) {
    for (int s = 0; s < kLinearSlots; ++s) {
      LinearModuleRef m;
      m.name = absl::StrCat("model.layers.", l, ".", kHfLinearNames[s]);
      m.gguf_name = absl::StrCat("blk.", l, ".", kGgufLinearNames[s]);
      m.kind = s <= static_cast<int>(LinearSlot::kO) ? "attention" : "mlp";
      m.layer = l;
      m.slot = static_cast<LinearSlot>(s);
      m.rows = layers[l].w[s].rows();
      m.cols = layers[l].w[s].cols();
      out.push_back(std::move(m));
    }
  }
  LinearModuleRef head;
  head.name = "lm_head";
  head.gguf_name = "output";
  head.kind = "output";
  head.rows = output.rows();
  head.cols = output.cols();
  out.push_back(std::move(head));
  return out;
}

const Linear& LlamaWeights::linear(const LinearModuleRef& m) const {
  if (m.layer < 0) return output;
  return layers[m.layer].w[static_cast<int>(m.slot)];
}

void LlamaWeights::SetLinear(const LinearModuleRef& m, const Linear& w, std::string representation,
                             int64_t bytes, std::shared_ptr<const void> owner) {
  if (owner) owners.push_back(std::move(owner));
  if (m.layer < 0) {
    output = w;
    output_repr = std::move(representation);
    output_bytes = bytes;
    config.tied_output = false;
    return;
  }
  LlamaLayer& L = layers[m.layer];
  const int s = static_cast<int>(m.slot);
  L.w[s] = w;
  L.repr[s] = std::move(representation);
  L.bytes[s] = bytes;
}

std::vector<float>* LlamaWeights::MutableNorm(int32_t layer, bool ffn) {
  return ffn ? &layers[layer].ffn_norm : &layers[layer].attn_norm;
}

void LlamaWeights::RefreshSummary() {
  struct Acc {
    TensorKindInfo s;
    std::vector<std::string> reprs;
  };
  std::vector<Acc> kinds;
  auto add = [&](const std::string& kind, const std::string& repr, int64_t params, int64_t bytes) {
    Acc* acc = nullptr;
    for (Acc& a : kinds) {
      if (a.s.kind == kind) acc = &a;
    }
    if (acc == nullptr) {
      kinds.push_back({});
      acc = &kinds.back();
      acc->s.kind = kind;
    }
    acc->s.tensors += 1;
    acc->s.parameters += params;
    acc->s.bytes += bytes;
    if (std::find(acc->reprs.begin(), acc->reprs.end(), repr) == acc->reprs.end()) acc->reprs.push_back(repr);
  };
  const int64_t embd_params = token_embd.rows * token_embd.cols;
  add("embedding", GetGgmlTypeTraits(token_embd.type).name, embd_params,
      static_cast<int64_t>(token_embd.row_bytes) * token_embd.rows);
  if (!config.tied_output) add("output", output_repr, output.rows() * output.cols(), output_bytes);
  auto add_vec = [&](const std::string& kind, const std::vector<float>& v) {
    if (!v.empty()) add(kind, "f32", static_cast<int64_t>(v.size()), static_cast<int64_t>(v.size()) * 4);
  };
  add_vec("norm", output_norm);
  add_vec("norm", rope_freqs);
  for (const LlamaLayer& L : layers) {
    add_vec("norm", L.attn_norm);
    add_vec("norm", L.ffn_norm);
    add_vec("attention", L.bq);
    add_vec("attention", L.bk);
    add_vec("attention", L.bv);
    for (int s = 0; s < kLinearSlots; ++s) {
      add(s <= static_cast<int>(LinearSlot::kO) ? "attention" : "mlp", L.repr[s],
          L.w[s].rows() * L.w[s].cols(), L.bytes[s]);
    }
  }
  summary.clear();
  parameter_count = 0;
  weight_bytes = 0;
  for (Acc& a : kinds) {
    // "f32" for biases is noise next to the weights' representation.
    if (a.reprs.size() > 1) a.reprs.erase(std::remove(a.reprs.begin(), a.reprs.end(), "f32"), a.reprs.end());
    a.s.representation = absl::StrJoin(a.reprs, "+");
    parameter_count += a.s.parameters;
    weight_bytes += a.s.bytes;
    summary.push_back(a.s);
  }
  std::sort(summary.begin(), summary.end(),
            [](const TensorKindInfo& a, const TensorKindInfo& b) { return a.kind < b.kind; });
}

}  // namespace ingot
