// A small fork-join pool for the compute kernels. A decode step runs ~150 parallel
// regions (5 per layer), so dispatch must cost microseconds: workers spin briefly on
// a generation counter before sleeping, as ggml's threadpool does.
//
// Work is claimed in chunks through an atomic counter, so a region never waits for a
// worker that the OS has not scheduled yet: once the caller has claimed the last chunk
// it closes the region, and a worker that wakes up late sees that and skips it. On a
// loaded 2-core machine this is the difference between ~40 and ~3 tokens/s.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ingot::kernels {

class ThreadPool {
 public:
  // `threads` total participants including the caller (>= 1).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into chunks of `grain` handed out dynamically; fn(begin, end) runs on
  // the caller and on whichever workers join in. Callers serialize on a mutex.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  void Claim();  // runs chunks of the current region until none are left

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one region at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};  // bumped per region
  std::atomic<uint64_t> closed_{0};      // regions <= closed_ take no new participants
  std::atomic<int> active_{0};           // workers inside the current region
  std::atomic<bool> stop_{false};
  // The current region.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  // The chunk counter is written by every participant: alone on its cache line so that
  // claiming a chunk does not evict the region's read-only fields from the other cores.
  alignas(64) std::atomic<int64_t> next_{0};
  char pad_[64 - sizeof(std::atomic<int64_t>)];
};

}  // namespace ingot::kernels
