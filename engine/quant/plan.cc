// Per-module plans (defaults, skips, globs, overrides), size estimates and the
// recommendation of a config that fits a memory budget.
#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/quant/config.h"
#include "engine/quant/config_internal.h"

namespace ingot::quant {
namespace {

// '*' and '?' glob over the whole string.
bool Glob(const char* p, const char* s) {
  for (; *p != '\0'; ++p, ++s) {
    if (*p == '*') {
      for (const char* t = s;; ++t) {
        if (Glob(p + 1, t)) return true;
        if (*t == '\0') return false;
      }
    }
    if (*s == '\0' || (*p != '?' && *p != *s)) return false;
  }
  return *s == '\0';
}

bool MatchesName(const std::string& pattern, const std::string& name) {
  if (name.empty()) return false;
  // The whole name, or a run of components: "q_proj", "self_attn.*" and "layers.0"
  // all match "model.layers.0.self_attn.q_proj".
  const std::string as_prefix = pattern + ".*";
  for (size_t start = 0; start != std::string::npos;) {
    const char* s = name.c_str() + start;
    if (Glob(pattern.c_str(), s) || Glob(as_prefix.c_str(), s)) return true;
    const size_t dot = name.find('.', start);
    start = dot == std::string::npos ? dot : dot + 1;
  }
  return false;
}

}  // namespace

bool ModuleMatches(const std::string& pattern, const LinearModuleRef& module) {
  return MatchesName(pattern, module.name) || MatchesName(pattern, module.gguf_name);
}

std::vector<ModulePlan> PlanModules(const QuantizationConfig& config,
                                    const std::vector<LinearModuleRef>& modules) {
  const std::vector<std::string> skips = config.skip_modules.value_or(std::vector<std::string>{"lm_head"});
  const MethodRow* base_row = FindMethod(config.method);
  std::vector<ModulePlan> plans(modules.size());
  for (size_t i = 0; i < modules.size(); ++i) {
    const LinearModuleRef& m = modules[i];
    ModulePlan& plan = plans[i];
    internal::Choice c = internal::BaseChoice(config, base_row);
    bool skip = false;
    std::string why;
    for (const std::string& s : skips) {
      if (ModuleMatches(s, m)) {
        skip = true;
        why = absl::StrCat("skip_modules: ", s);
      }
    }
    std::map<std::string, std::string> options = config.backend_options;
    for (const LayerOverride& o : config.layer_overrides) {
      if (!ModuleMatches(o.pattern, m)) continue;
      if (o.skip) {
        skip = true;
        why = absl::StrCat("layer_overrides: ", o.pattern, " skip");
        continue;
      }
      skip = false;  // an explicit override re-enables a skipped module
      if (o.method) {
        const MethodRow* r = FindMethod(*o.method);
        if (r != c.row) {
          c.row = r;
          c.bits = 0;
          c.group = 0;
          c.quant_type.clear();
          options.clear();
        }
      }
      if (o.bits) c.bits = *o.bits;
      if (o.group_size) c.group = *o.group_size;
      if (o.quant_type) c.quant_type = absl::AsciiStrToLower(*o.quant_type);
    }
    if (skip || c.row == nullptr) {
      plan.reason = why;
      continue;
    }
    const bool group_explicit = c.group != 0;
    c = internal::WithDefaults(c);
    // A default group size that does not divide this module's rows (SmolLM2's 576 and
    // 128) becomes the largest supported one that does, as users of GPTQ/Quanto expect
    // a default to work; an explicit one is validated instead.
    if (!group_explicit && c.group > 0 && m.cols % c.group != 0) {
      std::vector<int64_t> sizes = c.row->group_sizes;
      std::sort(sizes.rbegin(), sizes.rend());
      for (int64_t g : sizes) {
        if (m.cols % g == 0) {
          c.group = g;
          break;
        }
      }
    }
    plan.method = c.row;
    plan.quant_type = c.quant_type;
    plan.params.bits = c.bits;
    plan.params.group_size = internal::IsPerRow(c) ? 0 : c.group;
    plan.params.double_quant = config.double_quant.value_or(true);
    plan.params.codebook = c.quant_type == "fp4" ? kernels::Codebook::kFP4 : kernels::Codebook::kNF4;
    plan.params.symmetric = false;
    internal::ApplyBackendOptions(*c.row, options, &plan.params, nullptr);
    if (c.row->ggml_type != nullptr) plan.gguf_type = c.row->ggml_type(c.quant_type);
  }
  return plans;
}

double EstimateBitsPerWeight(const ModulePlan& plan, int64_t rows, int64_t cols) {
  (void)rows;
  if (plan.method == nullptr) return 0;
  if (plan.method->bits_per_weight != nullptr) return plan.method->bits_per_weight(plan, cols);
  const MethodParams& p = plan.params;
  // Affine: codes + f16 scale and f16 zero per group (per row when group_size == 0).
  const double group = static_cast<double>(p.group_size > 0 ? p.group_size : cols);
  return static_cast<double>(p.bits) + 32.0 / group;
}

int64_t EstimateConfigBytes(const QuantizationConfig& config, const std::vector<LinearModuleRef>& modules,
                            int64_t fixed_bytes) {
  const std::vector<ModulePlan> plans = PlanModules(config, modules);
  double bytes = static_cast<double>(fixed_bytes);
  for (size_t i = 0; i < modules.size(); ++i) {
    if (plans[i].method == nullptr) continue;  // skipped modules are in fixed_bytes
    bytes += EstimateBitsPerWeight(plans[i], modules[i].rows, modules[i].cols) / 8.0 *
             static_cast<double>(modules[i].rows * modules[i].cols);
  }
  return static_cast<int64_t>(bytes);
}

absl::StatusOr<Recommendation> RecommendQuantization(const std::vector<LinearModuleRef>& modules,
                                                     int64_t fixed_bytes,
                                                     const DeviceCaps& device,
                                                     int64_t budget_bytes) {
  struct Candidate {
    QuantizationConfig config;
    const char* quality;
  };
  auto make = [](const char* method, int32_t bits, int64_t group, const char* qt) {
    QuantizationConfig c;
    c.method = method;
    c.bits = bits;
    c.group_size = group;
    c.quant_type = qt;
    return c;
  };
  // Best quality first (the literature's ordering for weight-only methods).
  const std::vector<Candidate> candidates = {
      {make("none", 0, 0, "f16"), "dense f16: no quantization loss"},
      {make("bitsandbytes", 8, 0, ""), "8-bit (LLM.int8): within ~1% of dense perplexity"},
      {make("hqq", 4, 64, ""), "HQQ 4-bit g64: calibration-free, near NF4 quality"},
      {make("bitsandbytes", 4, 64, "nf4"), "NF4 with double quant: ~4.13 bits per weight"},
      {make("hqq", 3, 64, ""), "HQQ 3-bit g64: noticeable but usable loss"},
      {make("hqq", 2, 16, ""), "HQQ 2-bit g16: large loss; only when nothing else fits"},
  };
  std::vector<std::string> tried;
  for (const Candidate& cand : candidates) {
    const MethodRow* row = FindMethod(cand.config.method);
    if (row == nullptr || !MethodRunsOn(*row, device.kind)) continue;
    if (!ValidateQuantization(cand.config, device, &modules).empty()) continue;
    const int64_t est = EstimateConfigBytes(cand.config, modules, fixed_bytes);
    tried.push_back(absl::StrCat(cand.config.method, cand.config.bits ? absl::StrCat(" ", cand.config.bits, "-bit") : "",
                                 ": ", est, " bytes"));
    if (est <= budget_bytes) {
      Recommendation r;
      r.config = cand.config;
      r.estimated_bytes = est;
      r.why = absl::StrCat(cand.quality, "; estimated ", est, " bytes <= budget ", budget_bytes,
                           " bytes (", fixed_bytes, " bytes of embeddings, norms and skipped modules)");
      return r;
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat("no quantization fits ", budget_bytes,
                                                   " bytes on ", device.name, ": ",
                                                   absl::StrJoin(tried, "; ")));
}

}  // namespace ingot::quant
