// optimum-quanto weight quantizers, computed as optimum-quanto 0.2.7 computes them for
// float32 weights on CPU so that codes and scales come out bit-identical
// (tests/quant/quanto_test.cc against tests/reference/gen_quant_torch.py).
//
// qint8 (AbsmaxOptimizer + quantize_symmetric, per output row):
//   scale = max |w| / 127; q = clamp(round(w / scale), -128, 127) (round half even, a true
//   division). Stored as kAffine 8-bit, one group per row, kZero, zero = 128.
// qint2 / qint4 (MaxOptimizer + quanto::quantize_affine with a float shift, groups of
// `group_size` consecutive inputs of a row, QModuleMixin's default 128):
//   scale = (max - min) / (2^bits - 1), shift = -min, q = clamp(round((w + shift) / scale),
//   0, 2^bits - 1); quanto dequantizes q * scale - shift. Stored as kAffine kBias with
//   bias = -shift (= min), the same formula. Quanto packs its codes into uint8 planes
//   (PackedTensor); ingot's rows are LSB-first bitstreams, the codes are the same.
// A group with max == min gives 0 / 0 = NaN, which torch's uint8 cast turns into code 0
// (dequantized to min, exact); an all-zero int8 row the same (scale 0).
// Exactness limit: ingot's scale and bias are f16, quanto's f32 (its scale dtype is the
// weight's dtype), so dequantized values differ by the f16 rounding of scale and bias.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

// torch's float -> integer cast after clamp: NaN becomes 0.
inline int RoundedCode(float v) { return std::isnan(v) ? 0 : static_cast<int>(v); }


QuantizedWeight QuantoInt8(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight qw;
  uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows * cols));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  const uint16_t zero128 = Fp32ToFp16(128.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[c]));
    const float s = amax / 127.0f;
    uint8_t* qr = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::clamp(std::nearbyint(x[c] / s), -128.0f, 127.0f);
      qr[c] = static_cast<uint8_t>(RoundedCode(v) + 128);
    }
    scale[r] = Fp32ToFp16(s);
    zero[r] = zero128;
  }
  SetAffineView(qw, 8, rows, cols, cols, kernels::ZeroKind::kZero, q, scale, zero);
  qw.representation = "int8/row";
  return qw;
}

QuantizedWeight QuantoAffine(const float* w, int64_t rows, int64_t cols, int bits, int64_t group) {
  const int64_t gpr = cols / group, groups = rows * gpr;
  const int qmax = (1 << bits) - 1;
  QuantizedWeight qw;
  const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
  uint8_t* q = qw.Alloc<uint8_t>(row_bytes * static_cast<size_t>(rows));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(groups));
  uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(groups));
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* x = w + gi * group;
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < group; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
    }
    const float s = (mx - mn) / static_cast<float>(qmax);
    const float shift = -mn;
    uint8_t* qr = q + static_cast<size_t>(gi / gpr) * row_bytes;
    const int64_t c0 = (gi % gpr) * group;
    for (int64_t i = 0; i < group; ++i) {
      const float v = std::clamp(std::nearbyint((x[i] + shift) / s), 0.0f,
                                 static_cast<float>(qmax));
      const int64_t bit = (c0 + i) * bits;  // bits divides 8: a code never straddles bytes
      qr[bit >> 3] |= static_cast<uint8_t>(RoundedCode(v) << (bit & 7));
    }
    scale[gi] = Fp32ToFp16(s);
    bias[gi] = Fp32ToFp16(-shift);
  }
  SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kBias, q, scale, bias);
  qw.representation = absl::StrFormat("affine%d/g%d", bits, group);
  return qw;
}

}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeQuanto(const float* w, int64_t rows, int64_t cols,
                                               const MethodParams& params) {
  if (w == nullptr) return absl::InvalidArgumentError("quanto: no weight data");
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("quanto: weight shape %d x %d is empty", rows, cols));
  }
  switch (params.bits) {
    case 8:
      return QuantoInt8(w, rows, cols);
    case 2:
    case 4:
      if (params.group_size <= 0 || cols % params.group_size != 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "quanto int%d: group_size %d does not divide the row length %d; pick a group size "
            "that divides it (quanto's default is 128, lowered by 32 until it divides)",
            params.bits, params.group_size, cols));
      }
      return QuantoAffine(w, rows, cols, params.bits, params.group_size);
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "quanto: bits %d is not one of 2, 4, 8 (qint2, qint4, qint8)", params.bits));
  }
}

}  // namespace ingot::quant
