// HQQ: transformers' HqqConfig serialization (save_pretrained of
// a model quantized with HqqConfig, hqq 0.2.8's HQQLinear.state_dict with
// encoded_state_dict), what from_pretrained rebuilds HQQLinear from. Per quantized
// linear P (O outputs, I inputs, groups of G along the inputs, axis 1, b bits):
//   P.W_q    U8 [n/(8/b), G]  n = O*I/G groups, group k = the k-th run of G weights of
//                             the row-major weight; group k sits in row k % (n/(8/b)) at
//                             bit 8 - b*(k / (n/(8/b)) + 1) ("8bit_u8", "4bit_u8",
//                             "2bit_u8", "1bit_u8")
//   P.scale  F16 [n, 1]       w = (q - zero) * scale (the dequantization multiplier)
//   P.zero   F16 [n, 1]       fractional for HQQ; any float
//   meta, encoded as hqq.core.utils.encode_safetensor_type does: nbits, group_size,
//   axis (I32 scalars), shape (I64 [2]), packing / unpack_view_dtype / compute_dtype
//   (U8 character codes), view_as_float, quant_scale, quant_zero, offload_meta,
//   channel_wise, optimize, round_zero, stores_quant_config, encoded_state_dict (U8 0/1)
// Exact for kAffine/kZero with 1, 2, 4 or 8 bits (ingot's HQQ, and the integer-zero
// methods too). 3 bits are refused: hqq packs them in 32-bit words ("3bit_32"), which
// ingot's loader does not read back. Dense linears keep .weight and are listed in
// skip_modules (lm_head always is, unless it is quantized).
// Read: that layout, and hqq's own qmodel.pt (the same tensors nested under each
// module's dict); 8/4/2/1-bit byte packing, axis 1 and axis 0. Axis 0 (hqq's
// Quantizer.quantize default; BaseQuantizeConfig(axis=0)) reshapes the row-major weight
// to (G, n): group k is column k, i.e. the weights k, k + n, k + 2n, ... of the
// flattened weight (n = O*I/G), which run down the output features (and wrap across
// rows when O < G); W_q is (G/(8/b), n) packed the same way, scale/zero are (1, n).
// ingot's kAffine groups run along a row's inputs, so an axis-0 linear is dequantized
// at load into an f16 matrix, the float16 arithmetic of hqq's own dequantize()
// (Quantizer.dequantize with compute_dtype float16), and the load says so (ConfigureHqq's
// note).
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {
namespace {

// The bit width of `slices` codes per byte; 0 when none.
int BitsForSlices(int64_t slices) {
  for (int b : {8, 4, 2, 1}) {
    if (8 / b == slices) return b;
  }
  return 0;
}

// Axis 0 (see the top): codes (G, n) packed along the first dimension, `step` rows per
// slice, slice s at bit 8 - b*(s+1); w[f] = (q - zero[k]) * scale[k] for flat index
// f = r*n + k, each step rounded to f16 as hqq's float16 dequantize() rounds it.
absl::StatusOr<LinearLoad> ReadHqqAxis0(const Checkpoint& ck, const std::string& p, const TensorView& wq,
                                        const TensorView& sc, const TensorView& ze, int64_t rows, int64_t cols) {
  const int64_t n = sc.shape[1];
  if (n <= 0 || (rows * cols) % n != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "scale' of ", n,
                                                   " axis-0 groups does not fit ", rows, " x ", cols));
  }
  const int64_t group = rows * cols / n;
  const int64_t step = wq.shape[0];
  const int bits = step > 0 && group % step == 0 ? BitsForSlices(group / step) : 0;
  if (wq.shape[1] != n || bits == 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "W_q' has shape ", Shape(wq.shape),
                                                   " for ", n, " axis-0 groups of ", group));
  }
  std::vector<float> scale(static_cast<size_t>(n)), zero(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    scale[k] = Fp16ToFp32(Fp32ToFp16(FloatAt(sc, k)));
    zero[k] = Fp16ToFp32(Fp32ToFp16(FloatAt(ze, k)));
  }
  QuantizedWeight qw;
  uint16_t* w = qw.Alloc<uint16_t>(static_cast<size_t>(rows * cols));  // f16 (rows, cols)
  const int mask = (1 << bits) - 1;
  for (int64_t r = 0; r < group; ++r) {
    const uint8_t* packed = wq.data + (r % step) * n;
    const int shift = 8 - bits * static_cast<int>(r / step + 1);
    for (int64_t k = 0; k < n; ++k) {
      const float q = static_cast<float>((packed[k] >> shift) & mask);
      // An f32 op rounded to f16 is the correctly rounded f16 op (24 >= 2*11 + 2 bits),
      // which is what torch's float16 ops give on the CPU.
      const float centered = Fp16ToFp32(Fp32ToFp16(q - zero[k]));
      w[r * n + k] = Fp32ToFp16(centered * scale[k]);
    }
  }
  kernels::Linear& v = qw.view;
  v.kind = kernels::LinearKind::kGgml;
  v.ggml.type = GgmlType::kF16;
  v.ggml.rows = rows;
  v.ggml.cols = cols;
  v.ggml.row_bytes = static_cast<size_t>(cols) * sizeof(uint16_t);
  v.ggml.data = reinterpret_cast<const uint8_t*>(w);
  qw.representation = "f16";
  return Own(std::move(qw));
}

}  // namespace

// HQQ (axis 1): W reshaped to (rows*cols/group, group) rows of one group each, packed
// along that first dimension in 8/bits slices (slice i of `step` group rows sits at
// bit 8 - bits*(i+1)); scale and zero (n_groups, 1); w = (q - zero) * scale. The
// native qmodel.pt nests the same tensors under each module's dict, the transformers
// layout flattens them; bits and group size follow from the shapes in both.
absl::StatusOr<LinearLoad> ReadHqq(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const std::string p = ck.Find(name + ".W_q") != nullptr ? name + "." : name + ".weight.";
  ASSIGN_OR_RETURN(const TensorView* wq, Get(ck, p + "W_q", {}, {DType::kU8, DType::kI32}));
  ASSIGN_OR_RETURN(const TensorView* sc, Get(ck, p + "scale", {}, {DType::kF16, DType::kF32, DType::kBF16}));
  ASSIGN_OR_RETURN(const TensorView* ze, Get(ck, p + "zero", {}, {DType::kF16, DType::kF32, DType::kBF16}));
  if (wq->dtype != DType::kU8) {
    return absl::UnimplementedError(absl::StrCat(ck.path(), ": '", p, "W_q' uses HQQ's 32-bit packing "
                                                 "(3-bit), which this build does not load"));
  }
  if (sc->shape.size() != 2 || (sc->shape[0] != 1 && sc->shape[1] != 1) || sc->shape != ze->shape ||
      wq->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "scale' and 'zero' have shapes ",
                                                   Shape(sc->shape), " and ", Shape(ze->shape),
                                                   "; HQQ stores (n_groups, 1) for axis 1, (1, n_groups) for axis 0"));
  }
  if (sc->shape[1] != 1) return ReadHqqAxis0(ck, p, *wq, *sc, *ze, rows, cols);
  const int64_t n_groups = sc->shape[0];
  if (n_groups <= 0 || (rows * cols) % n_groups != 0 || wq->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "scale' of ", n_groups,
                                                   " groups does not fit ", rows, " x ", cols));
  }
  const int64_t group = rows * cols / n_groups;
  const int64_t step = wq->shape[0];
  if (cols % group != 0 || wq->shape[1] != group || n_groups % step != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "W_q' has shape ", Shape(wq->shape),
                                                   " for ", n_groups, " groups of ", group));
  }
  const int64_t slices = n_groups / step;
  const int bits = BitsForSlices(slices);
  if (bits == 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "W_q' packs ", slices,
                                                   " groups per byte, not an HQQ bit width"));
  }
  QuantizedWeight qw;
  const AffineStorage st = AllocAffine(qw, rows, cols, bits, group);
  UnpackSlicedGroups(wq->data, step, group, rows, cols, bits, /*msb_first=*/true, st.q);
  for (int64_t g = 0; g < n_groups; ++g) {
    st.scale[g] = Fp32ToFp16(FloatAt(*sc, g));
    st.zero[g] = Fp32ToFp16(FloatAt(*ze, g));
  }
  return Own(std::move(qw));
}

std::string HqqLoadNote(const Checkpoint& ck) {
  // Axis-0 linears: a W_q beside a scale of shape (1, n > 1).
  int64_t linears = 0;
  for (const std::string& name : ck.TensorNames()) {
    if (!absl::EndsWith(name, ".W_q")) continue;
    const TensorView* sc = ck.Find(name.substr(0, name.size() - 3) + "scale");
    if (sc != nullptr && sc->shape.size() == 2 && sc->shape[0] == 1 && sc->shape[1] > 1) ++linears;
  }
  if (linears == 0) return "";
  return absl::StrCat("hqq axis=0: the groups of ", linears, " linears run along the output features, which ",
                      "ingot's affine groups (along the inputs) cannot hold; they are dequantized at load to f16 ",
                      "(as hqq's own float16 dequantize computes them), 16 bits a weight");
}

absl::Status ConfigureHqq(ConfigSource src, const Json& j, const std::string&, CheckpointQuantConfig* q) {
  if (src != ConfigSource::kHfConfig) ReadSideSettings(j, q);
  return absl::OkStatus();
}

namespace {

Json WeightQuantParams(int bits, int64_t group, bool round_zero) {
  return Json{{"nbits", bits},      {"group_size", group},      {"axis", 1},           {"channel_wise", true},
              {"optimize", true},   {"round_zero", round_zero}, {"view_as_float", false}};
}

// HQQ's linear tag: the last two components of the module name ("self_attn.q_proj").
std::string Tag(const std::string& name) {
  const size_t last = name.rfind('.');
  if (last == std::string::npos || last == 0) return name;
  const size_t prev = name.rfind('.', last - 1);
  return prev == std::string::npos ? name : name.substr(prev + 1);
}

// transformers' HqqConfig serialization (save_pretrained of a model quantized with
// HqqConfig).
class HqqEncoder : public LayoutEncoder {
 public:
  absl::Status Add(LayoutWriter& w, const LinearToSave& m) override;
  absl::Status Finish(Json* config, std::map<std::string, std::string>*, std::map<std::string, std::string>*) override {
    ASSIGN_OR_RETURN((*config)["quantization_config"], Config());
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<Json> Config() const;

  std::map<std::string, Json> params_;  // module -> weight_quant_params
  std::vector<std::string> skip_;       // dense linears
};

absl::Status HqqEncoder::Add(LayoutWriter& w, const LinearToSave& m) {
  const std::string &name = m.name, &repr = m.repr;
  const kernels::Linear& lin = m.lin;
  if (IsFloatWeight(lin)) {
    w.AddDense(name, lin.ggml);
    skip_.push_back(name);
    return absl::OkStatus();
  }
  const kernels::AffineMatrix& a = lin.affine;
  if (lin.kind != kernels::LinearKind::kAffine || a.zero_kind != kernels::ZeroKind::kZero || a.zero == nullptr ||
      lin.outlier_threshold > 0) {
    return NoForm(name, repr, "HQQ", "quantize it with -m hqq (1, 2, 4 or 8 bits) first");
  }
  if (a.bits != 1 && a.bits != 2 && a.bits != 4 && a.bits != 8) {
    return NoForm(name, repr, "HQQ",
                  "hqq packs 3 bits in 32-bit words, which ingot does not read back; quantize it with -m hqq "
                  "at 1, 2, 4 or 8 bits");
  }
  const int64_t rows = a.rows, cols = a.cols, group = a.group, n = rows * a.groups_per_row();
  const int per_byte = 8 / a.bits;
  if (n % per_byte != 0) {
    return NoForm(name, repr, "HQQ", absl::StrCat("its ", n, " groups do not fill whole ", a.bits, "-bit packed "
                                                  "rows of ", per_byte, " groups"));
  }
  const int64_t step = n / per_byte;
  uint8_t* wq = w.KeepArray<uint8_t>(static_cast<size_t>(step * group));  // [n / per_byte, G]
  const int64_t gpr = a.groups_per_row();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < gpr; ++gi) {
      const int64_t k = r * gpr + gi;
      const int shift = 8 - a.bits * static_cast<int>(k / step + 1);
      uint8_t* dst = wq + (k % step) * group;
      for (int64_t j = 0; j < group; ++j) dst[j] |= static_cast<uint8_t>(kernels::AffineCodeAt(a, r, gi * group + j) << shift);
    }
  }
  w.Add(name + ".W_q", DType::kU8, {step, group}, wq);
  // The kAffine (rows, groups) arrays are the (n, 1) ones in the same order.
  w.Add(name + ".scale", DType::kF16, {n, 1}, a.scale);
  w.Add(name + ".zero", DType::kF16, {n, 1}, a.zero);

  const bool round_zero = a.bits == 4;  // hqq's default for the bit width (hqq_base_quant_config)
  auto i32 = [&](const char* key, int32_t v) {
    int32_t* p = w.KeepArray<int32_t>(1);
    *p = v;
    w.Add(name + "." + key, DType::kI32, {}, p);
  };
  auto flag = [&](const char* key, bool v) {
    static const uint8_t kFalse = 0, kTrue = 1;
    w.Add(name + "." + key, DType::kU8, {}, v ? &kTrue : &kFalse);
  };
  auto text = [&](const char* key, const std::string& s) {
    w.Add(name + "." + key, DType::kU8, {static_cast<int64_t>(s.size())}, w.Keep(s));
  };
  i32("nbits", a.bits);
  i32("group_size", static_cast<int32_t>(group));
  i32("axis", 1);
  int64_t* shape = w.KeepArray<int64_t>(2);
  shape[0] = rows;
  shape[1] = cols;
  w.Add(name + ".shape", DType::kI64, {2}, shape);
  text("packing", absl::StrCat(a.bits, "bit_u8"));
  text("unpack_view_dtype", "torch.uint8");
  text("compute_dtype", "torch.float16");  // hqq's default; transformers sets the load dtype
  flag("view_as_float", false);
  flag("quant_scale", false);
  flag("quant_zero", false);
  flag("offload_meta", false);
  flag("channel_wise", true);
  flag("optimize", true);
  flag("round_zero", round_zero);
  flag("stores_quant_config", true);
  flag("encoded_state_dict", true);
  params_[name] = WeightQuantParams(a.bits, group, round_zero);
  return absl::OkStatus();
}

absl::StatusOr<Json> HqqEncoder::Config() const {
  if (params_.empty()) return NothingQuantized();
  auto quant = [](const Json& weight) {
    return Json{{"weight_quant_params", weight},
                {"scale_quant_params", nullptr},
                {"zero_quant_params", nullptr},
                {"offload_meta", false}};
  };
  // One config for every quantized linear, else one per linear tag (HqqConfig's
  // dynamic_config), which needs the modules of a tag to agree.
  Json quant_config;
  const Json& first = params_.begin()->second;
  if (std::all_of(params_.begin(), params_.end(), [&](const auto& p) { return p.second == first; })) {
    quant_config = quant(first);
  } else {
    std::map<std::string, Json> by_tag;
    for (const auto& [name, p] : params_) {
      auto [it, fresh] = by_tag.emplace(Tag(name), p);
      if (!fresh && it->second != p) {
        return absl::FailedPreconditionError(absl::StrCat(
            "'", name, "' is quantized as ", p.dump(), " but other ", Tag(name), " modules as ", it->second.dump(),
            "; an HqqConfig has one quantization per linear tag"));
      }
    }
    quant_config = Json::object();
    for (const auto& [tag, p] : by_tag) quant_config[tag] = quant(p);
  }
  Json skip = Json::array();
  if (params_.count("lm_head") == 0) skip.push_back("lm_head");
  for (const std::string& s : skip_) {
    if (s != "lm_head") skip.push_back(s);
  }
  return Json{{"quant_method", "hqq"}, {"quant_config", quant_config}, {"skip_modules", skip}};
}

}  // namespace

std::unique_ptr<LayoutEncoder> NewHqqEncoder() { return std::make_unique<HqqEncoder>(); }

}  // namespace ingot::formats::layouts
