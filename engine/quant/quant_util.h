// Small pieces every quantizer of engine/quant shares: the input check, the kAffine
// view setter and the row bitstream packer. Internal to engine/quant.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/quant/quantizers.h"

namespace ingot::quant {

// INVALID_ARGUMENT naming `method` for a null or empty weight.
absl::Status CheckMatrix(const float* w, int64_t rows, int64_t cols, const char* method);

// Points qw.view at kAffine storage: row_bytes = ceil(cols * bits / 8).
void SetAffineView(QuantizedWeight& qw, int bits, int64_t rows, int64_t cols, int64_t group,
                   kernels::ZeroKind kind, const uint8_t* q, const uint16_t* scale,
                   const uint16_t* zero);

// Packs `cols` codes (< 2^bits) into one row's LSB-first bitstream (qmatrix.h layout).
void PackCodes(const uint8_t* codes, int64_t cols, int32_t bits, uint8_t* row);

}  // namespace ingot::quant
