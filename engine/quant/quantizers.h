// The quantization methods' algorithms: each turns one f32 weight matrix (row-major,
// rows = output features, cols = input features) into a canonical representation
// (kernels/cpu/qmatrix.h) that owns its memory. The method table (method.h) maps
// method names to these functions; validation of parameters happens there, so these
// functions may assume valid parameters but still return INVALID_ARGUMENT rather than
// crash when shapes do not fit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/layouts/storage.h"
#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"

namespace ingot::quant {

// A quantized weight: the kernel view plus the buffers it points into (shared with the
// layout readers, engine/formats/layouts/storage.h).
using formats::QuantizedWeight;

// Per-method knobs, as users of bitsandbytes/HQQ/GPTQ know them. Defaults are each
// method's published defaults.
struct MethodParams {
  int32_t bits = 4;
  int64_t group_size = 64;     // block size for bitsandbytes 4-bit
  bool double_quant = true;    // bitsandbytes 4-bit: quantize the absmax (blocks of 256)
  kernels::Codebook codebook = kernels::Codebook::kNF4;
  bool symmetric = false;      // GPTQ sym; Quanto int8 is symmetric by definition
  // HQQ
  int32_t hqq_axis = 1;        // 1: groups along input features (rows of W); 0: along outputs
  int32_t hqq_iters = 20;
  float hqq_lp_norm = 0.7f;
  float hqq_beta = 10.0f;
  float hqq_kappa = 1.01f;
  bool hqq_optimize = true;
  bool hqq_quant_zero = false;   // zeros quantized to 8 bits (groups of 128), as HQQ's quant_zero
  bool hqq_quant_scale = false;  // scales quantized to 8 bits (groups of 128)
  // LLM.int8
  float int8_threshold = 6.0f;
  // GPTQ
  float gptq_damp = 0.01f;
  bool gptq_act_order = false;
  // Hessians from the partially quantized model, layer by layer (AutoGPTQ's default):
  // layer l's inputs come through layers 0..l-1 already quantized.
  bool gptq_true_sequential = true;
  // AWQ
  int32_t awq_grid = 20;
  // Scales from both the activations' and the weights' magnitudes (AutoAWQ's default).
  bool awq_duo_scaling = true;
  // The clipping search on every scaled module but q/k (AutoAWQ's apply_clip, default on).
  bool awq_clip = true;
};

// What calibration text produced for one linear layer's input (GPTQ, AWQ).
struct CalibrationStats {
  int64_t cols = 0;
  int64_t tokens = 0;                 // tokens accumulated into `hessian`
  std::vector<double> hessian;        // cols x cols, sum over tokens of x x^T
  std::vector<float> act_abs_mean;    // cols, mean |x| per input feature
  std::vector<float> samples;         // n_samples x cols, a subsample of inputs
  int64_t n_samples = 0;
};

// bitsandbytes 4-bit (NF4/FP4), blocks of params.group_size, optional double quant.
absl::StatusOr<QuantizedWeight> QuantizeBnb4(const float* w, int64_t rows, int64_t cols,
                                             const MethodParams& params);
// bitsandbytes LLM.int8: per-row absmax int8 (SCB), outlier threshold params.int8_threshold.
absl::StatusOr<QuantizedWeight> QuantizeBnbInt8(const float* w, int64_t rows, int64_t cols,
                                                const MethodParams& params);
// HQQ, params.bits in {1,2,3,4,8}, half-quadratic zero/scale optimization.
absl::StatusOr<QuantizedWeight> QuantizeHqq(const float* w, int64_t rows, int64_t cols,
                                            const MethodParams& params);
// optimum-quanto int2/int4 (affine groups) and int8 (symmetric per output channel).
absl::StatusOr<QuantizedWeight> QuantizeQuanto(const float* w, int64_t rows, int64_t cols,
                                               const MethodParams& params);
// torchao int8_weight_only / int8_dynamic (per-channel symmetric int8; `dynamic` sets
// the activation path) and int4_weight_only (asymmetric groups, bf16 scales/zeros).
absl::StatusOr<QuantizedWeight> QuantizeTorchaoInt8(const float* w, int64_t rows, int64_t cols,
                                                    bool dynamic, const MethodParams& params);
absl::StatusOr<QuantizedWeight> QuantizeTorchaoInt4(const float* w, int64_t rows, int64_t cols,
                                                    const MethodParams& params);
// MLX affine int4/int8 (mx.quantize: scale and bias per group).
absl::StatusOr<QuantizedWeight> QuantizeMlx(const float* w, int64_t rows, int64_t cols,
                                            const MethodParams& params);
// GGUF block types, bytes identical to llama.cpp's reference quantizers (no imatrix).
absl::StatusOr<QuantizedWeight> QuantizeGguf(const float* w, int64_t rows, int64_t cols,
                                             GgmlType type);
// Round-to-nearest affine groups with integer zero points (w = (q - z) * s), the
// storage of GPTQ and AWQ; symmetric puts z at 2^(bits-1).
absl::StatusOr<QuantizedWeight> QuantizeAffineRtn(const float* w, int64_t rows, int64_t cols,
                                                  const MethodParams& params);
// GPTQ: column-by-column quantization with error compensation through the inverse
// Hessian of the calibration inputs (damp, group size, act-order, sym).
absl::StatusOr<QuantizedWeight> QuantizeGptq(const float* w, int64_t rows, int64_t cols,
                                             const CalibrationStats& calib,
                                             const MethodParams& params);
// AWQ's activation-aware scale search for linears that share one input (q/k/v,
// gate/up, down): returns s (cols) minimizing || sum_i W_i X - Q(W_i diag(s)) diag(1/s) X ||
// over s = act_abs_mean^alpha (alpha on a grid of params.awq_grid points; with
// params.awq_duo_scaling, act_abs_mean^alpha / mean normalised |w|^(1-alpha)). The caller
// multiplies the weights' columns by s, quantizes them with QuantizeAffineRtn and divides
// the op producing the input (a norm's weight, up's rows) by s.
struct WeightRef {
  const float* w = nullptr;
  int64_t rows = 0;
};
absl::StatusOr<std::vector<float>> AwqSearchScales(const std::vector<WeightRef>& weights,
                                                   int64_t cols, const CalibrationStats& calib,
                                                   const MethodParams& params);
// AWQ's clipping search (AutoAWQ's _compute_best_clip) for one weight already multiplied
// by the scales s (cols; empty: no scaling): per output row and group, the max |w| among
// max|w| * (1 - i/20), i < 10, of least mean squared output error over the calibration
// samples divided by s (every max(1, n_samples / 512)-th), quantizing the clamped group
// with AutoAWQ's pseudo-quantizer. Returns the max |w| per (row, group), row-major.
absl::StatusOr<std::vector<float>> AwqSearchClip(const float* w, int64_t rows, int64_t cols,
                                                 const CalibrationStats& calib,
                                                 const std::vector<float>& s,
                                                 const MethodParams& params);
// Clamps each group of w (rows, cols) to [-max_val, max_val] of its (row, group).
void AwqApplyClip(float* w, int64_t rows, int64_t cols, int64_t group_size,
                  const std::vector<float>& max_val);
// Dense f32/f16/bf16 copy (method NONE): a GGML-typed Linear.
absl::StatusOr<QuantizedWeight> QuantizeDense(const float* w, int64_t rows, int64_t cols,
                                              GgmlType type);

}  // namespace ingot::quant
