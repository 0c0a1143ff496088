// The AMX-INT8 Dot for the 16-row multi-token tile of tile_avx512vnni.h: one TDPBSUD per
// 32-element block computes all NT x 16 int32 sums that the VNNI tile gets from
// 8 * NT vpdpbusd. Include only from files built with the *_amx.cc flags (the AVX-512
// VNNI ones plus -mamx-tile -mamx-int8); call only where CpuHasLevel(kAmx) (the OS has
// granted this process the tile data state).
//
// Per block b, with the tile configured for NT tokens:
//   tmm1 = A (NT x 32 s8): the tokens' activation codes of block b, loaded in place
//          (row t = token t's qs, stride = the prepared rows' stride);
//   tmm2 = B (8 x 64 u8): the unpacked weights as the VNNI tile holds them (row k = u.q[k]:
//          lane r = row r's elements 4k..4k+3), stored to 512 bytes and loaded;
//   tmm0 = C (NT x 16 int32) = A . B, zeroed per block, stored to memory;
// then token t's sums are C row t, and Tiles applies the scales with the same float ops
// as the VNNI path: the two agree bit for bit (the integer sums are exact either way).
//
// Napkin math, 16 tokens: TDPBSUD issues every 16 cycles; the store of C (1 KB) and its
// 16 row loads replace 128 vpdpbusd + 64 broadcasts; the unpack (~45 uops) and the
// scale ops (~5 per token) stay.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/tile_avx512vnni.h"

namespace ingot::kernels::internal::amx {

using vnni::Unpacked;

// LDTILECFG's 64-byte operand, palette 1.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t col_bytes[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

template <int NT>
struct Dot {
  // Tile registers: C, A, B as above. Loaded per call (a call is a row range of a whole
  // matrix: many blocks), released after it so the thread's tile state is not kept.
  static INGOT_ALWAYS_INLINE void Begin() {
    TileConfig cfg;
    cfg.rows[0] = NT;
    cfg.col_bytes[0] = 64;
    cfg.rows[1] = NT;
    cfg.col_bytes[1] = 32;
    cfg.rows[2] = 8;
    cfg.col_bytes[2] = 64;
    _tile_loadconfig(&cfg);
  }
  static INGOT_ALWAYS_INLINE void End() { _tile_release(); }

  // qx0: token 0's codes of this block; token t's are at qx0 + t * xs.
  INGOT_ALWAYS_INLINE void Block(const Unpacked& u, const int8_t* qx0, size_t xs) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) _mm512_store_si512(b[k], u.q[k]);
    // GCC 12's tileloadd asm names only the address, not the memory it reads: without
    // this the stores to b above may be dropped or moved past it.
    __asm__ volatile("" ::: "memory");
    _tile_zero(0);
    _tile_loadd(1, qx0, static_cast<long>(xs));
    _tile_loadd(2, b, 64);
    _tile_dpbsud(0, 1, 2);
    _tile_stored(0, c, 64);
  }
  INGOT_ALWAYS_INLINE __m512i Token(const Unpacked&, int t, const int8_t*) const { return _mm512_load_si512(c[t]); }

  alignas(64) uint8_t b[8][64];  // B: row k = u.q[k]
  alignas(64) int32_t c[NT][16];  // C: [token][weight row]
};

}  // namespace ingot::kernels::internal::amx
