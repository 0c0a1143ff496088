// GPTQ: AutoGPTQ's v1 layout (auto-gptq 0.7.1 save_quantized, the
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
// Read: AutoGPTQ / GPTQModel checkpoints (v1, and v2's zeros as stored), act-order
// g_idx included (columns regrouped, or f16 when groups are uneven).
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// AutoGPTQ / GPTQModel: qweight (cols*bits/32, rows) int32, qzeros (groups,
// rows*bits/32), scales (groups, rows) f16, g_idx (cols). gptq v1 stores zero - 1.
absl::StatusOr<LinearLoad> ReadGptq(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const CheckpointQuantConfig& qc = ck.quant();
  const int bits = qc.bits;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    return absl::UnimplementedError(absl::StrCat(ck.path(), ": GPTQ ", bits,
                                                 "-bit packing is not supported (2, 3, 4, 8)"));
  }
  const int64_t group = qc.group_size > 0 ? qc.group_size : cols;
  if (cols % group != 0 || (cols * bits) % 32 != 0 || (rows * bits) % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", name, "' of ", rows, " x ", cols,
                                                   " does not fit GPTQ group size ", group, " at ", bits, " bits"));
  }
  const int64_t groups = cols / group;
  ASSIGN_OR_RETURN(const TensorView* qweight, Get(ck, name + ".qweight", {cols * bits / 32, rows}, {DType::kI32}));
  ASSIGN_OR_RETURN(const TensorView* qzeros, Get(ck, name + ".qzeros", {groups, rows * bits / 32}, {DType::kI32}));
  ASSIGN_OR_RETURN(const TensorView* scales, Get(ck, name + ".scales", {groups, rows}, {DType::kF16, DType::kF32, DType::kBF16}));
  const TensorView* g_idx = ck.Find(name + ".g_idx");
  std::vector<int32_t> gi(cols);
  for (int64_t c = 0; c < cols; ++c) gi[c] = static_cast<int32_t>(c / group);
  bool permuted = false, order_regrouped = false;
  if (g_idx != nullptr) {
    if (g_idx->shape != std::vector<int64_t>{cols} || g_idx->dtype != DType::kI32) {
      return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": tensor '", name, ".g_idx' has shape ",
                                                     Shape(g_idx->shape), " dtype ", DTypeName(g_idx->dtype),
                                                     ", expected [", cols, "] I32"));
    }
    for (int64_t c = 0; c < cols; ++c) {
      const int32_t g = LoadAt<int32_t>(g_idx->data, c);
      if (g < 0 || g >= groups) {
        return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", name, ".g_idx'[", c, "] = ", g,
                                                       " is outside [0, ", groups, ")"));
      }
      permuted |= g != gi[c];
      gi[c] = g;
    }
  }
  const bool v2 = qc.json.find("gptq_v2") != std::string::npos;
  auto zero_of = [&](int64_t g, int64_t r) {
    return Code(*qzeros, g, r, rows * bits / 32, bits, false, nullptr) + (v2 ? 0 : 1);
  };
  QuantizedWeight qw;
  // act-order: a column's group is g_idx[c], not c / group. When every group has
  // `group` columns (as GPTQ makes them), the columns are stored regrouped (sorted by
  // group, stably) and the kernels gather the activations into that order.
  std::vector<int32_t> order(cols);
  for (int64_t c = 0; c < cols; ++c) order[c] = static_cast<int32_t>(c);
  if (permuted) {
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return gi[a] < gi[b]; });
    order_regrouped = true;
    for (int64_t j = 0; j < cols && order_regrouped; ++j) order_regrouped = gi[order[j]] == j / group;
  }
  if (permuted && !order_regrouped) {
    // Groups of uneven size: stored per column in f16 (exactly the values GPTQ's
    // dequantization gives, at 16 bits per weight).
    uint16_t* wd = qw.Alloc<uint16_t>(static_cast<size_t>(rows * cols));
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t q = Code(*qweight, c, r, rows, bits, true, nullptr);
        wd[r * cols + c] = Fp32ToFp16(static_cast<float>(q - zero_of(gi[c], r)) * FloatAt(*scales, gi[c] * rows + r));
      }
    }
    qw.view.kind = kernels::LinearKind::kGgml;
    qw.view.ggml = {GgmlType::kF16, rows, cols, static_cast<size_t>(cols) * 2, reinterpret_cast<const uint8_t*>(wd)};
    qw.representation = "f16 (gptq act-order)";
    return Own(std::move(qw));
  }
  const AffineStorage st = AllocAffine(qw, rows, cols, bits, group);
  uint16_t *scale = st.scale, *zero = st.zero;
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      codes[j] = static_cast<uint8_t>(Code(*qweight, order[j], r, rows, bits, true, nullptr));
    }
    PackCodes(codes.data(), cols, bits, st.q + r * st.row_bytes);
    for (int64_t g = 0; g < groups; ++g) {
      scale[r * groups + g] = Fp32ToFp16(FloatAt(*scales, g * rows + r));
      zero[r * groups + g] = Fp32ToFp16(static_cast<float>(zero_of(g, r)));
    }
  }
  if (order_regrouped) {
    int32_t* input_order = qw.Alloc<int32_t>(static_cast<size_t>(cols));
    std::copy(order.begin(), order.end(), input_order);
    qw.view.input_order = input_order;
    qw.representation += "+act-order";
  }
  return Own(std::move(qw));
}

absl::Status ConfigureGptq(ConfigSource src, const Json& j, const std::string&, CheckpointQuantConfig* q) {
  if (!ReadSettings(src, j, /*default_group=*/128, q)) return absl::OkStatus();
  q->sym = BoolOr(j, "sym", true);
  q->desc_act = BoolOr(j, "desc_act", false);
  return absl::OkStatus();
}

namespace {

// AutoGPTQ's v1 layout as auto-gptq (from_quantized) and transformers + optimum load it.
class GptqEncoder : public LayoutEncoder {
 public:
  absl::Status Add(LayoutWriter& w, const LinearToSave& m) override;
  // config.json's quantization_config, also written as quantize_config.json (auto-gptq
  // reads that; transformers the config.json entry).
  absl::Status Finish(Json* config, std::map<std::string, std::string>* files,
                      std::map<std::string, std::string>*) override {
    ASSIGN_OR_RETURN((*config)["quantization_config"], Config());
    (*files)["quantize_config.json"] = (*config)["quantization_config"].dump(2);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<Json> Config() const;

  int bits_ = 0;
  std::vector<int64_t> group_sizes_;  // group_size values every module so far agrees with
  bool sym_ = true;
  bool any_ = false;
};

absl::Status GptqEncoder::Add(LayoutWriter& w, const LinearToSave& m) {
  const std::string &name = m.name, &repr = m.repr;
  const kernels::Linear& lin = m.lin;
  const bool block = m.block, has_bias = m.has_bias;
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

absl::StatusOr<Json> GptqEncoder::Config() const {
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

}  // namespace

std::unique_ptr<LayoutEncoder> NewGptqEncoder() { return std::make_unique<GptqEncoder>(); }

}  // namespace ingot::formats::layouts
