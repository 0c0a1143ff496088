// MLX affine quantization (mx.quantize, mode "affine"; mlx 0.32.4,
// mlx/backend/cpu/quantized.cpp `quantize`), stored as kAffine/kBias:
// w = q * scale + bias, f16 scale and bias per (row, group).
//
// Per group of `group` consecutive weights of a row, in f32:
//   n_bins = 2^bits - 1, eps = 1e-7
//   scale  = max((max - min) / n_bins, eps), negated unless |min| > |max|
//   edge   = |min| > |max| ? min : max        (the end of larger magnitude)
//   q0     = rint(edge / scale); if q0 != 0: scale = edge / q0, bias = edge; else bias = 0
//            (so the larger-magnitude end is represented exactly, at code 0)
//   bits 1: scale = max(max - min, eps), bias = min
//   q      = clamp(rint((w - bias) / scale), 0, n_bins)
// The codes use the f32 scale; scale and bias are then rounded to the storage dtype
// (MLX stores them in the weight's dtype: for f16 weights exactly this; for f32 weights
// MLX keeps f32 scales and we round them to f16). MLX packs codes LSB-first into
// little-endian uint32 words, which is byte-for-byte ingot's bitstream.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

struct GroupAffine {
  float scale = 0.0f;
  float bias = 0.0f;
};

GroupAffine MlxGroupParams(const float* w, int64_t n, int32_t bits) {
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float eps = 1e-7f;
  float w_min = std::numeric_limits<float>::infinity();
  float w_max = -w_min;
  for (int64_t i = 0; i < n; ++i) {
    w_max = std::max(w_max, w[i]);
    w_min = std::min(w_min, w[i]);
  }
  GroupAffine p;
  if (bits == 1) {
    p.scale = std::max(w_max - w_min, eps);
    p.bias = w_min;
    return p;
  }
  const bool mask = std::fabs(w_min) > std::fabs(w_max);
  float scale = std::max((w_max - w_min) / n_bins, eps);
  scale = mask ? scale : -scale;
  const float edge = mask ? w_min : w_max;
  const float q0 = std::rint(edge / scale);
  p.bias = 0.0f;
  if (q0 != 0.0f) {
    scale = edge / q0;
    p.bias = edge;
  }
  p.scale = scale;
  return p;
}


}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeMlx(const float* w, int64_t rows, int64_t cols,
                                            const MethodParams& params) {
  const int32_t bits = params.bits;
  const int64_t group = params.group_size;
  if (rows <= 0 || cols <= 0 || w == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("mlx: empty matrix ", rows, "x", cols));
  // mx.quantize's affine mode takes bits 1..6 and 8; group sizes 32, 64, 128.
  if (bits < 1 || bits > 8 || bits == 7)
    return absl::InvalidArgumentError(
        absl::StrCat("mlx: bits=", bits, " not supported (2, 3, 4, 5, 6 or 8; 4 and 8 usual)"));
  if (group != 32 && group != 64 && group != 128)
    return absl::InvalidArgumentError(
        absl::StrCat("mlx: group_size=", group, " not supported (32, 64 or 128)"));
  if (cols % group != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("mlx: group_size=", group, " does not divide the row length ", cols));

  const int64_t groups_per_row = cols / group;
  const int64_t n_groups = rows * groups_per_row;
  QuantizedWeight out;
  const formats::AffineStorage st = formats::AllocAffine(out, rows, cols, bits, group);
  kernels::AffineMatrix& a = out.view.affine;
  a.zero_kind = kernels::ZeroKind::kBias;  // w = q * scale + bias
  uint8_t* q = st.q;
  uint16_t* scale16 = st.scale;
  uint16_t* bias16 = st.zero;
  (void)n_groups;  // == rows * st.groups

  const float n_bins = static_cast<float>((1 << bits) - 1);
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < groups_per_row; ++gi) {
      const float* wg = w + r * cols + gi * group;
      const GroupAffine p = MlxGroupParams(wg, group, bits);
      uint8_t* cg = codes.data() + gi * group;
      for (int64_t i = 0; i < group; ++i) {
        float v = std::rint((wg[i] - p.bias) / p.scale);
        v = v > 0.0f ? std::min(v, n_bins) : 0.0f;  // NaN -> 0
        cg[i] = static_cast<uint8_t>(v);
      }
      scale16[r * groups_per_row + gi] = Fp32ToFp16(p.scale);
      bias16[r * groups_per_row + gi] = Fp32ToFp16(p.bias);
    }
    PackCodes(codes.data(), cols, bits, q + r * a.row_bytes);
  }
  out.representation = absl::StrCat("affine", bits, "/g", group, "+bias");
  return out;
}

}  // namespace ingot::quant
