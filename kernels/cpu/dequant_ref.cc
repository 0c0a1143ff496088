// Reference dequantizers for the 32-element block types (Q4_0 .. Q8_1, IQ4_NL, MXFP4),
// following ggml's dequantize_row_* element for element. Each block is read through
// its packed struct; nibble j holds element j (low) and element j + 16 (high).
#include <cstring>

#include "kernels/cpu/dequant_ref.h"
#include "kernels/ggml_types.h"

namespace ingot {

// IQ4_NL codebook: a non-uniform 4-bit grid, denser near zero (ggml's kvalues_iq4nl).
// Shared with IQ4_XS in dequant_k_ref.cc.
extern const int8_t kIq4NlValues[16];
const int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

namespace {

// E2M1 magnitudes doubled so they are integers; the half goes into the scale.
constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12,
                                     0, -1, -2, -3, -4, -6, -8, -12};

// 2^(e - 127) / 2 as ggml's GGML_E8M0_TO_FP32_HALF computes it (e < 2 is subnormal).
float E8m0ToFp32Half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void DequantizeRowQ4_0Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0f) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      dst[i * kQK4_0 + j] = x0 * d;
      dst[i * kQK4_0 + j + kQK4_0 / 2] = x1 * d;
    }
  }
}

void DequantizeRowQ4_1Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float m = Fp16ToFp32(x[i].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const int x0 = x[i].qs[j] & 0x0f;
      const int x1 = x[i].qs[j] >> 4;
      dst[i * kQK4_1 + j] = x0 * d + m;
      dst[i * kQK4_1 + j + kQK4_1 / 2] = x1 * d + m;
    }
  }
}

void DequantizeRowQ5_0Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    uint32_t qh;  // bit j: 5th bit of element j (little-endian on disk)
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      const int x0 = ((x[i].qs[j] & 0x0f) | xh0) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | xh1) - 16;
      dst[i * kQK5_0 + j] = x0 * d;
      dst[i * kQK5_0 + j + kQK5_0 / 2] = x1 * d;
    }
  }
}

void DequantizeRowQ5_1Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float m = Fp16ToFp32(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      const int x0 = (x[i].qs[j] & 0x0f) | xh0;
      const int x1 = (x[i].qs[j] >> 4) | xh1;
      dst[i * kQK5_1 + j] = x0 * d + m;
      dst[i * kQK5_1 + j + kQK5_1 / 2] = x1 * d + m;
    }
  }
}

void DequantizeRowQ8_0Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) dst[i * kQK8_0 + j] = x[i].qs[j] * d;
  }
}

// ggml has no to_float for Q8_1 (it only feeds dot products); the sum `s` is
// redundant, so the values are q * d as for Q8_0.
void DequantizeRowQ8_1Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK8_1; ++j) dst[i * kQK8_1 + j] = x[i].qs[j] * d;
  }
}

void DequantizeRowIQ4_NLRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockIQ4_NL*>(src);
  for (int64_t i = 0; i < n / kQK4_NL; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      dst[i * kQK4_NL + j] = d * kIq4NlValues[x[i].qs[j] & 0x0f];
      dst[i * kQK4_NL + j + kQK4_NL / 2] = d * kIq4NlValues[x[i].qs[j] >> 4];
    }
  }
}

void DequantizeRowMXFP4Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockMXFP4*>(src);
  for (int64_t i = 0; i < n / kQK_MXFP4; ++i) {
    const float d = E8m0ToFp32Half(x[i].e);
    for (int j = 0; j < kQK_MXFP4 / 2; ++j) {
      dst[i * kQK_MXFP4 + j] = kMxfp4Values[x[i].qs[j] & 0x0f] * d;
      dst[i * kQK_MXFP4 + j + kQK_MXFP4 / 2] = kMxfp4Values[x[i].qs[j] >> 4] * d;
    }
  }
}

}  // namespace ingot
