// Per-row cost of the quantized matmul for 1..16 token rows on a model's real weight
// tensors, one thread, thread CPU time, the work split into chunks of 16 weight rows as
// MatMul hands them out. Each measurement runs every layer's tensor of one shape in turn
// (30 x 207 KB for the default model's q projection), so weights come from L3/DRAM as
// they do in a decode step, not from a warm L2. Configurations are alternated within
// each repetition so that drift on a shared machine hits them alike; medians printed.
//   build/bin/matmul_bench [MODEL.gguf] [--reps N] [--tokens 1,4,8,16] [--warm]
//                          [--levels avx512vnni,amx]
// --warm: only layer 0's tensors, each run twice and the second timed (L2-resident
// weights, except the head): the kernels' compute alone. --levels: the CPU levels to
// compare (default: the best one), alternated like the token counts.
// Columns: ns per weight row per step (all tokens), ns per row per token, and the
// ratio of a token's cost to the single-token cost (1.0 = no gain from batching).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "kernels/cpu/qmatrix.h"

using namespace ingot;
using namespace ingot::kernels;

namespace {

double ThreadNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  std::string name;
  std::vector<Linear> ws;  // the same tensor of every layer
  Linear w;
  std::vector<int> tokens;
  std::vector<std::vector<double>> ns;  // per (level, token count), per repetition
  std::vector<uint8_t> xa;
  size_t stride = 0;
  std::vector<float> y;
};

}  // namespace

int main(int argc, char** argv) {
  std::string path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  int reps = 31;
  std::vector<int> tokens = {1, 4, 8, 16};
  bool warm = false;
  std::vector<CpuLevel> levels = {BestCpuLevel()};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--levels") && i + 1 < argc) {
      levels.clear();
      const std::string list = std::string(argv[++i]) + ",";
      for (size_t at = 0, comma; (comma = list.find(',', at)) != std::string::npos; at = comma + 1) {
        const std::string name = list.substr(at, comma - at);
        bool found = false;
        for (CpuLevel l : {CpuLevel::kRef, CpuLevel::kAvx2, CpuLevel::kAvx512Vnni, CpuLevel::kAmx}) {
          if (name == CpuLevelName(l) && CpuHasLevel(l)) levels.push_back(l), found = true;
        }
        if (!found) {
          std::fprintf(stderr, "unknown level or not on this CPU: %s\n", name.c_str());
          return 1;
        }
      }
    } else if (!std::strcmp(argv[i], "--warm")) {
      warm = true;
    } else if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) {
      tokens.clear();
      for (const char* p = argv[++i]; *p != '\0';) {
        tokens.push_back(std::atoi(p));
        while (*p != '\0' && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else {
      path = argv[i];
    }
  }
  auto file = gguf::File::Open(path);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    return 1;
  }
  // One tensor per shape of a Llama block, and the head (tied embedding when no output).
  std::vector<std::string> names = {"blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.ffn_up.weight",
                                    "blk.%d.ffn_down.weight", "output.weight"};
  if ((*file)->FindTensor("output.weight") == nullptr) names.back() = "token_embd.weight";
  std::vector<Case> cases;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0, 1);
  const int max_tok = *std::max_element(tokens.begin(), tokens.end());
  for (const std::string& n : names) {
    Case c;
    for (int layer = 0;; ++layer) {
      char name[96];
      std::snprintf(name, sizeof(name), n.c_str(), layer);
      const gguf::TensorInfo* t = (*file)->FindTensor(name);
      if (t == nullptr || t->dims.size() != 2) break;
      Linear w;
      w.kind = LinearKind::kGgml;
      w.ggml = WeightMatrix{t->type, t->dims[1], t->dims[0], GgmlRowSize(t->type, t->dims[0]), t->data};
      c.ws.push_back(w);
      if (warm || n.find('%') == std::string::npos) break;
    }
    if (c.ws.empty()) continue;
    c.w = c.ws[0];
    char label[96];
    std::snprintf(label, sizeof(label), "%s x%zu %lldx%lld %s", n.c_str(), c.ws.size(),
                  static_cast<long long>(c.w.rows()), static_cast<long long>(c.w.cols()),
                  GetGgmlTypeTraits(c.w.ggml.type).name);
    c.name = label;
    c.tokens = tokens;
    c.ns.resize(levels.size() * tokens.size());
    const ActivationSpec spec = LinearActivation(c.w);
    const int64_t cols = c.w.cols();
    c.stride = LinearActivationBytes(spec, cols);
    c.xa.resize(c.stride * max_tok);
    std::vector<float> x(cols);
    for (int k = 0; k < max_tok; ++k) {
      for (auto& v : x) v = normal(rng);
      LinearPrepare(spec, x.data(), cols, c.xa.data() + k * c.stride);
    }
    c.y.resize(static_cast<size_t>(c.w.rows()) * max_tok);
    cases.push_back(std::move(c));
  }
  auto run = [](Case& c, int n_tok, CpuLevel level) {
    for (const Linear& w : c.ws) {
      const int64_t rows = w.rows();
      for (int64_t r0 = 0; r0 < rows; r0 += 16) {
        LinearDotRowsTokens(w, c.xa.data(), c.stride, n_tok, c.y.data(), rows, r0, std::min(rows, r0 + 16), level);
      }
    }
  };
  for (auto& c : cases) {
    for (CpuLevel l : levels) {
      for (int n : c.tokens) run(c, n, l);  // warm
    }
  }
  for (int rep = 0; rep < reps; ++rep) {
    for (auto& c : cases) {
      for (size_t i = 0; i < c.ns.size(); ++i) {
        const int n = c.tokens[i % c.tokens.size()];
        const CpuLevel l = levels[i / c.tokens.size()];
        if (warm) run(c, n, l);
        const double t0 = ThreadNs();
        run(c, n, l);
        c.ns[i].push_back(ThreadNs() - t0);
      }
    }
  }
  std::printf("one thread, median of %d, ns per weight row\n", reps);
  std::printf("%-48s %-10s %6s %12s %12s %8s %9s\n", "tensor", "level", "tokens", "ns/row/step", "ns/row/tok",
              "vs 1 tok", "GMAC/s");
  for (auto& c : cases) {
    double one = 0;
    for (size_t i = 0; i < c.ns.size(); ++i) {
      const int n = c.tokens[i % c.tokens.size()];
      if (i % c.tokens.size() == 0) one = 0;
      const double step = Median(c.ns[i]) / static_cast<double>(c.w.rows() * c.ws.size());
      const double per_tok = step / n;
      if (n == 1) one = per_tok;
      const double gmacs = static_cast<double>(c.w.cols()) / per_tok;
      std::printf("%-48s %-10s %6d %12.1f %12.2f %8.2f %9.1f\n", c.name.c_str(),
                  CpuLevelName(levels[i / c.tokens.size()]), n, step, per_tok, one > 0 ? per_tok / one : 0.0, gmacs);
    }
  }
  return 0;
}
