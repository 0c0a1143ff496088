#include "engine/model/model_card.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ingot {
namespace {

// How the tool whose layout this is loads it (transformers reads these from
// config.json's quantization_config).
std::string PeerLoad(const std::string& layout) {
  if (layout == "bitsandbytes") {
    return "transformers + bitsandbytes: `AutoModelForCausalLM.from_pretrained(\"DIR\")` "
           "(the quantization_config in config.json selects bitsandbytes)";
  }
  if (layout == "gptq") return "transformers + a GPTQ backend (GPTQModel / AutoGPTQ): `from_pretrained(\"DIR\")`";
  if (layout == "hqq") return "transformers + hqq: `AutoModelForCausalLM.from_pretrained(\"DIR\")` (HqqConfig layout)";
  if (layout == "mlx") return "mlx-lm: `mlx_lm.load(\"DIR\")`";
  return "";
}

}  // namespace

std::string ModelCard(const ModelCardInfo& c) {
  std::string out = "---\n";
  if (!c.base_model.empty()) absl::StrAppend(&out, "base_model: ", c.base_model, "\n");
  absl::StrAppend(&out, "library_name: ingot\ntags:\n- ingot\n");
  if (!c.quantization.empty()) absl::StrAppend(&out, "- quantized\n");
  if (!c.layout.empty() && c.layout != "ingot") absl::StrAppend(&out, "- ", c.layout, "\n");
  absl::StrAppend(&out, "---\n\n# ", c.title, "\n\n");
  absl::StrAppend(&out, "Written by ingot's SaveModel from `", c.base_model, "` (", c.architecture, ", ",
                  c.parameters, " parameters).\n\n");
  absl::StrAppend(&out, "| | |\n|---|---|\n");
  absl::StrAppend(&out, "| layout | ", c.layout, " |\n");
  absl::StrAppend(&out, "| quantization | ", c.quantization.empty() ? "none (as loaded)" : c.quantization, " |\n");
  if (c.bits > 0) absl::StrAppend(&out, "| bits | ", c.bits, " |\n");
  if (c.group_size > 0) absl::StrAppend(&out, "| group size | ", c.group_size, " |\n");
  absl::StrAppend(&out, "| weight bytes | ", c.weight_bytes, " |\n");
  if (c.parameters > 0) {
    absl::StrAppend(&out, "| bits per weight (all tensors) | ",
                    absl::StrFormat("%.3f", 8.0 * static_cast<double>(c.weight_bytes) /
                                                static_cast<double>(c.parameters)),
                    " |\n");
  }
  if (c.context_length > 0) absl::StrAppend(&out, "| context | ", c.context_length, " tokens |\n");
  if (c.has_quality) {
    absl::StrAppend(&out, "\n## Quality\n\nOn ", c.tokens_scored,
                    " tokens of ingot's shipped held-out text (EvaluateModel), against the unquantized model:\n\n",
                    "| perplexity | base perplexity | KL(base || this), nats/token | top-1 agreement |\n",
                    "|---|---|---|---|\n",
                    absl::StrFormat("| %.4f | %.4f | %.5f | %.4f |\n", c.perplexity, c.base_perplexity, c.mean_kl,
                                    c.top1_agreement));
  }
  if (!c.variants.empty()) {
    absl::StrAppend(&out, "\n## Variants\n\nEach subdirectory is a checkpoint of its own, with its card:\n\n");
    for (const auto& [name, what] : c.variants) absl::StrAppend(&out, "- `", name, "/`: ", what, "\n");
  }
  absl::StrAppend(&out, "\n## Loading\n\n- ingot: `ingot load NAME DIR`");
  if (!c.variants.empty()) absl::StrAppend(&out, " (a variant: `ingot load NAME DIR/<variant>`)");
  absl::StrAppend(&out, "\n");
  if (const std::string peer = PeerLoad(c.layout); !peer.empty()) absl::StrAppend(&out, "- ", peer, "\n");
  return out;
}

}  // namespace ingot
