#include "engine/formats/layouts/storage.h"

#include <cstring>

namespace ingot::formats {

void SetAffineView(QuantizedWeight& qw, int bits, int64_t rows, int64_t cols, int64_t group,
                   kernels::ZeroKind kind, const uint8_t* q, const uint16_t* scale,
                   const uint16_t* zero) {
  kernels::AffineMatrix& a = qw.view.affine;
  qw.view.kind = kernels::LinearKind::kAffine;
  a.bits = bits;
  a.rows = rows;
  a.cols = cols;
  a.group = group;
  a.zero_kind = kind;
  a.row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
  a.q = q;
  a.scale = scale;
  a.zero = zero;
}

void PackCodes(const uint8_t* codes, int64_t cols, int32_t bits, uint8_t* row) {
  if (bits == 8) {
    std::memcpy(row, codes, static_cast<size_t>(cols));
    return;
  }
  if (bits == 4) {
    for (int64_t c = 0; c + 1 < cols; c += 2)
      row[c / 2] = static_cast<uint8_t>(codes[c] | (codes[c + 1] << 4));
    if (cols & 1) row[cols / 2] = codes[cols - 1];
    return;
  }
  uint32_t acc = 0;
  int nbits = 0;
  size_t out = 0;
  for (int64_t c = 0; c < cols; ++c) {
    acc |= static_cast<uint32_t>(codes[c]) << nbits;
    nbits += bits;
    while (nbits >= 8) {
      row[out++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) row[out] = static_cast<uint8_t>(acc);
}

AffineStorage AllocAffine(QuantizedWeight& out, int64_t rows, int64_t cols, int32_t bits,
                          int64_t group) {
  AffineStorage s;
  s.row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
  s.groups = cols / group;
  s.q = out.Alloc<uint8_t>(static_cast<size_t>(rows) * s.row_bytes);
  s.scale = out.Alloc<uint16_t>(static_cast<size_t>(rows * s.groups));
  s.zero = out.Alloc<uint16_t>(static_cast<size_t>(rows * s.groups));
  out.view = kernels::Linear{};
  SetAffineView(out, bits, rows, cols, group, kernels::ZeroKind::kZero, s.q, s.scale, s.zero);
  out.representation = "affine" + std::to_string(bits) + "/g" + std::to_string(group);
  return s;
}

}  // namespace ingot::formats
