// Micro-benchmark of the qmatrix kernels against ggml Q4_1 (quant_dot.h), one thread,
// median of repetitions of thread CPU time. Built as bin/qmatrix_bench:
//   build/bin/qmatrix_bench [rows] [cols]
// Last columns: ns per row and token at 16 tokens for the AVX-512 VNNI and AMX paths
// (where the CPU has them), alternated; medians.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/quant_dot.h"

using namespace ingot;
using namespace ingot::kernels;

namespace {

// Thread CPU time, so that other processes on a shared machine do not count.
double ThreadNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

double MedianNs(const std::function<void()>& f, int reps) {
  std::vector<double> t;
  f();  // warm
  for (int i = 0; i < reps; ++i) {
    const double a = ThreadNs();
    f();
    t.push_back(ThreadNs() - a);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<uint8_t> RandomBytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  std::uniform_int_distribution<int> b(0, 255);
  for (auto& x : v) x = static_cast<uint8_t>(b(rng));
  return v;
}

struct Result {
  const char* name;
  double ns_row, ns_row_tok4;
  double bytes;
};

void Report(const char* name, const Linear& w, int reps) {
  const int64_t rows = w.rows(), cols = w.cols();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0, 1);
  const ActivationSpec spec = LinearActivation(w);
  const size_t stride = LinearActivationBytes(spec, cols);
  constexpr int kMaxTok = 16;
  std::vector<uint8_t> xa(stride * kMaxTok);
  std::vector<float> x(cols);
  for (int t = 0; t < kMaxTok; ++t) {
    for (auto& v : x) v = normal(rng);
    LinearPrepare(spec, x.data(), cols, xa.data() + t * stride);
  }
  std::vector<float> y(rows * kMaxTok);
  const double one = MedianNs([&] { LinearDotRows(w, xa.data(), y.data(), 0, rows); }, reps);
  const double four = MedianNs(
      [&] { LinearDotRowsTokens(w, xa.data(), stride, 4, y.data(), rows, 0, rows); }, reps);
  std::printf("%-28s %8.1f ns/row %6.2f GB/s | 4 tokens: %8.1f ns/row/token  (%.3f bits/w)", name, one / rows,
              w.bytes() / one, four / rows / 4, 8.0 * w.bytes() / (rows * cols));
  // 16 tokens at the AVX-512 VNNI and AMX levels, alternated, where the CPU has them.
  std::vector<CpuLevel> levels;
  for (CpuLevel l : {CpuLevel::kAvx512Vnni, CpuLevel::kAmx}) {
    if (CpuHasLevel(l)) levels.push_back(l);
  }
  std::vector<std::vector<double>> ns(levels.size());
  for (int rep = 0; rep < 9; ++rep) {
    for (size_t i = 0; i < levels.size(); ++i) {
      ns[i].push_back(MedianNs(
          [&] { LinearDotRowsTokens(w, xa.data(), stride, kMaxTok, y.data(), rows, 0, rows, levels[i]); }, 5));
    }
  }
  for (size_t i = 0; i < levels.size(); ++i) {
    std::sort(ns[i].begin(), ns[i].end());
    std::printf(" | 16 tokens %s: %6.2f", CpuLevelName(levels[i]), ns[i][ns[i].size() / 2] / rows / kMaxTok);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t cols = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int reps = 101;
  std::printf("impl %s, %lld x %lld, median of %d\n", LinearImplementation(),
              static_cast<long long>(rows), static_cast<long long>(cols), reps);
  std::mt19937 rng(7);

  // ggml Q4_1: random nibbles, small scales.
  {
    auto data = RandomBytes(rows * GgmlRowSize(GgmlType::kQ4_1, cols), rng);
    auto* b = reinterpret_cast<BlockQ4_1*>(data.data());
    for (int64_t i = 0; i < rows * cols / 32; ++i) {
      b[i].d = Fp32ToFp16(0.01f);
      b[i].m = Fp32ToFp16(-0.08f);
    }
    Linear l;
    l.kind = LinearKind::kGgml;
    l.ggml = WeightMatrix{GgmlType::kQ4_1, rows, cols, GgmlRowSize(GgmlType::kQ4_1, cols), data.data()};
    Report("ggml q4_1 (VecDotQ4_1Q8_1)", l, reps);
  }
  for (auto [bits, group] : {std::pair<int, int64_t>{4, 32}, {4, 64}, {4, 128}, {4, 16}, {8, cols},
                             {8, 128}, {2, 64}, {3, 64}, {5, 64}}) {
    Linear l;
    l.kind = LinearKind::kAffine;
    AffineMatrix& a = l.affine;
    a.bits = bits;
    a.rows = rows;
    a.cols = cols;
    a.group = group;
    a.row_bytes = static_cast<size_t>(cols * bits / 8);
    auto q = RandomBytes(a.row_bytes * rows, rng);
    std::vector<uint16_t> scale(rows * cols / group, Fp32ToFp16(0.01f));
    std::vector<uint16_t> zero(rows * cols / group, Fp32ToFp16(7.5f));
    a.q = q.data();
    a.scale = scale.data();
    a.zero = zero.data();
    char name[64];
    std::snprintf(name, sizeof(name), "affine %d-bit group %lld", bits, static_cast<long long>(group));
    Report(name, l, reps);
    if (bits == 8 && group == cols) {
      l.outlier_threshold = 6.0f;
      Report("int8 row + outliers (thr 6)", l, reps);
    }
  }
  for (bool dq : {false, true}) {
    Linear l;
    l.kind = LinearKind::kCodebook;
    CodebookMatrix& m = l.codebook;
    m.rows = rows;
    m.cols = cols;
    m.block = 64;
    auto codes = RandomBytes(rows * cols / 2, rng);
    auto acode = RandomBytes(rows * cols / 64, rng);
    std::vector<float> absmax(rows * cols / 64, 0.05f), ascale(rows * cols / 64 / 256 + 1, 0.1f);
    m.codes = codes.data();
    if (dq) {
      m.absmax_code = acode.data();
      m.absmax_scale = ascale.data();
      m.absmax_offset = 0.02f;
    } else {
      m.absmax = absmax.data();
    }
    Report(dq ? "nf4 block 64 double-quant" : "nf4 block 64", l, reps);
  }
  return 0;
}
