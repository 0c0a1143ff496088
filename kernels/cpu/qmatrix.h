// The fused dequantize-dot CPU kernels over the canonical Linear views: one kernel
// family per representation, not per format. The layouts themselves are device-neutral
// (kernels/linear.h); GGML blocks have their own dot kernels in quant_dot.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/quant_dot.h"
#include "kernels/linear.h"

namespace ingot::kernels {

// How activations are prepared for a Linear. Layers with equal specs share one prepared
// copy of their common input (q/k/v, gate/up).
struct ActivationSpec {
  ActType type = ActType::kF32;
  float outlier_threshold = 0.0f;
  const int32_t* input_order = nullptr;  // gather x[input_order[j]] first (Linear::input_order)
  bool operator==(const ActivationSpec& o) const {
    return type == o.type && outlier_threshold == o.outlier_threshold && input_order == o.input_order;
  }
};
ActivationSpec LinearActivation(const Linear& w);
// Bytes of one prepared activation row of `cols` features.
size_t LinearActivationBytes(const ActivationSpec& spec, int64_t cols);
void LinearPrepare(const ActivationSpec& spec, const float* x, int64_t cols, void* out);

// y[r - r0] = <row r of w, x> for r in [r0, r1); x_act prepared with LinearActivation(w).
void LinearDotRows(const Linear& w, const void* x_act, float* y, int64_t r0, int64_t r1);
// n_tok activation rows at x_act + t * x_stride -> y[t * y_stride + r], r in [r0, r1).
// `level` (at most what the CPU has) picks the path; without it, BestCpuLevel().
void LinearDotRowsTokens(const Linear& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                         float* y, int64_t y_stride, int64_t r0, int64_t r1, CpuLevel level);
void LinearDotRowsTokens(const Linear& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                         float* y, int64_t y_stride, int64_t r0, int64_t r1);
// Plain-loop reference of LinearDotRows (same activation preparation, scalar math).
void LinearDotRowsRef(const Linear& w, const void* x_act, float* y, int64_t r0, int64_t r1);

// Row r dequantized exactly as the representation defines (cols floats).
void LinearDequantizeRow(const Linear& w, int64_t r, float* out);
// The stored code of column c of row r (stored column order; LSB-first bitstream).
uint32_t AffineCodeAt(const AffineMatrix& a, int64_t r, int64_t c);
// The absmax of flattened block b, plain or double-quantized (f32, as the kernels use it).
float CodebookBlockAbsmax(const CodebookMatrix& m, int64_t b);

// The best CPU level's name (CpuLevelName(BestCpuLevel())).
const char* LinearImplementation();

}  // namespace ingot::kernels
