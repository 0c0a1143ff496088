// torchao quantizers, computed as torchao 0.18.0 computes them on CPU so that codes and
// scales come out bit-identical (tests/quant/torchao_test.cc against
// tests/reference/gen_quant_torch.py).
//
// int8_weight_only / int8_dynamic (Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
// version 2: Int8Tensor.from_hp with PerRow granularity, quant_primitives.choose_qparams_affine
// SYMMETRIC, int8 bounds [-128, 127], scale_dtype float32, eps = float32 eps):
//   amax = max(-min(min(x), 0), max(max(x), 0)) per output row; scale = max(amax / 127.5, eps);
//   q = clamp(round(x * (1 / scale)), -128, 127) (round half even). 127.5 is
//   (quant_max - quant_min) / 2, so the largest weight lands on +-127.5 and rounds to 128
//   (clamped to 127) or -128. Stored as kAffine 8-bit, one group per row, kZero, zero = 128.
//   The dynamic variant differs only in the activations: torchao quantizes each token to
//   int8 (absmax / 127.5); ingot's int8 path prepares Q8_1 blocks of 32 (kernels/cpu/qmatrix.h).
//
// int4_weight_only (Int4WeightOnlyConfig): torchao's CPU-reachable int4 math is the tinygemm
// one (TILE_PACKED_TO_4D / Int4ChooseQParamsAlgorithm.TINYGEMM; the PLAIN default needs the
// CUDA-only mslk package): bfloat16 weights, per group of `group` inputs
//   scale = max((max - min) / 15, bf16 smallest normal), zero = min + scale * 8,
//   q = clamp(round((w - (zero - scale * 8)) / scale), 0, 15), dequant (q - 8) * scale + zero,
// every operation rounded to bfloat16 as torch does for bf16 tensors. ingot stores kBias
// with bias = zero - 8 * scale (w = q * scale + bias): scale is exact in f16 when it is an f16
// normal (bf16's 8-bit significand fits f16's 11); bias is rounded once to f16 (relative
// error <= 2^-11, a few thousandths of a quantization step for typical groups).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

// f32 -> bfloat16 (round to nearest even) -> f32, as torch's float->bfloat16 conversion.
inline float Bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    u = (u | 0x00400000u) & 0xffff0000u;  // quiet NaN
  } else {
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  }
  std::memcpy(&f, &u, 4);
  return f;
}



}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeTorchaoInt8(const float* w, int64_t rows, int64_t cols,
                                                    bool dynamic, const MethodParams& params) {
  if (auto s = CheckMatrix(w, rows, cols, "torchao int8"); !s.ok()) return s;
  QuantizedWeight qw;
  uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows * cols));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  const uint16_t zero128 = Fp32ToFp16(128.0f);
  constexpr float kEps = std::numeric_limits<float>::epsilon();
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * cols;
    float mn = 0.0f, mx = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      mn = std::min(mn, x[c]);
      mx = std::max(mx, x[c]);
    }
    const float s = std::max(std::max(-mn, mx) / 127.5f, kEps);
    const float inv = 1.0f / s;
    uint8_t* qr = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::clamp(std::nearbyint(x[c] * inv), -128.0f, 127.0f);
      qr[c] = static_cast<uint8_t>(static_cast<int>(v) + 128);
    }
    scale[r] = Fp32ToFp16(s);
    zero[r] = zero128;
  }
  SetAffineView(qw, 8, rows, cols, cols, kernels::ZeroKind::kZero, q, scale, zero);
  qw.representation = dynamic ? "int8/row+dyn" : "int8/row";
  return qw;
}

absl::StatusOr<QuantizedWeight> QuantizeTorchaoInt4(const float* w, int64_t rows, int64_t cols,
                                                    const MethodParams& params) {
  if (auto s = CheckMatrix(w, rows, cols, "torchao int4"); !s.ok()) return s;
  const int64_t group = params.group_size;
  if (group != 32 && group != 64 && group != 128 && group != 256) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "torchao int4: group_size %d is not one of 32, 64, 128, 256", group));
  }
  if (cols % group != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "torchao int4: group_size %d does not divide the row length %d (torchao skips such "
        "layers); pick a group size that divides it or skip this layer", group, cols));
  }
  const int64_t groups = rows * (cols / group);
  QuantizedWeight qw;
  const size_t row_bytes = static_cast<size_t>(cols / 2);
  uint8_t* q = qw.Alloc<uint8_t>(row_bytes * static_cast<size_t>(rows));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(groups));
  uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(groups));
  constexpr float kEps = std::numeric_limits<float>::min();  // bf16 smallest normal, 2^-126
  std::vector<float> xb(static_cast<size_t>(group));
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* x = w + gi * group;
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    for (int64_t i = 0; i < group; ++i) {
      xb[i] = Bf16(x[i]);
      mn = std::min(mn, xb[i]);
      mx = std::max(mx, xb[i]);
    }
    const float s = std::max(Bf16(Bf16(mx - mn) / 15.0f), kEps);
    const float s8 = Bf16(s * 8.0f);
    const float z = Bf16(mn + s8);
    const float lo = Bf16(z - s8);
    const int64_t r = gi / (cols / group), c0 = (gi % (cols / group)) * group;
    uint8_t* qr = q + static_cast<size_t>(r) * row_bytes;
    for (int64_t i = 0; i < group; ++i) {
      const float v = std::clamp(std::nearbyint(Bf16(Bf16(xb[i] - lo) / s)), 0.0f, 15.0f);
      const int64_t c = c0 + i;
      qr[c / 2] |= static_cast<uint8_t>(static_cast<int>(v) << ((c & 1) * 4));
    }
    scale[gi] = Fp32ToFp16(s);
    bias[gi] = Fp32ToFp16(z - s8);  // exact in f32 for bf16 inputs of close exponents
  }
  SetAffineView(qw, 4, rows, cols, group, kernels::ZeroKind::kBias, q, scale, bias);
  qw.representation = absl::StrFormat("affine4/g%d", group);
  return qw;
}

}  // namespace ingot::quant
