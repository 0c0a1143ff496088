// Linear layers over a batch of tokens on the CPU: the matmul dispatch of the native
// backend. Several layers that read the same input run in one parallel region.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kernels/linear.h"

namespace ingot::kernels {

class ThreadPool;

// y (n, w.rows()) = x (n, w.cols()) . w^T (+ bias).
struct MatMulJob {
  const Linear* w;
  const float* x;
  float* y;
  const float* bias = nullptr;  // (w.rows()) or null
};

// Runs the jobs over n tokens in one parallel region: activations are prepared once per
// (input, activation type), then weight rows are handed out in chunks of 16, all jobs in
// one index space. Chunk-outer, token-inner keeps a chunk of weight rows in L1 across
// the batch. `act_buf` is reused scratch for the prepared activations.
void MatMul(ThreadPool& pool, const MatMulJob* jobs, size_t n_jobs, int64_t n, std::vector<uint8_t>& act_buf);
inline void MatMul(ThreadPool& pool, std::initializer_list<MatMulJob> jobs, int64_t n,
                   std::vector<uint8_t>& act_buf) {
  MatMul(pool, jobs.begin(), jobs.size(), n, act_buf);
}

}  // namespace ingot::kernels
