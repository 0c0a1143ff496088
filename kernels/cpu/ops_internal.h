// The instruction-set kernels behind ops.h (ops.cc dispatches; *_avx2.cc files are built
// with -mavx2 -mfma -mf16c and called only when CpuHasAvx2()).
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace ingot::kernels::internal {

// kernels/cpu/kv_avx2.cc: KV rows to f32 (n a multiple of 8 / of 32).
void F16ToF32Avx2(const uint16_t* x, float* out, int64_t n);
void Q8_0ToF32Avx2(const BlockQ8_0* x, float* out, int64_t n);
// f32 to f16 rounded to nearest even, as QuantizeRowF16Ref; false (out undefined) when x
// holds a NaN, whose f16 the reference spells its own way.
bool F32ToF16Avx2(const float* x, uint16_t* out, int64_t n);

// kernels/cpu/ops_avx2.cc
void SwiGluAvx2(float* gate, const float* up, int64_t n);

// Positions per attention block step: one zmm of scores, two ymm.
constexpr int kAttendPositions = 16;

// One step of the online softmax: up to kAttendPositions key/value rows against nq
// query vectors, each with its running max m, sum l and unnormalized output acc (hd).
// Query i sees the first valid[i] rows (0 leaves its state untouched). k and v hold
// kAttendPositions row pointers; those past the rows in use point at any finite row.
// For one query the arithmetic does not depend on nq or on the other queries.
struct AttendBlockArgs {
  const float* const* q = nullptr;  // (nq) query vectors of hd floats
  const int32_t* valid = nullptr;   // (nq)
  int32_t nq = 0;
  const float* const* k = nullptr;
  const float* const* v = nullptr;
  int32_t hd = 0;
  float scale = 1;
  float* m = nullptr;    // (nq)
  float* l = nullptr;    // (nq)
  float* acc = nullptr;  // (nq, hd)
};
void AttendBlockAvx2(const AttendBlockArgs& a);  // hd a multiple of 8

}  // namespace ingot::kernels::internal
