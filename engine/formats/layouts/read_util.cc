#include "engine/formats/layouts/read_util.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"

namespace ingot::formats::layouts {

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

bool IsFloat(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

float FloatAt(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return LoadAt<float>(t.data, i);
    case DType::kF16: return Fp16ToFp32(LoadAt<uint16_t>(t.data, i));
    case DType::kBF16: return Bf16ToFp32(LoadAt<uint16_t>(t.data, i));
    default: return 0.0f;
  }
}

absl::Status Missing(const Checkpoint& ck, const std::string& t) {
  return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": missing tensor '", t, "'"));
}

absl::StatusOr<const TensorView*> Get(const Checkpoint& ck, const std::string& t, std::vector<int64_t> shape,
                                      std::initializer_list<DType> dtypes) {
  const TensorView* v = ck.Find(t);
  if (v == nullptr) return Missing(ck, t);
  if (!shape.empty() && v->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": tensor '", t, "' has shape ",
                                                   Shape(v->shape), ", expected ", Shape(shape)));
  }
  bool ok = false;
  std::vector<std::string> names;
  for (DType d : dtypes) {
    ok |= v->dtype == d;
    names.push_back(DTypeName(d));
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": tensor '", t, "' has dtype ",
                                                   DTypeName(v->dtype), ", expected ",
                                                   absl::StrJoin(names, " or ")));
  }
  return v;
}

LinearLoad Own(QuantizedWeight qw) {
  LinearLoad out;
  out.w = qw.view;
  out.representation = qw.representation;
  out.bytes = qw.bytes();
  out.owner = std::make_shared<QuantizedWeight>(std::move(qw));
  return out;
}

bool StoredDense(const Checkpoint& ck, const std::string& name) {
  const TensorView* dense = ck.Find(name + ".weight");
  return dense != nullptr && IsFloat(dense->dtype) && ck.Find(name + ".weight.absmax") == nullptr &&
         ck.Find(name + ".SCB") == nullptr && ck.Find(name + ".scales") == nullptr &&
         ck.Find(name + ".W_q") == nullptr;
}

absl::StatusOr<LinearLoad> ReadDense(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  ASSIGN_OR_RETURN(const TensorView* t, Get(ck, name + ".weight", {rows, cols}, {DType::kF32, DType::kF16, DType::kBF16}));
  LinearLoad out;
  out.w.kind = kernels::LinearKind::kGgml;
  kernels::WeightMatrix& w = out.w.ggml;
  w.type = t->dtype == DType::kF32 ? GgmlType::kF32 : t->dtype == DType::kF16 ? GgmlType::kF16 : GgmlType::kBF16;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = static_cast<size_t>(cols) * DTypeSize(t->dtype);
  w.data = t->data;
  out.representation = t->dtype == DType::kF32 ? "f32" : t->dtype == DType::kF16 ? "f16" : "bf16";
  out.bytes = static_cast<int64_t>(t->nbytes);
  return out;
}

LinearLoad Int8Groups(const TensorView& q8, const TensorView& scale_t, const TensorView* zero_point, float divisor,
                      float outlier_threshold) {
  const int64_t rows = q8.shape[0], cols = q8.shape[1], n_groups = scale_t.numel();
  const int64_t group = cols / (n_groups / rows);
  QuantizedWeight qw;
  uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows * cols));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
  uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
  for (int64_t i = 0; i < rows * cols; ++i) q[i] = static_cast<uint8_t>(static_cast<int8_t>(q8.data[i]) + 128);
  for (int64_t g = 0; g < n_groups; ++g) {
    scale[g] = Fp32ToFp16(FloatAt(scale_t, g) / divisor);
    const int zp = zero_point != nullptr ? static_cast<int8_t>(zero_point->data[g]) : 0;
    zero[g] = Fp32ToFp16(128.0f + static_cast<float>(zp));
  }
  SetAffineView(qw, 8, rows, cols, group, kernels::ZeroKind::kZero, q, scale, zero);
  qw.view.outlier_threshold = outlier_threshold;
  qw.representation = group == cols ? "int8/row" : absl::StrCat("affine8/g", group);
  return Own(std::move(qw));
}

int32_t Code(const TensorView& t, int64_t i, int64_t j, int64_t width, int bits, bool along_rows, const int* order) {
  int64_t k = along_rows ? i : j;  // index along the packed dimension
  if (order != nullptr) {
    const int per = 32 / bits;
    k = (k / per) * per + order[k % per];
  }
  const int64_t bit = k * bits, w = bit / 32;
  const int shift = static_cast<int>(bit % 32);
  auto word = [&](int64_t n) { return LoadAt<uint32_t>(t.data, along_rows ? n * width + j : i * width + n); };
  uint64_t v = word(w) >> shift;
  if (shift + bits > 32) v |= static_cast<uint64_t>(word(w + 1)) << (32 - shift);
  return static_cast<int32_t>(v & ((1u << bits) - 1));
}

void UnpackSlicedGroups(const uint8_t* packed, int64_t step, int64_t group, int64_t rows, int64_t cols, int bits,
                        bool msb_first, uint8_t* q) {
  const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
  const int64_t gpr = cols / group;
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  const uint8_t mask = static_cast<uint8_t>((1u << bits) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < gpr; ++gi) {
      const int64_t g = r * gpr + gi;
      const int slice = static_cast<int>(g / step);
      const int shift = msb_first ? 8 - bits * (slice + 1) : bits * slice;
      const uint8_t* src = packed + (g % step) * group;
      for (int64_t j = 0; j < group; ++j) codes[gi * group + j] = (src[j] >> shift) & mask;
    }
    PackCodes(codes.data(), cols, bits, q + r * row_bytes);
  }
}

}  // namespace ingot::formats::layouts
