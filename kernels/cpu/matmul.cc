#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot::kernels {

void MatMul(ThreadPool& pool, const MatMulJob* jobs, size_t nj, int64_t n, std::vector<uint8_t>& act_buf) {
  constexpr int64_t kGrain = 16;  // rows per chunk
  std::vector<const uint8_t*> act(nj);
  std::vector<size_t> act_row_bytes(nj);
  // Size the buffer first so pointers stay valid.
  size_t total = 0;
  std::vector<size_t> offset(nj);
  std::vector<ActivationSpec> spec(nj);
  for (size_t j = 0; j < nj; ++j) spec[j] = LinearActivation(*jobs[j].w);
  for (size_t j = 0; j < nj; ++j) {
    size_t shared = SIZE_MAX;
    for (size_t i = 0; i < j; ++i) {
      if (jobs[i].x == jobs[j].x && jobs[i].w->cols() == jobs[j].w->cols() && spec[i] == spec[j]) {
        shared = i;
        break;
      }
    }
    act_row_bytes[j] = LinearActivationBytes(spec[j], jobs[j].w->cols());
    if (shared != SIZE_MAX) {
      offset[j] = offset[shared];
    } else {
      offset[j] = total;
      total += act_row_bytes[j] * static_cast<size_t>(n);
    }
  }
  if (act_buf.size() < total) act_buf.resize(total);
  std::vector<bool> prepared(nj, false);
  for (size_t j = 0; j < nj; ++j) {
    act[j] = act_buf.data() + offset[j];
    bool done = false;
    for (size_t i = 0; i < j; ++i) done |= prepared[i] && offset[i] == offset[j];
    if (!done) {
      const int64_t cols = jobs[j].w->cols();
      for (int64_t t = 0; t < n; ++t) {
        LinearPrepare(spec[j], jobs[j].x + t * cols, cols, act_buf.data() + offset[j] + t * act_row_bytes[j]);
      }
    }
    prepared[j] = true;
  }
  std::vector<int64_t> chunk_start(nj + 1, 0);
  for (size_t j = 0; j < nj; ++j) {
    chunk_start[j + 1] = chunk_start[j] + (jobs[j].w->rows() + kGrain - 1) / kGrain;
  }
  // Each claim costs a cache-line transfer between cores (~100-200 ns): hand out about
  // eight claims per thread, never less than one chunk.
  const int64_t claim = std::max<int64_t>(1, chunk_start[nj] / (8 * pool.size()));
  pool.ParallelFor(chunk_start[nj], claim, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1;) {
      size_t j = 0;
      while (chunk_start[j + 1] <= c) ++j;
      // The claim's chunks of one job are consecutive rows: one call for all of them (a
      // call has a fixed cost, e.g. the AMX kernels' check of the tile configuration).
      const int64_t c_end = std::min(c1, chunk_start[j + 1]);
      const MatMulJob& job = jobs[j];
      const int64_t r0 = (c - chunk_start[j]) * kGrain;
      const int64_t rows = job.w->rows();
      const int64_t r1 = std::min(rows, (c_end - chunk_start[j]) * kGrain);
      LinearDotRowsTokens(*job.w, act[j], act_row_bytes[j], n, job.y, rows, r0, r1);
      if (job.bias != nullptr) {
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = r0; r < r1; ++r) job.y[t * rows + r] += job.bias[r];
        }
      }
      c = c_end;
    }
  });
}

}  // namespace ingot::kernels
