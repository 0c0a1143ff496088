// HQQ (Half-Quadratic Quantization, hqq 0.2.8): affine groups whose zero is fitted by
// HQQ's proximal solver, stored as kAffine/kZero (w = (q - zero) * scale, f16 scale and
// zero per (row, group)).
//
// What hqq 0.2.8 does, and we reproduce (hqq/core/quantize.py Quantizer.quantize and
// hqq/core/optimize.py optimize_weights_proximal_legacy, the default solver):
//   * axis=1: W (rows, cols) is cut into groups of `group` consecutive weights of a row
//     (W.reshape(-1, group)); min/max per group.
//   * s = (2^bits - 1) / (max - min), evaluated as torch does a python scalar over a
//     tensor: reciprocal(max - min) * (2^bits - 1); s = 1 where |max - min| <= 1e-4,
//     s <= 2e4; z = -min * s, rounded when bits == 4 (hqq_base_quant_config's
//     round_zero). s is the *inverse* scale: q = clamp(round(w * s + z), 0, 2^bits - 1).
//   * The solver (float32 on CPU; hqq uses float16 on CUDA) iterates, with beta fixed
//     (the legacy solver never multiplies beta by kappa):
//       q   = clamp(round(w * s + z)),  w_r = (q - z) / s
//       err = mean |w - w_r| over the WHOLE matrix (one early-stop decision for all groups)
//       w_e = shrink_lp(w - w_r, beta, p) = sign(x) * max(|x| - |x|^(p-1) / beta, 0)
//       z   = mean over the group of (q - (w - w_e) * s)
//     and stops after the first iteration whose err is not below the best so far,
//     keeping the zero that iteration produced. s is never updated.
//   * Stored: scale = f16(1 / s), zero = f16(z) (a float, not an integer).
//   * quant_zero / quant_scale (HQQLinear.quantize with hqq_base_quant_config's meta
//     params; hqq 0.2.8's HQQLinear constructor ignores them, its quantize() still runs
//     them): zero as 8-bit over the whole tensor (one min/max), scale as 8-bit groups of
//     128 along hqq's axis 0 (group j = scales j, j + n/128, ... of the n per-group
//     scales), no solver, dequantized in float16 arithmetic. Codes are unaffected. We
//     store the dequantized f16 values: same numbers as hqq, same resident bytes as
//     without (kAffine has no 8-bit meta field).
//   * Sums (group means, the whole-matrix error) in torch's single-threaded CPU order
//     (TorchSum below): with that, codes, scales and zeros are bit-identical to hqq's.
// Not reproduced: hqq on CUDA (float16 solver), compute_dtype bfloat16 (we store f16),
// and groups that straddle rows (hqq flattens W, so group 128 works on 576-wide rows;
// kAffine needs the group to divide the row: INVALID_ARGUMENT). axis=0 groups run along
// output features (W.reshape(group, -1): a group is one column of `group` rows,
// strided); kAffine groups run along a row, so axis 0 is refused (INVALID_ARGUMENT).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

// Round half to even (torch.round) of x in [0, 2^22], exact under the default rounding
// mode; vectorizes where nearbyint would be a libm call on baseline x86-64.
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
inline float RoundHalfEven(float x) { return (x + kRoundMagic) - kRoundMagic; }
inline float QuantizeClamped(float w, float s, float z, float max_v) {
  float x = w * s + z;
  x = x > 0.0f ? x : 0.0f;  // NaN -> 0
  x = x > max_v ? max_v : x;
  return RoundHalfEven(x);  // clamp then round == round then clamp for integer bounds
}

float Half(float x) { return Fp16ToFp32(Fp32ToFp16(x)); }

// HQQ's initial parameters for n values: inverse scale s and zero z.
void MinMaxInit(const float* w, int64_t n, float max_v, bool round_zero, float* s, float* z) {
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  const float denom = hi - lo;
  // torch evaluates `max_v / denom` (python scalar / tensor) as reciprocal(denom) * max_v.
  float scale = (1.0f / denom) * max_v;
  if (std::fabs(denom) <= 1e-4f) scale = 1.0f;
  scale = std::min(scale, 2e4f);
  float zero = -lo * scale;
  if (round_zero) zero = std::nearbyint(zero);
  *s = scale;
  *z = zero;
}

struct Solver {
  float beta = 10.0f;
  float lp_norm = 0.7f;
  float max_v = 15.0f;
  // |x| below this gives w_e == 0 exactly (|x| <= |x|^(p-1) / beta, with a 1% margin
  // for pow's rounding), so the pow is skipped for nearly every weight.
  float skip_below = 0.0f;
};

// Sums floats in the order of torch's single-threaded CPU sum over a contiguous run
// with 8-lane (AVX2) vectors (aten/src/ATen/native/cpu/SumKernel.cpp:
// vectorized_inner_sum -> row_sum -> multi_row_sum): rows of 4 vectors; vector k of a
// row goes to accumulator k, cascaded in levels every 2^level_power rows; leftover
// vectors go to accumulator 0; the accumulators are added lane-wise, then the scalar
// tail and the 8 lanes in order. Matching it keeps the solver's zeros and its early stop
// bit-identical to hqq's instead of an ulp apart (an ulp in a zero, or a near-tie in
// the whole-matrix error, can change a code). Values are pushed in order, in any pieces.
class TorchSum {
 public:
  explicit TorchSum(int64_t n) : n_(n) {
    nvec_ = n / kLanes;
    rows_ = nvec_ / kIlp;
    int64_t ceil_log2 = 0;
    while ((int64_t{1} << ceil_log2) < rows_) ++ceil_log2;
    level_power_ = std::max<int64_t>(4, ceil_log2 / kLevels);
    level_mask_ = (int64_t{1} << level_power_) - 1;
    // multi_row_sum only cascades over whole blocks of 2^level_power rows.
    cascade_rows_ = rows_ - rows_ % (level_mask_ + 1);
  }

  void Add(const float* t, int64_t m) {
    while (m > 0) {
      if (fill_ == 0 && m >= kRow && done_rows_ < rows_) {
        AddRow(t);
        t += kRow;
        m -= kRow;
        continue;
      }
      const int64_t take = std::min<int64_t>(m, kRow - fill_);
      std::memcpy(buf_ + fill_, t, static_cast<size_t>(take) * sizeof(float));
      fill_ += take;
      t += take;
      m -= take;
      if (fill_ == kRow) {
        fill_ = 0;
        if (done_rows_ < rows_) {
          AddRow(buf_);
        } else {
          AddTail(buf_, kRow);
        }
      }
    }
  }

  float Total() {
    AddTail(buf_, fill_);
    fill_ = 0;
    for (int j = 1; j < kLevels; ++j)
      for (int k = 0; k < kIlp; ++k)
        for (int l = 0; l < kLanes; ++l) acc_[0][k][l] += acc_[j][k][l];
    float* p = acc_[0][0];
    for (int64_t v = 0; v < n_leftover_vec_; ++v)
      for (int l = 0; l < kLanes; ++l) p[l] += leftover_[v][l];
    for (int k = 1; k < kIlp; ++k)
      for (int l = 0; l < kLanes; ++l) p[l] += acc_[0][k][l];
    float total = 0.0f;
    for (int64_t e = 0; e < n_scalar_; ++e) total += scalar_[e];
    for (int l = 0; l < kLanes; ++l) total += p[l];
    return total;
  }

 private:
  static constexpr int kLanes = 8, kIlp = 4, kLevels = 4, kRow = kLanes * kIlp;

  void AddRow(const float* t) {
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < kLanes; ++l) acc_[0][k][l] += t[k * kLanes + l];
    ++done_rows_;
    if (done_rows_ <= cascade_rows_ && (done_rows_ & level_mask_) == 0) {
      for (int j = 1; j < kLevels; ++j) {
        for (int k = 0; k < kIlp; ++k)
          for (int l = 0; l < kLanes; ++l) {
            acc_[j][k][l] += acc_[j - 1][k][l];
            acc_[j - 1][k][l] = 0.0f;
          }
        const int64_t mask = level_mask_ << (j * level_power_);
        if ((done_rows_ & mask) != mask) break;
      }
    }
  }
  // Values after the last whole row: up to 3 vectors, then up to 7 scalars.
  void AddTail(const float* t, int64_t m) {
    for (int64_t e = 0; e < m; ++e) {
      const int64_t index = rows_ * kRow + n_leftover_vec_ * kLanes + n_scalar_;
      if (index < nvec_ * kLanes) {
        leftover_[n_leftover_vec_][n_scalar_] = t[e];
        if (++n_scalar_ == kLanes) {
          n_scalar_ = 0;
          ++n_leftover_vec_;
        }
      } else {
        scalar_[n_scalar_++] = t[e];
      }
    }
  }

  int64_t n_ = 0, nvec_ = 0, rows_ = 0, cascade_rows_ = 0, level_power_ = 4, level_mask_ = 15;
  int64_t done_rows_ = 0, fill_ = 0, n_leftover_vec_ = 0, n_scalar_ = 0;
  float acc_[kLevels][kIlp][kLanes] = {};
  float buf_[kRow] = {};
  float leftover_[kIlp][kLanes] = {};
  float scalar_[kLanes] = {};
};

// TorchSum of one group: groups under 512 values never reach a cascade level, so the
// accumulators fit in registers.
float GroupSum(const float* t, int64_t n) {
  constexpr int kLanes = 8, kIlp = 4;
  if (n >= 16 * kLanes * kIlp) {
    TorchSum sum(n);
    sum.Add(t, n);
    return sum.Total();
  }
  const int64_t nvec = n / kLanes, rows = nvec / kIlp;
  float acc[kIlp][kLanes] = {};
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < kIlp; ++k)
      for (int l = 0; l < kLanes; ++l) acc[k][l] += t[(r * kIlp + k) * kLanes + l];
  for (int64_t v = rows * kIlp; v < nvec; ++v)
    for (int l = 0; l < kLanes; ++l) acc[0][l] += t[v * kLanes + l];
  for (int k = 1; k < kIlp; ++k)
    for (int l = 0; l < kLanes; ++l) acc[0][l] += acc[k][l];
  float total = 0.0f;
  for (int64_t e = nvec * kLanes; e < n; ++e) total += t[e];
  for (int l = 0; l < kLanes; ++l) total += acc[0][l];
  return total;
}

// One solver step over one group of n weights: the group's next zero in *z; |w - w_r|
// goes to `err` (the whole-matrix mean error). `tmp` holds 2n floats.
// Napkin math: 576x1536 = 0.9M weights x ~20 iterations x ~15 flops (one divide) is
// ~0.3 Gflop: tens of ms when the 8-wide inner loops vectorize.
void SolverStep(const Solver& sv, const float* w, int64_t n, float s, float* z, float* tmp,
                TorchSum& err) {
  const float zero = *z;
  const float max_v = sv.max_v;
  float* __restrict abs_err = tmp;   // (n) |w - w_r|
  float* __restrict target = tmp + n;  // (n) q - (w - w_e) * s, averaged into the next zero
  const float* __restrict wr = w;
  // w_e == 0 unless |w - w_r| >= skip_below: the common path has no pow and no branch.
  // SSE2 (the x86-64 baseline; GCC's -O2 does not vectorize this loop by itself): the
  // same IEEE operations in the same order as the scalar tail, so results are identical.
  const float skip = sv.skip_below;
  int32_t any_big = 0;
  int64_t i = 0;
#if defined(__SSE2__)
  {
    const __m128 vs = _mm_set1_ps(s), vz = _mm_set1_ps(zero), vmax = _mm_set1_ps(max_v);
    const __m128 vmagic = _mm_set1_ps(kRoundMagic), vskip = _mm_set1_ps(skip);
    const __m128 vabs = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 big = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) {
      const __m128 wi = _mm_loadu_ps(wr + i);
      // max(x, 0) then min(x, max_v): NaN -> 0, as QuantizeClamped.
      __m128 x = _mm_max_ps(_mm_add_ps(_mm_mul_ps(wi, vs), vz), _mm_setzero_ps());
      x = _mm_min_ps(x, vmax);
      const __m128 q = _mm_sub_ps(_mm_add_ps(x, vmagic), vmagic);
      const __m128 ax = _mm_and_ps(_mm_sub_ps(wi, _mm_div_ps(_mm_sub_ps(q, vz), vs)), vabs);
      _mm_storeu_ps(abs_err + i, ax);
      _mm_storeu_ps(target + i, _mm_sub_ps(q, _mm_mul_ps(wi, vs)));
      big = _mm_or_ps(big, _mm_cmpge_ps(ax, vskip));
    }
    any_big = _mm_movemask_ps(big);
  }
#endif
  for (; i < n; ++i) {
    const float wi = wr[i];
    const float q = QuantizeClamped(wi, s, zero, max_v);
    const float ax = std::fabs(wi - (q - zero) / s);
    abs_err[i] = ax;
    target[i] = q - wi * s;
    any_big |= ax >= skip;
  }
  if (any_big) {
    const float inv_beta = 1.0f / sv.beta;
    const float p1 = sv.lp_norm - 1.0f;
    for (i = 0; i < n; ++i) {
      const float ax = abs_err[i];
      if (!(ax >= sv.skip_below)) continue;
      const float q = QuantizeClamped(w[i], s, zero, max_v);
      const float x = w[i] - (q - zero) / s;
      // shrink_lp_op: sign(x) * relu(|x| - |x|^(p-1) / beta)
      const float shrink = sv.lp_norm == 1.0f ? inv_beta : inv_beta * std::pow(ax, p1);
      const float mag = std::max(ax - shrink, 0.0f);
      const float we = x > 0.0f ? mag : (x < 0.0f ? -mag : 0.0f);
      target[i] = q - (w[i] - we) * s;
    }
  }
  err.Add(abs_err, n);
  *z = GroupSum(target, n) / static_cast<float>(n);
}

// hqq's Quantizer.quantize of a meta tensor to 8 bits, no solver, then
// Quantizer.dequantize in float16 arithmetic: returns the f16-exact values (in place).
// Groups: element k belongs to group k % n_groups (the reshape(group, -1) of axis 0),
// or one group when n_groups == 1.
void QuantizeMeta8(float* v, int64_t n, int64_t n_groups) {
  const float max_v = 255.0f;
  std::vector<float> lo(n_groups, INFINITY), hi(n_groups, -INFINITY);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t g = k % n_groups;
    lo[g] = std::min(lo[g], v[k]);
    hi[g] = std::max(hi[g], v[k]);
  }
  std::vector<float> s(n_groups), z(n_groups);
  for (int64_t g = 0; g < n_groups; ++g) {
    const float denom = hi[g] - lo[g];
    float scale = (1.0f / denom) * max_v;  // as MinMaxInit
    if (std::fabs(denom) <= 1e-4f) scale = 1.0f;
    scale = std::min(scale, 2e4f);
    z[g] = -lo[g] * scale;
    s[g] = scale;
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t g = k % n_groups;
    const float q = QuantizeClamped(v[k], s[g], z[g], max_v);
    // Stored as f16 (to_inplace), dequantized as f16 ops: (q - zero) * scale.
    const float zero16 = Half(z[g]);
    const float scale16 = Half(1.0f / s[g]);
    v[k] = Half(Half(q - zero16) * scale16);
  }
}


}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeHqq(const float* w, int64_t rows, int64_t cols,
                                            const MethodParams& params) {
  const int32_t bits = params.bits;
  const int64_t group = params.group_size;
  if (rows <= 0 || cols <= 0 || w == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("hqq: empty matrix ", rows, "x", cols));
  if (bits < 1 || bits > 8 || bits == 7)
    return absl::InvalidArgumentError(
        absl::StrCat("hqq: bits=", bits, " not supported (1, 2, 3, 4, 5, 6 or 8)"));
  if (group <= 0 || cols % group != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "hqq: group_size=", group, " must be positive and divide the row length ", cols));
  if (params.hqq_axis != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "hqq: axis=", params.hqq_axis,
        " not supported; only axis=1 (groups along input features) maps onto ingot's "
        "affine groups (axis=0 groups span output features)"));
  if (!(params.hqq_lp_norm > 0.0f && params.hqq_lp_norm <= 1.0f) || !(params.hqq_beta > 0.0f) ||
      params.hqq_iters < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "hqq: need 0 < lp_norm <= 1, beta > 0, iters >= 0 (got lp_norm=", params.hqq_lp_norm,
        ", beta=", params.hqq_beta, ", iters=", params.hqq_iters, ")"));
  const int64_t groups_per_row = cols / group;
  const int64_t n_groups = rows * groups_per_row;
  if (params.hqq_quant_scale && n_groups % 128 != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "hqq: quant_scale quantizes the ", n_groups,
        " group scales in groups of 128 and needs rows * cols / group_size to be a "
        "multiple of 128 (as hqq does)"));

  const float max_v = static_cast<float>((1 << bits) - 1);
  std::vector<float> s(n_groups), z(n_groups);  // inverse scale, zero; (rows * groups)
  for (int64_t g = 0; g < n_groups; ++g)
    MinMaxInit(w + g * group, group, max_v, /*round_zero=*/bits == 4, &s[g], &z[g]);

  if (params.hqq_optimize) {
    Solver sv;
    sv.beta = params.hqq_beta;
    sv.lp_norm = params.hqq_lp_norm;
    sv.max_v = max_v;
    sv.skip_below = static_cast<float>(
        0.99 * std::pow(1.0 / static_cast<double>(params.hqq_beta),
                        1.0 / (2.0 - static_cast<double>(params.hqq_lp_norm))));
    const int64_t n_total = rows * cols;
    float best = INFINITY;
    std::vector<float> tmp(2 * group);
    for (int32_t it = 0; it < params.hqq_iters; ++it) {
      // torch.abs(W_f - W_r).mean(): single-threaded torch order (hqq's own result
      // depends on torch's thread count only through near-ties of this comparison).
      TorchSum err(n_total);
      for (int64_t g = 0; g < n_groups; ++g)
        SolverStep(sv, w + g * group, group, s[g], &z[g], tmp.data(), err);
      const float mean = err.Total() / static_cast<float>(n_total);
      if (mean < best) {
        best = mean;
      } else {
        break;
      }
    }
  }

  QuantizedWeight out;
  const formats::AffineStorage st = formats::AllocAffine(out, rows, cols, bits, group);
  kernels::AffineMatrix& a = out.view.affine;
  uint8_t* q = st.q;
  uint16_t* scale16 = st.scale;
  uint16_t* zero16 = st.zero;
  (void)n_groups;  // == rows * st.groups

  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < groups_per_row; ++gi) {
      const int64_t g = r * groups_per_row + gi;
      const float* wg = w + g * group;
      for (int64_t i = 0; i < group; ++i)
        codes[gi * group + i] = static_cast<uint8_t>(QuantizeClamped(wg[i], s[g], z[g], max_v));
    }
    PackCodes(codes.data(), cols, bits, q + r * a.row_bytes);
  }

  // Stored scale is 1 / s (hqq inverts after quantizing); meta quantization works on it.
  std::vector<float>& scale = s;
  for (float& v : scale) v = 1.0f / v;
  if (params.hqq_quant_zero) QuantizeMeta8(z.data(), n_groups, 1);
  if (params.hqq_quant_scale) QuantizeMeta8(scale.data(), n_groups, n_groups / 128);
  for (int64_t g = 0; g < n_groups; ++g) {
    scale16[g] = Fp32ToFp16(scale[g]);
    zero16[g] = Fp32ToFp16(z[g]);
  }
  out.representation = absl::StrCat("affine", bits, "/g", group, params.hqq_quant_zero ? "+qz" : "",
                                    params.hqq_quant_scale ? "+qs" : "");
  return out;
}

}  // namespace ingot::quant
