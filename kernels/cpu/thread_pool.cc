#include "kernels/cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#define INGOT_PAUSE() _mm_pause()
#else
#define INGOT_PAUSE() ((void)0)
#endif

namespace ingot::kernels {
namespace {
// Spinning bridges the gap between two regions of one decode step (tens of us);
// after that a worker sleeps so an idle server burns no CPU.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Claim() {
  const auto& fn = *fn_;
  const int64_t n = n_, grain = grain_;
  while (true) {
    const int64_t begin = next_.fetch_add(grain, std::memory_order_relaxed);
    if (begin >= n) return;
    fn(begin, std::min(n, begin + grain));
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load();
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      INGOT_PAUSE();
      gen = generation_.load();
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      gen = generation_.load();
    }
    seen = gen;
    if (stop_.load()) return;
    // Join the region only if it is still open (seq_cst: either the caller sees our
    // increment before it stops waiting, or we see it closed).
    active_.fetch_add(1);
    if (closed_.load() < gen) Claim();
    active_.fetch_sub(1);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  next_.store(0);
  uint64_t gen;
  {
    // Taking mu_ orders the bump against a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mu_);
    gen = generation_.fetch_add(1) + 1;
  }
  cv_.notify_all();
  Claim();
  closed_.store(gen);
  for (int spin = 0; active_.load() != 0; ++spin) {
    if (spin < 1000) {
      INGOT_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  fn_ = nullptr;
}

}  // namespace ingot::kernels
