// The method table and everything that reads it: validation, fallback, per-module
// plans, size estimates and recommendation.
#include "engine/quant/config.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ingot::quant {



const std::vector<MethodRow>& MethodTable() {
  // runs_on_cuda stays false until kernels/cuda has the representation's kernels.
  static const std::vector<MethodRow> table = {
      {"none", "dense weights (f32/f16/bf16)", {16, 32}, 16, {}, 0, {"f16", "bf16", "f32"}, {},
       false, true, false, true, ""},
      {"bitsandbytes", "bitsandbytes 4-bit NF4/FP4 blocks (double-quantized absmax) or LLM.int8",
       {4, 8}, 4, {32, 64, 128, 256, 512, 1024, 2048, 4096}, 64, {"nf4", "fp4"}, {"threshold"},
       false, true, false, true, "hqq"},
      {"hqq", "Half-Quadratic Quantization: affine groups, zero/scale by a proximal solver",
       {1, 2, 3, 4, 8}, 4, {16, 32, 64, 128, 256}, 64, {},
       {"axis", "iters", "lp_norm", "beta", "kappa", "optimize", "quant_zero", "quant_scale"},
       false, true, false, true, "none"},
      {"quanto", "optimum-quanto int2/int4 affine groups, int8 symmetric per channel", {2, 4, 8}, 4,
       {32, 64, 128}, 128, {}, {}, false, true, false, true, "hqq"},
      {"torchao", "torchao int8/int4 weight-only and int8 dynamic activation", {4, 8}, 8,
       {32, 64, 128, 256}, 128, {"int8_weight_only", "int4_weight_only", "int8_dynamic"}, {},
       false, true, false, false, "hqq"},
      {"mlx", "MLX affine groups (scale + bias)", {4, 8}, 4, {32, 64, 128}, 64, {}, {}, false, true,
       false, true, "hqq"},
      {"gptq", "GPTQ: Hessian-compensated affine groups from calibration text", {2, 3, 4, 8}, 4,
       {32, 64, 128}, 128, {}, {"damp", "act_order", "sym"}, true, true, false, true, "hqq"},
      {"awq", "AWQ: activation-aware scaled affine groups from calibration text", {4}, 4,
       {32, 64, 128}, 128, {}, {"grid"}, true, true, false, true, "hqq"},
      {"gguf", "GGUF block types, bytes as llama.cpp's quantizers", {2, 3, 4, 5, 6, 8}, 4, {}, 0,
       {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}, {}, false,
       true, false, true, "hqq"},
  };
  return table;
}

const MethodRow* FindMethod(const std::string& raw) {
  std::string name = absl::AsciiStrToLower(raw);
  if (name == "bnb") name = "bitsandbytes";
  if (name == "optimum-quanto") name = "quanto";
  if (name == "fp16" || name == "dense") name = "none";
  for (const MethodRow& row : MethodTable()) {
    if (name == row.name) return &row;
  }
  return nullptr;
}

bool MethodRunsOn(const MethodRow& row, DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu: return row.runs_on_cpu;
    case DeviceKind::kCuda: return row.runs_on_cuda;
    case DeviceKind::kMps:
    case DeviceKind::kMlx: return false;
  }
  return false;
}

std::optional<GgmlType> ParseGgmlTypeName(const std::string& raw) {
  const std::string name = absl::AsciiStrToLower(raw);
  for (uint32_t t = 0; t < 64; ++t) {
    const auto& traits = GetGgmlTypeTraits(t);
    if (traits.name != nullptr && traits.supported && name == absl::AsciiStrToLower(traits.name)) {
      return static_cast<GgmlType>(t);
    }
  }
  return std::nullopt;
}

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

std::string JoinInts(const std::vector<int64_t>& v) { return absl::StrJoin(v, ", "); }
std::string JoinInts(const std::vector<int32_t>& v) { return absl::StrJoin(v, ", "); }

bool ParseBool(const std::string& v, bool* out) {
  const std::string s = absl::AsciiStrToLower(v);
  if (s == "1" || s == "true" || s == "yes" || s == "on") { *out = true; return true; }
  if (s == "0" || s == "false" || s == "no" || s == "off") { *out = false; return true; }
  return false;
}

// Applies backend_options to params; appends problems for bad values.
void ApplyBackendOptions(const MethodRow& row, const std::map<std::string, std::string>& opts,
                         MethodParams* p, std::vector<ConfigProblem>* problems) {
  for (const auto& [key, value] : opts) {
    const std::string field = absl::StrCat("backend_options.", key);
    if (std::find(row.backend_options.begin(), row.backend_options.end(), key) ==
        row.backend_options.end()) {
      if (problems) {
        problems->push_back({field, absl::StrCat("unknown option for method ", row.name),
                             row.backend_options.empty()
                                 ? absl::StrCat(row.name, " takes no backend options")
                                 : absl::StrCat("known options: ", absl::StrJoin(row.backend_options, ", "))});
      }
      continue;
    }
    bool ok = true;
    float f = 0;
    int32_t i = 0;
    bool b = false;
    if (key == "axis") {
      ok = absl::SimpleAtoi(value, &i) && (i == 0 || i == 1);
      if (ok) p->hqq_axis = i;
    } else if (key == "iters") {
      ok = absl::SimpleAtoi(value, &i) && i >= 0 && i <= 1000;
      if (ok) p->hqq_iters = i;
    } else if (key == "lp_norm") {
      ok = absl::SimpleAtof(value, &f) && f > 0 && f <= 2;
      if (ok) p->hqq_lp_norm = f;
    } else if (key == "beta") {
      ok = absl::SimpleAtof(value, &f) && f > 0;
      if (ok) p->hqq_beta = f;
    } else if (key == "kappa") {
      ok = absl::SimpleAtof(value, &f) && f >= 1;
      if (ok) p->hqq_kappa = f;
    } else if (key == "optimize") {
      ok = ParseBool(value, &b);
      if (ok) p->hqq_optimize = b;
    } else if (key == "quant_zero") {
      ok = ParseBool(value, &b);
      if (ok) p->hqq_quant_zero = b;
    } else if (key == "quant_scale") {
      ok = ParseBool(value, &b);
      if (ok) p->hqq_quant_scale = b;
    } else if (key == "threshold") {
      ok = absl::SimpleAtof(value, &f) && f >= 0;
      if (ok) p->int8_threshold = f;
    } else if (key == "damp") {
      ok = absl::SimpleAtof(value, &f) && f > 0 && f < 1;
      if (ok) p->gptq_damp = f;
    } else if (key == "act_order") {
      ok = ParseBool(value, &b);
      if (ok) p->gptq_act_order = b;
    } else if (key == "sym") {
      ok = ParseBool(value, &b);
      if (ok) p->symmetric = b;
    } else if (key == "grid") {
      ok = absl::SimpleAtoi(value, &i) && i >= 1 && i <= 100;
      if (ok) p->awq_grid = i;
    }
    if (!ok && problems) {
      problems->push_back({field, absl::StrCat("bad value \"", value, "\""),
                           "axis: 0|1; iters: 0..1000; lp_norm: (0,2]; kappa: >=1; damp: (0,1); "
                           "grid: 1..100; booleans: true|false"});
    }
  }
}

// Effective (method, bits, group, quant_type) of the config or an override.
struct Choice {
  const MethodRow* row = nullptr;
  int32_t bits = 0;
  int64_t group = 0;
  std::string quant_type;
};

// Bits implied by a quant_type (torchao, gguf), 0 if none.
int32_t ImpliedBits(const MethodRow& row, const std::string& qt) {
  const std::string name = row.name;
  if (name == "torchao") return qt == "int4_weight_only" ? 4 : 8;
  if (name == "gguf") {
    if (qt.size() >= 2 && qt[0] == 'q' && std::isdigit(static_cast<unsigned char>(qt[1]))) return qt[1] - '0';
  }
  if (name == "none") return qt == "f32" ? 32 : 16;
  return 0;
}

void CheckChoice(const Choice& c, const std::string& prefix, std::vector<ConfigProblem>* problems) {
  const MethodRow& row = *c.row;
  if (!c.quant_type.empty()) {
    if (row.quant_types.empty() || (std::string(row.name) == "bitsandbytes" && c.bits == 8)) {
      problems->push_back({prefix + "quant_type",
                           absl::StrCat("method ", row.name, c.bits == 8 ? " 8-bit" : "",
                                        " takes no quant_type"),
                           "leave quant_type empty"});
    } else if (std::find(row.quant_types.begin(), row.quant_types.end(), c.quant_type) ==
               row.quant_types.end()) {
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
  } else if (c.bits != 0 &&
             std::find(row.bits.begin(), row.bits.end(), c.bits) == row.bits.end()) {
    problems->push_back({prefix + "bits",
                         absl::StrCat("method ", row.name, " has no ", c.bits, "-bit mode"),
                         absl::StrCat("use bits in {", JoinInts(row.bits), "}")});
  }
  const std::string name = row.name;
  const bool per_row = (name == "bitsandbytes" && c.bits == 8) ||
                       (name == "torchao" && c.quant_type != "int4_weight_only") ||
                       (name == "quanto" && c.bits == 8);
  if (c.group != 0 && !per_row) {
    if (row.group_sizes.empty()) {
      problems->push_back({prefix + "group_size",
                           absl::StrCat("method ", row.name, " has a fixed block layout"),
                           "leave group_size 0"});
    } else if (std::find(row.group_sizes.begin(), row.group_sizes.end(), c.group) ==
               row.group_sizes.end()) {
      problems->push_back({prefix + "group_size",
                           absl::StrCat("method ", row.name, " has no group size ", c.group),
                           absl::StrCat("use group_size in {", JoinInts(row.group_sizes), "}")});
    }
  } else if (c.group != 0 && per_row) {
    problems->push_back({prefix + "group_size",
                         absl::StrCat(row.name, " ", c.bits == 8 || c.quant_type != "int4_weight_only" ? "8-bit" : "",
                                      " quantizes per output row; group_size does not apply"),
                         "leave group_size 0"});
  }
}

Choice BaseChoice(const QuantizationConfig& config, const MethodRow* row) {
  Choice c;
  c.row = row;
  c.bits = config.bits;
  c.group = config.group_size;
  c.quant_type = absl::AsciiStrToLower(config.quant_type);
  if (row != nullptr && std::string(row->name) == "bitsandbytes" && c.bits == 8 &&
      c.quant_type.empty()) {
    c.quant_type = "";  // int8 has no quant_type
  }
  return c;
}

// Fills defaults of a choice; bitsandbytes 8-bit takes no quant_type.
Choice WithDefaults(Choice c) {
  const MethodRow& row = *c.row;
  const std::string name = row.name;
  if (c.quant_type.empty() && !row.quant_types.empty() && !(name == "bitsandbytes" && c.bits == 8)) {
    c.quant_type = row.quant_types.front();
  }
  const int32_t implied = ImpliedBits(row, c.quant_type);
  if (c.bits == 0) c.bits = implied != 0 ? implied : row.default_bits;
  if (c.group == 0) c.group = row.default_group;
  return c;
}

bool IsPerRow(const Choice& c) {
  const std::string name = c.row->name;
  return (name == "bitsandbytes" && c.bits == 8) ||
         (name == "torchao" && c.quant_type != "int4_weight_only") ||
         (name == "quanto" && c.bits == 8) || name == "gguf" || name == "none";
}

}  // namespace

bool ModuleMatches(const std::string& pattern, const ModuleInfo& module) {
  return MatchesName(pattern, module.name) || MatchesName(pattern, module.gguf_name);
}

std::vector<ConfigProblem> ValidateQuantization(const QuantizationConfig& config,
                                                const DeviceCaps& device,
                                                const std::vector<ModuleInfo>* modules) {
  std::vector<ConfigProblem> problems;
  std::vector<std::string> names;
  for (const MethodRow& row : MethodTable()) names.push_back(row.name);
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
    const std::string name = row->name;
    if (config.double_quant.has_value() && !(name == "bitsandbytes" && config.bits != 8)) {
      problems.push_back({"double_quant", "double_quant applies to bitsandbytes 4-bit only",
                          "leave double_quant unset"});
    }
    MethodParams params;
    ApplyBackendOptions(*row, config.backend_options, &params, &problems);
  }
  const std::string dt = absl::AsciiStrToLower(config.compute_dtype);
  if (!dt.empty() && dt != "float32" && dt != "f32" && dt != "float16" && dt != "f16" &&
      dt != "bfloat16" && dt != "bf16") {
    problems.push_back({"compute_dtype", absl::StrCat("unknown compute_dtype \"", config.compute_dtype, "\""),
                        "use float32, float16 or bfloat16"});
  }
  if (!config.calibration_file.empty() && row != nullptr && !row->needs_calibration) {
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
    if (orow->needs_calibration != (row != nullptr && row->needs_calibration) && orow->needs_calibration) {
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
      for (const ModuleInfo& m : *modules) hit |= ModuleMatches(skips[i], m);
      if (!hit) {
        problems.push_back({absl::StrCat("skip_modules[", i, "]"),
                            absl::StrCat("\"", skips[i], "\" matches no module of this model"),
                            "name a module such as lm_head, model.layers.0.mlp.down_proj, or a glob *.down_proj"});
      }
    }
    for (size_t i = 0; i < config.layer_overrides.size(); ++i) {
      bool hit = false;
      for (const ModuleInfo& m : *modules) hit |= ModuleMatches(config.layer_overrides[i].pattern, m);
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
        const ModuleInfo& m = (*modules)[i];
        if (p.method == nullptr) continue;
        const std::string name = p.method->name;
        int64_t divisor = p.params.group_size;
        if (name == "gguf" || name == "none") {
          divisor = GetGgmlTypeTraits(p.gguf_type).block_size;
        }
        if (divisor > 0 && m.cols % divisor != 0) {
          if (++mismatches > 3) continue;  // the first few name the pattern; the count follows
          problems.push_back({name == "gguf" || name == "none" ? "quant_type" : "group_size",
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

std::vector<ModulePlan> PlanModules(const QuantizationConfig& config,
                                    const std::vector<ModuleInfo>& modules) {
  const std::vector<std::string> skips = config.skip_modules.value_or(std::vector<std::string>{"lm_head"});
  const MethodRow* base_row = FindMethod(config.method);
  std::vector<ModulePlan> plans(modules.size());
  for (size_t i = 0; i < modules.size(); ++i) {
    const ModuleInfo& m = modules[i];
    ModulePlan& plan = plans[i];
    Choice c = BaseChoice(config, base_row);
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
    c = WithDefaults(c);
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
    plan.params.group_size = IsPerRow(c) ? 0 : c.group;
    plan.params.double_quant = config.double_quant.value_or(true);
    plan.params.codebook = c.quant_type == "fp4" ? kernels::Codebook::kFP4 : kernels::Codebook::kNF4;
    const std::string name = c.row->name;
    plan.params.symmetric = false;
    ApplyBackendOptions(*c.row, options, &plan.params, nullptr);
    if (name == "gguf") {
      plan.gguf_type = ParseGgmlTypeName(c.quant_type).value_or(GgmlType::kQ4_0);
    } else if (name == "none") {
      plan.gguf_type = ParseGgmlTypeName(c.quant_type).value_or(GgmlType::kF16);
    }
  }
  return plans;
}

double EstimateBitsPerWeight(const ModulePlan& plan, int64_t rows, int64_t cols) {
  (void)rows;
  if (plan.method == nullptr) return 0;
  const std::string name = plan.method->name;
  const MethodParams& p = plan.params;
  if (name == "gguf" || name == "none") {
    const auto& t = GetGgmlTypeTraits(plan.gguf_type);
    return 8.0 * static_cast<double>(t.type_size) / static_cast<double>(t.block_size);
  }
  if (name == "bitsandbytes" && p.bits == 4) {
    const double block = static_cast<double>(p.group_size);
    return p.double_quant ? 4.0 + 8.0 / block + 32.0 / (block * 256.0) : 4.0 + 32.0 / block;
  }
  // Affine: codes + f16 scale and f16 zero per group (per row when group_size == 0).
  const double group = static_cast<double>(p.group_size > 0 ? p.group_size : cols);
  return static_cast<double>(p.bits) + 32.0 / group;
}

absl::StatusOr<Recommendation> RecommendQuantization(const std::vector<ModuleInfo>& modules,
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
    const std::vector<ModulePlan> plans = PlanModules(cand.config, modules);
    double bytes = static_cast<double>(fixed_bytes);
    for (size_t i = 0; i < modules.size(); ++i) {
      if (plans[i].method == nullptr) continue;  // skipped modules are in fixed_bytes
      bytes += EstimateBitsPerWeight(plans[i], modules[i].rows, modules[i].cols) / 8.0 *
               static_cast<double>(modules[i].rows * modules[i].cols);
    }
    const int64_t est = static_cast<int64_t>(bytes);
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
