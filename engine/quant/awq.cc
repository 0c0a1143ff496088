// AWQ's activation-aware scale search (Lin et al. 2023), as AutoAWQ 0.2.9's
// AwqQuantizer._compute_best_scale runs it: for ratio = i / n_grid, i in [0, n_grid),
//   duo_scaling (AutoAWQ's default):
//     s = clamp(x_mean^ratio / (w_mean^(1 - ratio) + 1e-4), min 1e-4)
//     with w_mean the mean over all rows of the weights sharing the input of
//     |w| / (max |w| of its group + 1e-6)
//   duo_scaling = False (the original llm-awq formulation):
//     s = clamp(x_mean^ratio, min 1e-4)
//   s /= sqrt(max(s) * min(s));  inf/nan -> 1
//   loss(s) = mean over outputs and samples of (W X - Q(W diag(s)) diag(s)^-1 X)^2
// with Q AutoAWQ's pseudo_quantize_tensor (awq_internal.h), and keeps the first s of
// least loss (without duo scaling, ratio 0 gives s = 1, plain round-to-nearest).
// The loss is evaluated as || X D^T ||^2 with D = W - Q(W s)/s, one GEMM per weight and
// ratio over the calibration samples. AutoAWQ's clipping search is awq_clip.cc.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"
#include "engine/quant/awq_internal.h"

namespace ingot::quant {
namespace {

// d = w - Q(w s) / s for one row of cols values (the quantization error of AWQ's recipe).
// Compiled for AVX2 as well: the rounding and divisions dominate when not vectorized.
__attribute__((target_clones("arch=x86-64-v3", "default"), optimize("O3"))) void AwqErrorRow(
    const float* w, const float* s, float* d, int64_t cols, int64_t group, int32_t bits,
    bool zero_point) {
  for (int64_t c = 0; c < cols; ++c) d[c] = w[c] * s[c];
  for (int64_t g = 0; g < cols; g += group) awq::PseudoQuantize(d + g, group, bits, zero_point);
  for (int64_t c = 0; c < cols; ++c) d[c] = w[c] - d[c] / s[c];
}

// Duo scaling's weight statistic: per input column, the mean over every row of the
// weights of |w| / (max |w| of the row's group + 1e-6) (AutoAWQ's w_mean, f32).
std::vector<float> GroupNormalizedWeightMean(const std::vector<WeightRef>& weights, int64_t cols,
                                             int64_t group) {
  std::vector<double> sum(static_cast<size_t>(cols), 0.0);
  int64_t total_rows = 0;
  for (const WeightRef& ref : weights) {
    for (int64_t r = 0; r < ref.rows; ++r) {
      const float* row = ref.w + r * cols;
      for (int64_t g = 0; g < cols; g += group) {
        float amax = 0.0f;
        for (int64_t c = g; c < g + group; ++c) amax = std::max(amax, std::fabs(row[c]));
        const float denom = amax + 1e-6f;
        for (int64_t c = g; c < g + group; ++c) sum[c] += std::fabs(row[c]) / denom;
      }
    }
    total_rows += ref.rows;
  }
  std::vector<float> mean(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) mean[c] = static_cast<float>(sum[c] / total_rows);
  return mean;
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
  const std::vector<float> w_mean =
      params.awq_duo_scaling ? GroupNormalizedWeightMean(weights, cols, group) : std::vector<float>();
  std::vector<float> s(static_cast<size_t>(cols)), best(static_cast<size_t>(cols), 1.0f);
  std::vector<float> d(static_cast<size_t>(max_rows * cols));  // (rows, cols) W - Q(Ws)/s
  std::vector<float> e(static_cast<size_t>(max_rows * n_samples));  // (rows, n_samples) D X^T
  double best_loss = std::numeric_limits<double>::infinity();
  for (int32_t step = 0; step < params.awq_grid; ++step) {
    const double ratio_d = static_cast<double>(step) / params.awq_grid;
    const float ratio = static_cast<float>(ratio_d);
    const float w_exp = static_cast<float>(1.0 - ratio_d);  // Python's 1 - ratio, then f32
    float s_max = -std::numeric_limits<float>::infinity();
    float s_min = std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < cols; ++c) {
      // In f32 as AutoAWQ computes them (x_mean in the calibration dtype, here f32).
      const float x_pow = std::pow(calib.act_abs_mean[c], ratio);
      s[c] = std::max(params.awq_duo_scaling ? x_pow / (std::pow(w_mean[c], w_exp) + 1e-4f)
                                             : x_pow,
                      1e-4f);
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
