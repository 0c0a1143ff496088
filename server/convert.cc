#include "server/convert.h"

#include <algorithm>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ingot::server {
namespace {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

absl::StatusOr<LoadRequest> FromProto(const v1::LoadModelRequest& request) {
  const std::string& name = request.name();
  if (absl::Status s = ValidateModelName(name, "name"); !s.ok()) return s;
  if (request.source().empty()) {
    return absl::InvalidArgumentError("source: the checkpoint path is required");
  }
  LoadRequest out;
  out.name = name;
  out.source = request.source();
  out.revision = request.revision();
  out.variant = request.variant();
  if (!request.format().empty()) out.format = request.format();
  if (!request.device().empty()) out.device = request.device();
  if (!request.backend().empty()) out.backend = request.backend();
  if (request.context_length() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "context_length: must be >= 0 (0 = model default), got ",
        request.context_length()));
  }
  out.context_length = request.context_length();
  if (request.loading_workers() < -1 || request.loading_workers() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loading_workers: must be in [-1, 64] (0 = the server's default, -1 = every core), got ",
        request.loading_workers()));
  }
  out.loading_workers = request.loading_workers();
  switch (request.loading_strategy()) {
    case v1::LOADING_STRATEGY_UNSPECIFIED: out.loading_strategy = LoadingStrategy::kDefault; break;
    case v1::LOADING_STRATEGY_FULL: out.loading_strategy = LoadingStrategy::kFull; break;
    case v1::LOADING_STRATEGY_LOW_MEMORY: out.loading_strategy = LoadingStrategy::kLowMemory; break;
    case v1::LOADING_STRATEGY_UNIFIED_MEMORY: out.loading_strategy = LoadingStrategy::kUnifiedMemory; break;
    case v1::LOADING_STRATEGY_STREAMING: out.loading_strategy = LoadingStrategy::kStreaming; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "loading_strategy: ", static_cast<int>(request.loading_strategy()),
          " is not one of FULL, LOW_MEMORY, UNIFIED_MEMORY, STREAMING"));
  }
  for (const auto& [device, bytes] : request.max_memory()) out.max_memory[device] = bytes;
  if (request.has_offload_to_cpu()) out.offload_to_cpu = request.offload_to_cpu();
  out.dtype = request.dtype();
  if (request.has_use_safetensors()) out.use_safetensors = request.use_safetensors();
  if (request.kv_cache_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes: must be >= 0 (0 = the server's default), got ",
                                                   request.kv_cache_bytes()));
  }
  out.kv_cache_bytes = request.kv_cache_bytes();
  out.kv_cache_dtype = request.kv_cache_dtype();
  if (request.max_sequences() < 0 || request.max_sequences() > kMaxSequences) {
    return absl::InvalidArgumentError(absl::StrCat("max_sequences: must be in [0, ", kMaxSequences,
                                                   "] (0 = the server's default), got ", request.max_sequences()));
  }
  out.max_sequences = request.max_sequences();
  if (request.has_prefix_cache()) out.prefix_cache = request.prefix_cache();
  if (request.has_pinned()) out.pinned = request.pinned();
  if (request.has_keep_alive_seconds()) {
    if (!(request.keep_alive_seconds() >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat("keep_alive_seconds: must be >= 0 (0 = never), got ",
                                                     request.keep_alive_seconds()));
    }
    out.keep_alive_s = request.keep_alive_seconds();
  }
  if (request.has_quantization() && !request.quantization().method().empty()) {
    auto config = FromProto(request.quantization());
    if (!config.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("quantization.", config.status().message()));
    }
    out.quantization = *std::move(config);
  }
  return out;
}

absl::StatusOr<GenerateRequest> FromProto(const v1::GenerateRequest& request) {
  if (request.model().empty()) {
    return absl::InvalidArgumentError("model: required");
  }
  const bool has_prompt = !request.prompt().empty();
  const bool has_messages = request.messages_size() > 0;
  if (has_prompt == has_messages) {
    return absl::InvalidArgumentError(
        has_prompt ? "prompt and messages: set one of them, not both"
                   : "prompt or messages: one of them is required");
  }
  GenerateRequest out;
  out.model = request.model();
  out.prompt = request.prompt();
  out.messages.reserve(request.messages_size());
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& m = request.messages(i);
    if (m.role().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role: required"));
    }
    // The roles chat templates are written for; another one would be rendered however
    // the template happens to treat an unknown role (often silently as nothing).
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" && m.role() != "tool") {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role: '", SanitizeUtf8(m.role()),
                                                     "' is not one of system, user, assistant, tool"));
    }
    out.messages.push_back(ChatMessage{m.role(), m.content()});
  }
  SamplingParams& s = out.sampling;
  if (request.has_max_tokens()) s.max_tokens = request.max_tokens();
  if (request.has_temperature()) s.temperature = request.temperature();
  if (request.has_top_k()) s.top_k = request.top_k();
  if (request.has_top_p()) s.top_p = request.top_p();
  if (request.has_min_p()) s.min_p = request.min_p();
  if (request.has_repetition_penalty()) s.repetition_penalty = request.repetition_penalty();
  if (request.has_seed()) s.seed = request.seed();
  if (request.has_presence_penalty()) s.presence_penalty = request.presence_penalty();
  if (request.has_frequency_penalty()) s.frequency_penalty = request.frequency_penalty();
  for (const auto& [id, bias] : request.logit_bias()) s.logit_bias.emplace_back(id, bias);
  std::sort(s.logit_bias.begin(), s.logit_bias.end());  // map order is unspecified
  s.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  s.logprobs = request.logprobs();
  s.n = request.n() == 0 ? 1 : request.n();
  s.top_logprobs = request.top_logprobs();
  if (s.top_logprobs > 0 && !s.logprobs) {
    return absl::InvalidArgumentError("top_logprobs: needs logprobs: true");
  }
  if (request.has_prompt_logprobs()) s.prompt_logprobs = request.prompt_logprobs();
  s.stop.assign(request.stop().begin(), request.stop().end());
  for (size_t i = 0; i < s.stop.size(); ++i) {
    if (s.stop[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "]: must not be empty"));
    }
  }
  switch (request.constraint_case()) {
    case v1::GenerateRequest::kGrammar:
      s.constraint = {OutputConstraint::Kind::kGrammar, request.grammar()};
      break;
    case v1::GenerateRequest::kJsonSchema:
      s.constraint = {OutputConstraint::Kind::kJsonSchema, request.json_schema()};
      break;
    case v1::GenerateRequest::kJsonObject:
      if (request.json_object()) s.constraint = {OutputConstraint::Kind::kJsonObject, ""};
      break;
    case v1::GenerateRequest::CONSTRAINT_NOT_SET:
      break;
  }
  if (absl::Status st = ValidateSamplingParams(s); !st.ok()) return st;
  out.request_id = request.request_id();
  return out;
}

v1::ModelState ToProto(ModelState state) {
  switch (state) {
    case ModelState::kLoading: return v1::MODEL_STATE_LOADING;
    case ModelState::kReady: return v1::MODEL_STATE_READY;
    case ModelState::kUnloading: return v1::MODEL_STATE_UNLOADING;
    case ModelState::kFailed: return v1::MODEL_STATE_FAILED;
    case ModelState::kGone: return v1::MODEL_STATE_GONE;
  }
  return v1::MODEL_STATE_UNSPECIFIED;
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kGrammarDeadEnd: return v1::FINISH_REASON_GRAMMAR_DEAD_END;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const ModelInfo& info, v1::ModelInfo* out) {
  out->set_name(info.name);
  out->set_source(SanitizeUtf8(info.source));
  out->set_format(info.format);
  out->set_architecture(info.architecture);
  out->set_parameter_count(info.parameter_count);
  out->set_device(info.device);
  for (const TensorKindInfo& k : info.tensor_kinds) {
    v1::TensorKindInfo* t = out->add_tensor_kinds();
    t->set_kind(k.kind);
    t->set_representation(k.representation);
    t->set_tensors(k.tensors);
    t->set_parameters(k.parameters);
    t->set_bytes(k.bytes);
  }
  out->set_bytes_resident(info.bytes_resident);
  out->set_weight_bytes(info.weight_bytes);
  out->set_kv_cache_bytes(info.kv_cache_bytes);
  out->set_context_length(info.context_length);
  out->set_vocab_size(info.vocab_size);
  out->set_layers(info.layers);
  out->set_state(ToProto(info.state));
  out->set_pinned(info.pinned);
  out->set_keep_alive_seconds(info.keep_alive_s);
  out->set_loading_strategy(info.loading_strategy);
  out->set_file_backed_bytes(info.file_backed_bytes);
  out->set_dtype(info.dtype);
  out->set_max_memory_bytes(info.max_memory_bytes);
  out->set_offload_to_cpu(info.offload_to_cpu);
  out->set_loading_note(info.loading_note);
  out->set_idle_seconds(info.idle_seconds);
  out->set_error(SanitizeUtf8(info.error));
  out->set_backend(info.backend);
  out->set_device_weight_bytes(info.device_weight_bytes);
  for (const std::string& r : info.device_representations) out->add_device_representations(r);
  out->set_kv_cache_dtype(info.kv_cache_dtype);
  out->set_kv_bytes_per_token(info.kv_bytes_per_token);
  out->set_kv_block_tokens(info.kv_block_tokens);
  out->set_kv_blocks_total(info.kv_blocks_total);
  out->set_kv_blocks_used(info.kv_blocks_used);
  out->set_kv_blocks_cached(info.kv_blocks_cached);
  out->set_max_sequences(info.max_sequences);
  out->set_prefix_cache(info.prefix_cache);
  out->set_prefix_cache_query_tokens(info.prefix_cache_query_tokens);
  out->set_prefix_cache_hit_tokens(info.prefix_cache_hit_tokens);
  out->set_kv_preemptions(info.kv_preemptions);
  out->set_requests_waiting(info.requests_waiting);
  out->set_requests_running(info.requests_running);
  out->set_has_chat_template(info.has_chat_template);
  out->set_quantization(info.quantization);
  out->set_quantization_note(info.quantization_note);
}

void ToProto(const DeviceInfo& info, v1::DeviceInfo* out) {
  out->set_name(info.name);
  out->set_kind(info.kind);
  out->set_available(info.available);
  out->set_reason(info.reason);
  out->set_total_bytes(info.total_bytes);
  out->set_free_bytes(info.free_bytes);
  out->set_used_bytes(info.used_bytes);
  for (const std::string& b : info.backends) out->add_backends(b);
  out->set_allocator_allocated_bytes(info.allocator_allocated_bytes);
  out->set_allocator_reserved_bytes(info.allocator_reserved_bytes);
  out->set_budget_bytes(info.budget_bytes);
  out->set_budget_free_bytes(info.admit_free_bytes);
  for (const std::string& m : info.models) out->add_models(m);
}

void ToProto(const ModelEvent& event, v1::ModelEvent* out) {
  out->set_time_unix_seconds(event.time_unix_s);
  out->set_name(event.name);
  out->set_device(event.device);
  out->set_state(ToProto(event.state));
  out->set_reason(event.reason);
  out->set_bytes(event.bytes);
  out->set_error(SanitizeUtf8(event.error));
  out->set_seconds(event.seconds);
}

void ToProto(const LoadPlan& plan, v1::PlanLoadResponse* out) {
  out->set_device(plan.device);
  out->set_backend(plan.backend);
  out->set_format(plan.format);
  out->set_parameter_count(plan.parameter_count);
  out->set_context_length(plan.context_length);
  out->set_weight_bytes(plan.weight_bytes);
  out->set_kv_cache_bytes(plan.kv_cache_bytes);
  out->set_kv_blocks(plan.kv_blocks);
  out->set_workspace_bytes(plan.workspace_bytes);
  out->set_total_bytes(plan.total_bytes);
  out->set_fits(plan.fits);
  out->set_budget_bytes(plan.budget_bytes);
  out->set_free_bytes(plan.free_bytes);
  for (const LoadPlan::Eviction& e : plan.evictions) {
    v1::PlannedEviction* p = out->add_evictions();
    p->set_name(e.name);
    p->set_bytes(e.bytes);
    p->set_idle_seconds(e.idle_seconds);
    p->set_reason(kReasonMemoryPressure);
  }
  for (const std::string& w : plan.warnings) out->add_warnings(SanitizeUtf8(w));
}

void ToProto(const LoadProgress& progress, v1::LoadProgress* out) {
  out->set_stage(progress.stage);
  out->set_fraction(progress.fraction);
  out->set_detail(SanitizeUtf8(progress.detail));
}

namespace {
void ToProto(const TokenLogprob& lp, v1::TokenLogprob* out) {
  out->set_token_id(lp.token_id);
  out->set_logprob(lp.logprob);
  for (const auto& [id, v] : lp.top) {
    v1::TokenLogprob::Top* t = out->add_top();
    t->set_token_id(id);
    t->set_logprob(v);
  }
}
}  // namespace

void ToProto(const GenerationChunk& chunk, v1::GenerateResponse* out) {
  out->set_index(chunk.index);
  out->set_text(SanitizeUtf8(chunk.text));
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  for (const TokenLogprob& lp : chunk.logprobs) ToProto(lp, out->add_logprobs());
  for (const TokenLogprob& lp : chunk.prompt_logprobs) ToProto(lp, out->add_prompt_logprobs());
  out->set_finish_reason(ToProto(chunk.finish_reason));
  if (!chunk.final) return;
  v1::Usage* usage = out->mutable_usage();
  usage->set_prompt_tokens(chunk.prompt_tokens);
  usage->set_completion_tokens(chunk.completion_tokens);
  usage->set_total_tokens(chunk.prompt_tokens + chunk.completion_tokens);
  usage->set_cached_prompt_tokens(std::max(0, chunk.cached_prompt_tokens));
  v1::Timings* timings = out->mutable_timings();
  timings->set_time_to_first_token_seconds(chunk.time_to_first_token_s);
  timings->set_queue_seconds(std::max(0.0, chunk.queue_s));
  timings->set_prefill_tokens_per_second(chunk.prefill_tokens_per_second);
  timings->set_decode_tokens_per_second(chunk.decode_tokens_per_second);
  timings->set_total_seconds(chunk.total_s);
}

void ToProto(const TokenizeResult& result, v1::TokenizeResponse* out) {
  out->mutable_ids()->Add(result.ids.begin(), result.ids.end());
  for (const std::string& piece : result.pieces) out->add_pieces(piece);
}

absl::StatusOr<quant::QuantizationConfig> FromProto(const v1::QuantizationConfig& in) {
  quant::QuantizationConfig c;
  c.method = in.method();
  if (in.bits() < 0 || in.bits() > 32) {
    return absl::InvalidArgumentError(absl::StrCat("config.bits: ", in.bits(), " is out of range"));
  }
  if (in.group_size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.group_size: ", in.group_size(), " is negative"));
  }
  c.bits = in.bits();
  c.group_size = in.group_size();
  c.compute_dtype = in.compute_dtype();
  if (in.has_double_quant()) c.double_quant = in.double_quant();
  c.quant_type = in.quant_type();
  if (in.skip_modules_set() || in.skip_modules_size() > 0) {
    c.skip_modules = std::vector<std::string>(in.skip_modules().begin(), in.skip_modules().end());
  }
  for (const v1::LayerOverride& o : in.layer_overrides()) {
    quant::LayerOverride lo;
    lo.pattern = o.pattern();
    if (!o.method().empty()) lo.method = o.method();
    if (o.bits() != 0) lo.bits = o.bits();
    if (o.group_size() != 0) lo.group_size = o.group_size();
    if (!o.quant_type().empty()) lo.quant_type = o.quant_type();
    lo.skip = o.skip();
    c.layer_overrides.push_back(std::move(lo));
  }
  for (const auto& [k, v] : in.backend_options()) c.backend_options[k] = v;
  c.allow_fallback = in.allow_fallback();
  c.calibration_file = in.calibration_file();
  c.calibration_tokens = in.calibration_tokens();
  // The preset enum's names are the seeds' names behind the QUANTIZATION_PRESET_ prefix.
  std::string preset;
  if (in.preset() != v1::QUANTIZATION_PRESET_UNSPECIFIED) {
    preset = v1::QuantizationPreset_Name(in.preset());
    if (absl::StartsWith(preset, "QUANTIZATION_PRESET_")) preset = preset.substr(20);
  }
  if (absl::Status s = quant::ApplyPreset(preset, &c); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.", s.message()));
  }
  return c;
}

void ToProto(const quant::QuantizationConfig& c, v1::QuantizationConfig* out) {
  out->set_method(c.method);
  out->set_bits(c.bits);
  out->set_group_size(c.group_size);
  out->set_compute_dtype(c.compute_dtype);
  if (c.double_quant) out->set_double_quant(*c.double_quant);
  out->set_quant_type(c.quant_type);
  if (c.skip_modules) {
    out->set_skip_modules_set(true);
    for (const std::string& s : *c.skip_modules) out->add_skip_modules(s);
  }
  for (const quant::LayerOverride& o : c.layer_overrides) {
    v1::LayerOverride* lo = out->add_layer_overrides();
    lo->set_pattern(o.pattern);
    lo->set_method(o.method.value_or(""));
    lo->set_bits(o.bits.value_or(0));
    lo->set_group_size(o.group_size.value_or(0));
    lo->set_quant_type(o.quant_type.value_or(""));
    lo->set_skip(o.skip);
  }
  for (const auto& [k, v] : c.backend_options) (*out->mutable_backend_options())[k] = v;
  out->set_allow_fallback(c.allow_fallback);
  out->set_calibration_file(c.calibration_file);
  out->set_calibration_tokens(c.calibration_tokens);
}

void ToProto(const quant::MethodRow& row, v1::QuantizationMethodInfo* out) {
  out->set_name(row.name);
  out->set_description(row.description);
  for (int32_t b : row.bits) out->add_bits(b);
  for (int64_t g : row.group_sizes) out->add_group_sizes(g);
  for (const std::string& q : row.quant_types) out->add_quant_types(q);
  for (const quant::OptionSpec& o : row.options) out->add_backend_options(o.key);
  out->set_needs_calibration(row.calibration != quant::Calibration::kNone);
  for (quant::DeviceKind kind : {quant::DeviceKind::kCpu, quant::DeviceKind::kCuda, quant::DeviceKind::kMps}) {
    if (quant::MethodRunsOn(row, kind)) out->add_devices(quant::DeviceKindName(kind));
  }
  out->set_can_load(row.can_load);
  out->set_fallback(row.fallback);
}

void ToProto(const quant::ConfigProblem& p, v1::ConfigProblem* out) {
  out->set_field(p.field);
  out->set_message(p.message);
  out->set_fix(p.fix);
}

void ToProto(const quant::QuantizeProgress& p, v1::QuantizeProgress* out) {
  out->set_stage(p.stage);
  out->set_step(p.step);
  out->set_total(p.total);
  out->set_module(p.module);
  out->set_method(p.method);
  out->set_elapsed_seconds(p.elapsed_s);
}

void ToProto(const EvaluateResult& r, v1::EvaluateModelResponse* out) {
  out->set_perplexity(r.perplexity);
  out->set_mean_nll(r.mean_nll);
  out->set_tokens_scored(r.tokens_scored);
  out->set_context_length(r.context_length);
  out->set_has_reference(r.has_reference);
  out->set_mean_kl(r.mean_kl);
  out->set_top1_agreement(r.top1_agreement);
  out->set_seconds(r.seconds);
}

}  // namespace ingot::server
