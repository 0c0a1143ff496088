#include "kernels/torch/weight_only_layout.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/ggml_types.h"

namespace ingot::kernels {

namespace {

// Groups tinygemm takes (its kernels are instantiated for these).
bool TinygemmGroup(int64_t g) { return g == 32 || g == 64 || g == 128 || g == 256; }

}  // namespace

std::string ToInt4Layout(const Linear& w, Int4Layout* out) {
  const int64_t rows = w.rows(), cols = w.cols();
  out->rows = rows;
  out->cols = cols;
  if (w.kind == LinearKind::kAffine) {
    const AffineMatrix& a = w.affine;
    if (a.bits != 4) return absl::StrCat("affine ", a.bits, "-bit (int4 kernels take 4-bit only)");
    if (!TinygemmGroup(a.group)) return absl::StrCat("group size ", a.group, " (int4 kernels take 32/64/128/256)");
    if (w.outlier_threshold > 0) return "outlier columns (LLM.int8)";
    const int64_t gpr = a.groups_per_row();
    out->group = a.group;
    out->codes.resize(static_cast<size_t>(rows * cols));
    out->scale.resize(static_cast<size_t>(gpr * rows));
    out->zero.resize(static_cast<size_t>(gpr * rows));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) out->codes[r * cols + c] = static_cast<uint8_t>(AffineCodeAt(a, r, c));
      for (int64_t g = 0; g < gpr; ++g) {
        const float s = Fp16ToFp32(a.scale[r * gpr + g]);
        const float z = Fp16ToFp32(a.zero[r * gpr + g]);
        out->scale[g * rows + r] = s;
        out->zero[g * rows + r] = a.zero_kind == ZeroKind::kZero ? (8.0f - z) * s : z + 8.0f * s;
      }
    }
    return "";
  }
  if (w.kind == LinearKind::kGgml && (w.ggml.type == GgmlType::kQ4_0 || w.ggml.type == GgmlType::kQ4_1)) {
    const bool q41 = w.ggml.type == GgmlType::kQ4_1;
    constexpr int64_t kBlock = 32;
    const int64_t gpr = cols / kBlock;
    out->group = kBlock;
    out->codes.resize(static_cast<size_t>(rows * cols));
    out->scale.resize(static_cast<size_t>(gpr * rows));
    out->zero.resize(static_cast<size_t>(gpr * rows));
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = w.ggml.Row(r);
      for (int64_t g = 0; g < gpr; ++g) {
        const uint8_t* qs;
        float d, z;
        if (q41) {
          const auto* b = reinterpret_cast<const BlockQ4_1*>(row) + g;
          d = Fp16ToFp32(b->d);
          z = Fp16ToFp32(b->m) + 8.0f * d;
          qs = b->qs;
        } else {
          const auto* b = reinterpret_cast<const BlockQ4_0*>(row) + g;
          d = Fp16ToFp32(b->d);
          z = 0.0f;
          qs = b->qs;
        }
        uint8_t* codes = out->codes.data() + r * cols + g * kBlock;
        for (int j = 0; j < 16; ++j) {
          codes[j] = qs[j] & 15;
          codes[j + 16] = qs[j] >> 4;
        }
        out->scale[g * rows + r] = d;
        out->zero[g * rows + r] = z;
      }
    }
    return "";
  }
  if (w.kind == LinearKind::kGgml) return absl::StrCat("GGML ", GetGgmlTypeTraits(w.ggml.type).name, " blocks");
  return "4-bit codebook (NF4/FP4) blocks";
}

std::string ToInt8Layout(const Linear& w, Int8Layout* out) {
  if (w.kind != LinearKind::kAffine) return "not an affine matrix";
  const AffineMatrix& a = w.affine;
  if (a.bits != 8 || a.group != a.cols) return "not 8-bit with one group per row";
  if (a.zero_kind != ZeroKind::kZero) return "8-bit rows with a float bias";
  const int64_t rows = a.rows, cols = a.cols;
  out->rows = rows;
  out->cols = cols;
  out->codes.resize(static_cast<size_t>(rows * cols));
  out->scale.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float z = Fp16ToFp32(a.zero[r]);
    if (z != std::floor(z)) return absl::StrCat("row ", r, " has a fractional zero point ", z);
    const int zi = static_cast<int>(z);
    for (int64_t c = 0; c < cols; ++c) {
      const int v = static_cast<int>(AffineCodeAt(a, r, c)) - zi;
      if (v < -128 || v > 127) return absl::StrCat("row ", r, " has codes outside int8 after its zero ", zi);
      out->codes[r * cols + c] = static_cast<int8_t>(v);
    }
    out->scale[r] = Fp16ToFp32(a.scale[r]);
  }
  return "";
}

std::vector<float> DequantizeAll(const Linear& w) {
  const int64_t rows = w.rows(), cols = w.cols();
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) LinearDequantizeRow(w, r, out.data() + r * cols);
  return out;
}

}  // namespace ingot::kernels
