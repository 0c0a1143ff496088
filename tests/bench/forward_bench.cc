// In-process decode/prefill benchmark of LlamaModel::Forward (no gRPC, no sampling):
// isolates the model's compute from the server. Usage:
//   forward_bench MODEL.gguf [--threads N] [--prompt N] [--gen N] [--runs N]
//                 [--backend native|torch] [--device cpu|cuda:N] [--batch N]
//                 [--kv f32|f16|q8_0] [--block-tokens N] [--quantize PRESET]
//                 [--plan PROMPT:GEN:BATCH[,PROMPT:GEN:BATCH...]] [--modes auto,torch,all,off]
// Prints per-run tokens/s and the medians. --kv and --block-tokens shape the paged KV
// store (default f32 in blocks of 16; ingotd serves f16 by default). --batch N decodes N
// sequences together (each step is N token rows, one per sequence, as the scheduler
// batches running streams): prefill is each sequence's prompt in turn, decode tok/s
// counts all N streams.
// --quantize quantizes the loaded model with one of ingot's presets (BNB_NF4, MLX_INT4,
// TORCHAO_INT8, ...: engine/quant/presets.cc) on --threads workers before placing it,
// as QuantizeModel would: the GPU benchmark's NF4/affine/int8 rows start from one Q8_0
// file. --plan measures several shapes over one load and placement (a 7B model loads in
// seconds, not free on a 15-minute device lease); each entry prints its own summary
// line, and --prompt/--gen/--batch are the plan's single entry otherwise. --modes places
// the same host model once per $INGOT_CUDA_QUANT_KERNELS policy (kernels/torch/
// torch_backend.cc: auto, torch, all, off) and runs the plan on each placement, so
// libtorch's kernels and ingot's meet over one quantization.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/formats/gguf.h"
#include "engine/model/llama.h"
#include "engine/model/load.h"
#include "engine/quant/config.h"
#include "engine/quant/presets.h"
#include "engine/quant/quantize_model.h"

namespace {
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "%s\n", st.ToString().c_str());
  return 1;
}

struct PlanEntry {
  int prompt = 0, gen = 0, batch = 1;
  double prefill = 0, decode = 0;  // medians, filled by RunEntry
};

bool ParsePlan(const std::string& arg, std::vector<PlanEntry>* plan) {
  for (const std::string& part : std::vector<std::string>(absl::StrSplit(arg, ','))) {
    PlanEntry e;
    if (std::sscanf(part.c_str(), "%d:%d:%d", &e.prompt, &e.gen, &e.batch) != 3 || e.prompt < 1 || e.gen < 1 ||
        e.batch < 1) {
      return false;
    }
    plan->push_back(e);
  }
  return !plan->empty();
}

// One shape: a warm-up run, then `runs` timed ones; prints each run, fills the medians.
int RunEntry(ingot::LlamaModel& m, const ingot::kernels::Backend& be, const ingot::kernels::Device& dev,
             ingot::kernels::KvDtype kv_dtype, int block_tokens, ingot::kernels::ThreadPool& pool,
             ingot::ForwardWorkspace& ws, PlanEntry& e, int runs) {
  const int prompt = e.prompt, gen = e.gen, n_seq = e.batch;
  std::vector<float> logits;
  std::vector<double> pre, dec;
  const int64_t vocab = m.config().vocab_size;
  // One pool for every sequence, as ingotd keeps one per model (a CUDA graph step
  // needs its tokens in one store); each run's caches give their blocks back.
  const int32_t per_seq = (prompt + gen + block_tokens - 1) / block_tokens;
  auto kv_pool = m.NewKvPool(kv_dtype, per_seq * n_seq, block_tokens);
  if (!kv_pool.ok()) return Fail(kv_pool.status());
  for (int r = 0; r < runs + 1; ++r) {
    std::vector<std::unique_ptr<ingot::KvCache>> caches;
    for (int s = 0; s < n_seq; ++s) {
      caches.push_back(std::make_unique<ingot::KvCache>(*kv_pool));
      if (!caches.back()->Reserve(prompt + gen).ok()) return 1;
    }
    std::vector<int> next(n_seq);
    auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < n_seq; ++s) {
      std::vector<ingot::BatchToken> batch(prompt);
      for (int i = 0; i < prompt; ++i) batch[i] = {(i * 37 + 11 * (s + 1)) % 1000 + 100, i, caches[s].get(), i == prompt - 1};
      if (auto st = m.Forward(batch, pool, ws, &logits); !st.ok()) return Fail(st);
      next[s] = static_cast<int>(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
    }
    if (!be.synchronize(dev).ok()) return 1;
    auto t1 = std::chrono::steady_clock::now();
    std::vector<ingot::BatchToken> step(n_seq);
    for (int g = 0; g < gen; ++g) {
      for (int s = 0; s < n_seq; ++s) step[s] = {next[s], prompt + g, caches[s].get(), true};
      if (auto st = m.Forward(step, pool, ws, &logits); !st.ok()) return Fail(st);
      for (int s = 0; s < n_seq; ++s) {
        const float* l = logits.data() + static_cast<int64_t>(s) * vocab;
        next[s] = static_cast<int>(std::max_element(l, l + vocab) - l);
      }
    }
    auto t2 = std::chrono::steady_clock::now();
    const double p = static_cast<double>(prompt) * n_seq / std::chrono::duration<double>(t1 - t0).count();
    const double d = static_cast<double>(gen) * n_seq / std::chrono::duration<double>(t2 - t1).count();
    if (r == 0) continue;  // warm-up
    pre.push_back(p);
    dec.push_back(d);
    std::printf("run %d: prefill %.1f tok/s, decode %.1f tok/s\n", r, p, d);
  }
  e.prefill = Median(pre);
  e.decode = Median(dec);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [--threads N] [--prompt N] [--gen N] [--runs N]\n", argv[0]);
    return 2;
  }
  int threads = 1, prompt = 128, gen = 64, runs = 5, n_seq = 1;
  int block_tokens = 16;
  std::string backend = "native", device = "cpu", kv = "f32", preset, plan_arg, modes_arg;
  for (int i = 2; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--backend")) backend = argv[i + 1];
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--kv")) kv = argv[i + 1];
    if (!std::strcmp(argv[i], "--quantize")) preset = argv[i + 1];
    if (!std::strcmp(argv[i], "--plan")) plan_arg = argv[i + 1];
    if (!std::strcmp(argv[i], "--modes")) modes_arg = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = v;
    else if (!std::strcmp(argv[i], "--prompt")) prompt = v;
    else if (!std::strcmp(argv[i], "--gen")) gen = v;
    else if (!std::strcmp(argv[i], "--runs")) runs = v;
    else if (!std::strcmp(argv[i], "--batch")) n_seq = std::max(1, v);
    else if (!std::strcmp(argv[i], "--block-tokens")) block_tokens = v;
  }
  auto file = ingot::gguf::File::Open(argv[1]);
  if (!file.ok()) return Fail(file.status());
  auto weights = ingot::LoadGgufWeights(std::move(*file), nullptr);
  if (!weights.ok()) return Fail(weights.status());
  auto loaded = std::make_unique<ingot::LlamaModel>(std::move(*weights));
  if (!preset.empty()) {
    ingot::quant::QuantizationConfig config;
    if (auto st = ingot::quant::ApplyPreset(preset, &config); !st.ok()) return Fail(st);
    ingot::quant::DeviceCaps caps;  // quantized on the host; the placement below checks the device
    const std::vector<ingot::LinearModuleRef> modules = loaded->weights().LinearModules();
    if (auto st = ingot::quant::ProblemsToStatus(ingot::quant::ValidateQuantization(config, caps, &modules)); !st.ok()) {
      return Fail(st);
    }
    ingot::quant::QuantizeOptions opts;
    opts.workers = threads;
    auto q = ingot::quant::QuantizeLlama(*loaded, config, opts);
    if (!q.ok()) return Fail(q.status());
    std::printf("quantized with %s: %d modules in %.1f s\n", preset.c_str(), q->quantized_modules, q->seconds);
    loaded = std::move(q->model);
  }
  ingot::LlamaModel& m = *loaded;
  const ingot::kernels::Backend* be = ingot::kernels::FindBackend(backend);
  auto dev = ingot::kernels::ParseDevice(device);
  if (be == nullptr || !dev.ok()) { std::fprintf(stderr, "unknown backend or device\n"); return 1; }
  using ingot::kernels::KvDtype;
  if (kv != "f32" && kv != "f16" && kv != "q8_0") { std::fprintf(stderr, "--kv: f32, f16 or q8_0\n"); return 2; }
  const KvDtype kv_dtype = kv == "f16" ? KvDtype::kF16 : kv == "q8_0" ? KvDtype::kQ8_0 : KvDtype::kF32;
  std::vector<PlanEntry> plan;
  if (plan_arg.empty()) {
    plan.push_back({prompt, gen, n_seq});
  } else if (!ParsePlan(plan_arg, &plan)) {
    std::fprintf(stderr, "--plan: PROMPT:GEN:BATCH[,...] with PROMPT, GEN >= 1 and BATCH >= 1\n");
    return 2;
  }
  // "": $INGOT_CUDA_QUANT_KERNELS as the caller set it (an empty --modes is one such entry)
  const std::vector<std::string> modes = absl::StrSplit(modes_arg, ',');
  ingot::kernels::ThreadPool pool(threads);
  for (const std::string& mode : modes) {
    if (!mode.empty()) {
      if (mode != "auto" && mode != "torch" && mode != "all" && mode != "off") {
        std::fprintf(stderr, "--modes: auto, torch, all or off\n");
        return 2;
      }
      setenv("INGOT_CUDA_QUANT_KERNELS", mode.c_str(), 1);
    }
    const auto place0 = std::chrono::steady_clock::now();
    if (auto st = m.Place(*be, *dev); !st.ok()) return Fail(st);
    // What the device holds (the benchmark's resident bytes) and in which form.
    const ingot::Placement& placed = m.placement();
    std::string forms;
    if (!placed.layers.empty()) {
      for (const ingot::kernels::Placed& p : placed.layers[0].w) {
        if (!p.representation.empty() && forms.find(p.representation) == std::string::npos) {
          forms += (forms.empty() ? "" : ",") + p.representation;
        }
      }
    }
    const std::string tag = mode.empty() ? "" : " [kernels " + mode + "]";
    std::printf("placed on %s%s in %.1f s: %lld bytes on the device; layer 0 as %s, head as %s\n", device.c_str(),
                tag.c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - place0).count(),
                static_cast<long long>(placed.bytes), forms.empty() ? "host form" : forms.c_str(),
                placed.output.representation.empty() ? "host form" : placed.output.representation.c_str());
    ingot::ForwardWorkspace ws;  // a placement's own (CUDA graphs record its weights)
    for (PlanEntry& e : plan) {
      if (int rc = RunEntry(m, *be, *dev, kv_dtype, block_tokens, pool, ws, e, runs); rc != 0) return rc;
      std::printf("%s on %s%s, ", backend.c_str(), device.c_str(), tag.c_str());
      std::printf("KV %s in blocks of %d, ", kv.c_str(), block_tokens);
      std::printf("threads %d, %d sequence(s), prompt %d, gen %d: prefill %.1f tok/s, decode %.1f tok/s (median of %d)\n",
                  threads, e.batch, e.prompt, e.gen, e.prefill, e.decode, runs);
      std::fflush(stdout);
    }
  }
  return 0;
}
