// Helpers shared by the GGUF reader (gguf.cc) and writer (gguf_writer.cc).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "engine/formats/gguf.h"

namespace ingot::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr absl::string_view kAlignmentKey = "general.alignment";

inline bool IsFloatType(ValueType t) {
  return t == ValueType::kFloat32 || t == ValueType::kFloat64;
}

// x rounded up to a multiple of a (any a; 0 and 1 leave x as is).
inline uint64_t AlignUp(uint64_t x, uint64_t a) {
  if (a <= 1) return x;
  return (x + a - 1) / a * a;
}

// Elements of an array value, counted in the vector its elem_type uses.
inline size_t ElementCount(const Value& v) {
  if (v.elem_type == ValueType::kString) return v.strings.size();
  if (v.elem_type == ValueType::kArray) return v.arrays.size();
  if (IsFloatType(v.elem_type)) return v.floats.size();
  return v.ints.size();
}

}  // namespace ingot::gguf
