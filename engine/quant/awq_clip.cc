// AWQ's clipping search, as AutoAWQ 0.2.9's AwqQuantizer._compute_best_clip runs it
// (n_grid = 20, max_shrink = 0.5, n_sample_token = 512) on a weight already multiplied
// by its scales s, with the layer's inputs divided by s (apply_scale divides the
// recorded input features before the clip search reads them):
//   for each output row r and group g of the weight:
//     m0 = max |w[r, g]|
//     for i in [0, 10): m = m0 * (1 - i / 20)
//       err_i = mean over tokens t of (sum_{k in g} x[t, k] (Q(clamp(w[r, k], -m, m)) - w[r, k]))^2
//     keep the first m of least err (i = 0 is no clipping)
// with Q AutoAWQ's pseudo_quantize_tensor (awq_internal.h). Tokens: every
// max(1, n / 512)-th of the n calibration samples, from the first. AutoAWQ skips the
// q/k projections (their outputs meet in q k^T, which the per-module error does not
// see); the caller does the same.
//
// Cost: 10 shrinks x rows x cols x tokens multiply-adds, one GEMM per group and shrink
// (rows x group) x (group x tokens); for a 1536 x 576 weight and 256 samples, 2.3 G
// multiply-adds (SmolLM2-135M, v/o/gate/up/down of 30 layers: about 240 G).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"
#include "engine/quant/awq_internal.h"

namespace ingot::quant {
namespace {

constexpr int32_t kClipGrid = 20;         // AutoAWQ's n_grid
constexpr int32_t kClipShrinks = 10;      // int(max_shrink 0.5 * n_grid)
constexpr int64_t kClipSampleTokens = 512;

absl::Status CheckClipInputs(const float* w, int64_t cols, const CalibrationStats& calib,
                             const std::vector<float>& s) {
  if (w == nullptr) return absl::InvalidArgumentError("AWQ clipping search: no weight");
  if (calib.cols != cols || calib.n_samples <= 0 ||
      calib.samples.size() != static_cast<size_t>(calib.n_samples * cols)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AWQ clipping search needs calibration input samples of %d features (have %d samples "
        "of %d features, %d values)",
        cols, calib.n_samples, calib.cols, calib.samples.size()));
  }
  if (!s.empty() && s.size() != static_cast<size_t>(cols)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("AWQ clipping search: %d scales for %d input features", s.size(), cols));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<float>> AwqSearchClip(const float* w, int64_t rows, int64_t cols,
                                                 const CalibrationStats& calib,
                                                 const std::vector<float>& s,
                                                 const MethodParams& params) {
  int64_t group = 0;
  if (absl::Status st = affine::CheckAffineShape(rows, cols, params, &group); !st.ok()) return st;
  if (absl::Status st = CheckClipInputs(w, cols, calib, s); !st.ok()) return st;
  const bool zero_point = !params.symmetric;
  const int64_t n_groups = cols / group;
  const int64_t step = std::max<int64_t>(1, calib.n_samples / kClipSampleTokens);
  const int64_t n = (calib.n_samples + step - 1) / step;

  std::vector<float> xt(static_cast<size_t>(cols * n));  // (cols, n): X^T / s
  for (int64_t j = 0; j < n; ++j) {
    const float* x = &calib.samples[j * step * cols];
    for (int64_t c = 0; c < cols; ++c) xt[c * n + j] = s.empty() ? x[c] : x[c] / s[c];
  }
  std::vector<float> org_max(static_cast<size_t>(rows * n_groups));  // (rows, n_groups)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < n_groups; ++g) {
      float m = 0.0f;
      for (int64_t c = g * group; c < (g + 1) * group; ++c) m = std::max(m, std::fabs(w[r * cols + c]));
      org_max[r * n_groups + g] = m;
    }
  }
  std::vector<float> best(org_max);
  std::vector<double> min_err(org_max.size(), 1e9);  // AutoAWQ's initial min_errs
  std::vector<float> d(static_cast<size_t>(rows * cols));  // (rows, cols) Q(clamp(w)) - w
  std::vector<float> e(static_cast<size_t>(rows * n));     // (rows, n) one group's D X^T
  for (int32_t i = 0; i < kClipShrinks; ++i) {
    // AutoAWQ: org_max_val * (1 - i_s / n_grid), the factor a Python float used in f32.
    const float factor = static_cast<float>(1.0 - static_cast<double>(i) / kClipGrid);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < n_groups; ++g) {
        const float m = org_max[r * n_groups + g] * factor;
        const float* wg = w + r * cols + g * group;
        float* dg = &d[r * cols + g * group];
        for (int64_t k = 0; k < group; ++k) dg[k] = std::clamp(wg[k], -m, m);
        awq::PseudoQuantize(dg, group, params.bits, zero_point);
        for (int64_t k = 0; k < group; ++k) dg[k] -= wg[k];
      }
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      std::fill(e.begin(), e.end(), 0.0f);
      affine::GemmAccF32(rows, n, group, 1.0f, d.data() + g * group, cols, xt.data() + g * group * n,
                         n, e.data(), n);
      for (int64_t r = 0; r < rows; ++r) {
        double err = 0.0;
        for (int64_t j = 0; j < n; ++j) err += static_cast<double>(e[r * n + j]) * e[r * n + j];
        err /= static_cast<double>(n);
        const size_t at = static_cast<size_t>(r * n_groups + g);
        if (err < min_err[at]) {
          min_err[at] = err;
          best[at] = org_max[at] * factor;
        }
      }
    }
  }
  return best;
}

void AwqApplyClip(float* w, int64_t rows, int64_t cols, int64_t group_size,
                  const std::vector<float>& max_val) {
  const int64_t group = group_size > 0 ? group_size : cols;
  const int64_t n_groups = cols / group;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float m = max_val[r * n_groups + c / group];
      w[r * cols + c] = std::clamp(w[r * cols + c], -m, m);
    }
  }
}

}  // namespace ingot::quant
