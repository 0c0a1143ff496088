// Round-to-nearest affine groups with integer zero points: GPTQ's Quantizer
// (auto_gptq/quantization/quantizer.py, perchannel, mse off) applied group by group,
// the storage GPTQ and AWQ checkpoints share. Also the kAffine writer used by gptq.cc.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace affine {

GroupParams FindParams(const float* x, int64_t n, int32_t maxq, bool symmetric) {
  float xmin = 0.0f, xmax = 0.0f;  // the range always holds 0
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (symmetric) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  GroupParams p;
  p.scale = (xmax - xmin) / static_cast<float>(maxq);
  p.zero = symmetric ? static_cast<float>(maxq + 1) / 2.0f : std::nearbyint(-xmin / p.scale);
  return p;
}

absl::Status CheckAffineShape(int64_t rows, int64_t cols, const MethodParams& params,
                              int64_t* group) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight shape %d x %d: both dimensions must be positive", rows, cols));
  }
  if (params.bits < 1 || params.bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bits = %d: affine groups take 1..8 bits", params.bits));
  }
  *group = params.group_size > 0 ? params.group_size : cols;
  if (cols % *group != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "group_size = %d does not divide the %d input features; pick a divisor of %d",
        params.group_size, cols, cols));
  }
  return absl::OkStatus();
}

}  // namespace affine

absl::StatusOr<QuantizedWeight> QuantizeAffineRtn(const float* w, int64_t rows, int64_t cols,
                                                  const MethodParams& params) {
  int64_t group = 0;
  if (absl::Status s = affine::CheckAffineShape(rows, cols, params, &group); !s.ok()) return s;
  const int32_t maxq = (1 << params.bits) - 1;
  QuantizedWeight out;
  const affine::AffineStorage st = affine::AllocAffine(out, rows, cols, params.bits, group);
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    uint8_t* qr = st.q + static_cast<size_t>(r) * st.row_bytes;
    for (int64_t g = 0; g < st.groups; ++g) {
      const affine::GroupParams p =
          affine::FindParams(wr + g * group, group, maxq, params.symmetric);
      st.scale[r * st.groups + g] = Fp32ToFp16(p.scale);
      st.zero[r * st.groups + g] = Fp32ToFp16(p.zero);
      for (int64_t c = g * group; c < (g + 1) * group; ++c) {
        affine::PutCode(qr, c, params.bits,
                        static_cast<uint32_t>(affine::QuantizeCode(wr[c], p, maxq)));
      }
    }
  }
  return out;
}

}  // namespace ingot::quant
