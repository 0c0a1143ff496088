#include "engine/quant/quant_util.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace ingot::quant {

absl::Status CheckMatrix(const float* w, int64_t rows, int64_t cols, const char* method) {
  if (w == nullptr) return absl::InvalidArgumentError(absl::StrFormat("%s: no weight data", method));
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: weight shape %d x %d is empty", method, rows, cols));
  }
  return absl::OkStatus();
}

}  // namespace ingot::quant
