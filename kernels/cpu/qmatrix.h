// Linear-layer weights in ingot's canonical representations (DESIGN.md decision 1) and
// the fused dequantize-dot kernels over them. Every format and quantization method maps
// onto one of these views; one kernel family per representation, not per format.
//
//   kGgml      GGML block types (GGUF files, GGUF quantizers): quant_dot.h
//   kAffine    k-bit groups with scale + zero/bias (HQQ, GPTQ, AWQ, MLX, Quanto,
//              torchao int4/int8, int8 per row, LLM.int8)
//   kCodebook  4-bit codebook blocks with absmax (bitsandbytes NF4/FP4, double quant)
//
// Views do not own memory. Plain C++ (no ATen), so CUDA code can share the layout.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/quant_dot.h"

namespace ingot::kernels {

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

// Which implementation LinearDotRows uses on this CPU ("avx2" or "ref").
const char* LinearImplementation();

}  // namespace ingot::kernels
