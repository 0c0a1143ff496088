// Validation of a QuantizationConfig against the method table (every problem, each
// with its fix) and the fallback chain for a method the device cannot run.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/quant/config.h"
#include "engine/quant/config_internal.h"

namespace ingot::quant {
namespace internal {
namespace {

std::string JoinInts(const std::vector<int64_t>& v) { return absl::StrJoin(v, ", "); }
std::string JoinInts(const std::vector<int32_t>& v) { return absl::StrJoin(v, ", "); }

template <typename T>
bool Has(const std::vector<T>& v, T x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// The bit width is the row's per-row mode (LLM.int8, quanto int8).
bool PerRowBits(const MethodRow& row, int32_t bits) { return row.per_row_bits != 0 && bits == row.per_row_bits; }

// Whole rows, as the user wrote it (before defaults): group_size does not apply.
bool PerRowAsWritten(const Choice& c) {
  const MethodRow& row = *c.row;
  return PerRowBits(row, c.bits) ||
         (row.grouped_quant_type != nullptr && c.quant_type != row.grouped_quant_type);
}

int32_t ImpliedBits(const MethodRow& row, const std::string& qt) {
  return row.implied_bits != nullptr ? row.implied_bits(qt) : 0;
}

}  // namespace

Choice BaseChoice(const QuantizationConfig& config, const MethodRow* row) {
  Choice c;
  c.row = row;
  c.bits = config.bits;
  c.group = config.group_size;
  c.quant_type = absl::AsciiStrToLower(config.quant_type);
  return c;
}

Choice WithDefaults(Choice c) {
  const MethodRow& row = *c.row;
  if (c.quant_type.empty() && !row.quant_types.empty() && !PerRowBits(row, c.bits)) {
    c.quant_type = row.quant_types.front();
  }
  const int32_t implied = ImpliedBits(row, c.quant_type);
  if (c.bits == 0) c.bits = implied != 0 ? implied : row.default_bits;
  if (c.group == 0) c.group = row.default_group;
  return c;
}

bool IsPerRow(const Choice& c) { return PerRowAsWritten(c) || c.row->group_sizes.empty(); }

void CheckChoice(const Choice& c, const std::string& prefix, std::vector<ConfigProblem>* problems) {
  const MethodRow& row = *c.row;
  if (!c.quant_type.empty()) {
    if (row.quant_types.empty() || PerRowBits(row, c.bits)) {
      problems->push_back({prefix + "quant_type",
                           absl::StrCat("method ", row.name, c.bits == 8 ? " 8-bit" : "",
                                        " takes no quant_type"),
                           "leave quant_type empty"});
    } else if (!Has(row.quant_types, c.quant_type)) {
      problems->push_back({prefix + "quant_type",
                           absl::StrCat("method ", row.name, " has no quant_type \"", c.quant_type, "\""),
                           absl::StrCat("use one of: ", absl::StrJoin(row.quant_types, ", "))});
    }
  }
  const int32_t implied = ImpliedBits(row, c.quant_type);
  if (implied != 0) {
    if (c.bits != 0 && c.bits != implied) {
      problems->push_back({prefix + "bits",
                           absl::StrCat("quant_type ", c.quant_type, " is ", implied, "-bit, not ", c.bits),
                           absl::StrCat("set bits to ", implied, " or leave it 0")});
    }
  } else if (c.bits != 0 && !Has(row.bits, c.bits)) {
    problems->push_back({prefix + "bits",
                         absl::StrCat("method ", row.name, " has no ", c.bits, "-bit mode"),
                         absl::StrCat("use bits in {", JoinInts(row.bits), "}")});
  }
  const bool per_row = PerRowAsWritten(c);
  if (c.group != 0 && !per_row) {
    if (row.group_sizes.empty()) {
      problems->push_back({prefix + "group_size",
                           absl::StrCat("method ", row.name, " has a fixed block layout"),
                           "leave group_size 0"});
    } else if (!Has(row.group_sizes, c.group)) {
      problems->push_back({prefix + "group_size",
                           absl::StrCat("method ", row.name, " has no group size ", c.group),
                           absl::StrCat("use group_size in {", JoinInts(row.group_sizes), "}")});
    }
  } else if (c.group != 0 && per_row) {
    const bool grouped_type = row.grouped_quant_type != nullptr && c.quant_type == row.grouped_quant_type;
    problems->push_back({prefix + "group_size",
                         absl::StrCat(row.name, " ", c.bits == 8 || !grouped_type ? "8-bit" : "",
                                      " quantizes per output row; group_size does not apply"),
                         "leave group_size 0"});
  }
}

void ApplyBackendOptions(const MethodRow& row, const std::map<std::string, std::string>& opts,
                         MethodParams* p, std::vector<ConfigProblem>* problems) {
  for (const auto& [key, value] : opts) {
    const std::string field = absl::StrCat("backend_options.", key);
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& o : row.options) {
      if (key == o.key) spec = &o;
    }
    if (spec == nullptr) {
      if (problems) {
        std::vector<std::string> keys;
        for (const OptionSpec& o : row.options) keys.push_back(o.key);
        problems->push_back({field, absl::StrCat("unknown option for method ", row.name),
                             keys.empty() ? absl::StrCat(row.name, " takes no backend options")
                                          : absl::StrCat("known options: ", absl::StrJoin(keys, ", "))});
      }
      continue;
    }
    if (!ApplyOption(*spec, value, p) && problems) {
      problems->push_back({field, absl::StrCat("bad value \"", value, "\""), OptionHint(*spec)});
    }
  }
}

}  // namespace internal

using internal::BaseChoice;
using internal::CheckChoice;
using internal::Choice;

std::vector<ConfigProblem> ValidateQuantization(const QuantizationConfig& config,
                                                const DeviceCaps& device,
                                                const std::vector<LinearModuleRef>* modules) {
  std::vector<ConfigProblem> problems;
  const std::vector<std::string> names = MethodNames();
  if (!device.available) {
    problems.push_back({"device", absl::StrCat("device ", device.name, " is unavailable: ", device.reason),
                        "use device cpu", true});
  }
  const MethodRow* row = FindMethod(config.method);
  if (row == nullptr) {
    problems.push_back({"method",
                        config.method.empty() ? "no method given"
                                              : absl::StrCat("unknown method \"", config.method, "\""),
                        absl::StrCat("use one of: ", absl::StrJoin(names, ", "))});
  } else {
    CheckChoice(BaseChoice(config, row), "", &problems);
    if (device.available && !MethodRunsOn(*row, device.kind) && !config.allow_fallback) {
      problems.push_back({"method",
                          absl::StrCat("method ", row->name, " cannot run on ", device.name),
                          absl::StrCat("set allow_fallback to use ",
                                       *row->fallback ? row->fallback : "another method",
                                       " instead, or quantize on cpu"),
                          true});
    }
    if (config.double_quant.has_value() && !(row->double_quant && config.bits != row->per_row_bits)) {
      problems.push_back({"double_quant", "double_quant applies to bitsandbytes 4-bit only",
                          "leave double_quant unset"});
    }
    MethodParams params;
    internal::ApplyBackendOptions(*row, config.backend_options, &params, &problems);
  }
  const std::string dt = absl::AsciiStrToLower(config.compute_dtype);
  if (!dt.empty() && dt != "float32" && dt != "f32" && dt != "float16" && dt != "f16" &&
      dt != "bfloat16" && dt != "bf16") {
    problems.push_back({"compute_dtype", absl::StrCat("unknown compute_dtype \"", config.compute_dtype, "\""),
                        "use float32, float16 or bfloat16"});
  }
  if (!config.calibration_file.empty() && row != nullptr && row->calibration == Calibration::kNone) {
    problems.push_back({"calibration_file", absl::StrCat("method ", row->name, " takes no calibration text"),
                        "leave calibration_file empty"});
  }
  if (config.calibration_tokens < 0 || config.calibration_tokens > 65536) {
    problems.push_back({"calibration_tokens", "calibration_tokens must be in [0, 65536]",
                        "use 0 for the default (2048)"});
  }
  for (size_t i = 0; i < config.layer_overrides.size(); ++i) {
    const LayerOverride& o = config.layer_overrides[i];
    const std::string prefix = absl::StrCat("layer_overrides[", i, "].");
    if (o.pattern.empty()) {
      problems.push_back({prefix + "pattern", "empty pattern", "name a module or a glob (\"*.down_proj\")"});
    }
    if (o.skip) continue;
    const MethodRow* orow = o.method ? FindMethod(*o.method) : row;
    if (o.method && orow == nullptr) {
      problems.push_back({prefix + "method", absl::StrCat("unknown method \"", *o.method, "\""),
                          absl::StrCat("use one of: ", absl::StrJoin(names, ", "))});
      continue;
    }
    if (orow == nullptr) continue;
    const bool base_calibrates = row != nullptr && row->calibration != Calibration::kNone;
    if (orow->calibration != Calibration::kNone && !base_calibrates) {
      problems.push_back({prefix + "method",
                          absl::StrCat("override method ", orow->name,
                                       " needs calibration but the config's method does not"),
                          "use a calibration method as the config's method, or a calibration-free override"});
    }
    Choice c;
    c.row = orow;
    c.bits = o.bits.value_or(o.method ? 0 : config.bits);
    c.group = o.group_size.value_or(o.method ? 0 : config.group_size);
    c.quant_type = absl::AsciiStrToLower(o.quant_type.value_or(o.method ? "" : config.quant_type));
    CheckChoice(c, prefix, &problems);
  }
  if (modules != nullptr && problems.empty()) {
    const std::vector<std::string> skips = config.skip_modules.value_or(std::vector<std::string>{"lm_head"});
    for (size_t i = 0; i < skips.size(); ++i) {
      bool hit = false;
      for (const LinearModuleRef& m : *modules) hit |= ModuleMatches(skips[i], m);
      if (!hit) {
        problems.push_back({absl::StrCat("skip_modules[", i, "]"),
                            absl::StrCat("\"", skips[i], "\" matches no module of this model"),
                            "name a module such as lm_head, model.layers.0.mlp.down_proj, or a glob *.down_proj"});
      }
    }
    for (size_t i = 0; i < config.layer_overrides.size(); ++i) {
      bool hit = false;
      for (const LinearModuleRef& m : *modules) hit |= ModuleMatches(config.layer_overrides[i].pattern, m);
      if (!hit) {
        problems.push_back({absl::StrCat("layer_overrides[", i, "].pattern"),
                            absl::StrCat("\"", config.layer_overrides[i].pattern, "\" matches no module of this model"),
                            "name a module such as model.layers.3.self_attn.q_proj or a glob layers.1*.mlp.*"});
      }
    }
    if (problems.empty()) {
      const std::vector<ModulePlan> plans = PlanModules(config, *modules);
      int mismatches = 0;
      for (size_t i = 0; i < modules->size(); ++i) {
        const ModulePlan& p = plans[i];
        const LinearModuleRef& m = (*modules)[i];
        if (p.method == nullptr) continue;
        const std::string name = p.method->name;
        const bool ggml = p.method->ggml_type != nullptr;
        const int64_t divisor = ggml ? GetGgmlTypeTraits(p.gguf_type).block_size : p.params.group_size;
        if (divisor > 0 && m.cols % divisor != 0) {
          if (++mismatches > 3) continue;  // the first few name the pattern; the count follows
          problems.push_back({ggml ? "quant_type" : "group_size",
                              absl::StrCat("module ", m.name, " has ", m.cols, " input features, not a multiple of ",
                                           divisor, " (", name, ")"),
                              absl::StrCat("choose a group size dividing ", m.cols,
                                           ", or skip the module with a layer override")});
        }
      }
      if (mismatches > 3) {
        problems.back().message += absl::StrCat(" (and ", mismatches - 3, " more modules)");
      }
    }
  }
  return problems;
}

absl::Status ProblemsToStatus(const std::vector<ConfigProblem>& problems) {
  if (problems.empty()) return absl::OkStatus();
  bool precondition = true;
  std::vector<std::string> parts;
  for (const ConfigProblem& p : problems) {
    precondition &= p.precondition;
    parts.push_back(absl::StrCat(p.field, ": ", p.message, " (fix: ", p.fix, ")"));
  }
  const std::string msg = absl::StrCat("quantization config: ", absl::StrJoin(parts, "; "));
  return precondition ? absl::FailedPreconditionError(msg) : absl::InvalidArgumentError(msg);
}

absl::StatusOr<FallbackResult> ApplyFallback(const QuantizationConfig& config,
                                             const DeviceCaps& device) {
  FallbackResult out;
  out.config = config;
  const MethodRow* row = FindMethod(config.method);
  if (row == nullptr || !device.available || MethodRunsOn(*row, device.kind)) return out;
  if (!config.allow_fallback) {
    return absl::FailedPreconditionError(absl::StrCat(
        "method ", row->name, " cannot run on ", device.name,
        "; set allow_fallback to let ingot use the nearest method that can"));
  }
  const MethodRow* cur = row;
  std::vector<std::string> tried = {row->name};
  while (cur != nullptr && !MethodRunsOn(*cur, device.kind)) {
    cur = *cur->fallback ? FindMethod(cur->fallback) : nullptr;
    if (cur != nullptr) tried.push_back(cur->name);
  }
  if (cur == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no method of the fallback chain ", absl::StrJoin(tried, " -> "), " runs on ", device.name));
  }
  QuantizationConfig& c = out.config;
  c.method = cur->name;
  // Keep the bit width where the new method has it; drop method-specific settings.
  const std::vector<int32_t>& bits = cur->bits;
  if (std::find(bits.begin(), bits.end(), config.bits) == bits.end()) c.bits = 0;
  if (std::find(cur->group_sizes.begin(), cur->group_sizes.end(), config.group_size) ==
      cur->group_sizes.end()) {
    c.group_size = 0;
  }
  c.quant_type.clear();
  c.double_quant.reset();
  c.backend_options.clear();
  c.calibration_file.clear();
  out.note = absl::StrCat("method ", row->name, " cannot run on ", device.name, "; used ", cur->name,
                          " instead (fallback chain ", absl::StrJoin(tried, " -> "), ")");
  return out;
}

}  // namespace ingot::quant
