// GGML tensor types as GGUF stores them: the enum (numbering fixed by the format), the
// packed block structs, and a traits table (name, block size, bytes per block,
// reference dequantizer). Layouts follow ggml's definitions byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ingot {

// Numbering is the on-disk value of ggml_type; gaps are types that no longer exist.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kCount = 40,  // upper bound used to size lookup tables
};

using ggml_half = uint16_t;  // IEEE binary16 bits
using ggml_bf16 = uint16_t;  // bfloat16 bits

constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK8_1 = 32;
constexpr int kQK_K = 256;      // K-quant super-block
constexpr int kKScaleSize = 12; // packed 6-bit scales/mins of Q4_K / Q5_K

#pragma pack(push, 1)
struct BlockQ4_0 {
  ggml_half d;             // scale
  uint8_t qs[kQK4_0 / 2];  // nibbles: low = element j, high = element j + 16
};
static_assert(sizeof(BlockQ4_0) == 2 + kQK4_0 / 2);

struct BlockQ4_1 {
  ggml_half d;             // scale
  ggml_half m;             // min: x = q * d + m
  uint8_t qs[kQK4_1 / 2];  // nibbles as Q4_0
};
static_assert(sizeof(BlockQ4_1) == 4 + kQK4_1 / 2);

struct BlockQ5_0 {
  ggml_half d;             // scale
  uint8_t qh[4];           // 5th bit of each element, bit j for element j
  uint8_t qs[kQK5_0 / 2];  // low 4 bits as Q4_0
};
static_assert(sizeof(BlockQ5_0) == 2 + 4 + kQK5_0 / 2);

struct BlockQ5_1 {
  ggml_half d;             // scale
  ggml_half m;             // min
  uint8_t qh[4];           // 5th bits
  uint8_t qs[kQK5_1 / 2];  // low 4 bits
};
static_assert(sizeof(BlockQ5_1) == 4 + 4 + kQK5_1 / 2);

struct BlockQ8_0 {
  ggml_half d;         // scale
  int8_t qs[kQK8_0];   // x = q * d
};
static_assert(sizeof(BlockQ8_0) == 2 + kQK8_0);

// Activation blocks for integer dot products with Q4_1 / Q5_1 weights.
struct BlockQ8_1 {
  ggml_half d;         // scale
  ggml_half s;         // d * sum(qs), lets the min term be applied once per block
  int8_t qs[kQK8_1];
};
static_assert(sizeof(BlockQ8_1) == 4 + kQK8_1);

struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // 4-bit scale (low) and 4-bit min (high) per 16 values
  uint8_t qs[kQK_K / 4];       // 2-bit quants
  ggml_half d;                 // super-block scale for scales
  ggml_half dmin;              // super-block scale for mins
};
static_assert(sizeof(BlockQ2_K) == 2 * 2 + kQK_K / 16 + kQK_K / 4);

struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of each quant
  uint8_t qs[kQK_K / 4];     // low 2 bits
  uint8_t scales[12];        // 16 6-bit scales
  ggml_half d;               // super-block scale
};
static_assert(sizeof(BlockQ3_K) == 2 + kQK_K / 4 + kQK_K / 8 + 12);

struct BlockQ4_K {
  ggml_half d;                   // super-block scale for scales
  ggml_half dmin;                // super-block scale for mins
  uint8_t scales[kKScaleSize];   // 8 6-bit scales and 8 6-bit mins
  uint8_t qs[kQK_K / 2];         // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 2 * 2 + kKScaleSize + kQK_K / 2);

struct BlockQ5_K {
  ggml_half d;
  ggml_half dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];  // high bits
  uint8_t qs[kQK_K / 2];  // low 4 bits
};
static_assert(sizeof(BlockQ5_K) == 2 * 2 + kKScaleSize + kQK_K / 2 + kQK_K / 8);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales
  ggml_half d;                // super-block scale
};
static_assert(sizeof(BlockQ6_K) == 2 + kQK_K / 16 + 3 * kQK_K / 4);

struct BlockQ8_K {
  float d;                     // scale (f32, unlike the others)
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];   // sums of groups of 16
};
static_assert(sizeof(BlockQ8_K) == 4 + kQK_K + kQK_K / 16 * 2);

constexpr int kQK4_NL = 32;

// Non-linear 4-bit: x = d * kIq4NlValues[q] (values in dequant_ref.cc).
struct BlockIQ4_NL {
  ggml_half d;              // scale
  uint8_t qs[kQK4_NL / 2];  // nibbles: low = element j, high = element j + 16
};
static_assert(sizeof(BlockIQ4_NL) == 2 + kQK4_NL / 2);

// IQ4_NL codes in super-blocks of 256 with a 6-bit scale per 32 values.
struct BlockIQ4_XS {
  ggml_half d;                   // super-block scale
  uint16_t scales_h;             // high 2 bits of the 8 sub-block scales
  uint8_t scales_l[kQK_K / 64];  // low 4 bits, two sub-blocks per byte
  uint8_t qs[kQK_K / 2];         // nibbles as IQ4_NL, 16 bytes per sub-block
};
static_assert(sizeof(BlockIQ4_XS) == 2 + 2 + kQK_K / 64 + kQK_K / 2);

// Ternary {-1, 0, 1} super-blocks: five trits per byte in base 3 (qs, qh), x = (t-1)*d.
struct BlockTQ1_0 {
  uint8_t qs[(kQK_K - 4 * kQK_K / 64) / 5];  // 240 trits, 5 per byte
  uint8_t qh[kQK_K / 64];                     // 16 trits, 4 per byte
  ggml_half d;
};
static_assert(sizeof(BlockTQ1_0) == 2 + kQK_K / 64 + (kQK_K - 4 * kQK_K / 64) / 5);

struct BlockTQ2_0 {
  uint8_t qs[kQK_K / 4];  // 2-bit codes q, x = (q - 1) * d
  ggml_half d;
};
static_assert(sizeof(BlockTQ2_0) == 2 + kQK_K / 4);

constexpr int kQK_MXFP4 = 32;

// OCP microscaling FP4: E2M1 codes with one shared power-of-two (E8M0) exponent.
struct BlockMXFP4 {
  uint8_t e;                  // E8M0 exponent: scale 2^(e - 127)
  uint8_t qs[kQK_MXFP4 / 2];  // nibbles as Q4_0
};
static_assert(sizeof(BlockMXFP4) == 1 + kQK_MXFP4 / 2);
#pragma pack(pop)

using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);

// One row per GgmlType. `block_size` elements are stored in `type_size` bytes.
struct GgmlTypeTraits {
  const char* name;           // as ggml spells it: "q4_0", "f16", ...
  int64_t block_size;         // elements per block (1 for plain types)
  size_t type_size;           // bytes per block
  bool supported;             // this build can dequantize it
  DequantizeRowFn dequantize; // reference: n must be a multiple of block_size
};

// Traits of `type`; a row with supported == false for unknown or unsupported types.
const GgmlTypeTraits& GetGgmlTypeTraits(GgmlType type);
const GgmlTypeTraits& GetGgmlTypeTraits(uint32_t raw_type);
// Bytes taken by `n` elements (n a multiple of the block size).
size_t GgmlRowSize(GgmlType type, int64_t n);

float Fp16ToFp32(ggml_half h);
ggml_half Fp32ToFp16(float f);
float Bf16ToFp32(ggml_bf16 h);

}  // namespace ingot
