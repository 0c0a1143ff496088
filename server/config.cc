#include "server/config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "engine/common/read_file.h"
#include "engine/formats/file_access.h"
#include "engine/formats/hf_cache.h"
#include "engine/quant/presets.h"
#include "engine/runtime/device.h"
#include "engine/runtime/engine.h"
#include "server/auth.h"
#include "server/tls.h"
#include "yaml-cpp/yaml.h"

extern char** environ;

namespace ingot::server {
namespace {

namespace fs = std::filesystem;

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Index(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

// What a YAML node is, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return absl::StrCat("'", node.Scalar(), "'");
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "nothing";
  }
}

// Walks the document: each reader checks a node's type and records a problem naming
// the key path (and the line) when it is wrong, leaving the default in place.
class Reader {
 public:
  Reader(std::string origin, std::vector<std::string>* problems)
      : origin_(std::move(origin)), problems_(problems) {}

  void Problem(const std::string& path, const YAML::Node& at, const std::string& what) {
    std::string where;
    if (!at.Mark().is_null() && !origin_.empty()) {
      where = absl::StrCat(" (", origin_, ":", at.Mark().line + 1, ")");
    }
    problems_->push_back(absl::StrCat(path, ": ", what, where));
  }

  // The known keys present in a mapping; unknown and duplicate keys are problems.
  // nullopt when `node` is not a mapping (null counts as an empty one).
  std::optional<std::map<std::string, YAML::Node>> Fields(
      const YAML::Node& node, const std::string& path, const std::vector<std::string>& known) {
    std::map<std::string, YAML::Node> fields;
    if (node.IsNull()) return fields;
    if (!node.IsMap()) {
      Problem(path.empty() ? "(top level)" : path, node,
              absl::StrCat("expected a mapping, got ", Describe(node)));
      return std::nullopt;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) {
        Problem(path.empty() ? "(top level)" : path, it->first, "keys must be plain names");
        continue;
      }
      const std::string key = it->first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        Problem(Join(path, key), it->first,
                absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
      } else if (!fields.emplace(key, it->second).second) {
        Problem(Join(path, key), it->first, "duplicate key");
      }
    }
    return fields;
  }

  void String(const YAML::Node& node, const std::string& path, std::string* out) {
    if (node.IsNull()) {
      out->clear();
    } else if (node.IsScalar()) {
      *out = node.Scalar();
    } else {
      Problem(path, node, absl::StrCat("expected a string, got ", Describe(node)));
    }
  }

  template <typename Int>
  void Integer(const YAML::Node& node, const std::string& path, int64_t min, Int* out) {
    int64_t v = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &v)) {
      Problem(path, node, absl::StrCat("expected an integer, got ", Describe(node)));
    } else if (v < min || v > std::numeric_limits<Int>::max()) {
      Problem(path, node, absl::StrCat("must be between ", min, " and ",
                                       std::numeric_limits<Int>::max(), ", got ", v));
    } else {
      *out = static_cast<Int>(v);
    }
  }

  void Number(const YAML::Node& node, const std::string& path, double min, double* out) {
    double v = 0;
    if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &v) || !std::isfinite(v)) {
      Problem(path, node, absl::StrCat("expected a number, got ", Describe(node)));
    } else if (v < min) {
      Problem(path, node, absl::StrCat("must be >= ", min, ", got ", v));
    } else {
      *out = v;
    }
  }

  void Bool(const YAML::Node& node, const std::string& path, bool* out) {
    if (!node.IsScalar() || !absl::SimpleAtob(node.Scalar(), out)) {
      Problem(path, node, absl::StrCat("expected true or false, got ", Describe(node)));
    }
  }

  void Duration(const YAML::Node& node, const std::string& path, double* out) {
    std::optional<double> s;
    if (node.IsScalar()) s = ParseDurationSeconds(node.Scalar());
    if (!s) {
      Problem(path, node, absl::StrCat("expected a duration like 5m, 90s or 1h30m, got ",
                                       Describe(node)));
    } else if (*s <= 0) {
      Problem(path, node, "must be longer than 0 (leave it out to keep the model loaded)");
    } else {
      *out = *s;
    }
  }

  void StringList(const YAML::Node& node, const std::string& path, std::vector<std::string>* out) {
    if (node.IsNull()) {
      out->clear();
      return;
    }
    if (!node.IsSequence()) {
      Problem(path, node, absl::StrCat("expected a list of strings, got ", Describe(node)));
      return;
    }
    out->clear();
    for (size_t i = 0; i < node.size(); ++i) {
      std::string s;
      String(node[i], Index(path, i), &s);
      out->push_back(std::move(s));
    }
  }

 private:
  std::string origin_;
  std::vector<std::string>* problems_;
};

using Fields = std::map<std::string, YAML::Node>;

// Calls `read` with the field's node when `key` is present.
void With(const Fields& fields, const std::string& key,
          const std::function<void(const YAML::Node&)>& read) {
  if (auto it = fields.find(key); it != fields.end()) read(it->second);
}

bool IsDeviceName(const std::string& name) { return !name.empty() && kernels::ParseDevice(name).ok(); }

void ReadQuantization(Reader& r, const YAML::Node& node, const std::string& path,
                      quant::QuantizationConfig* q) {
  std::optional<Fields> f = r.Fields(
      node, path,
      {"method", "bits", "group_size", "quant_type", "compute_dtype", "double_quant",
       "skip_modules", "allow_fallback", "calibration_file", "calibration_tokens",
       "backend_options", "preset"});
  if (!f) return;
  if (!f->count("method") && !f->count("preset")) r.Problem(Join(path, "method"), node, "required (or a preset)");
  With(*f, "method", [&](auto& n) { r.String(n, Join(path, "method"), &q->method); });
  With(*f, "bits", [&](auto& n) { r.Integer(n, Join(path, "bits"), 0, &q->bits); });
  With(*f, "group_size", [&](auto& n) { r.Integer(n, Join(path, "group_size"), 0, &q->group_size); });
  With(*f, "quant_type", [&](auto& n) { r.String(n, Join(path, "quant_type"), &q->quant_type); });
  With(*f, "compute_dtype", [&](auto& n) { r.String(n, Join(path, "compute_dtype"), &q->compute_dtype); });
  With(*f, "double_quant", [&](auto& n) {
    bool b = true;
    r.Bool(n, Join(path, "double_quant"), &b);
    q->double_quant = b;
  });
  With(*f, "skip_modules", [&](auto& n) {
    std::vector<std::string> skip;
    r.StringList(n, Join(path, "skip_modules"), &skip);
    q->skip_modules = std::move(skip);
  });
  With(*f, "allow_fallback", [&](auto& n) { r.Bool(n, Join(path, "allow_fallback"), &q->allow_fallback); });
  With(*f, "calibration_file", [&](auto& n) {
    r.String(n, Join(path, "calibration_file"), &q->calibration_file);
  });
  With(*f, "calibration_tokens", [&](auto& n) {
    r.Integer(n, Join(path, "calibration_tokens"), 0, &q->calibration_tokens);
  });
  With(*f, "backend_options", [&](const YAML::Node& n) {
    const std::string p = Join(path, "backend_options");
    if (n.IsNull()) return;
    if (!n.IsMap()) {
      r.Problem(p, n, absl::StrCat("expected a mapping of option: value, got ", Describe(n)));
      return;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->first.IsScalar() || !it->second.IsScalar()) {
        r.Problem(p, it->first, "options and values must be plain strings or numbers");
        continue;
      }
      q->backend_options[it->first.Scalar()] = it->second.Scalar();
    }
  });
  std::string preset;
  With(*f, "preset", [&](auto& n) { r.String(n, Join(path, "preset"), &preset); });
  if (absl::Status s = quant::ApplyPreset(preset, q); !s.ok()) r.Problem(Join(path, "preset"), node, std::string(s.message()));
}

const std::vector<std::string> kLoadingKeys = {"loading_strategy", "loading_workers", "dtype",
                                               "use_safetensors", "max_memory", "offload_to_cpu"};

// The LoadingConfig keys of a models[] entry or model_defaults (`f` holds them).
void ReadLoading(Reader& r, const Fields& f, const std::string& path, LoadingConfig* l) {
  With(f, "loading_strategy", [&](auto& n) {
    r.String(n, Join(path, "loading_strategy"), &l->loading_strategy);
    if (!ParseLoadingStrategy(l->loading_strategy).ok()) {
      r.Problem(Join(path, "loading_strategy"), n, "must be one of full, low_memory, unified_memory, streaming");
      l->loading_strategy.clear();
    }
  });
  With(f, "loading_workers", [&](auto& n) { r.Integer(n, Join(path, "loading_workers"), -1, &l->loading_workers); });
  With(f, "dtype", [&](auto& n) {
    r.String(n, Join(path, "dtype"), &l->dtype);
    if (!l->dtype.empty() && l->dtype != "auto" && l->dtype != "f32" && l->dtype != "bf16" && l->dtype != "f16") {
      r.Problem(Join(path, "dtype"), n, "must be one of auto, f32, bf16, f16");
      l->dtype.clear();
    }
  });
  With(f, "use_safetensors", [&](auto& n) {
    bool on = true;
    r.Bool(n, Join(path, "use_safetensors"), &on);
    l->use_safetensors = on;
  });
  With(f, "offload_to_cpu", [&](auto& n) {
    bool on = false;
    r.Bool(n, Join(path, "offload_to_cpu"), &on);
    l->offload_to_cpu = on;
  });
  With(f, "max_memory", [&](const YAML::Node& n) {
    if (n.IsNull()) return;
    if (!n.IsMap()) {
      r.Problem(Join(path, "max_memory"), n, absl::StrCat("expected a mapping of device: bytes, got ", Describe(n)));
      return;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string name = it->first.IsScalar() ? it->first.Scalar() : "";
      const std::string at = Join(Join(path, "max_memory"), name);
      if (!IsDeviceName(name)) {
        r.Problem(at, it->first, "unknown device (expected cpu, cuda:N, mps or mlx)");
        continue;
      }
      int64_t bytes = 0;
      r.Integer(it->second, at, 1, &bytes);
      if (bytes > 0) l->max_memory[name] = bytes;
    }
  });
}

void ReadModel(Reader& r, const YAML::Node& node, const std::string& path, ModelConfig* m) {
  std::vector<std::string> keys = {"name", "source", "format", "device", "backend", "context_length",
                                    "pinned", "keep_alive", "quantization", "kv_cache_bytes",
                                    "kv_cache_dtype", "max_sequences", "prefix_cache", "revision"};
  keys.insert(keys.end(), kLoadingKeys.begin(), kLoadingKeys.end());
  std::optional<Fields> f = r.Fields(node, path, keys);
  if (!f) return;
  ReadLoading(r, *f, path, &m->loading);
  for (const char* required : {"name", "source"}) {
    if (!f->count(required)) r.Problem(Join(path, required), node, "required");
  }
  With(*f, "name", [&](auto& n) { r.String(n, Join(path, "name"), &m->name); });
  With(*f, "source", [&](auto& n) { r.String(n, Join(path, "source"), &m->source); });
  With(*f, "revision", [&](auto& n) { r.String(n, Join(path, "revision"), &m->revision); });
  With(*f, "format", [&](auto& n) { r.String(n, Join(path, "format"), &m->format); });
  With(*f, "device", [&](auto& n) { r.String(n, Join(path, "device"), &m->device); });
  With(*f, "backend", [&](auto& n) { r.String(n, Join(path, "backend"), &m->backend); });
  With(*f, "context_length", [&](auto& n) {
    r.Integer(n, Join(path, "context_length"), 0, &m->context_length);
  });
  With(*f, "kv_cache_bytes", [&](auto& n) { r.Integer(n, Join(path, "kv_cache_bytes"), 0, &m->kv_cache_bytes); });
  With(*f, "kv_cache_dtype", [&](auto& n) {
    r.String(n, Join(path, "kv_cache_dtype"), &m->kv_cache_dtype);
    if (m->kv_cache_dtype != "f16" && m->kv_cache_dtype != "f32" && m->kv_cache_dtype != "q8_0") {
      r.Problem(Join(path, "kv_cache_dtype"), n, "must be one of f16, f32, q8_0");
      m->kv_cache_dtype.clear();
    }
  });
  With(*f, "max_sequences", [&](auto& n) { r.Integer(n, Join(path, "max_sequences"), 0, &m->max_sequences); });
  With(*f, "prefix_cache", [&](auto& n) {
    bool on = true;
    r.Bool(n, Join(path, "prefix_cache"), &on);
    m->prefix_cache = on;
  });
  With(*f, "pinned", [&](auto& n) { r.Bool(n, Join(path, "pinned"), &m->pinned); });
  With(*f, "keep_alive", [&](auto& n) { r.Duration(n, Join(path, "keep_alive"), &m->keep_alive_s); });
  With(*f, "quantization", [&](auto& n) {
    m->quantization.emplace();
    ReadQuantization(r, n, Join(path, "quantization"), &*m->quantization);
  });
}

// A line of `problems` for each problem of `config` as the method table sees it.
void QuantizationProblems(const ModelConfig& m, std::vector<std::string>* problems) {
  const std::string path = m.origin + ".quantization";
  absl::StatusOr<quant::DeviceCaps> caps = ResolveDevice(m.device);
  if (!caps.ok()) return;  // reported for the device itself
  for (const quant::ConfigProblem& p : quant::ValidateQuantization(*m.quantization, *caps)) {
    problems->push_back(absl::StrCat(path, ".", p.field, ": ", p.message,
                                     p.fix.empty() ? "" : absl::StrCat(" (", p.fix, ")")));
  }
}

}  // namespace

std::optional<double> ParseDurationSeconds(absl::string_view text) {
  std::string t(absl::StripAsciiWhitespace(text));
  if (t.empty()) return std::nullopt;
  double seconds = 0;
  if (absl::SimpleAtod(t, &seconds)) {
    if (!std::isfinite(seconds)) return std::nullopt;
    return seconds;
  }
  absl::Duration d;
  if (!absl::ParseDuration(t, &d) || d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    return std::nullopt;
  }
  return absl::ToDoubleSeconds(d);
}

absl::Status ApplyLoadingConfig(const LoadingConfig& c, LoadRequest* request) {
  absl::StatusOr<LoadingStrategy> strategy = ParseLoadingStrategy(c.loading_strategy);
  if (!strategy.ok()) return strategy.status();
  request->loading_strategy = *strategy;
  request->loading_workers = c.loading_workers;
  request->dtype = c.dtype;
  request->use_safetensors = c.use_safetensors;
  request->max_memory = c.max_memory;
  request->offload_to_cpu = c.offload_to_cpu;
  return absl::OkStatus();
}

absl::Status ToLoadingDefaults(const LoadingConfig& c, LoadingDefaults* defaults) {
  absl::StatusOr<LoadingStrategy> strategy = ParseLoadingStrategy(c.loading_strategy);
  if (!strategy.ok()) return strategy.status();
  if (*strategy != LoadingStrategy::kDefault) defaults->strategy = *strategy;
  defaults->workers = c.loading_workers;
  defaults->dtype = c.dtype;
  defaults->use_safetensors = c.use_safetensors;
  defaults->max_memory = c.max_memory;
  defaults->offload_to_cpu = c.offload_to_cpu.value_or(false);
  return absl::OkStatus();
}

ServerConfig ParseConfig(absl::string_view yaml, absl::string_view origin,
                         std::vector<std::string>* problems) {
  ServerConfig c;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    problems->push_back(absl::StrCat(origin.empty() ? "config" : origin, ":", e.mark.line + 1, ":",
                                     e.mark.column + 1, ": YAML syntax error: ", e.msg));
    return c;
  }
  Reader r{std::string(origin), problems};
  try {
    std::optional<Fields> f = r.Fields(root, "",
                                       {"listen", "metrics_listen", "threads", "drain_seconds",
                                        "log", "devices", "model_roots", "limits", "tls", "auth",
                                        "models", "model_defaults", "hf_cache", "http"});
    if (!f) return c;
    With(*f, "listen", [&](auto& n) { r.String(n, "listen", &c.listen); });
    With(*f, "metrics_listen", [&](auto& n) { r.String(n, "metrics_listen", &c.metrics_listen); });
    With(*f, "threads", [&](auto& n) { r.Integer(n, "threads", 0, &c.threads); });
    With(*f, "http", [&](auto& n) {
      std::optional<Fields> h = r.Fields(n, "http", {"listen"});
      if (!h) return;
      With(*h, "listen", [&](auto& v) { r.String(v, "http.listen", &c.http_listen); });
    });
    With(*f, "drain_seconds", [&](auto& n) { r.Number(n, "drain_seconds", 0, &c.drain_seconds); });
    With(*f, "log", [&](auto& n) {
      std::optional<Fields> log = r.Fields(n, "log", {"level", "json"});
      if (!log) return;
      With(*log, "level", [&](auto& v) { r.String(v, "log.level", &c.log_level); });
      With(*log, "json", [&](auto& v) { r.Bool(v, "log.json", &c.log_json); });
    });
    With(*f, "devices", [&](const YAML::Node& n) {
      if (n.IsNull()) return;
      if (!n.IsMap()) {
        r.Problem("devices", n, absl::StrCat("expected a mapping of device: {...}, got ", Describe(n)));
        return;
      }
      for (auto it = n.begin(); it != n.end(); ++it) {
        const std::string name = it->first.IsScalar() ? it->first.Scalar() : "";
        const std::string path = Join("devices", name);
        if (!IsDeviceName(name)) {
          r.Problem(path, it->first, "unknown device (expected cpu, cuda:N, mps or mlx)");
          continue;
        }
        std::optional<Fields> d = r.Fields(it->second, path, {"memory_budget_bytes"});
        if (!d) continue;
        int64_t budget = 0;
        With(*d, "memory_budget_bytes",
             [&](auto& v) { r.Integer(v, Join(path, "memory_budget_bytes"), 0, &budget); });
        c.memory_budget_bytes[name] = budget;
      }
    });
    With(*f, "model_defaults", [&](auto& n) {
      std::vector<std::string> keys = {"pinned", "keep_alive"};
      keys.insert(keys.end(), kLoadingKeys.begin(), kLoadingKeys.end());
      std::optional<Fields> d = r.Fields(n, "model_defaults", keys);
      if (!d) return;
      ReadLoading(r, *d, "model_defaults", &c.model_defaults.loading);
      With(*d, "pinned", [&](auto& v) { r.Bool(v, "model_defaults.pinned", &c.model_defaults.pinned); });
      With(*d, "keep_alive",
           [&](auto& v) { r.Duration(v, "model_defaults.keep_alive", &c.model_defaults.keep_alive_s); });
    });
    With(*f, "model_roots", [&](auto& n) { r.StringList(n, "model_roots", &c.model_roots); });
    With(*f, "hf_cache", [&](auto& n) { r.String(n, "hf_cache", &c.hf_cache); });
    With(*f, "limits", [&](auto& n) {
      std::optional<Fields> l = r.Fields(n, "limits",
                                         {"max_request_bytes", "max_prompt_tokens", "max_tokens",
                                          "max_concurrent_streams", "max_queue_per_model",
                                          "max_evaluate_tokens", "max_watch_queue"});
      if (!l) return;
      LimitsConfig& lim = c.limits;
      With(*l, "max_request_bytes", [&](auto& v) {
        r.Integer(v, "limits.max_request_bytes", 0, &lim.max_request_bytes);
      });
      With(*l, "max_prompt_tokens", [&](auto& v) {
        r.Integer(v, "limits.max_prompt_tokens", 0, &lim.max_prompt_tokens);
      });
      With(*l, "max_tokens", [&](auto& v) { r.Integer(v, "limits.max_tokens", 0, &lim.max_tokens); });
      With(*l, "max_concurrent_streams", [&](auto& v) {
        r.Integer(v, "limits.max_concurrent_streams", 0, &lim.max_concurrent_streams);
      });
      With(*l, "max_queue_per_model", [&](auto& v) {
        r.Integer(v, "limits.max_queue_per_model", 0, &lim.max_queue_per_model);
      });
      With(*l, "max_evaluate_tokens", [&](auto& v) {
        r.Integer(v, "limits.max_evaluate_tokens", 0, &lim.max_evaluate_tokens);
      });
      With(*l, "max_watch_queue", [&](auto& v) { r.Integer(v, "limits.max_watch_queue", 0, &lim.max_watch_queue); });
    });
    With(*f, "tls", [&](auto& n) {
      std::optional<Fields> t = r.Fields(n, "tls", {"cert_file", "key_file", "client_ca_file"});
      if (!t) return;
      With(*t, "cert_file", [&](auto& v) { r.String(v, "tls.cert_file", &c.tls.cert_file); });
      With(*t, "key_file", [&](auto& v) { r.String(v, "tls.key_file", &c.tls.key_file); });
      With(*t, "client_ca_file", [&](auto& v) { r.String(v, "tls.client_ca_file", &c.tls.client_ca_file); });
    });
    With(*f, "auth", [&](auto& n) {
      std::optional<Fields> a = r.Fields(n, "auth", {"tokens_file"});
      if (!a) return;
      With(*a, "tokens_file", [&](auto& v) { r.String(v, "auth.tokens_file", &c.auth.tokens_file); });
    });
    With(*f, "models", [&](const YAML::Node& n) {
      if (n.IsNull()) return;
      if (!n.IsSequence()) {
        r.Problem("models", n, absl::StrCat("expected a list of models, got ", Describe(n)));
        return;
      }
      for (size_t i = 0; i < n.size(); ++i) {
        ModelConfig m;
        m.origin = Index("models", i);
        ReadModel(r, n[i], m.origin, &m);
        c.models.push_back(std::move(m));
      }
    });
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on malformed nodes it only notices while reading.
    problems->push_back(absl::StrCat(origin.empty() ? "config" : origin, ":", e.mark.line + 1,
                                     ": ", e.msg));
  }
  return c;
}

ServerConfig LoadConfigFile(const std::string& path, std::vector<std::string>* problems) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    problems->push_back(absl::StrCat("config file: ", text.status().message()));
    return ServerConfig{};
  }
  return ParseConfig(*text, path, problems);
}

std::map<std::string, std::string> IngotEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == absl::string_view::npos || kv.substr(0, 6) != "INGOT_") continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

void ApplyEnvironment(const std::map<std::string, std::string>& env, ServerConfig* c,
                      std::vector<std::string>* problems, std::vector<std::string>* ignored) {
  // Each variable reuses the YAML reader on a scalar node, so types and ranges are
  // checked exactly as in the file and problems name the variable.
  Reader r{"", problems};
  using Setter = std::function<void(const YAML::Node&, const std::string&)>;
  const std::vector<std::pair<std::string, Setter>> table = {
      {"listen", [&](auto& n, auto& p) { r.String(n, p, &c->listen); }},
      {"metrics_listen", [&](auto& n, auto& p) { r.String(n, p, &c->metrics_listen); }},
      {"http.listen", [&](auto& n, auto& p) { r.String(n, p, &c->http_listen); }},
      {"threads", [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->threads); }},
      {"drain_seconds", [&](auto& n, auto& p) { r.Number(n, p, 0, &c->drain_seconds); }},
      {"log.level", [&](auto& n, auto& p) { r.String(n, p, &c->log_level); }},
      {"log.json", [&](auto& n, auto& p) { r.Bool(n, p, &c->log_json); }},
      {"devices.cpu.memory_budget_bytes",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->memory_budget_bytes["cpu"]); }},
      {"model_defaults.pinned", [&](auto& n, auto& p) { r.Bool(n, p, &c->model_defaults.pinned); }},
      {"model_defaults.keep_alive",
       [&](auto& n, auto& p) { r.Duration(n, p, &c->model_defaults.keep_alive_s); }},
      {"limits.max_request_bytes",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_request_bytes); }},
      {"limits.max_prompt_tokens",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_prompt_tokens); }},
      {"limits.max_tokens", [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_tokens); }},
      {"limits.max_concurrent_streams",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_concurrent_streams); }},
      {"limits.max_queue_per_model",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_queue_per_model); }},
      {"limits.max_evaluate_tokens",
       [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_evaluate_tokens); }},
      {"limits.max_watch_queue", [&](auto& n, auto& p) { r.Integer(n, p, 0, &c->limits.max_watch_queue); }},
      {"tls.cert_file", [&](auto& n, auto& p) { r.String(n, p, &c->tls.cert_file); }},
      {"tls.key_file", [&](auto& n, auto& p) { r.String(n, p, &c->tls.key_file); }},
      {"tls.client_ca_file", [&](auto& n, auto& p) { r.String(n, p, &c->tls.client_ca_file); }},
      {"auth.tokens_file", [&](auto& n, auto& p) { r.String(n, p, &c->auth.tokens_file); }},
  };
  std::set<std::string> known = {"INGOT_MODEL_ROOTS", "INGOT_AUTH_TOKENS"};
  for (const auto& [key, set] : table) {
    std::string name = absl::StrCat("INGOT_", absl::AsciiStrToUpper(key));
    std::replace(name.begin(), name.end(), '.', '_');
    known.insert(name);
    auto it = env.find(name);
    if (it == env.end()) continue;
    YAML::Node scalar(it->second);
    set(scalar, name);
  }
  if (auto it = env.find("INGOT_MODEL_ROOTS"); it != env.end()) {
    c->model_roots.clear();
    for (absl::string_view root : absl::StrSplit(it->second, ':', absl::SkipEmpty())) {
      c->model_roots.emplace_back(root);
    }
  }
  if (auto it = env.find("INGOT_AUTH_TOKENS"); it != env.end()) c->auth.tokens_env = it->second;
  for (const auto& [name, value] : env) {
    if (!known.count(name)) ignored->push_back(name);
  }
}

std::vector<std::string> ValidateConfig(const ServerConfig& c, bool check_files) {
  std::vector<std::string> problems;
  if (c.listen.empty()) problems.push_back("listen: required (host:port)");
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.count(c.log_level)) {
    problems.push_back(absl::StrCat("log.level: '", c.log_level,
                                    "' is not one of trace, debug, info, warn, error, critical, off"));
  }
  for (size_t i = 0; i < c.model_roots.size(); ++i) {
    const std::string& root = c.model_roots[i];
    const std::string path = Index("model_roots", i);
    if (root.empty() || root[0] != '/') {
      problems.push_back(absl::StrCat(path, ": '", root, "' is not an absolute path"));
    } else if (check_files && !fs::is_directory(root)) {
      problems.push_back(absl::StrCat(path, ": '", root, "' is not a directory"));
    }
  }
  // TLS: the pair together; a client CA only on top of it.
  if (!c.tls.cert_file.empty() && c.tls.key_file.empty()) {
    problems.push_back("tls.key_file: required when tls.cert_file is set");
  }
  if (c.tls.cert_file.empty() && !c.tls.key_file.empty()) {
    problems.push_back("tls.cert_file: required when tls.key_file is set");
  }
  if (c.tls.mutual() && !c.tls.enabled()) {
    problems.push_back("tls.client_ca_file: mutual TLS needs tls.cert_file and tls.key_file too");
  }
  if (check_files && c.tls.enabled() && !c.tls.cert_file.empty() && !c.tls.key_file.empty()) {
    for (std::string& p : CheckTlsFiles(c.tls)) problems.push_back(std::move(p));
  }
  if (check_files && c.auth.enabled()) {
    absl::StatusOr<std::vector<TokenEntry>> tokens = LoadTokens(c.auth);
    if (!tokens.ok()) problems.push_back(std::string(tokens.status().message()));
  }
  std::set<std::string> names;
  for (const ModelConfig& m : c.models) {
    if (m.name.empty()) {
      problems.push_back(absl::StrCat(m.origin, ".name: required"));
    } else if (absl::Status s = ValidateModelName(m.name, absl::StrCat(m.origin, ".name")); !s.ok()) {
      problems.emplace_back(s.message());
    } else if (!names.insert(m.name).second) {
      problems.push_back(absl::StrCat(m.origin, ".name: '", m.name, "' is used by another model"));
    }
    if (m.source.empty()) {
      problems.push_back(absl::StrCat(m.origin, ".source: required"));
    } else if (formats::IsHfRepoSource(m.source, m.revision)) {
      // A Hugging Face repository id: found in the cache (the engine checks its files
      // against the roots when it loads them).
      if (check_files) {
        if (auto s = formats::ResolveHfCache(formats::HfCacheDir(c.hf_cache), m.source, m.revision); !s.ok()) {
          problems.push_back(absl::StrCat(m.origin, ".source: ", s.status().message()));
        }
      }
    } else {
      if (absl::Status s = CheckPathAllowed(c, m.source, false); !s.ok()) {
        problems.push_back(absl::StrCat(m.origin, ".source: ", s.message()));
      } else if (check_files && !fs::exists(m.source)) {
        problems.push_back(absl::StrCat(m.origin, ".source: '", m.source, "' does not exist"));
      }
    }
    if (m.format != "auto" && m.format != "gguf") {
      problems.push_back(absl::StrCat(m.origin, ".format: '", m.format, "' is not auto or gguf"));
    }
    // The one device parser, then whether this binary on this machine can serve it: a
    // cuda:0 model on a build without CUDA (or a node without a GPU) fails here, at the
    // config check and at start, with the reason, not later in a crash loop.
    if (absl::StatusOr<quant::DeviceCaps> caps = ResolveDevice(m.device); !caps.ok()) {
      problems.push_back(absl::StrCat(m.origin, ".device: '", m.device,
                                      "' is not a device (expected cpu, cuda:N, mps or mlx)"));
    } else if (!caps->available) {
      problems.push_back(absl::StrCat(m.origin, ".device: ", caps->reason));
    } else if (absl::StatusOr<const kernels::Backend*> b = ChooseBackend(m.backend, caps->device); !b.ok()) {
      problems.push_back(absl::StrCat(m.origin, ".backend: ", b.status().message()));
    }
    if (m.pinned && m.keep_alive_s > 0) {
      problems.push_back(absl::StrCat(
          m.origin, ".keep_alive: a pinned model is never unloaded; set pinned: false to let it "
          "be unloaded after this idle time"));
    }
    if (m.quantization) QuantizationProblems(m, &problems);
  }
  return problems;
}

absl::Status CheckPathAllowed(const ServerConfig& config, const std::string& path,
                              bool for_write) {
  return formats::CheckPathInRoots(config.model_roots, path, for_write);
}

}  // namespace ingot::server
