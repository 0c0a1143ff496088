// AWQ's activation-aware scale search (Lin et al. 2023), as AutoAWQ 0.2.9's
// AwqQuantizer._compute_best_scale runs it with duo_scaling = False (the original
// llm-awq formulation): for ratio = i / n_grid, i in [0, n_grid),
//   s = clamp(x_mean^ratio, min 1e-4);  s /= sqrt(max(s) * min(s));  inf/nan -> 1
//   loss(s) = mean over outputs and samples of (W X - Q(W diag(s)) diag(s)^-1 X)^2
// with Q AutoAWQ's pseudo_quantize_tensor (asymmetric: min/max of the group without 0,
// scale = max(max - min, 1e-5) / maxq, zero = clamp(-round(min / scale), 0, maxq);
// symmetric: scale = max(absmax, 1e-5) / (2^(b-1) - 1), q in [-2^(b-1), 2^(b-1) - 1]),
// and keeps the first s of least loss (ratio 0 gives s = 1, plain round-to-nearest).
// The loss is evaluated as || X D^T ||^2 with D = W - Q(W s)/s, one GEMM per weight and
// ratio over the calibration samples. AutoAWQ's clipping search (apply_clip) is not
// part of this function.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"

namespace ingot::quant {
namespace {

// AutoAWQ's pseudo_quantize_tensor over one group of n values, in place.
__attribute__((always_inline)) inline void AwqPseudoQuantize(float* w, int64_t n, int32_t bits,
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

// d = w - Q(w s) / s for one row of cols values (the quantization error of AWQ's recipe).
// Compiled for AVX2 as well: the rounding and divisions dominate when not vectorized.
__attribute__((target_clones("arch=x86-64-v3", "default"), optimize("O3"))) void AwqErrorRow(
    const float* w, const float* s, float* d, int64_t cols, int64_t group, int32_t bits,
    bool zero_point) {
  for (int64_t c = 0; c < cols; ++c) d[c] = w[c] * s[c];
  for (int64_t g = 0; g < cols; g += group) AwqPseudoQuantize(d + g, group, bits, zero_point);
  for (int64_t c = 0; c < cols; ++c) d[c] = w[c] - d[c] / s[c];
}

absl::Status CheckAwqInputs(const std::vector<WeightRef>& weights, int64_t cols,
                            const CalibrationStats& calib, const MethodParams& params) {
  if (weights.empty()) {
    return absl::InvalidArgumentError("AWQ scale search needs at least one weight");
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i].w == nullptr || weights[i].rows <= 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("AWQ weight %d is empty (rows = %d)", i, weights[i].rows));
    }
  }
  if (params.symmetric && params.bits < 2) {
    return absl::InvalidArgumentError("AWQ symmetric quantization needs bits >= 2");
  }
  if (calib.cols != cols || calib.act_abs_mean.size() != static_cast<size_t>(cols)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AWQ calibration statistics are for %d input features (act_abs_mean of %d) but the "
        "weights have %d columns; collect them on these layers' input",
        calib.cols, calib.act_abs_mean.size(), cols));
  }
  if (calib.n_samples <= 0 ||
      calib.samples.size() != static_cast<size_t>(calib.n_samples * cols)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AWQ needs calibration input samples (n_samples = %d, %d values for %d columns)",
        calib.n_samples, calib.samples.size(), cols));
  }
  if (params.awq_grid < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("awq_grid = %d: the scale grid needs at least 1 point (default 20)",
                        params.awq_grid));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<float>> AwqSearchScales(const std::vector<WeightRef>& weights,
                                                   int64_t cols, const CalibrationStats& calib,
                                                   const MethodParams& params) {
  int64_t group = 0;
  if (!weights.empty()) {
    if (absl::Status s = affine::CheckAffineShape(weights[0].rows, cols, params, &group);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = CheckAwqInputs(weights, cols, calib, params); !s.ok()) return s;
  const bool zero_point = !params.symmetric;
  const int64_t n_samples = calib.n_samples;
  const float* x = calib.samples.data();  // (n_samples, cols)
  int64_t max_rows = 0, total_rows = 0;
  for (const WeightRef& ref : weights) {
    max_rows = std::max(max_rows, ref.rows);
    total_rows += ref.rows;
  }

  std::vector<float> xt(static_cast<size_t>(cols * n_samples));  // (cols, n_samples) = X^T
  for (int64_t t = 0; t < n_samples; ++t) {
    for (int64_t c = 0; c < cols; ++c) xt[c * n_samples + t] = x[t * cols + c];
  }
  std::vector<float> s(static_cast<size_t>(cols)), best(static_cast<size_t>(cols), 1.0f);
  std::vector<float> d(static_cast<size_t>(max_rows * cols));  // (rows, cols) W - Q(Ws)/s
  std::vector<float> e(static_cast<size_t>(max_rows * n_samples));  // (rows, n_samples) D X^T
  double best_loss = std::numeric_limits<double>::infinity();
  for (int32_t step = 0; step < params.awq_grid; ++step) {
    const float ratio = static_cast<float>(static_cast<double>(step) / params.awq_grid);
    float s_max = -std::numeric_limits<float>::infinity();
    float s_min = std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < cols; ++c) {
      s[c] = std::max(std::pow(calib.act_abs_mean[c], ratio), 1e-4f);
      s_max = std::max(s_max, s[c]);
      s_min = std::min(s_min, s[c]);
    }
    const float norm = std::sqrt(s_max * s_min);
    for (float& v : s) {
      v /= norm;
      if (!std::isfinite(v)) v = 1.0f;
    }
    double loss = 0.0;
    for (const WeightRef& ref : weights) {
      for (int64_t r = 0; r < ref.rows; ++r) {
        AwqErrorRow(ref.w + r * cols, s.data(), &d[r * cols], cols, group, params.bits,
                    zero_point);
      }
      std::fill(e.begin(), e.begin() + ref.rows * n_samples, 0.0f);
      affine::GemmAccF32(ref.rows, n_samples, cols, 1.0f, d.data(), cols, xt.data(), n_samples,
                         e.data(), n_samples);
      for (int64_t i = 0; i < ref.rows * n_samples; ++i) {
        loss += static_cast<double>(e[i]) * static_cast<double>(e[i]);
      }
    }
    loss /= static_cast<double>(n_samples * total_rows);
    if (loss < best_loss) {
      best_loss = loss;
      best = s;
    }
  }
  if (!std::isfinite(best_loss)) {
    return absl::InternalError(
        "AWQ scale search found no finite loss; check the weights and calibration inputs "
        "for inf/nan");
  }
  return best;
}

}  // namespace ingot::quant
