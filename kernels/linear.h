// Linear-layer weights in ingot's canonical representations (DESIGN.md decision 1), as
// views over memory someone else owns. Device-neutral layouts: the CPU kernels
// (kernels/cpu/qmatrix.h), the torch row's upload (kernels/torch) and CUDA code all read
// these structs; nothing here depends on a backend.
//
//   kGgml      GGML block types (GGUF files, GGUF quantizers): kernels/ggml_types.h
//   kAffine    k-bit groups with scale + zero/bias (HQQ, GPTQ, AWQ, MLX, Quanto,
//              torchao int4/int8, int8 per row, LLM.int8)
//   kCodebook  4-bit codebook blocks with absmax (bitsandbytes NF4/FP4, double quant)
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"

namespace ingot::kernels {

// A row-major weight matrix in a GGML type: `rows` output features, each of `cols`
// input features stored in `row_bytes` bytes. Data is not owned.
struct WeightMatrix {
  GgmlType type = GgmlType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  const uint8_t* Row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// How a group's zero is stored.
//   kZero: w = (q - zero) * scale     (HQQ, GPTQ, AWQ, Quanto, int8 with zero = 128)
//   kBias: w = q * scale + zero       (MLX, torchao int4's float zero domain)
enum class ZeroKind : uint8_t { kZero, kBias };

// Affine k-bit groups. Row r holds `cols` unsigned codes q in [0, 2^bits), packed as a
// little-endian bitstream (code c occupies bits [c*bits, (c+1)*bits) of the row, LSB
// first); row_bytes = ceil(cols * bits / 8). Group g of row r covers columns
// [g*group, (g+1)*group) and has scale/zero at index r * (cols / group) + g, stored as
// IEEE f16. bits in 1..8; group divides cols.
struct AffineMatrix {
  int32_t bits = 4;
  int64_t rows = 0, cols = 0, group = 0;
  ZeroKind zero_kind = ZeroKind::kZero;
  size_t row_bytes = 0;
  const uint8_t* q = nullptr;
  const uint16_t* scale = nullptr;  // f16, rows * (cols / group)
  const uint16_t* zero = nullptr;   // f16, rows * (cols / group)
  int64_t groups_per_row() const { return group > 0 ? cols / group : 0; }
};

enum class Codebook : uint8_t { kNF4, kFP4 };

// 4-bit codebook blocks as bitsandbytes stores them: the tensor is flattened row-major
// and cut into blocks of `block` elements (block divides cols); element i has code
// (codes[i / 2] >> 4) when i is even, (codes[i / 2] & 15) when odd (first element in
// the high nibble); w = Codebook(book)[code] * absmax(i / block).
// absmax is either plain f32 (`absmax`), or double-quantized (`absmax_code` set): the
// absmax of block b is DynamicMap[absmax_code[b]] * absmax_scale[b / absmax_block]
// + absmax_offset (bitsandbytes' nested quantization: 8-bit dynamic map, blocks of 256).
struct CodebookMatrix {
  Codebook book = Codebook::kNF4;
  int64_t rows = 0, cols = 0, block = 64;
  const uint8_t* codes = nullptr;  // rows * cols / 2 bytes
  const float* absmax = nullptr;   // rows * cols / block, when not double-quantized
  const uint8_t* absmax_code = nullptr;
  const float* absmax_scale = nullptr;
  int64_t absmax_block = 256;
  float absmax_offset = 0.0f;
};

// The 16 values of a 4-bit codebook (bitsandbytes' tables, in code order).
const float* CodebookValues(Codebook book);
// bitsandbytes' signed 8-bit dynamic quantization map (256 values, code order), used by
// double quantization of the absmax.
const float* DynamicMap();

enum class LinearKind : uint8_t { kGgml, kAffine, kCodebook };

// One linear layer's weight (rows = output features, cols = input features).
struct Linear {
  LinearKind kind = LinearKind::kGgml;
  WeightMatrix ggml;        // kGgml
  AffineMatrix affine;      // kAffine
  CodebookMatrix codebook;  // kCodebook
  // LLM.int8 mixed-precision decomposition (kAffine only): for each token, input
  // columns with |x| > outlier_threshold take an exact f32 path over the dequantized
  // weight column; the rest the integer path. 0 disables it.
  float outlier_threshold = 0.0f;
  // kAffine only: when set (cols entries), stored column j holds input feature
  // input_order[j]: GPTQ act-order checkpoints, whose groups (g_idx) are scattered over
  // the input, are stored regrouped so each group is contiguous, and the activations
  // are gathered into that order when prepared. LinearDequantizeRow gives the row in
  // the input's own order.
  const int32_t* input_order = nullptr;

  int64_t rows() const;
  int64_t cols() const;
  // Bytes of the weight data (codes, scales, zeros, absmax...).
  int64_t bytes() const;
};

}  // namespace ingot::kernels
