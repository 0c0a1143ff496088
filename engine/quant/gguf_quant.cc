// GGUF block quantization (Q4_0 ... Q6_K) and dense copies (F32/F16/BF16): each row goes
// through the reference quantizer of kernels/cpu/quantize_ref.h, so the bytes are the
// ones llama.cpp's quantize (no imatrix) writes for the same f32 weights.
#include <cctype>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/quant/quantizers.h"
#include "kernels/cpu/quantize_ref.h"

namespace ingot::quant {
namespace {

bool IsDense(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16;
}

// ggml's spelling in upper case: "Q4_K", "Q8_0", "BF16".
std::string TypeName(const GgmlTypeTraits& traits) {
  std::string name = traits.name;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

absl::StatusOr<QuantizedWeight> QuantizeRows(const float* w, int64_t rows, int64_t cols,
                                             GgmlType type) {
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(type);
  const QuantizeRowFn quantize_row = GetQuantizeRowFn(type);
  if (quantize_row == nullptr || traits.block_size == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF quantization to type %u (%s) is not implemented; use one of F32, F16, BF16, "
        "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K",
        static_cast<uint32_t>(type), traits.name));
  }
  if (rows <= 0 || cols <= 0 || w == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s quantization needs a non-empty weight matrix, got %d x %d", TypeName(traits),
        rows, cols));
  }
  if (cols % traits.block_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s packs rows in blocks of %d values, but the weight has %d columns (input "
        "features); choose a type with a block size dividing %d (e.g. Q8_0 or Q4_0 for "
        "multiples of 32, F16 otherwise)",
        TypeName(traits), traits.block_size, cols, cols));
  }
  const size_t row_bytes = GgmlRowSize(type, cols);
  QuantizedWeight out;
  uint8_t* data = out.Alloc<uint8_t>(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(w + r * cols, data + static_cast<size_t>(r) * row_bytes, cols);
  }
  out.view.kind = kernels::LinearKind::kGgml;
  out.view.ggml.type = type;
  out.view.ggml.rows = rows;
  out.view.ggml.cols = cols;
  out.view.ggml.row_bytes = row_bytes;
  out.view.ggml.data = data;
  out.representation = traits.name;  // as GGUF-loaded models name it ("q4_1")
  return out;
}

}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeGguf(const float* w, int64_t rows, int64_t cols,
                                             GgmlType type) {
  if (IsDense(type)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is a dense type, not a GGUF block quantization; use the method NONE (QuantizeDense)",
        TypeName(GetGgmlTypeTraits(type))));
  }
  return QuantizeRows(w, rows, cols, type);
}

absl::StatusOr<QuantizedWeight> QuantizeDense(const float* w, int64_t rows, int64_t cols,
                                              GgmlType type) {
  if (!IsDense(type)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "dense copies are F32, F16 or BF16; type %u (%s) is a block quantization (QuantizeGguf)",
        static_cast<uint32_t>(type), GetGgmlTypeTraits(type).name));
  }
  return QuantizeRows(w, rows, cols, type);
}

}  // namespace ingot::quant
