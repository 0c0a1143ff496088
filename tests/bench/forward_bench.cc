// In-process decode/prefill benchmark of LlamaModel::Forward (no gRPC, no sampling):
// isolates the model's compute from the server. Usage:
//   forward_bench MODEL.gguf [--threads N] [--prompt N] [--gen N] [--runs N]
//                 [--backend native|torch] [--device cpu|cuda:N] [--batch N]
//                 [--kv f32|f16|q8_0] [--block-tokens N]
// Prints per-run tokens/s and the medians. --kv and --block-tokens shape the paged KV
// store (default f32 in blocks of 16; ingotd serves f16 by default). --batch N decodes N sequences together (each
// step is N token rows, one per sequence, as the scheduler batches running streams):
// prefill is each sequence's prompt in turn, decode tok/s counts all N streams.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/model/llama.h"
#include "engine/model/load.h"

namespace {
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [--threads N] [--prompt N] [--gen N] [--runs N]\n", argv[0]);
    return 2;
  }
  int threads = 1, prompt = 128, gen = 64, runs = 5, n_seq = 1;
  int block_tokens = 16;
  std::string backend = "native", device = "cpu", kv = "f32";
  for (int i = 2; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--backend")) backend = argv[i + 1];
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--kv")) kv = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = v;
    else if (!std::strcmp(argv[i], "--prompt")) prompt = v;
    else if (!std::strcmp(argv[i], "--gen")) gen = v;
    else if (!std::strcmp(argv[i], "--runs")) runs = v;
    else if (!std::strcmp(argv[i], "--batch")) n_seq = std::max(1, v);
    else if (!std::strcmp(argv[i], "--block-tokens")) block_tokens = v;
  }
  auto file = ingot::gguf::File::Open(argv[1]);
  if (!file.ok()) { std::fprintf(stderr, "%s\n", file.status().ToString().c_str()); return 1; }
  auto weights = ingot::LoadGgufWeights(std::move(*file), nullptr);
  if (!weights.ok()) { std::fprintf(stderr, "%s\n", weights.status().ToString().c_str()); return 1; }
  ingot::LlamaModel m(std::move(*weights));
  const ingot::kernels::Backend* be = ingot::kernels::FindBackend(backend);
  auto dev = ingot::kernels::ParseDevice(device);
  if (be == nullptr || !dev.ok()) { std::fprintf(stderr, "unknown backend or device\n"); return 1; }
  if (auto st = m.Place(*be, *dev); !st.ok()) { std::fprintf(stderr, "%s\n", st.ToString().c_str()); return 1; }
  using ingot::kernels::KvDtype;
  if (kv != "f32" && kv != "f16" && kv != "q8_0") { std::fprintf(stderr, "--kv: f32, f16 or q8_0\n"); return 2; }
  const KvDtype kv_dtype = kv == "f16" ? KvDtype::kF16 : kv == "q8_0" ? KvDtype::kQ8_0 : KvDtype::kF32;
  ingot::kernels::ThreadPool pool(threads);
  ingot::ForwardWorkspace ws;
  std::vector<float> logits;
  std::vector<double> pre, dec;
  const int64_t vocab = m.config().vocab_size;
  // One pool for every sequence, as ingotd keeps one per model (a CUDA graph step
  // needs its tokens in one store); each run's caches give their blocks back.
  const int32_t per_seq = (prompt + gen + block_tokens - 1) / block_tokens;
  auto kv_pool = m.NewKvPool(kv_dtype, per_seq * n_seq, block_tokens);
  if (!kv_pool.ok()) { std::fprintf(stderr, "%s\n", kv_pool.status().ToString().c_str()); return 1; }
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
      if (auto st = m.Forward(batch, pool, ws, &logits); !st.ok()) { std::fprintf(stderr, "%s\n", st.ToString().c_str()); return 1; }
      next[s] = static_cast<int>(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
    }
    if (!be->synchronize(*dev).ok()) return 1;
    auto t1 = std::chrono::steady_clock::now();
    std::vector<ingot::BatchToken> step(n_seq);
    for (int g = 0; g < gen; ++g) {
      for (int s = 0; s < n_seq; ++s) step[s] = {next[s], prompt + g, caches[s].get(), true};
      if (!m.Forward(step, pool, ws, &logits).ok()) return 1;
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
  std::printf("%s on %s, ", backend.c_str(), device.c_str());
  std::printf("KV %s in blocks of %d, ", kv.c_str(), block_tokens);
  std::printf("threads %d, %d sequence(s): prefill %.1f tok/s, decode %.1f tok/s (median of %d)\n", threads,
              n_seq, Median(pre), Median(dec), runs);
  return 0;
}
