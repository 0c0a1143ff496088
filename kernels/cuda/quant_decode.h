// Decoding ingot's quantized representations 32 weights at a time, written once for
// both sides: nvcc compiles these as __host__ __device__ functions for the fused
// dequantize-GEMV kernels (quant_gemv.cu), and the plain C++ build compiles the same
// text for the CPU test (tests/kernels/cuda_decode_test.cc), which holds every decoder
// to the CPU reference (LinearDequantizeRow) chunk by chunk. The index math of the GPU
// kernels is therefore tested on machines without a GPU; only the launch, the warp
// reduction and the memory traffic need one.
//
// A chunk is 32 consecutive input columns of one output row: one GGML block (Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0), one 32-value sub-block of a 256-value K-quant super-block
// (Q4_K, Q5_K, Q6_K), 32 codes of an affine k-bit row, or 32 codebook elements. Every
// format here needs cols % 32 == 0.
// Plain C++ with no CUDA headers outside __CUDACC__.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define INGOT_HD __host__ __device__ __forceinline__
#else
#define INGOT_HD inline
#endif

namespace ingot::kernels::cuda {

constexpr int kChunk = 32;

enum class QuantFormat : uint8_t {
  kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0, kQ4_K, kQ5_K, kQ6_K,
  kAffine,    // kernels/linear.h AffineMatrix (1-8 bits, f16 scale and zero/bias per group)
  kCodebook,  // kernels/linear.h CodebookMatrix (NF4/FP4, plain or double-quantized absmax)
};
constexpr int kQuantFormatCount = 10;
const char* QuantFormatName(QuantFormat f);

// A weight as the kernels read it; every pointer is in the memory of the side that
// decodes (device memory in a kernel, host memory in the CPU test).
struct QuantView {
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;         // GGML and affine rows
  const uint8_t* data = nullptr;  // GGML blocks | affine codes | codebook codes
  // kAffine
  const uint16_t* scale = nullptr;  // f16, rows * (cols / group)
  const uint16_t* zero = nullptr;   // f16, or null (zero 0)
  int32_t bits = 4;
  int64_t group = 0;
  bool zero_is_bias = false;  // w = q * s + z (MLX) instead of (q - z) * s
  // kCodebook
  const float* book = nullptr;  // 16 values
  const float* absmax = nullptr;
  const uint8_t* absmax_code = nullptr;
  const float* absmax_scale = nullptr;
  const float* dmap = nullptr;  // 256 values
  int64_t block = 64, absmax_block = 256;
  float absmax_offset = 0.0f;
};

INGOT_HD float HalfBits(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400) == 0);
    bits = sign | ((112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
#endif
}

INGOT_HD uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// i as a float for |i| < 2^22 without an int-to-float conversion instruction: those run
// on the GPU's quarter-rate unit (16 per clock per SM on sm_80/sm_90), and a 4-bit weight
// would spend one each, which alone caps a GEMV near 60% of an H100's bandwidth. Here an
// integer add and a float subtract: 1.5 * 2^23 + i has i in its mantissa bits. Exact, so
// the same value as static_cast<float>(i).
INGOT_HD float SmallIntToFloat(int32_t i) {
  const uint32_t bits = 0x4B400000u + static_cast<uint32_t>(i);
#if defined(__CUDA_ARCH__)
  const float f = __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, 4);
#endif
  return f - 12582912.0f;
}

// out[0..N) = p[0..N), p A-byte aligned (A = 1, 2, 4, 8 or 16, N % A == 0). On the device
// as N / A loads of A bytes; the host copies bytes. The same bytes either way: the
// decoders below read them from `out`, so the CPU test holds the device's arithmetic to
// the reference and only the load instruction differs. A is the format's guarantee, not
// a run-time check (a per-lane check split warps whose lanes' blocks differ in
// alignment): every array is its own device allocation (256-byte aligned), so a code's
// alignment is that of its offset in the array (UploadQuantOnCuda checks the bases).
template <int N, int A>
INGOT_HD void LoadBytes(const uint8_t* p, uint8_t* out) {
  static_assert(N % A == 0 && (A == 1 || A == 2 || A == 4 || A == 8 || A == 16), "load width");
#if defined(__CUDA_ARCH__)
  if constexpr (A > 1) {
    // One load of A bytes per step, its bytes then taken out of the register (little
    // endian: byte i is bits 8 i ..).
    using Word = std::conditional_t<A == 16, uint4,
                                    std::conditional_t<A == 8, uint2, std::conditional_t<A == 4, uint32_t, uint16_t>>>;
#pragma unroll
    for (int k = 0; k < N / A; ++k) {
      const Word word = reinterpret_cast<const Word*>(p)[k];
      __builtin_memcpy(out + A * k, &word, A);
    }
    return;
  }
#endif
  for (int k = 0; k < N; ++k) out[k] = p[k];
}

// Q4_K / Q5_K: the 6-bit (scale, min) pair j of a super-block's 12 packed bytes.
INGOT_HD void ScaleMinK4(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Chunks that are one scale times 32 small values: Q4_0 and Q8_0 (d * (q - 8), d * q),
// affine 4/8-bit codes in groups of whole chunks with a zero point or none ((q - z) * s),
// codebook blocks of whole chunks (book[q] * absmax). The GEMV then takes the scale out
// of the chunk's dot product: one multiply per chunk instead of one per weight.
template <QuantFormat F>
INGOT_HD bool Factored(const QuantView& v) {
  if constexpr (F == QuantFormat::kQ4_0 || F == QuantFormat::kQ8_0) {
    return true;
  } else if constexpr (F == QuantFormat::kAffine) {
    return (v.bits == 4 || v.bits == 8) && v.group % kChunk == 0 && !v.zero_is_bias;
  } else if constexpr (F == QuantFormat::kCodebook) {
    return v.block % kChunk == 0;
  } else {
    return false;
  }
}

// Affine 4/8-bit codes of chunk c (groups of whole chunks): the 32 codes, and the
// group's scale and zero (0 without one).
INGOT_HD void AffineChunkCodes(const QuantView& v, int64_t r, int64_t c, uint8_t* b, float* s, float* z) {
  const uint8_t* p = v.data + static_cast<size_t>(r) * v.row_bytes + 4 * v.bits * c;
  const int64_t g = c * kChunk / v.group, gpr = v.cols / v.group;
  *s = HalfBits(v.scale[r * gpr + g]);
  *z = v.zero != nullptr ? HalfBits(v.zero[r * gpr + g]) : 0.0f;
  if (v.bits == 4) {
    LoadBytes<16, 16>(p, b);  // byte 16 c of a row of cols / 2 (a multiple of 16) bytes
    for (int j = 15; j >= 0; --j) {  // in place, from the top: byte j -> codes 2j, 2j + 1
      b[2 * j + 1] = b[j] >> 4;
      b[2 * j] = b[j] & 0x0f;
    }
  } else {
    LoadBytes<32, 16>(p, b);  // byte 32 c of a row of cols bytes
  }
}

// Codebook chunk c of row r in blocks of whole chunks: the 16 code bytes and the
// block's absmax.
INGOT_HD float CodebookChunk(const QuantView& v, int64_t r, int64_t c, uint8_t* bytes) {
  const int64_t i0 = r * v.cols + c * kChunk;  // flattened element; code byte i / 2
  const int64_t b = i0 / v.block;
  LoadBytes<16, 16>(v.data + i0 / 2, bytes);  // i0 / 2 = r cols / 2 + 16 c
  return v.absmax_code != nullptr ? v.dmap[v.absmax_code[b]] * v.absmax_scale[b / v.absmax_block] + v.absmax_offset
                                  : v.absmax[b];
}

// For Factored(v): q[0..32) and *scale with q[j] * *scale exactly DecodeChunk's out[j]
// (DecodeChunk computes these and multiplies).
template <QuantFormat F>
INGOT_HD void DecodeChunkFactored(const QuantView& v, int64_t r, int64_t c, float* q, float* scale) {
  const uint8_t* row = v.data + static_cast<size_t>(r) * v.row_bytes;
  if constexpr (F == QuantFormat::kQ4_0) {
    const uint8_t* b = row + c * 18;
    *scale = HalfBits(Load16(b));
    uint8_t qs[16];
    LoadBytes<16, 2>(b + 2, qs);  // 18-byte blocks: even offsets
    for (int j = 0; j < 16; ++j) {
      q[j] = SmallIntToFloat((qs[j] & 0x0f) - 8);
      q[j + 16] = SmallIntToFloat((qs[j] >> 4) - 8);
    }
  } else if constexpr (F == QuantFormat::kQ8_0) {
    const uint8_t* b = row + c * 34;
    *scale = HalfBits(Load16(b));
    uint8_t qs[32];
    LoadBytes<32, 2>(b + 2, qs);  // 34-byte blocks: even offsets
    for (int j = 0; j < 32; ++j) q[j] = SmallIntToFloat(static_cast<int8_t>(qs[j]));
  } else if constexpr (F == QuantFormat::kAffine) {
    uint8_t b[32];
    float z;
    AffineChunkCodes(v, r, c, b, scale, &z);
    for (int j = 0; j < 32; ++j) q[j] = SmallIntToFloat(b[j]) - z;
  } else if constexpr (F == QuantFormat::kCodebook) {
    uint8_t bytes[16];
    *scale = CodebookChunk(v, r, c, bytes);
    for (int j = 0; j < 16; ++j) {  // even element in the high nibble
      q[2 * j] = v.book[bytes[j] >> 4];
      q[2 * j + 1] = v.book[bytes[j] & 15];
    }
  }
}

// out[0..32) = the weights of columns [32 c, 32 c + 32) of row r, in the same float
// operations as the CPU reference (kernels/cpu/dequant_*ref.cc, qmatrix.cc).
template <QuantFormat F>
INGOT_HD void DecodeChunk(const QuantView& v, int64_t r, int64_t c, float* out) {
  const uint8_t* row = v.data + static_cast<size_t>(r) * v.row_bytes;
  if constexpr (F == QuantFormat::kQ4_0 || F == QuantFormat::kQ8_0) {
    float d;
    DecodeChunkFactored<F>(v, r, c, out, &d);
    for (int j = 0; j < 32; ++j) out[j] *= d;
  } else if constexpr (F == QuantFormat::kQ4_1) {
    const uint8_t* b = row + c * 20;
    const float d = HalfBits(Load16(b)), m = HalfBits(Load16(b + 2));
    uint8_t qs[16];
    LoadBytes<16, 4>(b + 4, qs);  // 20-byte blocks
    for (int j = 0; j < 16; ++j) {
      out[j] = SmallIntToFloat(qs[j] & 0x0f) * d + m;
      out[j + 16] = SmallIntToFloat(qs[j] >> 4) * d + m;
    }
  } else if constexpr (F == QuantFormat::kQ5_0 || F == QuantFormat::kQ5_1) {
    constexpr int kBytes = F == QuantFormat::kQ5_0 ? 22 : 24;
    const uint8_t* b = row + c * kBytes;
    const float d = HalfBits(Load16(b));
    const int off = F == QuantFormat::kQ5_0 ? 2 : 4;
    const float m = F == QuantFormat::kQ5_1 ? HalfBits(Load16(b + 2)) : 0.0f;
    const uint32_t qh = b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (static_cast<uint32_t>(b[off + 3]) << 24);
    uint8_t qs[16];
    if constexpr (F == QuantFormat::kQ5_0) {
      LoadBytes<16, 2>(b + off + 4, qs);  // 22-byte blocks
    } else {
      LoadBytes<16, 8>(b + off + 4, qs);  // 24-byte blocks
    }
    for (int j = 0; j < 16; ++j) {
      const int xh0 = ((qh >> j) << 4) & 0x10;
      const int xh1 = (qh >> (j + 12)) & 0x10;
      if constexpr (F == QuantFormat::kQ5_0) {
        out[j] = SmallIntToFloat(((qs[j] & 0x0f) | xh0) - 16) * d;
        out[j + 16] = SmallIntToFloat(((qs[j] >> 4) | xh1) - 16) * d;
      } else {
        out[j] = SmallIntToFloat((qs[j] & 0x0f) | xh0) * d + m;
        out[j + 16] = SmallIntToFloat((qs[j] >> 4) | xh1) * d + m;
      }
    }
  } else if constexpr (F == QuantFormat::kQ4_K || F == QuantFormat::kQ5_K) {
    // Super-block: d, dmin, 12 scale bytes, [Q5_K: 32 high-bit bytes], 128 nibble bytes.
    constexpr int kBytes = F == QuantFormat::kQ4_K ? 144 : 176;
    const uint8_t* b = row + (c / 8) * kBytes;
    const int sub = static_cast<int>(c % 8);
    const float d = HalfBits(Load16(b)), dmin = HalfBits(Load16(b + 2));
    int sc, mn;
    ScaleMinK4(sub, b + 4, sc, mn);
    const float d1 = d * SmallIntToFloat(sc), m1 = dmin * SmallIntToFloat(mn);
    uint8_t ql[32], qh[32];  // 144/176-byte super-blocks: 16-byte offsets, two vector loads each
    LoadBytes<32, 16>(b + (F == QuantFormat::kQ4_K ? 16 : 48) + 32 * (sub / 2), ql);
    if constexpr (F == QuantFormat::kQ5_K) LoadBytes<32, 16>(b + 16, qh);
    const int shift = (sub & 1) * 4;
    for (int l = 0; l < 32; ++l) {
      int q = (ql[l] >> shift) & 0x0f;
      if constexpr (F == QuantFormat::kQ5_K) q += (qh[l] & (1 << sub)) ? 16 : 0;
      out[l] = d1 * SmallIntToFloat(q) - m1;
    }
  } else if constexpr (F == QuantFormat::kQ6_K) {
    // Super-block: ql[128], qh[64], scales[16] (int8), d. Sub-block sub of 32 values:
    // half = sub / 4 (128 values each), quarter k = sub % 4.
    const uint8_t* b = row + (c / 8) * 210;
    const int sub = static_cast<int>(c % 8), half = sub / 4, k = sub % 4;
    const float d = HalfBits(Load16(b + 208));
    uint8_t ql[32], qh[32];  // 210-byte blocks: 16-bit loads
    LoadBytes<32, 2>(b + 64 * half + (k & 1) * 32, ql);
    LoadBytes<32, 2>(b + 128 + 32 * half, qh);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half + 2 * k;
    const float sc0 = SmallIntToFloat(sc[0]), sc1 = SmallIntToFloat(sc[1]);
    const int lshift = (k >> 1) * 4, hshift = 2 * k;
    for (int l = 0; l < 32; ++l) {
      const int q = (((ql[l] >> lshift) & 0x0f) | (((qh[l] >> hshift) & 3) << 4)) - 32;
      out[l] = d * (l < 16 ? sc0 : sc1) * SmallIntToFloat(q);
    }
  } else if constexpr (F == QuantFormat::kAffine) {
    if ((v.bits == 4 || v.bits == 8) && v.group % kChunk == 0) {
      // The common forms (4-bit and 8-bit codes, groups of whole chunks): one group per
      // chunk, whole-byte codes read 16 bytes at a time; the same float operations as
      // the general loop below.
      if (!v.zero_is_bias) {
        float s;
        DecodeChunkFactored<F>(v, r, c, out, &s);
        for (int j = 0; j < 32; ++j) out[j] *= s;
        return;
      }
      uint8_t b[32];
      float s, z;
      AffineChunkCodes(v, r, c, b, &s, &z);
      for (int j = 0; j < 32; ++j) out[j] = SmallIntToFloat(b[j]) * s + z;
      return;
    }
    // 32 codes of `bits` bits start at byte 4 * bits * c of the row (LSB first).
    const uint8_t* p = row + 4 * v.bits * c;
    const uint32_t mask = (1u << v.bits) - 1;
    const int64_t col0 = c * kChunk, gpr = v.cols / v.group;
    int64_t g = -1;
    float s = 0, z = 0;
    for (int j = 0; j < 32; ++j) {
      const int bit = j * v.bits, byte = bit >> 3, sh = bit & 7;
      uint32_t word = p[byte];
      if (sh + v.bits > 8) word |= static_cast<uint32_t>(p[byte + 1]) << 8;
      const float q = SmallIntToFloat(static_cast<int32_t>((word >> sh) & mask));
      const int64_t gj = (col0 + j) / v.group;
      if (gj != g) {
        g = gj;
        s = HalfBits(v.scale[r * gpr + g]);
        z = v.zero != nullptr ? HalfBits(v.zero[r * gpr + g]) : 0.0f;
      }
      out[j] = v.zero_is_bias ? q * s + z : (q - z) * s;
    }
  } else if constexpr (F == QuantFormat::kCodebook) {
    if (v.block % kChunk == 0) {
      // Blocks of whole chunks (bitsandbytes' 64 and up): one absmax per chunk, the 16
      // code bytes read at once.
      float am;
      DecodeChunkFactored<F>(v, r, c, out, &am);
      for (int j = 0; j < 32; ++j) out[j] *= am;
      return;
    }
    // Flattened element i = r * cols + 32 c + j; code byte i / 2, even i in the high nibble.
    const int64_t i0 = r * v.cols + c * kChunk;
    const uint8_t* codes = v.data + i0 / 2;
    int64_t blk = -1;
    float am = 0;
    for (int j = 0; j < 32; ++j) {
      const int64_t b = (i0 + j) / v.block;
      if (b != blk) {
        blk = b;
        am = v.absmax_code != nullptr
                 ? v.dmap[v.absmax_code[b]] * v.absmax_scale[b / v.absmax_block] + v.absmax_offset
                 : v.absmax[b];
      }
      const uint8_t byte = codes[j / 2];
      out[j] = v.book[(j & 1) ? (byte & 15) : (byte >> 4)] * am;
    }
  }
}

// Bytes of a row in a GGML format (cols % 32 == 0, K-quants cols % 256 == 0).
INGOT_HD int64_t GgmlRowBytes(QuantFormat f, int64_t cols) {
  switch (f) {
    case QuantFormat::kQ4_0: return cols / 32 * 18;
    case QuantFormat::kQ4_1: return cols / 32 * 20;
    case QuantFormat::kQ5_0: return cols / 32 * 22;
    case QuantFormat::kQ5_1: return cols / 32 * 24;
    case QuantFormat::kQ8_0: return cols / 32 * 34;
    case QuantFormat::kQ4_K: return cols / 256 * 144;
    case QuantFormat::kQ5_K: return cols / 256 * 176;
    case QuantFormat::kQ6_K: return cols / 256 * 210;
    default: return 0;
  }
}

}  // namespace ingot::kernels::cuda
