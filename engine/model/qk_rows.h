// q/k row orders of the two rotary conventions, shared by the GGUF export and the
// Hugging Face style saves. GGUF's llama keeps each head's rotated pairs interleaved
// (rows 2i, 2i+1); transformers keeps them as halves (rows i, i + head_dim/2).
// Internal to engine/model.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ingot {

// from[r]: the source row of row r when a (n_head * head_dim)-row matrix goes to the
// interleaved order (`to_pairs`) or back to halves.
inline std::vector<int64_t> QkRowOrder(int64_t n_head, int64_t head_dim, bool to_pairs) {
  std::vector<int64_t> from(static_cast<size_t>(n_head * head_dim));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t pairs = h * head_dim + 2 * i + j, halves = h * head_dim + j * half + i;
        if (to_pairs) from[pairs] = halves;
        else from[halves] = pairs;
      }
    }
  }
  return from;
}

// Row r of the result is row from[r] of `data` (rows of `row_bytes`).
inline std::string GatherRows(const uint8_t* data, size_t row_bytes, const std::vector<int64_t>& from) {
  std::string out(from.size() * row_bytes, '\0');
  for (size_t r = 0; r < from.size(); ++r) {
    std::memcpy(&out[r * row_bytes], data + static_cast<size_t>(from[r]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace ingot
