// torchao's int4 weights as ATen packs their codes: the CPU one (Int4OpaqueTensor,
// ATen's _convert_weight_to_int4pack_for_cpu, which depends on the CPU capability ATen ran
// with when the checkpoint was written: aten/src/ATen/native/cpu/int4mm_kernel.cpp,
// weight_to_int4pack_kernel; checked against torch 2.15's own output for each capability
// in tests/data/formats/torchao-int4-pack.npz) and the CUDA one (Int4TilePackedTo4dTensor,
// ATen's _convert_weight_to_int4pack on a CUDA device, tinygemm's tensor-core tiles; see
// UnpackInt4Tile). Internal to engine/formats/layouts.
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

// ATen's CUDA int4 packing, tinygemm's B operand of mma.m16n8k16 (aten/src/ATen/native/
// cuda/int4mm.cu, _convert_weight_to_int4pack_cuda and its kernel
// matrix_to_m16n8k16_Bint4_layout<InnerKTiles>; NVIDIA branch, kNTileSize 8, kKTileSize
// 16; pytorch/pytorch 05f814fe). Input: uint8 (n, k/2), byte (r, j) = code(r, 2j) << 4 |
// code(r, 2j+1) (torchao's quant_2d: the even column in the high nibble). Output: int32
// (n/8, k/(I*16), 32, I/2) for I inner k-tiles (2, 4 or 8; torchao 0.18 uses 8). Block
// (nTile, kOuter) is one warp; lane t in 0..31 holds row n = nTile*8 + t/4 and, in word p
// < I/2 (k-tiles 2p and 2p+1), the 8 codes of bytes kb + t%4 + {0, 4, 8, 12},
// kb = (kOuter*I + 2p)*8; the word is
//   bits  0..15: the high nibbles (even k) of those 4 bytes, in that order,
//   bits 16..31: their low nibbles (odd k), in that order.
// So nibble j (bits 4j..4j+3) of word p of lane t is
//   code(nTile*8 + t/4, kOuter*I*16 + 32p + 8*(j%4) + 2*(t%4) + j/4),
// and inversely, for r = k % (I*16): p = r / 32, t = (n%8)*4 + (r%32)/2 % 4,
// j = (r%32)/8 + 4*(r%2). Rows past n and columns past k read as code 0 (the kernel pads
// with byte 0). The codes are tinygemm's uint4 0..15; its kernel dequantizes
// (q - 8) * scale + zero in bf16 (BLayout_TC_int4::load).
struct Int4TileSlot {
  int64_t word;  // index into the int32 tensor, row-major
  int shift;     // the code is (uint32(word) >> shift) & 15
};
// Where code (n, k) sits in the packed tensor of k_padded columns (a multiple of
// inner_k_tiles * 16).
Int4TileSlot Int4TileAt(int64_t n, int64_t k, int64_t k_padded, int inner_k_tiles);
// The packed int32 tensor (n_padded/8, k_padded/(I*16), 32, I/2), as little-endian bytes
// (may be unaligned) -> codes (rows, cols) row-major, the top-left corner of the
// (n_padded, k_padded) matrix it packs. rows <= n_padded, cols <= k_padded (checked by
// the caller).
void UnpackInt4Tile(const uint8_t* packed, int64_t k_padded, int inner_k_tiles, int64_t rows, int64_t cols,
                    uint8_t* codes);

}  // namespace ingot::formats::layouts
