#include "kernels/cuda/quant_view.h"

#include "absl/strings/str_cat.h"

namespace ingot::kernels::cuda {

const char* QuantFormatName(QuantFormat f) {
  switch (f) {
    case QuantFormat::kQ4_0: return "Q4_0";
    case QuantFormat::kQ4_1: return "Q4_1";
    case QuantFormat::kQ5_0: return "Q5_0";
    case QuantFormat::kQ5_1: return "Q5_1";
    case QuantFormat::kQ8_0: return "Q8_0";
    case QuantFormat::kQ4_K: return "Q4_K";
    case QuantFormat::kQ5_K: return "Q5_K";
    case QuantFormat::kQ6_K: return "Q6_K";
    case QuantFormat::kAffine: return "affine";
    case QuantFormat::kCodebook: return "codebook";
  }
  return "?";
}

std::string QuantFormatFor(const Linear& w, QuantFormat* f) {
  if (w.cols() % kChunk != 0) return absl::StrCat("cols ", w.cols(), " is not a multiple of ", kChunk);
  switch (w.kind) {
    case LinearKind::kGgml:
      switch (w.ggml.type) {
        case GgmlType::kQ4_0: *f = QuantFormat::kQ4_0; return "";
        case GgmlType::kQ4_1: *f = QuantFormat::kQ4_1; return "";
        case GgmlType::kQ5_0: *f = QuantFormat::kQ5_0; return "";
        case GgmlType::kQ5_1: *f = QuantFormat::kQ5_1; return "";
        case GgmlType::kQ8_0: *f = QuantFormat::kQ8_0; return "";
        case GgmlType::kQ4_K: *f = QuantFormat::kQ4_K; return "";
        case GgmlType::kQ5_K: *f = QuantFormat::kQ5_K; return "";
        case GgmlType::kQ6_K: *f = QuantFormat::kQ6_K; return "";
        default:
          return absl::StrCat(GetGgmlTypeTraits(w.ggml.type).name, " has no CUDA kernel");
      }
    case LinearKind::kAffine:
      // LLM.int8 rows (outlier_threshold > 0) too: the split exists to keep large
      // activations out of the int8 activation blocks of the integer path. The kernels
      // multiply bf16 activations by the exactly decoded weight, which is the outlier
      // columns' own path, so every column takes it and there is nothing to split.
      if (w.affine.bits < 1 || w.affine.bits > 8 || w.affine.group <= 0 || w.affine.cols % w.affine.group != 0) {
        return absl::StrCat("affine ", w.affine.bits, "-bit groups of ", w.affine.group, " are not a kernel layout");
      }
      *f = QuantFormat::kAffine;
      return "";
    case LinearKind::kCodebook:
      if (w.codebook.block <= 0 || w.codebook.block % 2 != 0) {
        return absl::StrCat("codebook block ", w.codebook.block, " is not even");
      }
      *f = QuantFormat::kCodebook;
      return "";
  }
  return "unknown representation";
}

QuantArrays QuantArraysOf(const Linear& w) {
  QuantArrays a;
  auto set = [&](int i, const void* p, int64_t bytes) {
    a.host[i] = p;
    a.bytes[i] = p != nullptr ? bytes : 0;
  };
  switch (w.kind) {
    case LinearKind::kGgml:
      set(QuantArrays::kData, w.ggml.data, static_cast<int64_t>(w.ggml.row_bytes) * w.ggml.rows);
      break;
    case LinearKind::kAffine: {
      const AffineMatrix& m = w.affine;
      const int64_t groups = m.rows * m.groups_per_row();
      set(QuantArrays::kData, m.q, static_cast<int64_t>(m.row_bytes) * m.rows);
      set(QuantArrays::kScale, m.scale, groups * 2);
      set(QuantArrays::kZero, m.zero, groups * 2);
      break;
    }
    case LinearKind::kCodebook: {
      const CodebookMatrix& m = w.codebook;
      const int64_t n = m.rows * m.cols, blocks = n / m.block;
      set(QuantArrays::kData, m.codes, n / 2);
      if (m.absmax_code != nullptr) {
        set(QuantArrays::kAbsmaxCode, m.absmax_code, blocks);
        set(QuantArrays::kAbsmaxScale, m.absmax_scale,
            (blocks + m.absmax_block - 1) / m.absmax_block * static_cast<int64_t>(sizeof(float)));
      } else {
        set(QuantArrays::kAbsmax, m.absmax, blocks * static_cast<int64_t>(sizeof(float)));
      }
      break;
    }
  }
  return a;
}

QuantView MakeQuantView(const Linear& w, const void* const ptr[QuantArrays::kCount], const float* book,
                        const float* dmap) {
  QuantView v;
  v.rows = w.rows();
  v.cols = w.cols();
  v.data = static_cast<const uint8_t*>(ptr[QuantArrays::kData]);
  switch (w.kind) {
    case LinearKind::kGgml:
      v.row_bytes = w.ggml.row_bytes;
      break;
    case LinearKind::kAffine:
      v.row_bytes = w.affine.row_bytes;
      v.scale = static_cast<const uint16_t*>(ptr[QuantArrays::kScale]);
      v.zero = static_cast<const uint16_t*>(ptr[QuantArrays::kZero]);
      v.bits = w.affine.bits;
      v.group = w.affine.group;
      v.zero_is_bias = w.affine.zero_kind == ZeroKind::kBias;
      break;
    case LinearKind::kCodebook:
      v.book = book;
      v.dmap = dmap;
      v.absmax = static_cast<const float*>(ptr[QuantArrays::kAbsmax]);
      v.absmax_code = static_cast<const uint8_t*>(ptr[QuantArrays::kAbsmaxCode]);
      v.absmax_scale = static_cast<const float*>(ptr[QuantArrays::kAbsmaxScale]);
      v.block = w.codebook.block;
      v.absmax_block = w.codebook.absmax_block;
      v.absmax_offset = w.codebook.absmax_offset;
      break;
  }
  return v;
}

}  // namespace ingot::kernels::cuda
