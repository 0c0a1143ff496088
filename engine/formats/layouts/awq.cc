// AutoAWQ GEMM: NAME.qweight I32 (cols, rows*bits/32) packed along the outputs in AWQ's
// interleaved order, NAME.qzeros (groups, rows*bits/32), NAME.scales (groups, rows);
// 4 bits only. Read only (SaveModel does not write AWQ).
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// AutoAWQ GEMM: qweight (cols, rows*bits/32) int32 packed along the outputs in AWQ's
// interleaved order, qzeros (groups, rows*bits/32), scales (groups, rows).
absl::StatusOr<LinearLoad> ReadAwq(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const CheckpointQuantConfig& qc = ck.quant();
  if (qc.bits != 4) {
    return absl::UnimplementedError(absl::StrCat(ck.path(), ": AWQ GEMM ", qc.bits, "-bit is not supported (4)"));
  }
  static constexpr int kReverseOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  const int64_t group = qc.group_size > 0 ? qc.group_size : cols;
  if (cols % group != 0 || rows % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", name, "' of ", rows, " x ", cols,
                                                   " does not fit AWQ group size ", group));
  }
  const int64_t groups = cols / group;
  ASSIGN_OR_RETURN(const TensorView* qweight, Get(ck, name + ".qweight", {cols, rows / 8}, {DType::kI32}));
  ASSIGN_OR_RETURN(const TensorView* qzeros, Get(ck, name + ".qzeros", {groups, rows / 8}, {DType::kI32}));
  ASSIGN_OR_RETURN(const TensorView* scales, Get(ck, name + ".scales", {groups, rows}, {DType::kF16, DType::kF32, DType::kBF16}));
  QuantizedWeight qw;
  const AffineStorage st = AllocAffine(qw, rows, cols, 4, group);
  uint8_t* q = st.q;
  uint16_t *scale = st.scale, *zero = st.zero;
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      codes[c] = static_cast<uint8_t>(Code(*qweight, c, r, rows / 8, 4, false, kReverseOrder));
    }
    PackCodes(codes.data(), cols, 4, q + r * st.row_bytes);
    for (int64_t g = 0; g < groups; ++g) {
      scale[r * groups + g] = Fp32ToFp16(FloatAt(*scales, g * rows + r));
      zero[r * groups + g] = Fp32ToFp16(static_cast<float>(Code(*qzeros, g, r, rows / 8, 4, false, kReverseOrder)));
    }
  }
  return Own(std::move(qw));
}

absl::Status ConfigureAwq(ConfigSource src, const Json& j, const std::string& where, CheckpointQuantConfig* q) {
  if (!ReadSettings(src, j, /*default_group=*/128, q)) return absl::OkStatus();
  const std::string version = StrOr(j, "version", "gemm");
  if (version != "gemm" && version != "GEMM") {
    return absl::UnimplementedError(absl::StrCat(where, ": AWQ version '", version, "' is not supported (gemm)"));
  }
  q->skip_modules = StrList(j, "modules_to_not_convert");
  return absl::OkStatus();
}

}  // namespace ingot::formats::layouts
