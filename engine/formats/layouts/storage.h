// Owned storage of ingot's canonical weight representations (kernels/cpu/qmatrix.h):
// what the quantizers (engine/quant) and the layout readers (engine/formats/layouts)
// both build. Plain C++, no ATen.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/qmatrix.h"

namespace ingot::formats {

// A weight in a canonical representation: the kernel view plus the buffers it points into.
class QuantizedWeight {
 public:
  QuantizedWeight() = default;
  QuantizedWeight(QuantizedWeight&&) = default;
  QuantizedWeight& operator=(QuantizedWeight&&) = default;

  // Zero-initialized storage owned by this weight; stays valid when the weight moves.
  template <typename T>
  T* Alloc(size_t count) {
    buffers_.push_back(std::make_unique<uint8_t[]>(count * sizeof(T)));
    bytes_ += static_cast<int64_t>(count * sizeof(T));
    return reinterpret_cast<T*>(buffers_.back().get());
  }

  kernels::Linear view;      // points into the buffers
  std::string representation;  // e.g. "Q4_K", "affine4/g64", "nf4/b64+dq", "int8/row"
  int64_t bytes() const { return bytes_; }  // all owned storage

 private:
  std::vector<std::unique_ptr<uint8_t[]>> buffers_;
  int64_t bytes_ = 0;
};

// Points qw.view at kAffine storage: row_bytes = ceil(cols * bits / 8).
void SetAffineView(QuantizedWeight& qw, int bits, int64_t rows, int64_t cols, int64_t group,
                   kernels::ZeroKind kind, const uint8_t* q, const uint16_t* scale,
                   const uint16_t* zero);

// Storage of a kAffine/kZero weight in `out` (view set, representation
// "affine<bits>/g<group>"): codes zeroed, rows * groups f16 scales and zeros.
struct AffineStorage {
  uint8_t* q = nullptr;        // rows * row_bytes, LSB-first bitstream per row
  uint16_t* scale = nullptr;   // f16, rows * groups
  uint16_t* zero = nullptr;    // f16, rows * groups
  size_t row_bytes = 0;
  int64_t groups = 0;
};
AffineStorage AllocAffine(QuantizedWeight& out, int64_t rows, int64_t cols, int32_t bits,
                          int64_t group);

// Packs `cols` codes (< 2^bits) into one row's LSB-first bitstream (qmatrix.h layout).
void PackCodes(const uint8_t* codes, int64_t cols, int32_t bits, uint8_t* row);

}  // namespace ingot::formats
