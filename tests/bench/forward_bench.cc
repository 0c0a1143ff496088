// In-process decode/prefill benchmark of LlamaModel::Forward (no gRPC, no sampling):
// isolates the model's compute from the server. Usage:
//   forward_bench MODEL.gguf [--threads N] [--prompt N] [--gen N] [--runs N]
//                 [--backend native|torch] [--device cpu|cuda:N]
// Prints per-run tokens/s and the medians.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/model/llama.h"

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
  int threads = 1, prompt = 128, gen = 64, runs = 5;
  std::string backend = "native", device = "cpu";
  for (int i = 2; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--backend")) backend = argv[i + 1];
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = v;
    else if (!std::strcmp(argv[i], "--prompt")) prompt = v;
    else if (!std::strcmp(argv[i], "--gen")) gen = v;
    else if (!std::strcmp(argv[i], "--runs")) runs = v;
  }
  auto file = ingot::gguf::File::Open(argv[1]);
  if (!file.ok()) { std::fprintf(stderr, "%s\n", file.status().ToString().c_str()); return 1; }
  auto model = ingot::LlamaModel::FromGguf(std::move(*file), nullptr);
  if (!model.ok()) { std::fprintf(stderr, "%s\n", model.status().ToString().c_str()); return 1; }
  auto& m = **model;
  const ingot::kernels::Backend* be = ingot::kernels::FindBackend(backend);
  auto dev = ingot::kernels::ParseDevice(device);
  if (be == nullptr || !dev.ok()) { std::fprintf(stderr, "unknown backend or device\n"); return 1; }
  if (auto st = m.Place(*be, *dev); !st.ok()) { std::fprintf(stderr, "%s\n", st.ToString().c_str()); return 1; }
  ingot::kernels::ThreadPool pool(threads);
  ingot::ForwardWorkspace ws;
  std::vector<float> logits;
  std::vector<double> pre, dec;
  for (int r = 0; r < runs + 1; ++r) {
    auto cache_p = m.NewKvCache();
    ingot::KvCache& cache = *cache_p;
    if (!cache.Reserve(prompt + gen).ok()) return 1;
    std::vector<ingot::BatchToken> batch(prompt);
    for (int i = 0; i < prompt; ++i) batch[i] = {(i * 37 + 11) % 1000 + 100, i, &cache, i == prompt - 1};
    auto t0 = std::chrono::steady_clock::now();
    if (auto st = m.Forward(batch, pool, ws, &logits); !st.ok()) { std::fprintf(stderr, "%s\n", st.ToString().c_str()); return 1; }
    if (!be->synchronize(*dev).ok()) return 1;
    auto t1 = std::chrono::steady_clock::now();
    for (int g = 0; g < gen; ++g) {
      const int tok = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      std::vector<ingot::BatchToken> one = {{tok, prompt + g, &cache, true}};
      if (!m.Forward(one, pool, ws, &logits).ok()) return 1;
    }
    auto t2 = std::chrono::steady_clock::now();
    const double p = prompt / std::chrono::duration<double>(t1 - t0).count();
    const double d = gen / std::chrono::duration<double>(t2 - t1).count();
    if (r == 0) continue;  // warm-up
    pre.push_back(p);
    dec.push_back(d);
    std::printf("run %d: prefill %.1f tok/s, decode %.1f tok/s\n", r, p, d);
  }
  std::printf("%s on %s, ", backend.c_str(), device.c_str());
  std::printf("threads %d: prefill %.1f tok/s, decode %.1f tok/s (median of %d)\n", threads,
              Median(pre), Median(dec), runs);
  return 0;
}
