// Load time and memory per checkpoint format: Engine::LoadModel of each path given
// (GGUF files, Hugging Face directories, ...), --runs times each (unloading between),
// median wall time, and the process's resident memory after the load (VmRSS) split
// into file-backed pages (the mmap'd weights, shared with the page cache) and
// anonymous memory (what the load allocated: converted or copied tensors).
//   load_bench [--runs N] PATH...
#include <algorithm>
#include <chrono>
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
  int runs = 5;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
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
  std::printf("%-60s %10s %10s %10s %10s %s\n", "source", "median_s", "rss_MiB", "anon_MiB", "file_MiB", "format");
  for (const std::string& path : paths) {
    std::vector<double> times;
    long total = 0, anon = 0, file = 0, anon0 = 0, file0 = 0, total0 = 0;
    std::string format;
    for (int r = 0; r < runs + 1; ++r) {  // run 0 warms the page cache
      Rss(&total0, &anon0, &file0);
      ingot::LoadRequest req;
      req.name = "m";
      req.source = path;
      const auto t0 = std::chrono::steady_clock::now();
      auto info = engine.LoadModel(req, nullptr);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
    std::printf("%-60s %10.4f %10.1f %10.1f %10.1f %s\n", path.c_str(), times[times.size() / 2], total / 1024.0,
                (anon - anon0) / 1024.0, file / 1024.0, format.c_str());
  }
  return 0;
}
