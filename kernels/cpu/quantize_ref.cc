// Reference quantizers for the plain types and the blocks of 32 (quantize_ref.h).
// llama.cpp's quantize_row_q{4_0,4_1,5_0,5_1,8_0}_ref, rewritten; the float expressions
// keep ggml's operand order and conversions so the bytes match.
#include "kernels/cpu/quantize_ref.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

// Reassociation or contraction changes the searches' float results, hence the bytes.
#if defined(__FAST_MATH__)
#error "GGUF reference quantizers must be compiled without -ffast-math"
#endif

namespace ingot {
namespace {

// C's float -> small integer cast as x86-64 compiles it (cvttss2si to 32 bits, then
// keep the low byte): truncation toward zero, and INT32_MIN for NaN or out-of-range
// values. ggml relies on this cast in its rounding; spelling it out keeps our bytes
// equal to its bytes even for the degenerate blocks (inf or NaN scales) and avoids
// undefined behaviour in C++.
inline int32_t TruncToInt32(float f) {
  if (!(f > -2147483904.0f && f < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}
inline int8_t TruncToInt8(float f) { return static_cast<int8_t>(TruncToInt32(f)); }
inline uint8_t TruncToUint8(float f) { return static_cast<uint8_t>(TruncToInt32(f)); }

inline void StoreHalf(ggml_half* dst, float f) { *dst = Fp32ToFp16Ggml(f); }

// Absolute maximum and the signed value that attains it (first one on ties).
inline void SignedAbsMax(const float* x, int n, float* amax, float* max) {
  *amax = 0.0f;
  *max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (*amax < std::fabs(x[j])) {
      *amax = std::fabs(x[j]);
      *max = x[j];
    }
  }
}

inline void MinMax(const float* x, int n, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

}  // namespace

ggml_half Fp32ToFp16Ggml(float f) {
  const ggml_half h = Fp32ToFp16(f);
  return std::isnan(f) ? static_cast<ggml_half>((h & 0x8000) | 0x7e00) : h;
}

ggml_bf16 Fp32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<ggml_bf16>((u >> 16) | 64);
  return static_cast<ggml_bf16>((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

void QuantizeRowF32Ref(const float* x, void* dst, int64_t n) {
  std::memcpy(dst, x, static_cast<size_t>(n) * 4);
}

void QuantizeRowF16Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const ggml_half h = Fp32ToFp16Ggml(x[i]);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

void QuantizeRowBF16Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const ggml_bf16 h = Fp32ToBf16(x[i]);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

// Symmetric 4-bit: d = -max/8 so the largest magnitude lands on code 0 exactly and the
// other side reaches +7; codes are trunc(x/d + 8.5) capped at 15.
void QuantizeRowQ4_0Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ4_0*>(dst);
  for (int64_t b = 0; b < n / kQK4_0; ++b, x += kQK4_0) {
    float amax, max;
    SignedAbsMax(x, kQK4_0, &amax, &max);
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    StoreHalf(&y[b].d, d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK4_0 / 2 + j] * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, TruncToInt8(x0 + 8.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(15, TruncToInt8(x1 + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Affine 4-bit over [min, max]: d = (max - min)/15, m = min.
void QuantizeRowQ4_1Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ4_1*>(dst);
  for (int64_t b = 0; b < n / kQK4_1; ++b, x += kQK4_1) {
    float min, max;
    MinMax(x, kQK4_1, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    StoreHalf(&y[b].d, d);
    StoreHalf(&y[b].m, min);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK4_1 / 2 + j] - min) * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, TruncToInt8(x0 + 0.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(15, TruncToInt8(x1 + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Symmetric 5-bit as Q4_0 with d = -max/16; the fifth bits go to qh (bit j: element j).
void QuantizeRowQ5_0Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ5_0*>(dst);
  for (int64_t b = 0; b < n / kQK5_0; ++b, x += kQK5_0) {
    float amax, max;
    SignedAbsMax(x, kQK5_0, &amax, &max);
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    StoreHalf(&y[b].d, d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK5_0 / 2 + j] * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(31, TruncToInt8(x0 + 16.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(31, TruncToInt8(x1 + 16.5f)));
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_0 / 2);
    }
    std::memcpy(y[b].qh, &qh, 4);
  }
}

// Affine 5-bit: d = (max - min)/31, codes trunc((x - min)/d + 0.5) (no cap: <= 31).
void QuantizeRowQ5_1Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ5_1*>(dst);
  for (int64_t b = 0; b < n / kQK5_1; ++b, x += kQK5_1) {
    float min, max;
    MinMax(x, kQK5_1, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    StoreHalf(&y[b].d, d);
    StoreHalf(&y[b].m, min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK5_1 / 2 + j] - min) * id;
      const uint8_t q0 = TruncToUint8(x0 + 0.5f);
      const uint8_t q1 = TruncToUint8(x1 + 0.5f);
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_1 / 2);
    }
    std::memcpy(y[b].qh, &qh, 4);
  }
}

// Symmetric 8-bit: d = amax/127, codes roundf(x/d) (half away from zero).
void QuantizeRowQ8_0Ref(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax > a ? amax : a;  // ggml's MAX: a NaN wins
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    StoreHalf(&y[b].d, d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = TruncToInt8(std::round(x[j] * id));
  }
}

QuantizeRowFn GetQuantizeRowFn(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return QuantizeRowF32Ref;
    case GgmlType::kF16: return QuantizeRowF16Ref;
    case GgmlType::kBF16: return QuantizeRowBF16Ref;
    case GgmlType::kQ4_0: return QuantizeRowQ4_0Ref;
    case GgmlType::kQ4_1: return QuantizeRowQ4_1Ref;
    case GgmlType::kQ5_0: return QuantizeRowQ5_0Ref;
    case GgmlType::kQ5_1: return QuantizeRowQ5_1Ref;
    case GgmlType::kQ8_0: return QuantizeRowQ8_0Ref;
    case GgmlType::kQ2_K: return QuantizeRowQ2_KRef;
    case GgmlType::kQ3_K: return QuantizeRowQ3_KRef;
    case GgmlType::kQ4_K: return QuantizeRowQ4_KRef;
    case GgmlType::kQ5_K: return QuantizeRowQ5_KRef;
    case GgmlType::kQ6_K: return QuantizeRowQ6_KRef;
    default: return nullptr;
  }
}

}  // namespace ingot
