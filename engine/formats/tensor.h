// Tensor views shared by the container readers (safetensors, torch zip pickles, npz):
// an element type, a shape and a pointer to contiguous row-major little-endian bytes
// that live in the reader's mapping (or in a copy the reader owns).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingot::formats {

enum class DType : int8_t {
  kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kU16, kU32, kU64, kBool,
  kF8E4M3, kF8E5M2,
};
inline constexpr int kDTypeCount = 15;

struct DTypeTraits {
  DType dtype;
  const char* name;  // safetensors spelling
  size_t size;       // bytes per element
};

// One row per DType, in enum order (static_assert below keeps them in step).
inline constexpr DTypeTraits kDTypeTable[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8},        {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},          {DType::kU8, "U8", 1},
    {DType::kU16, "U16", 2},   {DType::kU32, "U32", 4},        {DType::kU64, "U64", 8},
    {DType::kBool, "BOOL", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};
static_assert(sizeof(kDTypeTable) / sizeof(kDTypeTable[0]) == kDTypeCount);

constexpr bool DTypeTableInOrder() {
  for (int i = 0; i < kDTypeCount; ++i) {
    if (static_cast<int>(kDTypeTable[i].dtype) != i) return false;
  }
  return true;
}
static_assert(DTypeTableInOrder());

inline const char* DTypeName(DType t) {
  const int i = static_cast<int>(t);
  return i >= 0 && i < kDTypeCount ? kDTypeTable[i].name : "?";
}
inline size_t DTypeSize(DType t) {
  const int i = static_cast<int>(t);
  return i >= 0 && i < kDTypeCount ? kDTypeTable[i].size : 0;
}
// Inverse of DTypeName (exact safetensors spelling); nullopt for anything else.
inline std::optional<DType> DTypeFromName(std::string_view name) {
  for (const DTypeTraits& t : kDTypeTable) {
    if (name == t.name) return t.dtype;
  }
  return std::nullopt;
}

// Elements of `shape` (0 when a dimension is 0), or nullopt when a dimension is
// negative or the product of the non-zero dimensions, times `elem_size` bytes,
// overflows. The readers refuse such shapes even when empty, so code that computes
// strides or byte sizes from a TensorView they return cannot overflow.
inline std::optional<uint64_t> CheckedNumel(const std::vector<int64_t>& shape,
                                            size_t elem_size) {
  uint64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(elem_size == 0 ? 1 : elem_size), &bytes) ||
      n > static_cast<uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return empty ? 0 : n;
}

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;      // outermost first; empty for a 0-d tensor
  const uint8_t* data = nullptr;   // contiguous, row-major, little-endian; may be
                                   // unaligned (safetensors does not align)
  size_t nbytes = 0;               // numel() * DTypeSize(dtype)
  int64_t numel() const {  // 0 if any dimension is 0 (checked before multiplying)
    for (int64_t d : shape) {
      if (d == 0) return 0;
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace ingot::formats
