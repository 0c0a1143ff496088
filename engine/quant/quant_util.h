// Small pieces every quantizer of engine/quant shares: the input check, and the kAffine
// view setter and row bitstream packer of formats/layouts/storage.h. Internal to engine/quant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/quant/quantizers.h"

namespace ingot::quant {

// INVALID_ARGUMENT naming `method` for a null or empty weight.
absl::Status CheckMatrix(const float* w, int64_t rows, int64_t cols, const char* method);

// The storage helpers live with the representations (engine/formats/layouts/storage.h).
using formats::PackCodes;
using formats::SetAffineView;

}  // namespace ingot::quant
