// The GGML type table (one row per on-disk ggml_type value), fp16/bf16 conversion and
// the plain-type reference dequantizers. Quantized dequantizers: dequant_ref.cc and
// dequant_k_ref.cc.
#include "kernels/ggml_types.h"

#include <cmath>
#include <cstring>
#include <iterator>

#include "kernels/cpu/dequant_ref.h"

namespace ingot {
namespace {

struct TypeRow {
  GgmlType type;  // must equal the row's index; checked below
  GgmlTypeTraits traits;
};

constexpr GgmlTypeTraits kUnknown = {"unknown", 0, 0, false, nullptr};

// Rows for numbers ggml no longer uses keep block_size 0, so the GGUF reader refuses
// them as unknown. The IQ1/IQ2/IQ3 types are sized (a file holding them parses) but not
// dequantized: their codebooks are not in this build.
constexpr TypeRow kTypeRows[] = {
    {GgmlType::kF32, {"f32", 1, 4, true, DequantizeRowF32Ref}},
    {GgmlType::kF16, {"f16", 1, 2, true, DequantizeRowF16Ref}},
    {GgmlType::kQ4_0, {"q4_0", kQK4_0, sizeof(BlockQ4_0), true, DequantizeRowQ4_0Ref}},
    {GgmlType::kQ4_1, {"q4_1", kQK4_1, sizeof(BlockQ4_1), true, DequantizeRowQ4_1Ref}},
    {GgmlType{4}, kUnknown},  // was q4_2
    {GgmlType{5}, kUnknown},  // was q4_3
    {GgmlType::kQ5_0, {"q5_0", kQK5_0, sizeof(BlockQ5_0), true, DequantizeRowQ5_0Ref}},
    {GgmlType::kQ5_1, {"q5_1", kQK5_1, sizeof(BlockQ5_1), true, DequantizeRowQ5_1Ref}},
    {GgmlType::kQ8_0, {"q8_0", kQK8_0, sizeof(BlockQ8_0), true, DequantizeRowQ8_0Ref}},
    {GgmlType::kQ8_1, {"q8_1", kQK8_1, sizeof(BlockQ8_1), true, DequantizeRowQ8_1Ref}},
    {GgmlType::kQ2_K, {"q2_K", kQK_K, sizeof(BlockQ2_K), true, DequantizeRowQ2_KRef}},
    {GgmlType::kQ3_K, {"q3_K", kQK_K, sizeof(BlockQ3_K), true, DequantizeRowQ3_KRef}},
    {GgmlType::kQ4_K, {"q4_K", kQK_K, sizeof(BlockQ4_K), true, DequantizeRowQ4_KRef}},
    {GgmlType::kQ5_K, {"q5_K", kQK_K, sizeof(BlockQ5_K), true, DequantizeRowQ5_KRef}},
    {GgmlType::kQ6_K, {"q6_K", kQK_K, sizeof(BlockQ6_K), true, DequantizeRowQ6_KRef}},
    {GgmlType::kQ8_K, {"q8_K", kQK_K, sizeof(BlockQ8_K), true, DequantizeRowQ8_KRef}},
    {GgmlType::kIQ2_XXS, {"iq2_xxs", kQK_K, 2 + kQK_K / 4, false, nullptr}},
    {GgmlType::kIQ2_XS, {"iq2_xs", kQK_K, 2 + kQK_K / 4 + kQK_K / 32, false, nullptr}},
    {GgmlType::kIQ3_XXS, {"iq3_xxs", kQK_K, 2 + 3 * kQK_K / 8, false, nullptr}},
    {GgmlType::kIQ1_S, {"iq1_s", kQK_K, 2 + kQK_K / 8 + kQK_K / 16, false, nullptr}},
    {GgmlType::kIQ4_NL,
     {"iq4_nl", kQK4_NL, sizeof(BlockIQ4_NL), true, DequantizeRowIQ4_NLRef}},
    {GgmlType::kIQ3_S,
     {"iq3_s", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + kQK_K / 32 + kQK_K / 64, false,
      nullptr}},
    {GgmlType::kIQ2_S, {"iq2_s", kQK_K, 2 + kQK_K / 4 + kQK_K / 16, false, nullptr}},
    {GgmlType::kIQ4_XS,
     {"iq4_xs", kQK_K, sizeof(BlockIQ4_XS), true, DequantizeRowIQ4_XSRef}},
    {GgmlType::kI8, {"i8", 1, 1, true, DequantizeRowI8Ref}},
    {GgmlType::kI16, {"i16", 1, 2, true, DequantizeRowI16Ref}},
    {GgmlType::kI32, {"i32", 1, 4, true, DequantizeRowI32Ref}},
    {GgmlType::kI64, {"i64", 1, 8, true, DequantizeRowI64Ref}},
    {GgmlType::kF64, {"f64", 1, 8, true, DequantizeRowF64Ref}},
    {GgmlType::kIQ1_M, {"iq1_m", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32, false,
                        nullptr}},
    {GgmlType::kBF16, {"bf16", 1, 2, true, DequantizeRowBF16Ref}},
    {GgmlType{31}, kUnknown},  // was q4_0_4_4
    {GgmlType{32}, kUnknown},  // was q4_0_4_8
    {GgmlType{33}, kUnknown},  // was q4_0_8_8
    {GgmlType::kTQ1_0, {"tq1_0", kQK_K, sizeof(BlockTQ1_0), true, DequantizeRowTQ1_0Ref}},
    {GgmlType::kTQ2_0, {"tq2_0", kQK_K, sizeof(BlockTQ2_0), true, DequantizeRowTQ2_0Ref}},
    {GgmlType{36}, kUnknown},  // was iq4_nl_4_4
    {GgmlType{37}, kUnknown},  // was iq4_nl_4_8
    {GgmlType{38}, kUnknown},  // was iq4_nl_8_8
    {GgmlType::kMXFP4, {"mxfp4", kQK_MXFP4, sizeof(BlockMXFP4), true, DequantizeRowMXFP4Ref}},
};
static_assert(std::size(kTypeRows) == static_cast<size_t>(GgmlType::kCount),
              "one row per GgmlType value, gaps included");

constexpr bool RowsInEnumOrder() {
  for (size_t i = 0; i < std::size(kTypeRows); ++i) {
    if (static_cast<size_t>(kTypeRows[i].type) != i) return false;
  }
  return true;
}
static_assert(RowsInEnumOrder(), "kTypeRows[i] must describe ggml_type i");

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Plain types are read with memcpy: the mapping gives no alignment guarantee.
template <typename T>
void CastRow(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

}  // namespace

const GgmlTypeTraits& GetGgmlTypeTraits(uint32_t raw_type) {
  if (raw_type >= std::size(kTypeRows)) return kUnknown;
  return kTypeRows[raw_type].traits;
}

const GgmlTypeTraits& GetGgmlTypeTraits(GgmlType type) {
  return GetGgmlTypeTraits(static_cast<uint32_t>(type));
}

size_t GgmlRowSize(GgmlType type, int64_t n) {
  const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
  if (t.block_size == 0) return 0;
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

float Fp16ToFp32(ggml_half h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return BitsFloat(sign | 0x7f800000u | (mant << 13));  // inf / nan
  return BitsFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

// Round to nearest, ties to even (what ggml's reference and F16C do).
ggml_half Fp32ToFp16(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00 | ((abs >> 13) & 0x3ff);  // nan stays nan
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to inf
  if (abs < 0x38800000u) {  // below 2^-14: half subnormal, units of 2^-24
    const float scaled = BitsFloat(abs) * 16777216.0f;  // exact (power-of-two scale)
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  const uint32_t odd = (abs >> 13) & 1;
  abs += 0xc8000000u + 0xfffu + odd;  // rebias exponent 127 -> 15 and round
  return sign | static_cast<uint16_t>(abs >> 13);
}

float Bf16ToFp32(ggml_bf16 h) { return BitsFloat(static_cast<uint32_t>(h) << 16); }

void DequantizeRowF32Ref(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}
void DequantizeRowF16Ref(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    ggml_half h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = Fp16ToFp32(h);
  }
}
void DequantizeRowBF16Ref(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    ggml_bf16 h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = Bf16ToFp32(h);
  }
}
void DequantizeRowF64Ref(const void* src, float* dst, int64_t n) {
  CastRow<double>(src, dst, n);
}
void DequantizeRowI8Ref(const void* src, float* dst, int64_t n) {
  CastRow<int8_t>(src, dst, n);
}
void DequantizeRowI16Ref(const void* src, float* dst, int64_t n) {
  CastRow<int16_t>(src, dst, n);
}
void DequantizeRowI32Ref(const void* src, float* dst, int64_t n) {
  CastRow<int32_t>(src, dst, n);
}
void DequantizeRowI64Ref(const void* src, float* dst, int64_t n) {
  CastRow<int64_t>(src, dst, n);
}

}  // namespace ingot
