// quantize, eval, recommend, methods.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"

namespace ingot::client {
namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 2;
}

// "PATTERN:key=value,key=value" -> LayerOverride (keys: method, bits, group_size,
// quant_type, skip).
bool ParseOverride(const std::string& spec, v1::LayerOverride* out, std::string* error) {
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    *error = "--override '" + spec + "': expected PATTERN:key=value[,key=value]";
    return false;
  }
  out->set_pattern(spec.substr(0, colon));
  for (absl::string_view kv : absl::StrSplit(spec.substr(colon + 1), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    int64_t n = 0;
    if (p.first == "skip") {
      out->set_skip(p.second.empty() || p.second == "true" || p.second == "1");
    } else if (p.first == "method") {
      out->set_method(p.second);
    } else if (p.first == "quant_type") {
      out->set_quant_type(p.second);
    } else if ((p.first == "bits" || p.first == "group_size") && absl::SimpleAtoi(p.second, &n)) {
      if (p.first == "bits") out->set_bits(static_cast<int32_t>(n));
      else out->set_group_size(n);
    } else {
      *error = "--override '" + spec + "': unknown key or bad value '" + std::string(kv) +
               "' (keys: method, bits, group_size, quant_type, skip)";
      return false;
    }
  }
  return true;
}

void PrintProblems(const v1::ValidateQuantizationResponse& r) {
  if (r.valid()) {
    std::printf("valid\n");
    return;
  }
  for (const v1::ConfigProblem& p : r.problems()) {
    std::printf("%s: %s\n  fix: %s\n", p.field().c_str(), p.message().c_str(), p.fix().c_str());
  }
}

}  // namespace

int RunQuantize(Connection& conn, QuantizeFlags flags) {
  v1::QuantizationConfig& c = flags.config;
  if (flags.no_double_quant) c.set_double_quant(false);
  for (const std::string& s : flags.skip) {
    c.set_skip_modules_set(true);
    if (s != "none") c.add_skip_modules(s);
  }
  for (const std::string& o : flags.overrides) {
    std::string error;
    if (!ParseOverride(o, c.add_layer_overrides(), &error)) return Usage(error);
  }
  for (const std::string& kv : flags.options) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Usage("--option '" + kv + "': expected key=value");
    (*c.mutable_backend_options())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!flags.calibration_file.empty()) c.set_calibration_file(flags.calibration_file);
  auto stub = v1::QuantizationService::NewStub(conn.channel);
  if (flags.validate_only) {
    auto context = conn.NewContext();
    v1::ValidateQuantizationRequest request;
    *request.mutable_config() = c;
    request.set_model(flags.source);
    request.set_device(flags.device);
    v1::ValidateQuantizationResponse response;
    grpc::Status status = stub->ValidateQuantization(context.get(), request, &response);
    if (!status.ok()) return ReportError(status);
    if (flags.json) PrintJsonLine(response);
    else PrintProblems(response);
    return response.valid() ? 0 : 1;
  }
  v1::QuantizeModelRequest request;
  request.set_source(flags.source);
  request.set_target(flags.target);
  request.set_device(flags.device);
  *request.mutable_config() = c;
  if (std::string problem = ReadFlagFile("--calibration-text", flags.calibration_text_file,
                                         request.mutable_calibration_text());
      !problem.empty()) {
    return Usage(problem);
  }
  auto context = conn.NewContext();
  auto reader = stub->QuantizeModel(context.get(), request);
  const bool tty = isatty(STDERR_FILENO);
  v1::QuantizeModelResponse response, last;
  while (reader->Read(&response)) {
    if (flags.json) PrintJsonLine(response);
    const v1::QuantizeProgress& p = response.progress();
    if (tty && !flags.json) {
      constexpr int kWidth = 30;
      const double f = p.total() > 0 ? static_cast<double>(p.step()) / p.total() : 0;
      const int filled = static_cast<int>(f * kWidth + 0.5);
      std::fprintf(stderr, "\r[%s%s] %3d/%-3d %-9s %-6.1fs %-44.44s",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, ' ').c_str(),
                   p.step(), p.total(), p.stage().c_str(), p.elapsed_seconds(), p.module().c_str());
    }
    if (response.has_model()) last = response;
  }
  if (tty && !flags.json) std::fprintf(stderr, "\n");
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportError(status);
  if (!flags.json) {
    std::fprintf(stderr, "quantized %d modules (%d skipped) with %s in %.2f s: %s -> %s\n",
                 last.quantized_modules(), last.skipped_modules(), last.method_used().c_str(),
                 last.seconds(), HumanBytes(last.bytes_before()).c_str(),
                 HumanBytes(last.bytes_after()).c_str());
    if (!last.note().empty()) std::fprintf(stderr, "note: %s\n", last.note().c_str());
    PrintModel(last.model());
  }
  return 0;
}

int RunEval(Connection& conn, const EvalFlags& flags) {
  v1::EvaluateModelRequest request;
  request.set_model(flags.model);
  request.set_context_length(flags.context_length);
  request.set_max_tokens(flags.max_tokens);
  request.set_reference_model(flags.reference);
  if (std::string problem = ReadFlagFile("--text-file", flags.text_file, request.mutable_text());
      !problem.empty()) {
    return Usage(problem);
  }
  auto stub = v1::QuantizationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::EvaluateModelResponse r;
  grpc::Status status = stub->EvaluateModel(context.get(), request, &r);
  if (!status.ok()) return ReportError(status);
  if (flags.json) {
    PrintJsonLine(r);
    return 0;
  }
  std::printf("perplexity  %.4f  (%lld tokens, context %d, %.1f s)\n", r.perplexity(),
              static_cast<long long>(r.tokens_scored()), r.context_length(), r.seconds());
  if (r.has_reference()) {
    std::printf("mean KL     %.5f nats/token vs %s\ntop-1 agree %.2f%%\n", r.mean_kl(),
                flags.reference.c_str(), 100.0 * r.top1_agreement());
  }
  return 0;
}

int RunRecommend(Connection& conn, const std::string& model, int64_t budget_bytes, const std::string& purpose,
                 const std::string& device, bool json) {
  v1::RecommendQuantizationRequest request;
  request.set_model(model);
  request.set_memory_budget_bytes(budget_bytes);
  request.set_device(device);
  if (!purpose.empty()) {
    v1::RecommendPurpose p;
    if (!v1::RecommendPurpose_Parse("RECOMMEND_PURPOSE_" + absl::AsciiStrToUpper(purpose), &p) ||
        p == v1::RECOMMEND_PURPOSE_UNSPECIFIED) {
      std::fprintf(stderr, "--purpose: '%s' is not inference, fine_tuning, min_memory or max_quality\n",
                   purpose.c_str());
      return 2;
    }
    request.set_purpose(p);
  }
  auto stub = v1::QuantizationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::RecommendQuantizationResponse r;
  grpc::Status status = stub->RecommendQuantization(context.get(), request, &r);
  if (!status.ok()) return ReportError(status);
  if (json) {
    PrintJsonLine(r);
    return 0;
  }
  std::printf("method %s bits %d group_size %lld%s%s\nestimated %s\n", r.config().method().c_str(),
              r.config().bits(), static_cast<long long>(r.config().group_size()),
              r.config().quant_type().empty() ? "" : " quant_type ", r.config().quant_type().c_str(),
              HumanBytes(r.estimated_bytes()).c_str());
  if (r.preset().empty()) std::printf("why: %s\n", r.why().c_str());
  if (!r.preset().empty()) {
    std::printf("preset %s\n", r.preset().c_str());
    for (const std::string& step : r.steps()) std::printf("  %s\n", step.c_str());
  }
  return 0;
}

int RunMethods(Connection& conn, bool json) {
  auto stub = v1::QuantizationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  v1::ListQuantizationMethodsResponse r;
  grpc::Status status = stub->ListQuantizationMethods(context.get(), {}, &r);
  if (!status.ok()) return ReportError(status);
  if (json) {
    PrintJsonLine(r);
    return 0;
  }
  std::printf("%-13s %-14s %-22s %-11s %s\n", "METHOD", "BITS", "GROUP SIZES", "DEVICES", "QUANT TYPES");
  for (const v1::QuantizationMethodInfo& m : r.methods()) {
    std::printf("%-13s %-14s %-22s %-11s %s\n", m.name().c_str(),
                absl::StrJoin(m.bits(), ",").c_str(), absl::StrJoin(m.group_sizes(), ",").c_str(),
                absl::StrJoin(m.devices(), ",").c_str(), absl::StrJoin(m.quant_types(), ",").c_str());
  }
  return 0;
}

}  // namespace ingot::client
