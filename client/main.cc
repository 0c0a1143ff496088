// ingot: command-line client for ingotd. `ingot --help` lists the subcommands;
// --server (or $INGOT_SERVER) picks the server for all of them.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "client/client.h"

namespace {

// --grammar FILE / --json-schema FILE / --json-object (at most one): output forced to
// match a GBNF grammar, a JSON Schema, or any JSON object.
void AddConstraint(CLI::App* cmd, std::string* grammar, std::string* schema, bool* object) {
  auto* g = cmd->add_option("--grammar", *grammar, "GBNF grammar file (llama.cpp syntax, rule root): output matches it")
                ->check(CLI::ExistingFile);
  auto* j = cmd->add_option("--json-schema", *schema, "JSON Schema file: output is JSON that validates against it")
                ->check(CLI::ExistingFile);
  auto* o = cmd->add_flag("--json-object", *object, "Output is a JSON object");
  g->excludes(j)->excludes(o);
  j->excludes(o);
}

void ReadConstraint(const std::string& grammar, const std::string& schema, bool object,
                    ingot::client::SamplingFlags* f) {
  for (const std::string& problem : {ingot::client::ReadFlagFile("--grammar", grammar, &f->grammar),
                                     ingot::client::ReadFlagFile("--json-schema", schema, &f->json_schema)}) {
    if (!problem.empty()) std::fprintf(stderr, "warning: %s\n", problem.c_str());
  }
  f->has_grammar = !grammar.empty();
  f->has_json_schema = !schema.empty();
  f->json_object = object;
}

// Sampling flags are parsed into plain values; only flags the user gave are copied
// into the request, so the server's defaults apply to the rest.
struct SamplingOptions {
  int max_tokens = 0;
  float temperature = 0, top_p = 0, min_p = 0, repetition_penalty = 0;
  int top_k = 0;
  uint64_t seed = 0;
  bool greedy = false;
  std::vector<std::string> stop;
  float presence = 0, frequency = 0;
  std::vector<std::string> logit_bias;
  std::vector<int32_t> stop_token_ids;
  int logprobs = -1;
  int prompt_logprobs = -1;
  int completions = 1;
  std::string grammar_file, json_schema_file;
  bool json_object = false;
  CLI::Option *o_max, *o_temp, *o_topk, *o_topp, *o_minp, *o_rep, *o_seed, *o_pres, *o_freq;

  void Add(CLI::App* cmd) {
    o_max = cmd->add_option("-n,--max-tokens", max_tokens, "Most tokens to generate");
    o_temp = cmd->add_option("-t,--temperature", temperature, "Temperature (0 = greedy)");
    o_topk = cmd->add_option("--top-k", top_k, "Top-k (0 = off)");
    o_topp = cmd->add_option("--top-p", top_p, "Top-p (1 = off)");
    o_minp = cmd->add_option("--min-p", min_p, "Min-p (0 = off)");
    o_rep = cmd->add_option("--repetition-penalty", repetition_penalty,
                            "Repetition penalty (1 = off)");
    o_seed = cmd->add_option("--seed", seed, "RNG seed");
    cmd->add_option("--stop", stop, "Stop string (repeatable)")->allow_extra_args(false);
    cmd->add_flag("--greedy", greedy, "Same as --temperature 0");
    o_pres = cmd->add_option("--presence-penalty", presence, "OpenAI-style presence penalty, [-2, 2]");
    o_freq = cmd->add_option("--frequency-penalty", frequency, "OpenAI-style frequency penalty, [-2, 2]");
    cmd->add_option("--logit-bias", logit_bias, "TOKEN_ID=BIAS added to that token's logit (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--stop-token-id", stop_token_ids, "Token id that ends generation (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--logprobs", logprobs,
                    "Log-probability of each token and of the N most likely at each step (0-20)");
    cmd->add_option("--prompt-logprobs", prompt_logprobs,
                    "Log-probability of each prompt token and of the N most likely at its position "
                    "(0-20; in --json output, on the first event)");
    cmd->add_option("--completions", completions,
                    "Completions of the prompt (OpenAI's n, 1-16), sharing the prompt's KV blocks");
    AddConstraint(cmd, &grammar_file, &json_schema_file, &json_object);
  }
  ingot::client::SamplingFlags Get() const {
    ingot::client::SamplingFlags f;
    if (o_max->count()) f.max_tokens = max_tokens;
    if (o_temp->count()) f.temperature = temperature;
    if (greedy) f.temperature = 0.0f;
    if (o_topk->count()) f.top_k = top_k;
    if (o_topp->count()) f.top_p = top_p;
    if (o_minp->count()) f.min_p = min_p;
    if (o_rep->count()) f.repetition_penalty = repetition_penalty;
    if (o_seed->count()) f.seed = seed;
    if (o_pres->count()) f.presence_penalty = presence;
    if (o_freq->count()) f.frequency_penalty = frequency;
    for (const std::string& b : logit_bias) {
      const size_t eq = b.find('=');
      f.logit_bias.emplace_back(std::atoi(b.substr(0, eq).c_str()),
                                eq == std::string::npos ? 0.0f : std::strtof(b.c_str() + eq + 1, nullptr));
    }
    f.stop_token_ids = stop_token_ids;
    f.logprobs = logprobs;
    f.prompt_logprobs = prompt_logprobs;
    f.completions = completions;
    f.stop = stop;
    ReadConstraint(grammar_file, json_schema_file, json_object, &f);
    return f;
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace ingot::client;
  Connection conn;
  CLI::App app{"ingot: client for the ingotd inference server"};
  app.require_subcommand(1);
  app.fallthrough();  // --server may follow the subcommand
  app.add_option("-s,--server", conn.server, "Server address host:port")
      ->envname("INGOT_SERVER")
      ->capture_default_str();
  app.add_option("--timeout", conn.timeout_s, "Deadline per call in seconds (0 = none)");
  app.add_option("--token", conn.token, "Bearer token for a server with auth")->envname("INGOT_TOKEN");
  app.add_option("--tls-ca", conn.tls_ca, "CA certificate (PEM) of the server: use TLS")->envname("INGOT_TLS_CA");
  app.add_option("--tls-cert", conn.tls_cert, "Client certificate (PEM) for mutual TLS");
  app.add_option("--tls-key", conn.tls_key, "Client key (PEM) for mutual TLS");

  bool models_json = false;
  CLI::App* models = app.add_subcommand("models", "List loaded models");
  models->add_flag("--json", models_json, "Print JSON");

  LoadFlags load;
  const CLI::Validator max_memory_check(
      [](std::string& v) -> std::string {
        const size_t eq = v.find('=');
        int64_t bytes = 0;
        if (eq == std::string::npos || eq == 0 || !absl::SimpleAtoi(v.substr(eq + 1), &bytes) || bytes <= 0) {
          return "expected DEVICE=BYTES (cpu=4000000000), got '" + v + "'";
        }
        return "";
      },
      "DEVICE=BYTES");
  CLI::App* load_cmd = app.add_subcommand("load", "Load a model (progress on stderr)");
  load_cmd->add_option("name", load.name, "Name to register the model under")->required();
  load_cmd->add_option("path", load.source,
                       "Checkpoint path on the server, or a Hugging Face repository id (org/name) in its cache")
      ->required();
  load_cmd->add_option("--revision", load.revision, "With a repository id: branch, tag or commit (default main)");
  load_cmd->add_option("--variant", load.variant, "A unified repository's variant (its subdirectory: int8, int4, ...)");
  load_cmd->add_option("--format", load.format, "auto, gguf, hf, safetensors, torch or npz");
  load_cmd->add_option("-m,--quantize", load.method,
                       "Quantize while loading: bitsandbytes, hqq, quanto, torchao, mlx, gguf, ... "
                       "(a checkpoint saved quantized keeps its own)");
  load_cmd->add_option("-b,--bits", load.bits, "Bit width for --quantize");
  load_cmd->add_option("-g,--group-size", load.group_size, "Group/block size for --quantize");
  load_cmd->add_option("--quant-type", load.quant_type, "nf4|fp4, q4_0.., int8_weight_only.. for --quantize");
  load_cmd->add_option("--loading-workers", load.workers,
                       "Threads copying (full) or quantizing modules while loading (0 = the server's default, "
                       "-1 = every core)");
  load_cmd->add_option("--loading-strategy", load.loading_strategy,
                       "full, low_memory, unified_memory or streaming (default: the server's model_defaults)")
      ->check(CLI::IsMember({"full", "low_memory", "unified_memory", "streaming"}));
  load_cmd->add_option("--max-memory", load.max_memory,
                       "DEVICE=BYTES, repeatable: the most this model may hold on a device (weights + KV)")
      ->check(max_memory_check);
  load_cmd->add_flag("--offload-to-cpu", load.offload_to_cpu,
                     "Layers over --max-memory on a GPU would go to the cpu (not built: such a load is refused)");
  load_cmd->add_option("--dtype", load.dtype, "Compute dtype: auto, f32, bf16 or f16 (as the backend honours it)")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "f16"}));
  CLI::Option* use_st = load_cmd->add_flag("--use-safetensors", load.use_safetensors,
                                           "Refuse a checkpoint with no safetensors (pickles only)");
  load_cmd->add_flag("--no-safetensors", load.no_safetensors,
                     "Read pytorch_model.bin where a directory has both it and safetensors")
      ->excludes(use_st);
  load_cmd->add_option("--device", load.device, "cpu or cuda:N (mps/mlx are named but not part of this build)");
  load_cmd->add_option("--backend", load.backend, "auto (native on cpu, torch on cuda), native or torch");
  load_cmd->add_option("--context-length", load.context_length,
                       "Context in tokens (0 = the model's, at most 4096)");
  load_cmd->add_option("--kv-cache-bytes", load.kv_cache_bytes,
                       "Bytes of the paged KV pool (0 = the server's default; at least one full context)");
  load_cmd->add_option("--kv-cache-dtype", load.kv_cache_dtype, "f16 (default), f32 or q8_0 (native only)");
  load_cmd->add_option("--max-sequences", load.max_sequences,
                       "Sequences decoded together in one step (0 = the server's default)");
  load_cmd->add_flag("--no-prefix-cache", load.no_prefix_cache,
                     "Do not share KV blocks of common prompt prefixes between requests");
  load_cmd->add_flag("--json", load.json, "Print each progress event as JSON");
  load_cmd->add_flag("--pinned", load.pinned, "Never evict this model (memory pressure, keep_alive)");
  load_cmd->add_option("--keep-alive", load.keep_alive_s,
                       "Unload after this many idle seconds (0 = never; default: the server's model_defaults)");
  LoadFlags plan;
  CLI::App* plan_cmd = app.add_subcommand("plan", "Dry-run a load: bytes by kind, whether it fits, what it evicts");
  plan_cmd->add_option("name", plan.name, "Name the model would be registered under")->required();
  plan_cmd->add_option("path", plan.source, "Checkpoint path on the server")->required();
  plan_cmd->add_option("--format", plan.format, "auto, gguf, hf, safetensors, torch or npz");
  plan_cmd->add_option("-m,--quantize", plan.method, "Quantize while loading (as for load)");
  plan_cmd->add_option("-b,--bits", plan.bits, "Bit width for --quantize");
  plan_cmd->add_option("-g,--group-size", plan.group_size, "Group/block size for --quantize");
  plan_cmd->add_option("--quant-type", plan.quant_type, "Quant type for --quantize");
  plan_cmd->add_option("--device", plan.device, "cpu or cuda:N");
  plan_cmd->add_option("--backend", plan.backend, "auto, native or torch");
  plan_cmd->add_option("--context-length", plan.context_length, "Context window in tokens (0 = model's, max 4096)");
  plan_cmd->add_option("--kv-cache-bytes", plan.kv_cache_bytes, "KV pool bytes (0 = the server's default)");
  plan_cmd->add_option("--kv-cache-dtype", plan.kv_cache_dtype, "f16 (default), f32 or q8_0");
  plan_cmd->add_option("--loading-strategy", plan.loading_strategy, "As for load")
      ->check(CLI::IsMember({"full", "low_memory", "unified_memory", "streaming"}));
  plan_cmd->add_option("--max-memory", plan.max_memory, "DEVICE=BYTES, repeatable (as for load)")
      ->check(max_memory_check);
  plan_cmd->add_flag("--json", plan.json, "Print JSON");
  bool watch_json = false;
  CLI::App* watch_cmd = app.add_subcommand("watch", "Model lifecycle events: the current state, then each transition");
  watch_cmd->add_flag("--json", watch_json, "One JSON object per event");

  std::string save_name, save_path, save_format = "gguf";
  bool save_overwrite = false;
  CLI::App* save = app.add_subcommand("save", "Write a loaded model to a file on the server");
  save->add_option("name", save_name, "Model name")->required();
  save->add_option("path", save_path, "Destination path on the server")->required();
  save->add_option("--format", save_format,
                   "gguf (one file llama.cpp reads), ingot (a directory that loads back identical), "
                   "bitsandbytes, mlx, gptq (AutoGPTQ v1) or hqq (transformers HqqConfig): those tools' "
                   "layouts, where every layer has an exact form there")
      ->check(CLI::IsMember({"gguf", "ingot", "bitsandbytes", "bnb", "mlx", "gptq", "hqq"}));
  save->add_flag("--overwrite", save_overwrite, "Replace an existing file or directory");
  std::vector<std::string> save_variants;
  bool save_evaluate = false;
  save->add_option("--variant", save_variants,
                   "NAME=PRESET (e.g. int8=TORCHAO_INT8, int4=TORCHAO_INT4): a unified repository with each "
                   "variant quantized into PATH/NAME (repeat)");
  save->add_flag("--evaluate", save_evaluate, "Each variant's model card reports perplexity and KL vs the model");
  std::string unload_name;
  CLI::App* unload = app.add_subcommand("unload", "Unload a model");
  unload->add_option("name", unload_name, "Model name")->required();

  std::string info_name;
  bool info_json = false;
  CLI::App* info = app.add_subcommand("info", "Server info, or one model's details");
  info->add_option("name", info_name, "Model name (omit for the server)");
  info->add_flag("--json", info_json, "Print JSON");

  GenerateFlags gen;
  SamplingOptions gen_sampling;
  CLI::App* generate = app.add_subcommand("generate", "Generate text (streams to stdout)");
  generate->add_option("model", gen.model, "Model name")->required();
  generate->add_option("prompt", gen.prompt, "Prompt text ('-' reads stdin)")->required();
  generate->add_option("--system", gen.system, "System message (sends chat messages)");
  generate->add_flag("--chat", gen.chat, "Send the prompt as a user chat message");
  generate->add_flag("--json", gen.json, "Print each response as a JSON line");
  generate->add_flag("--stats", gen.stats, "Print usage and timings on stderr");
  gen_sampling.Add(generate);

  GenerateFlags chat;
  SamplingOptions chat_sampling;
  CLI::App* chat_cmd = app.add_subcommand("chat", "Interactive chat (stdin lines; /exit)");
  chat_cmd->add_option("model", chat.model, "Model name")->required();
  chat_cmd->add_option("--system", chat.system, "System message");
  chat_cmd->add_flag("--json", chat.json, "Print each response as a JSON line");
  chat_cmd->add_flag("--stats", chat.stats, "Print usage and timings on stderr");
  chat_sampling.Add(chat_cmd);

  TokenizeFlags tok;
  CLI::App* tokenize = app.add_subcommand("tokenize", "Show token ids and pieces");
  tokenize->add_option("model", tok.model, "Model name")->required();
  tokenize->add_option("text", tok.text, "Text")->required();
  tokenize->add_flag("--no-special", tok.no_special, "Do not add BOS/EOS");
  tokenize->add_flag("--no-parse-special", tok.no_parse_special,
                     "Treat special-token text as plain text");
  tokenize->add_flag("--ids", tok.ids_only, "Print only the ids, space separated");
  tokenize->add_flag("--json", tok.json, "Print JSON");

  BenchFlags bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Measure prefill/decode speed (greedy)");
  bench_cmd->add_option("model", bench.model, "Model name")->required();
  bench_cmd->add_option("--prompt-tokens", bench.prompt_tokens, "Prompt length in tokens")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  bench_cmd->add_option("--gen-tokens", bench.gen_tokens, "Tokens to generate per run")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  bench_cmd->add_option("--runs", bench.runs, "Measured runs")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  bench_cmd->add_option("--warmup", bench.warmup, "Unmeasured runs first")
      ->capture_default_str()->check(CLI::Range(0, 1000));
  bench_cmd->add_flag("--json", bench.json, "Print JSON");
  std::string bench_grammar, bench_schema;
  bool bench_object = false;
  AddConstraint(bench_cmd, &bench_grammar, &bench_schema, &bench_object);

  QuantizeFlags quant;
  CLI::App* quant_cmd = app.add_subcommand("quantize", "Quantize a loaded model (progress bar on stderr)");
  quant_cmd->add_option("source", quant.source, "Loaded model")->required();
  quant_cmd->add_option("target", quant.target, "New model name (omit: replace the source in place)");
  quant_cmd->add_option("-m,--method", *quant.config.mutable_method(),
                        "bitsandbytes, hqq, quanto, torchao, mlx, gptq, awq, gguf, none")->required();
  quant_cmd->add_option("-b,--bits", [&quant](const std::vector<std::string>& v) {
    quant.config.set_bits(std::stoi(v[0])); return true; }, "Bit width (method default if unset)");
  quant_cmd->add_option("-g,--group-size", [&quant](const std::vector<std::string>& v) {
    quant.config.set_group_size(std::stoll(v[0])); return true; }, "Group/block size");
  quant_cmd->add_option("--quant-type", *quant.config.mutable_quant_type(),
                        "nf4|fp4 (bitsandbytes), int8_weight_only|int4_weight_only|int8_dynamic "
                        "(torchao), q4_0..q6_k (gguf), f16|bf16|f32 (none)");
  quant_cmd->add_option("--compute-dtype", *quant.config.mutable_compute_dtype(), "float32|float16|bfloat16");
  quant_cmd->add_flag("--no-double-quant", quant.no_double_quant, "bitsandbytes 4-bit: keep the absmax in f32");
  quant_cmd->add_option("--skip", quant.skip, "Module name/glob left as loaded (repeatable; 'none' = quantize all)");
  quant_cmd->add_option("--override", quant.overrides,
                        "PATTERN:key=value[,...] with keys method, bits, group_size, quant_type, skip");
  quant_cmd->add_option("--option", quant.options, "Backend option key=value (repeatable)");
  quant_cmd->add_flag("--allow-fallback", [&quant](int64_t) { quant.config.set_allow_fallback(true); },
                      "Use the nearest method when the device cannot run this one");
  quant_cmd->add_option("--calibration-file", quant.calibration_file, "GPTQ/AWQ text file on the server");
  quant_cmd->add_option("--calibration-text", quant.calibration_text_file, "GPTQ/AWQ text file sent with the request");
  quant_cmd->add_option("--device", quant.device, "Target device (default: the source's)");
  quant_cmd->add_flag("--validate", quant.validate_only, "Only validate the config (exit 1 when invalid)");
  quant_cmd->add_flag("--json", quant.json, "Print each response as JSON");

  EvalFlags eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Perplexity of a text (and KL vs a reference model)");
  eval_cmd->add_option("model", eval.model, "Model name")->required();
  eval_cmd->add_option("--text-file", eval.text_file, "Text to score (default: the shipped held-out text)");
  eval_cmd->add_option("--context-length", eval.context_length, "Tokens per window")->capture_default_str();
  eval_cmd->add_option("--max-tokens", eval.max_tokens, "Score at most this many tokens (0 = all)");
  eval_cmd->add_option("--reference", eval.reference, "Reference model for KL and top-1 agreement");
  eval_cmd->add_flag("--json", eval.json, "Print JSON");

  std::string rec_model;
  int64_t rec_budget = 0;
  bool rec_json = false;
  CLI::App* rec_cmd = app.add_subcommand("recommend", "A quantization config that fits a memory budget");
  rec_cmd->add_option("model", rec_model, "Model name")->required();
  rec_cmd->add_option("budget_bytes", rec_budget, "Bytes the weights may take")->required();
  rec_cmd->add_flag("--json", rec_json, "Print JSON");
  std::string rec_purpose, rec_device;
  rec_cmd->add_option("--purpose", rec_purpose,
                      "inference, fine_tuning, min_memory or max_quality (the seeds' decision tree; "
                      "default: the best quality that fits)");
  rec_cmd->add_option("--device", rec_device, "Device to recommend for (default cpu)");

  bool methods_json = false;
  CLI::App* methods_cmd = app.add_subcommand("methods", "The quantization method x device table");
  methods_cmd->add_flag("--json", methods_json, "Print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (std::string err = conn.Connect(); !err.empty()) {
    std::fprintf(stderr, "ingot: %s\n", err.c_str());
    return 2;
  }
  if (*models) return RunModels(conn, models_json);
  if (*load_cmd) return RunLoad(conn, load);
  if (*plan_cmd) return RunPlan(conn, plan);
  if (*watch_cmd) return RunWatch(conn, watch_json);
  if (*unload) return RunUnload(conn, unload_name);
  if (*save) return RunSave(conn, save_name, save_path, save_format, save_overwrite, save_variants, save_evaluate);
  if (*info) return RunInfo(conn, info_name, info_json);
  if (*generate) {
    gen.sampling = gen_sampling.Get();
    return RunGenerate(conn, gen);
  }
  if (*chat_cmd) {
    chat.sampling = chat_sampling.Get();
    return RunChat(conn, chat);
  }
  if (*tokenize) return RunTokenize(conn, tok);
  if (*bench_cmd) {
    ReadConstraint(bench_grammar, bench_schema, bench_object, &bench.constraint);
    return RunBench(conn, bench);
  }
  if (*quant_cmd) return RunQuantize(conn, quant);
  if (*eval_cmd) return RunEval(conn, eval);
  if (*rec_cmd) return RunRecommend(conn, rec_model, rec_budget, rec_purpose, rec_device, rec_json);
  if (*methods_cmd) return RunMethods(conn, methods_json);
  return 2;
}
