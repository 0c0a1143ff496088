// bench: greedy generations with a prompt of a fixed token count; reports the median
// prefill and decode rates and time to first token as the server measured them.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "client/client.h"
#include "nlohmann/json.hpp"

namespace ingot::client {
namespace {

// Plain English prose: a greedy continuation keeps going (repeating the passage)
// rather than ending with EOS, so runs generate the full --gen-tokens.
constexpr char kPassage[] =
    "The river rose slowly through the night, and by morning the lower fields were "
    "under a sheet of brown water. The farmers walked along the levee, counting the "
    "posts that still showed above the flood and talking quietly about the harvest, "
    "the price of seed, and the long dry summer that had come before the rain. ";

struct Sample {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double ttft_s = 0;
  double prefill_tps = 0;
  double decode_tps = 0;
  double total_s = 0;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A prompt that tokenizes to `target` tokens (BOS included when the model adds one):
// the first pieces of the repeated passage, re-measured until the count matches.
grpc::Status BuildPrompt(Connection& conn, const std::string& model, int target,
                         std::string* prompt) {
  auto stub = v1::GenerationService::NewStub(conn.channel);
  std::string text;
  while (static_cast<int>(text.size()) < target * 8) text += kPassage;
  v1::TokenizeRequest request;
  request.set_model(model);
  request.set_text(text);
  request.set_add_special(false);
  request.set_parse_special(false);
  v1::TokenizeResponse pieces;
  auto context = conn.NewContext();
  grpc::Status status = stub->Tokenize(context.get(), request, &pieces);
  if (!status.ok()) return status;
  int take = target;
  for (int attempt = 0; attempt < 4; ++attempt) {
    take = std::clamp(take, 1, pieces.pieces_size());
    prompt->clear();
    for (int i = 0; i < take; ++i) *prompt += pieces.pieces(i);
    v1::TokenizeRequest check;
    check.set_model(model);
    check.set_text(*prompt);
    check.set_add_special(true);
    check.set_parse_special(false);
    v1::TokenizeResponse counted;
    auto ctx = conn.NewContext();
    status = stub->Tokenize(ctx.get(), check, &counted);
    if (!status.ok()) return status;
    if (counted.ids_size() == target) break;
    take += target - counted.ids_size();
  }
  return grpc::Status::OK;
}

grpc::Status RunOnce(Connection& conn, const v1::GenerateRequest& request, Sample* out) {
  auto stub = v1::GenerationService::NewStub(conn.channel);
  auto context = conn.NewContext();
  auto reader = stub->Generate(context.get(), request);
  v1::GenerateResponse response, last;
  while (reader->Read(&response)) last = response;
  grpc::Status status = reader->Finish();
  if (!status.ok()) return status;
  out->prompt_tokens = last.usage().prompt_tokens();
  out->completion_tokens = last.usage().completion_tokens();
  out->ttft_s = last.timings().time_to_first_token_seconds();
  out->prefill_tps = last.timings().prefill_tokens_per_second();
  out->decode_tps = last.timings().decode_tokens_per_second();
  out->total_s = last.timings().total_seconds();
  return grpc::Status::OK;
}

const char* ConstraintName(const SamplingFlags& f) {
  return f.has_grammar ? ", grammar" : f.has_json_schema ? ", json_schema" : f.json_object ? ", json_object" : "";
}

}  // namespace

int RunBench(Connection& conn, const BenchFlags& flags) {
  std::string prompt;
  grpc::Status status = BuildPrompt(conn, flags.model, flags.prompt_tokens, &prompt);
  if (!status.ok()) return ReportError(status);
  v1::GenerateRequest request;
  request.set_model(flags.model);
  request.set_prompt(prompt);
  request.set_max_tokens(flags.gen_tokens);
  request.set_temperature(0);
  flags.constraint.ApplyTo(&request);  // --grammar / --json-schema / --json-object

  std::vector<Sample> samples;
  for (int i = 0; i < flags.warmup + flags.runs; ++i) {
    Sample s;
    status = RunOnce(conn, request, &s);
    if (!status.ok()) return ReportError(status);
    if (i < flags.warmup) continue;
    samples.push_back(s);
    if (!flags.json) {
      std::fprintf(stderr, "run %d: prompt %d tok, generated %d tok, ttft %.1f ms, "
                   "prefill %.1f tok/s, decode %.1f tok/s\n",
                   i - flags.warmup + 1, s.prompt_tokens, s.completion_tokens, s.ttft_s * 1e3,
                   s.prefill_tps, s.decode_tps);
    }
  }
  auto median = [&](double Sample::*field) {
    std::vector<double> v;
    for (const Sample& s : samples) v.push_back(s.*field);
    return Median(v);
  };
  const Sample& first = samples.front();
  if (flags.json) {
    nlohmann::json j = {
        {"model", flags.model},
        {"runs", flags.runs},
        {"prompt_tokens", first.prompt_tokens},
        {"generated_tokens", first.completion_tokens},
        {"constraint", ConstraintName(flags.constraint)},
        {"median_prefill_tokens_per_second", median(&Sample::prefill_tps)},
        {"median_decode_tokens_per_second", median(&Sample::decode_tps)},
        {"median_time_to_first_token_seconds", median(&Sample::ttft_s)},
        {"median_total_seconds", median(&Sample::total_s)},
    };
    nlohmann::json runs = nlohmann::json::array();
    for (const Sample& s : samples) {
      runs.push_back({{"prompt_tokens", s.prompt_tokens},
                      {"generated_tokens", s.completion_tokens},
                      {"time_to_first_token_seconds", s.ttft_s},
                      {"prefill_tokens_per_second", s.prefill_tps},
                      {"decode_tokens_per_second", s.decode_tps},
                      {"total_seconds", s.total_s}});
    }
    j["samples"] = runs;
    std::cout << j.dump() << '\n';
    return 0;
  }
  std::cout << absl::StrFormat(
      "model %s: prompt %d tokens, generate %d tokens, greedy%s, median of %d runs\n"
      "  prefill  %8.1f tokens/s\n  decode   %8.1f tokens/s\n  ttft     %8.1f ms\n",
      flags.model, first.prompt_tokens, first.completion_tokens, ConstraintName(flags.constraint), flags.runs,
      median(&Sample::prefill_tps), median(&Sample::decode_tps),
      median(&Sample::ttft_s) * 1e3);
  return 0;
}

}  // namespace ingot::client
