// What the layout readers share: typed tensor lookups with precise errors, element
// reads of unaligned data, the dense reader, int8 rows/groups (LLM.int8, quanto,
// torchao), GPTQ/AWQ's int32 bitstreams and the sliced byte packing of HQQ and quanto.
// Internal to engine/formats/layouts.
#pragma once

#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/layouts/layout.h"
#include "engine/formats/layouts/storage.h"

namespace ingot::formats::layouts {

std::string Shape(const std::vector<int64_t>& s);

template <typename T>
T LoadAt(const uint8_t* p, int64_t i) {  // tensor data may be unaligned
  T v;
  std::memcpy(&v, p + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}
bool IsFloat(DType d);
float FloatAt(const TensorView& t, int64_t i);

absl::Status Missing(const Checkpoint& ck, const std::string& t);
// The tensor `t`, checked against `shape` (empty: any) and one of `dtypes`.
absl::StatusOr<const TensorView*> Get(const Checkpoint& ck, const std::string& t, std::vector<int64_t> shape,
                                      std::initializer_list<DType> dtypes);
// Wraps an owned QuantizedWeight as a load.
LinearLoad Own(QuantizedWeight qw);
// A module the tool left dense (lm_head, skipped modules): a float NAME.weight and none
// of the quantized tensors' names beside it.
bool StoredDense(const Checkpoint& ck, const std::string& name);
// NAME.weight as f32/f16/bf16 in place.
absl::StatusOr<LinearLoad> ReadDense(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols);
// Signed int8 (rows, cols) over G groups per row (`scale` (rows, G), each of cols / G
// inputs, checked by the caller), with an int8 zero point per group when `zero_point`
// is given: w = (q - zero_point) * scale / divisor, stored as kAffine 8-bit codes q + 128
// with zero 128 + zero_point (ingot's int8/row when G = 1).
LinearLoad Int8Groups(const TensorView& q8, const TensorView& scale, const TensorView* zero_point, float divisor,
                      float outlier_threshold);
// The one-group case: one scale per row, w = q * row_scale[r] / divisor.
inline LinearLoad Int8Rows(const TensorView& q8, const TensorView& row_scale, float divisor, float outlier_threshold) {
  return Int8Groups(q8, row_scale, nullptr, divisor, outlier_threshold);
}
// Code (i, j) of an LSB-first bitstream over consecutive int32 words (AutoGPTQ's
// layout for 2/4/8 bits, and for 3 bits, where a code may straddle two words);
// `along_rows`: the stream runs down dimension 0 (GPTQ qweight), else along dimension 1
// (qzeros, AWQ). `order` (AWQ) permutes the 32/bits slots of each word.
int32_t Code(const TensorView& t, int64_t i, int64_t j, int64_t width, int bits, bool along_rows, const int* order);
// HQQ and quanto store W as (n_groups, group) codes packed `8/bits` groups per byte
// along the first dimension: group g sits in row g % step, slice g / step of each byte
// (`msb_first`: slice k at bit 8 - bits*(k+1), HQQ; else at bit bits*k, quanto). Unpacks
// into q (rows of ceil(cols*bits/8) bytes, ingot's LSB-first bitstream).
void UnpackSlicedGroups(const uint8_t* packed, int64_t step, int64_t group, int64_t rows, int64_t cols, int bits,
                        bool msb_first, uint8_t* q);

// A Layout::reader that reads each module with F and keeps the checkpoint alive.
template <ReadFn* F>
LinearLoader PerModule(std::shared_ptr<const Checkpoint> ck) {
  return [ck](const std::string& name, int64_t rows, int64_t cols) { return F(*ck, name, rows, cols); };
}

}  // namespace ingot::formats::layouts
