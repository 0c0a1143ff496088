// Reference dequantizers for the 256-element super-block types (K-quants, IQ4_XS,
// TQ1_0/TQ2_0), following ggml's dequantize_row_* element for element. Sub-block
// scales are unpacked byte by byte rather than with ggml's 32-bit mask tricks; the
// values are the same.
#include <cstring>

#include "kernels/cpu/dequant_ref.h"
#include "kernels/ggml_types.h"

namespace ingot {

extern const int8_t kIq4NlValues[16];  // dequant_ref.cc

namespace {

// Q4_K / Q5_K: 8 (scale, min) pairs of 6 bits packed in 12 bytes. Pairs 0-3 sit in the
// low 6 bits of bytes 0-3 (scale) and 4-7 (min); pairs 4-7 take their low 4 bits from
// bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-7.
void ScaleMinK4(int j, const uint8_t* q, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K: 16 6-bit scales in 12 bytes. Low 4 bits: bytes 0-7 (low nibble for scales
// 0-7, high nibble for 8-15); high 2 bits: bytes 8-11, bit pair j / 4 of byte 8 + j % 4.
int Q3KScale(int j, const uint8_t* s) {
  const int low = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace

void DequantizeRowQ2_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float dmin = Fp16ToFp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    float* y = dst + i * kQK_K;
    int is = 0;
    // Two halves of 128; each reads 32 bytes of qs four times at shifts 0, 2, 4, 6,
    // and each pass covers two sub-blocks of 16 with their own scale and min.
    for (int half = 0; half < kQK_K / 128; ++half) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int k = 0; k < 2; ++k) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * (sc & 0x0f);
          const float ml = dmin * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * k] >> shift) & 3) - ml;
        }
      }
      q += 32;
    }
  }
}

void DequantizeRowQ3_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d_all = Fp16ToFp32(x[i].d);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    float* y = dst + i * kQK_K;
    int is = 0;
    uint8_t m = 1;  // hmask bit for the current pass; a clear bit subtracts 4
    for (int half = 0; half < kQK_K / 128; ++half) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int k = 0; k < 2; ++k) {
          const float dl = d_all * Q3KScale(is++, x[i].scales);
          for (int l = 0; l < 16; ++l) {
            const int idx = l + 16 * k;
            const int v = ((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4);
            *y++ = dl * v;
          }
        }
        m <<= 1;
      }
      q += 32;
    }
  }
}

void DequantizeRowQ4_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float dmin = Fp16ToFp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    float* y = dst + i * kQK_K;
    // Each 64 values: 32 bytes, low nibbles are sub-block 2k, high nibbles 2k + 1.
    for (int is = 0; is < kQK_K / 32; is += 2) {
      uint8_t sc, m;
      ScaleMinK4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
    }
  }
}

void DequantizeRowQ5_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float dmin = Fp16ToFp32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    float* y = dst + i * kQK_K;
    uint8_t u1 = 1, u2 = 2;  // qh bits of sub-blocks 2k and 2k + 1
    for (int is = 0; is < kQK_K / 32; is += 2) {
      uint8_t sc, m;
      ScaleMinK4(is, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        *y++ = d1 * ((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
      }
      ql += 32;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

void DequantizeRowQ6_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    float* y = dst + i * kQK_K;
    // Each 128 values: 64 bytes of ql, 32 of qh, 8 scales (one per 16 values).
    for (int half = 0; half < kQK_K / 128; ++half) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void DequantizeRowQ8_KRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = x[i].d;
    for (int j = 0; j < kQK_K; ++j) dst[i * kQK_K + j] = d * x[i].qs[j];
  }
}

void DequantizeRowIQ4_XSRef(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockIQ4_XS*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const uint8_t* qs = x[i].qs;
    const uint16_t scales_h = x[i].scales_h;
    float* y = dst + i * kQK_K;
    for (int ib = 0; ib < kQK_K / 32; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                     (((scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * (ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kIq4NlValues[qs[j] & 0x0f];
        y[j + 16] = dl * kIq4NlValues[qs[j] >> 4];
      }
      y += 32;
      qs += 16;
    }
  }
}

namespace {

// Trit k of a base-3 packed byte q, as ggml stores it: q holds the fraction
// t0/3 + t1/9 + ... scaled to 256; multiplying by 3^k (mod 256) shifts trit k to the top,
// and (q * 3) >> 8 reads it.
int TernaryDigit(uint8_t q, int k) {
  static constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};
  const uint8_t shifted = static_cast<uint8_t>(q * kPow3[k]);
  return (static_cast<uint16_t>(shifted) * 3) >> 8;
}

}  // namespace

void DequantizeRowTQ1_0Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockTQ1_0*>(src);
  constexpr int kQs = sizeof(x->qs);          // 48 bytes
  constexpr int kQsMain = kQs - kQs % 32;     // first 32 bytes: 5 x 32 values
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    float* y = dst + i * kQK_K;
    for (int j = 0; j < kQsMain; j += 32) {
      for (int k = 0; k < 5; ++k) {
        for (int m = 0; m < 32; ++m) *y++ = (TernaryDigit(x[i].qs[j + m], k) - 1) * d;
      }
    }
    for (int j = kQsMain; j < kQs; j += 16) {  // last 16 bytes: 5 x 16 values
      for (int k = 0; k < 5; ++k) {
        for (int m = 0; m < 16; ++m) *y++ = (TernaryDigit(x[i].qs[j + m], k) - 1) * d;
      }
    }
    for (int k = 0; k < 4; ++k) {  // qh: 4 x 4 values
      for (int j = 0; j < static_cast<int>(sizeof(x->qh)); ++j) {
        *y++ = (TernaryDigit(x[i].qh[j], k) - 1) * d;
      }
    }
  }
}

void DequantizeRowTQ2_0Ref(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockTQ2_0*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    float* y = dst + i * kQK_K;
    for (int j = 0; j < static_cast<int>(sizeof(x->qs)); j += 32) {
      for (int l = 0; l < 4; ++l) {
        for (int m = 0; m < 32; ++m) {
          *y++ = (((x[i].qs[j + m] >> (2 * l)) & 3) - 1) * d;
        }
      }
    }
  }
}

}  // namespace ingot
