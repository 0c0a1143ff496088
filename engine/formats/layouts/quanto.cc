// optimum-quanto (read only): qint8 rows, qint4/qint2 groups with shift.
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// optimum-quanto: qint8 weight._data (rows, cols) int8 with per-row _scale, w = q*s;
// qint4/qint2 grouped along the inputs: (n_groups, group) codes packed along the
// first dimension (slice i at bit bits*i) in weight._data._data, _scale and _shift
// (n_groups, 1): w = q * scale - shift.
absl::StatusOr<LinearLoad> ReadQuanto(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const std::string p = name + ".weight.";
  ASSIGN_OR_RETURN(const TensorView* sc, Get(ck, p + "_scale", {}, {DType::kF16, DType::kF32, DType::kBF16}));
  QuantizedWeight qw;
  if (const TensorView* d8 = ck.Find(p + "_data"); d8 != nullptr && d8->dtype == DType::kI8) {
    if (d8->shape != std::vector<int64_t>{rows, cols} || sc->numel() != rows) {
      return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "_data' has shape ", Shape(d8->shape),
                                                     " and _scale ", Shape(sc->shape), " for ", rows, " x ", cols));
    }
    return Int8Rows(*d8, *sc, 1.0f, 0.0f);
  }
  ASSIGN_OR_RETURN(const TensorView* data, Get(ck, p + "_data._data", {}, {DType::kU8}));
  ASSIGN_OR_RETURN(const TensorView* sh, Get(ck, p + "_shift", {}, {DType::kF16, DType::kF32, DType::kBF16}));
  const int64_t n_groups = sc->numel();
  if (n_groups <= 0 || (rows * cols) % n_groups != 0 || sh->numel() != n_groups || data->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "_scale' of ", n_groups,
                                                   " groups does not fit ", rows, " x ", cols));
  }
  const int64_t group = rows * cols / n_groups;
  const int64_t step = data->shape[0];
  int bits = 0;
  for (int b : {4, 2}) {
    if ((n_groups + 8 / b - 1) / (8 / b) == step) bits = b;
  }
  if (bits == 0 || cols % group != 0 || data->shape[1] != group) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", p, "_data._data' has shape ",
                                                   Shape(data->shape), " for ", n_groups, " groups of ", group));
  }
  const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
  uint8_t* q = qw.Alloc<uint8_t>(row_bytes * rows);
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
  uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
  UnpackSlicedGroups(data->data, step, group, rows, cols, bits, /*msb_first=*/false, q);
  for (int64_t g = 0; g < n_groups; ++g) {
    scale[g] = Fp32ToFp16(FloatAt(*sc, g));
    bias[g] = Fp32ToFp16(-FloatAt(*sh, g));
  }
  SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kBias, q, scale, bias);
  qw.representation = absl::StrCat("quanto", bits, "/g", group);
  return Own(std::move(qw));
}

absl::Status ConfigureQuanto(ConfigSource src, const Json& j, const std::string&, CheckpointQuantConfig* q) {
  q->quant_type = StrOr(j, "weights", src == ConfigSource::kEmbedded ? "qint8" : "int8");
  return absl::OkStatus();
}

}  // namespace ingot::formats::layouts
