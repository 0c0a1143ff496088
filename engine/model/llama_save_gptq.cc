// SaveCheckpoint layout "gptq": AutoGPTQ's v1 layout (auto-gptq 0.7.1 save_quantized, the
// format transformers + optimum and GPTQModel read as checkpoint_format "gptq"). Per
// quantized linear P (I inputs, O outputs, groups of G along the inputs, b bits):
//   P.qweight  I32 [I*b/32, O]   codes as an LSB-first bitstream down each column
//                                (b = 3: codes straddle words, as auto-gptq packs them)
//   P.qzeros   I32 [I/G, O*b/32] zero - 1 (the v1 convention), the same bitstream
//                                along each row of groups
//   P.scales   F16 [I/G, O]
//   P.g_idx    I32 [I]           c / G (no act-order permutation)
//   P.bias     F16 [O]           zeros, unless the model has a bias: auto-gptq's
//                                QuantLinear always has one
// w[o, i] = scales[g, o] * (q[i, o] - zero[g, o]), g = i / G.
// Exact only for kAffine/kZero with integer zeros in [1, 2^b] (zero - 1 must fit in b
// bits): GPTQ and the RTN-style methods make those (symmetric: 2^(b-1)); HQQ's fitted
// zeros are fractional and are refused. lm_head stays dense (auto-gptq never quantizes
// it); every decoder linear must be quantized (the loaders replace them all).
#include <algorithm>
#include <cmath>

#include "engine/model/llama_save_layout.h"
#include "kernels/ggml_types.h"

namespace ingot::save {
using formats::DType;

absl::Status GptqLayout::Add(LayoutWriter& w, const std::string& name, const kernels::Linear& lin,
                             const std::string& repr, bool block, bool has_bias) {
  constexpr const char* kHow = "quantize it with -m gptq (2, 3, 4 or 8 bits) first";
  if (IsFloatWeight(lin)) {
    if (block) {
      return NoForm(name, repr, "GPTQ", "GPTQ's loaders replace every linear of the decoder layers; quantize it "
                    "with -m gptq as well");
    }
    w.AddDense(name, lin.ggml);
    return absl::OkStatus();
  }
  if (!block) return NoForm(name, repr, "GPTQ", "GPTQ checkpoints keep lm_head dense; quantize with the head skipped");
  const kernels::AffineMatrix& a = lin.affine;
  if (lin.kind != kernels::LinearKind::kAffine || a.zero_kind != kernels::ZeroKind::kZero || a.zero == nullptr ||
      lin.outlier_threshold > 0) {
    return NoForm(name, repr, "GPTQ", kHow);
  }
  if (a.bits != 2 && a.bits != 3 && a.bits != 4 && a.bits != 8) {
    return NoForm(name, repr, "GPTQ", "GPTQ packs 2, 3, 4 or 8 bits; quantize it with one of those first");
  }
  if ((a.cols * a.bits) % 32 != 0 || (a.rows * a.bits) % 32 != 0) {
    return NoForm(name, repr, "GPTQ",
                  absl::StrCat("its ", a.rows, " x ", a.cols, " codes do not fill whole 32-bit words"));
  }
  if (any_ && a.bits != bits_) {
    return absl::FailedPreconditionError(absl::StrCat("'", name, "' has ", a.bits, " bits but earlier modules ",
                                                      bits_, "; a GPTQ checkpoint has one bit width"));
  }
  // group_size values that describe this module: G, and -1 (a whole row) when G = I.
  std::vector<int64_t> fits = {a.group};
  if (a.group == a.cols) fits.push_back(-1);
  std::vector<int64_t> agreed;
  for (int64_t g : any_ ? group_sizes_ : fits) {
    if (std::find(fits.begin(), fits.end(), g) != fits.end()) agreed.push_back(g);
  }
  if (agreed.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("'", name, "' has groups of ", a.group,
                                                      " but earlier modules do not; a GPTQ checkpoint has one "
                                                      "group_size"));
  }
  const int64_t rows = a.rows, cols = a.cols, groups = a.groups_per_row(), bits = a.bits;
  const uint32_t top = 1u << bits;
  bool sym = true;
  for (int64_t i = 0; i < rows * groups; ++i) {
    const float z = Fp16ToFp32(a.zero[i]);
    if (!(z >= 1.0f && z <= static_cast<float>(top)) || z != std::floor(z)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "'", name, "' is stored as ", repr, " with zero point ", z, " (output ", i / groups, ", group ",
          i % groups, "), which has no GPTQ form: GPTQ's v1 layout holds integer zeros in [1, ", top,
          "] (HQQ's fitted zeros are fractional); quantize it with -m gptq"));
    }
    sym &= z == static_cast<float>(top / 2);
  }

  // LSB-first bitstream of `bits`-bit values into uint32 words: value k of line j goes
  // to bits [k*bits, (k+1)*bits) of the words word(n, j), n = 0, 1, ...
  auto put = [bits](uint32_t* words, int64_t stride_n, int64_t stride_j, int64_t k, int64_t j, uint32_t v) {
    const int64_t bit = k * bits, n = bit / 32;
    const int shift = static_cast<int>(bit % 32);
    words[n * stride_n + j * stride_j] |= v << shift;
    if (shift + bits > 32) words[(n + 1) * stride_n + j * stride_j] |= v >> (32 - shift);
  };
  uint32_t* qweight = w.KeepArray<uint32_t>(static_cast<size_t>(cols * bits / 32 * rows));  // [I*b/32, O]
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) put(qweight, rows, 1, c, r, kernels::AffineCodeAt(a, r, c));
  }
  const int64_t zw = rows * bits / 32;
  uint32_t* qzeros = w.KeepArray<uint32_t>(static_cast<size_t>(groups * zw));  // [I/G, O*b/32]
  uint16_t* scales = w.KeepArray<uint16_t>(static_cast<size_t>(groups * rows));  // [I/G, O]
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const auto z = static_cast<uint32_t>(Fp16ToFp32(a.zero[r * groups + g]));
      put(qzeros, 1, zw, r, g, z - 1);
      scales[g * rows + r] = a.scale[r * groups + g];
    }
  }
  int32_t* g_idx = w.KeepArray<int32_t>(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) g_idx[c] = static_cast<int32_t>(c / a.group);
  w.Add(name + ".qweight", DType::kI32, {cols * bits / 32, rows}, qweight);
  w.Add(name + ".qzeros", DType::kI32, {groups, zw}, qzeros);
  w.Add(name + ".scales", DType::kF16, {groups, rows}, scales);
  w.Add(name + ".g_idx", DType::kI32, {cols}, g_idx);
  if (!has_bias) w.Add(name + ".bias", DType::kF16, {rows}, w.KeepArray<uint16_t>(static_cast<size_t>(rows)));

  bits_ = a.bits;
  group_sizes_ = std::move(agreed);
  sym_ &= sym;
  any_ = true;
  return absl::OkStatus();
}

absl::StatusOr<Json> GptqLayout::Config() const {
  if (!any_) return NothingQuantized();
  // auto-gptq's quantize_config.json keys; damp_percent and true_sequential describe the
  // quantization run and are its defaults (the loaders do not read them).
  return Json{{"bits", bits_},
              {"group_size", group_sizes_.front()},
              {"damp_percent", 0.01},
              {"desc_act", false},
              {"static_groups", false},
              {"sym", sym_},
              {"true_sequential", true},
              {"model_name_or_path", nullptr},
              {"model_file_base_name", "model"},
              {"is_marlin_format", false},
              {"quant_method", "gptq"}};
}

}  // namespace ingot::save
