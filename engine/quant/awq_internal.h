// Shared by AWQ's scale search (awq.cc) and clipping search (awq_clip.cc): AutoAWQ's
// pseudo_quantize_tensor over one group, the quantizer both searches score with.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ingot::quant::awq {

// AutoAWQ's pseudo_quantize_tensor over one group of n values, in place. Asymmetric:
// min/max of the group without 0, scale = max(max - min, 1e-5) / (2^b - 1),
// zero = clamp(-round(min / scale), 0, 2^b - 1); symmetric: scale = max(absmax, 1e-5) /
// (2^(b-1) - 1), q in [-2^(b-1), 2^(b-1) - 1].
__attribute__((always_inline)) inline void PseudoQuantize(float* w, int64_t n, int32_t bits,
                                                          bool zero_point) {
  if (zero_point) {
    float lo = w[0], hi = w[0];
    for (int64_t i = 1; i < n; ++i) {
      lo = std::min(lo, w[i]);
      hi = std::max(hi, w[i]);
    }
    const float max_int = static_cast<float>((1 << bits) - 1);
    const float scale = std::max(hi - lo, 1e-5f) / max_int;
    const float zero = std::clamp(-std::nearbyint(lo / scale), 0.0f, max_int);
    for (int64_t i = 0; i < n; ++i) {
      w[i] = (std::clamp(std::nearbyint(w[i] / scale) + zero, 0.0f, max_int) - zero) * scale;
    }
  } else {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
    const float max_int = static_cast<float>((1 << (bits - 1)) - 1);
    const float min_int = -static_cast<float>(1 << (bits - 1));
    const float scale = std::max(amax, 1e-5f) / max_int;
    for (int64_t i = 0; i < n; ++i) {
      w[i] = std::clamp(std::nearbyint(w[i] / scale), min_int, max_int) * scale;
    }
  }
}

}  // namespace ingot::quant::awq
