// Load time and memory per checkpoint format: Engine::LoadModel of each path given
// (GGUF files, Hugging Face directories, ...), --runs times each (unloading between),
// median wall time, and the process's resident memory after the load (VmRSS) split
// into file-backed pages (the mmap'd weights, shared with the page cache) and
// anonymous memory (what the load allocated: converted or copied tensors), and the peak
// of that anonymous memory during the load (sampled every millisecond).
// --quantize METHOD[:BITS[:QUANT_TYPE]] quantizes while loading (LoadRequest.quantization).
// --strategy full|low_memory|unified_memory|streaming sets LoadRequest.loading_strategy;
// peak_rss is then the most the process's whole RSS (file-backed pages included: a
// strategy that reads the file before copying it holds both) rose above where the load
// started, sampled every millisecond.
//   load_bench [--runs N] [--quantize M[:B[:T]]] [--workers N] [--strategy S] PATH...
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/runtime/engine.h"

namespace {
// kB values of VmRSS, RssAnon, RssFile from /proc/self/status.
void Rss(long* total, long* anon, long* file) {
  std::ifstream in("/proc/self/status");
  std::string key;
  long kb;
  std::string unit;
  *total = *anon = *file = 0;
  while (in >> key) {
    if (key == "VmRSS:" || key == "RssAnon:" || key == "RssFile:") {
      in >> kb >> unit;
      (key == "VmRSS:" ? *total : key == "RssAnon:" ? *anon : *file) = kb;
    } else {
      std::getline(in, unit);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  int runs = 5, workers = 0;
  ingot::LoadingStrategy strategy = ingot::LoadingStrategy::kDefault;
  std::vector<std::string> paths;
  std::optional<ingot::quant::QuantizationConfig> quantize;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--workers") && i + 1 < argc) {
      workers = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--strategy") && i + 1 < argc) {
      absl::StatusOr<ingot::LoadingStrategy> s = ingot::ParseLoadingStrategy(argv[++i]);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.status().ToString().c_str());
        return 2;
      }
      strategy = *s;
    } else if (!std::strcmp(argv[i], "--quantize") && i + 1 < argc) {
      const std::string spec = argv[++i];
      ingot::quant::QuantizationConfig q;
      const size_t a = spec.find(':'), b = a == std::string::npos ? a : spec.find(':', a + 1);
      q.method = spec.substr(0, a);
      if (a != std::string::npos) q.bits = std::atoi(spec.substr(a + 1, b - a - 1).c_str());
      if (b != std::string::npos) q.quant_type = spec.substr(b + 1);
      quantize = q;
    } else {
      paths.push_back(argv[i]);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: %s [--runs N] PATH...\n", argv[0]);
    return 2;
  }
  ingot::EngineOptions options;
  options.threads = 1;
  ingot::Engine engine(options);
  std::printf("%-60s %10s %10s %10s %10s %10s %10s %s\n", "source", "median_s", "rss_MiB", "anon_MiB", "peak_anon",
              "peak_rss", "file_MiB", "format");
  for (const std::string& path : paths) {
    std::vector<double> times;
    long total = 0, anon = 0, file = 0, anon0 = 0, file0 = 0, total0 = 0, peak = 0, peak_rss = 0;
    std::string format;
    for (int r = 0; r < runs + 1; ++r) {  // run 0 warms the page cache
      Rss(&total0, &anon0, &file0);
      ingot::LoadRequest req;
      req.name = "m";
      req.source = path;
      req.quantization = quantize;
      req.loading_workers = workers;
      req.loading_strategy = strategy;
      std::atomic<bool> done{false};
      std::atomic<long> peak_anon{anon0}, peak_total{total0};
      std::thread sampler([&] {
        while (!done.load()) {
          long t, a, f;
          Rss(&t, &a, &f);
          peak_anon.store(std::max(peak_anon.load(), a));
          peak_total.store(std::max(peak_total.load(), t));
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      });
      const auto t0 = std::chrono::steady_clock::now();
      auto info = engine.LoadModel(req, nullptr);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      done.store(true);
      sampler.join();
      peak = std::max(peak, peak_anon.load() - anon0);  // the first load in the process counts: later ones reuse its freed heap
      peak_rss = std::max(peak_rss, peak_total.load() - total0);
      if (!info.ok()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), info.status().ToString().c_str());
        return 1;
      }
      format = info->format;
      Rss(&total, &anon, &file);
      if (r > 0) times.push_back(s);
      if (!engine.UnloadModel("m").ok()) return 1;
    }
    std::sort(times.begin(), times.end());
    std::printf("%-60s %10.4f %10.1f %10.1f %10.1f %10.1f %10.1f %s\n", path.c_str(), times[times.size() / 2],
                total / 1024.0, (anon - anon0) / 1024.0, peak / 1024.0, peak_rss / 1024.0, file / 1024.0,
                format.c_str());
  }
  return 0;
}
