// torchao's CPU int4 weight (Int4OpaqueTensor): the code packing of ATen's
// _convert_weight_to_int4pack_for_cpu, which depends on the CPU capability ATen ran with
// when the checkpoint was written (aten/src/ATen/native/cpu/int4mm_kernel.cpp,
// weight_to_int4pack_kernel; checked against torch 2.15's own output for each capability
// in tests/data/formats/torchao-int4-pack.npz). Internal to engine/formats/layouts.
#pragma once

#include <cstdint>
#include <string_view>

namespace ingot::formats::layouts {

// ATen's CPU capabilities as they pack int4 codes. Codes w[n][k] in 0..15 of an (N, K)
// weight go to (N, K/2) bytes in blocks of B rows (B = 64 for AVX-512, else 32); block
// b of nb = min(B, N - b*B) rows is nb*K/2 bytes, input k's nb/2 of them holding:
//   kDefault, and any block shorter than B: byte j = w[2j] | w[2j+1] << 4
//   kAvx2 (full blocks of 32):            byte d = w[d] | w[d+16] << 4           d < 16
//   kAvx512 (full blocks of 64):          byte d = w[d] | w[d+32] << 4,
//                                         byte 16+d = w[d+16] | w[d+48] << 4     d < 16
// (rows relative to the block). The file does not record which one wrote it.
enum class Int4CpuPacking : uint8_t { kDefault, kAvx2, kAvx512 };

const char* Int4CpuPackingName(Int4CpuPacking p);
// The packing to read with: $ATEN_CPU_CAPABILITY when it names one (default, avx2,
// avx512: the capability of the machine that wrote the file; ingot only unpacks, so any
// of them reads on any CPU, where torch would cap it at its own), else the one ATen uses
// on this machine, so a file reads as torch here reads it (AVX-512 needs F, BW, VL, DQ
// and FMA; AVX2 needs FMA; other architectures pack as kDefault).
Int4CpuPacking DetectInt4CpuPacking();
// ATen's capability name -> packing ("default", "avx2", "avx512"; case-insensitive);
// false for an unknown name.
bool ParseInt4CpuPacking(std::string_view name, Int4CpuPacking* out);
// (n, k/2) packed bytes -> codes (n, k), row-major. n even, k even.
void UnpackInt4Cpu(const uint8_t* packed, int64_t n, int64_t k, Int4CpuPacking p, uint8_t* codes);

}  // namespace ingot::formats::layouts
