// GPTQ (Frantar et al. 2022) as AutoGPTQ 0.7.1's GPTQ.fasterquant runs it
// (auto_gptq/quantization/gptq.py): blocksize 128, H = 2/n sum x x^T, dead columns,
// damp = percdamp * mean(diag H), Hinv = upper Cholesky factor of H^-1, a column sweep
// per block with the error of each column pushed onto the later columns of the block,
// then onto the rest of W with one GEMM ("lazy batch" update).
//
// Group parameters: without act-order they are found when the sweep reaches a group's
// first column, from W as it stands at that point (static_groups = False, the default),
// which - as in the reference - includes the updates of earlier blocks but not those of
// earlier columns of the same block. With act-order the columns are swept by descending
// diag(H); since our storage has contiguous groups along the original columns (no
// g_idx), the groups are those of static_groups = True: found on the original-order
// groups before the sweep, and each column quantized with its original group's params.
//
// Precision: the sweep in f32 as the reference (W.float()); the Hessian, damping and
// the Cholesky factor/inverse in double (the reference: f32), then rounded to f32.
// Codes come from the f32 scale; the stored scale is its f16 rounding.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

constexpr int64_t kBlock = 128;  // GPTQ's blocksize

absl::Status CheckCalibration(int64_t cols, const CalibrationStats& calib,
                              const MethodParams& params) {
  if (calib.cols != cols ||
      calib.hessian.size() != static_cast<size_t>(cols) * static_cast<size_t>(cols)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPTQ calibration statistics are for %d input features (Hessian of %d values) but "
        "the weight has %d columns; collect them on this layer's input",
        calib.cols, calib.hessian.size(), cols));
  }
  if (calib.tokens <= 0) {
    return absl::InvalidArgumentError(
        "GPTQ needs calibration tokens (calib.tokens = 0); pass a calibration text");
  }
  if (!(params.gptq_damp >= 0.0f) || !std::isfinite(params.gptq_damp)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gptq_damp = %g: the damping fraction must be finite and >= 0 (default 0.01)",
        params.gptq_damp));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeGptq(const float* w, int64_t rows, int64_t cols,
                                             const CalibrationStats& calib,
                                             const MethodParams& params) {
  int64_t group = 0;
  if (absl::Status s = affine::CheckAffineShape(rows, cols, params, &group); !s.ok()) return s;
  if (absl::Status s = CheckCalibration(cols, calib, params); !s.ok()) return s;
  const int64_t n = cols;
  const int64_t groups = cols / group;
  const int32_t maxq = (1 << params.bits) - 1;
  const bool act_order = params.gptq_act_order;

  // H = 2/n sum x x^T; dead inputs (diag 0) get H_jj = 1 and zero weights.
  std::vector<double> h(calib.hessian);
  const double h_scale = 2.0 / static_cast<double>(calib.tokens);
  for (double& v : h) v *= h_scale;
  std::vector<float> wf(w, w + rows * cols);  // (rows, cols)
  for (int64_t j = 0; j < n; ++j) {
    if (h[j * n + j] != 0.0) continue;
    h[j * n + j] = 1.0;
    for (int64_t r = 0; r < rows; ++r) wf[r * n + j] = 0.0f;
  }

  // act-order: static groups on the original columns, then permute W and H.
  std::vector<affine::GroupParams> params_out(static_cast<size_t>(rows * groups));
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        params_out[r * groups + g] =
            affine::FindParams(&wf[r * n + g * group], group, maxq, params.symmetric);
      }
    }
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a * n + a] > h[b * n + b]; });
    std::vector<float> wp(wf.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < n; ++j) wp[r * n + j] = wf[r * n + perm[j]];
    }
    wf.swap(wp);
    std::vector<double> hp(h.size());
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) hp[i * n + j] = h[perm[i] * n + perm[j]];
    }
    h.swap(hp);
  }

  double mean_diag = 0.0;
  for (int64_t j = 0; j < n; ++j) mean_diag += h[j * n + j];
  mean_diag /= static_cast<double>(n);
  const double damp = static_cast<double>(params.gptq_damp) * mean_diag;
  for (int64_t j = 0; j < n; ++j) h[j * n + j] += damp;

  std::vector<double> u64;
  if (absl::Status s = affine::UpperCholeskyOfInverse(h, n, &u64); !s.ok()) return s;
  std::vector<double>().swap(h);
  std::vector<float> u(u64.begin(), u64.end());  // (n, n) upper: Hinv
  std::vector<double>().swap(u64);

  // The sweep. codes are in sweep (permuted) order.
  std::vector<uint8_t> codes(static_cast<size_t>(rows * n));
  std::vector<float> err(static_cast<size_t>(rows * kBlock));  // (rows, kBlock)
  std::vector<affine::GroupParams> current(static_cast<size_t>(rows));
  float w1[kBlock];
  for (int64_t i1 = 0; i1 < n; i1 += kBlock) {
    const int64_t i2 = std::min(i1 + kBlock, n);
    const int64_t b = i2 - i1;
    for (int64_t r = 0; r < rows; ++r) {
      const float* wr = &wf[r * n];  // W outside this block's column updates
      std::copy(wr + i1, wr + i2, w1);
      float* er = &err[r * kBlock];
      for (int64_t i = 0; i < b; ++i) {
        const int64_t col = i1 + i;
        affine::GroupParams p;
        if (act_order) {
          p = params_out[r * groups + perm[col] / group];
        } else {
          if (col % group == 0) {
            current[r] = affine::FindParams(wr + col, group, maxq, params.symmetric);
            params_out[r * groups + col / group] = current[r];
          }
          p = current[r];
        }
        const int32_t q = affine::QuantizeCode(w1[i], p, maxq);
        codes[r * n + col] = static_cast<uint8_t>(q);
        const float* hrow = &u[col * n + i1];  // Hinv[col, i1:i2]
        const float e = (w1[i] - affine::Dequantize(q, p)) / hrow[i];
        for (int64_t j = i + 1; j < b; ++j) w1[j] -= e * hrow[j];
        er[i] = e;
      }
    }
    if (i2 < n) {
      // W[:, i2:] -= Err1 Hinv[i1:i2, i2:]
      affine::GemmAccF32(rows, n - i2, b, -1.0f, err.data(), kBlock, &u[i1 * n + i2], n,
                         &wf[i2], n);
    }
  }

  QuantizedWeight out;
  const affine::AffineStorage st = affine::AllocAffine(out, rows, cols, params.bits, group);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* qr = st.q + static_cast<size_t>(r) * st.row_bytes;
    for (int64_t j = 0; j < n; ++j) {
      affine::PutCode(qr, perm[j], params.bits, codes[r * n + j]);
    }
    for (int64_t g = 0; g < groups; ++g) {
      st.scale[r * groups + g] = Fp32ToFp16(params_out[r * groups + g].scale);
      st.zero[r * groups + g] = Fp32ToFp16(params_out[r * groups + g].zero);
    }
  }
  return out;
}

}  // namespace ingot::quant
