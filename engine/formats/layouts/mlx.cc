// MLX (mlx-lm's layout): NAME.weight U32 [rows, cols*bits/32] holding an LSB-first
// bitstream per row (ingot's kAffine codes, read and written in place), NAME.scales and
// NAME.biases [rows, cols/group]; w = q*s + b. Settings in config.json "quantization"
// ({"group_size": 64, "bits": 4}, per-module entries where a module differs).
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// MLX: weight (rows, cols*bits/32) uint32 holding an LSB-first bitstream per row (the
// kAffine layout, read in place), scales and biases (rows, cols/group); w = q*s + b.
absl::StatusOr<LinearLoad> ReadMlx(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const CheckpointQuantConfig& qc = ck.quant();
  const int bits = qc.bits;
  const int64_t group = qc.group_size;
  if (bits < 2 || bits > 8 || group <= 0 || cols % group != 0 || (cols * bits) % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", name, "' of ", rows, " x ", cols,
                                                   " does not fit MLX bits ", bits, " group ", group));
  }
  const int64_t groups = cols / group;
  ASSIGN_OR_RETURN(const TensorView* w, Get(ck, name + ".weight", {rows, cols * bits / 32}, {DType::kU32}));
  ASSIGN_OR_RETURN(const TensorView* s, Get(ck, name + ".scales", {rows, groups}, {DType::kF16, DType::kF32, DType::kBF16}));
  ASSIGN_OR_RETURN(const TensorView* b, Get(ck, name + ".biases", {rows, groups}, {DType::kF16, DType::kF32, DType::kBF16}));
  QuantizedWeight qw;
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
  uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
  for (int64_t i = 0; i < rows * groups; ++i) {
    scale[i] = Fp32ToFp16(FloatAt(*s, i));
    bias[i] = Fp32ToFp16(FloatAt(*b, i));
  }
  SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kBias, w->data, scale, bias);
  qw.representation = absl::StrCat("mlx", bits, "/g", group);
  LinearLoad out = Own(std::move(qw));
  out.bytes += static_cast<int64_t>(w->nbytes);
  return out;
}

absl::Status ConfigureMlx(ConfigSource src, const Json& j, const std::string&, CheckpointQuantConfig* q) {
  ReadSettings(src, j, /*default_group=*/64, q);
  return absl::OkStatus();
}

namespace {

// mlx-lm's layout.
class MlxEncoder : public LayoutEncoder {
 public:
  absl::Status Add(LayoutWriter& w, const LinearToSave& m) override {
    const std::string& name = m.name;
    if (IsFloatWeight(m.lin)) {
      w.AddDense(name, m.lin.ggml);
      return absl::OkStatus();
    }
    const kernels::AffineMatrix& a = m.lin.affine;
    if (m.lin.kind != kernels::LinearKind::kAffine || a.zero_kind != kernels::ZeroKind::kBias || a.zero == nullptr ||
        (a.bits != 2 && a.bits != 4 && a.bits != 8) || (a.group != 32 && a.group != 64 && a.group != 128)) {
      return NoForm(name, m.repr, "MLX", "quantize it with -m mlx (2, 4 or 8 bits, groups of 32, 64 or 128) first");
    }
    const int64_t g = a.groups_per_row();
    w.Add(name + ".weight", DType::kU32, {a.rows, a.cols * a.bits / 32}, a.q);
    w.Add(name + ".scales", DType::kF16, {a.rows, g}, a.scale);
    w.Add(name + ".biases", DType::kF16, {a.rows, g}, a.zero);
    const Json q = {{"group_size", a.group}, {"bits", a.bits}};
    if (global_.is_null()) global_ = q;
    if (q != global_) per_module_[name] = q;
    return absl::OkStatus();
  }
  absl::Status Finish(Json* config, std::map<std::string, std::string>*,
                      std::map<std::string, std::string>* metadata) override {
    ASSIGN_OR_RETURN((*config)["quantization"], Config());
    (*config)["quantization_config"] = (*config)["quantization"];
    (*metadata)["format"] = "mlx";
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<Json> Config() const {
    if (global_.is_null()) return NothingQuantized();
    Json q = global_;
    q["mode"] = "affine";
    for (const auto& [name, v] : per_module_.items()) q[name] = v;
    return q;
  }

  Json global_;
  Json per_module_ = Json::object();
};

}  // namespace

std::unique_ptr<LayoutEncoder> NewMlxEncoder() { return std::make_unique<MlxEncoder>(); }

}  // namespace ingot::formats::layouts
