// Host-side conversion of ingot's representations into the two weight-only layouts
// libtorch has kernels for (plain C++, no ATen: tests/kernels check it against
// LinearDequantizeRow on the CPU).
//
//   int4 (tinygemm, _weight_int4pack_mm[_for_cpu]): per group of `group` input columns,
//     w = (q - 8) * scale + zero, q in [0, 16). So from ingot's forms:
//       affine kZero  w = (q - z) * s      -> scale = s, zero = (8 - z) * s
//       affine kBias  w = q * s + b        -> scale = s, zero = b + 8 * s
//       GGML Q4_0     w = (q - 8) * d      -> scale = d, zero = 0            (group 32)
//       GGML Q4_1     w = q * d + m        -> scale = d, zero = m + 8 * d    (group 32)
//     This is the convention torchao's int4 weight-only and HQQ's tinygemm backend use.
//   int8 (_weight_int8pack_mm): per output row, w = q * scale, q in [-128, 128):
//       affine 8-bit, one group per row, kZero with an integral zero z -> q - z
//       (torchao int8 weight-only, LLM.int8 rows).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/linear.h"

namespace ingot::kernels {

struct Int4Layout {
  int64_t rows = 0, cols = 0, group = 0;
  std::vector<uint8_t> codes;  // (rows, cols), one code per byte, in [0, 16)
  std::vector<float> scale;    // (cols / group, rows): group-major as tinygemm wants
  std::vector<float> zero;     // (cols / group, rows)
};
// Empty reason: converted; otherwise why this weight has no int4 form (bits, group,
// outliers...). input_order is left to the caller (the activations are gathered).
std::string ToInt4Layout(const Linear& w, Int4Layout* out);

struct Int8Layout {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> codes;  // (rows, cols)
  std::vector<float> scale;   // (rows)
};
std::string ToInt8Layout(const Linear& w, Int8Layout* out);

// w dequantized (rows, cols) f32 in the input's own column order.
std::vector<float> DequantizeAll(const Linear& w);

}  // namespace ingot::kernels
