// The AMX-INT8 Dot for the 16-row multi-token tile of tile_avx512vnni.h: one TDPBSUD per
// 32-element block computes all NT x 16 int32 sums that the VNNI tile gets from
// 8 * NT vpdpbusd. Include only from files built with the *_amx.cc flags (the AVX-512
// VNNI ones plus -mamx-tile -mamx-int8); call only where CpuHasLevel(kAmx) (the OS has
// granted this process the tile data state).
//
// Per block m, with the tiles configured for NT tokens:
//   A (NT x 32 s8): the tokens' activation codes of block m, loaded in place (row t =
//     token t's qs, stride = the prepared rows' stride; never past the NT rows);
//   B (8 x 64 u8): the unpacked weights as the VNNI tile holds them (row k = u.q[k]:
//     lane r = row r's elements 4k..4k+3), stored to 512 bytes and loaded;
//   C (NT x 16 int32) = A . B, zeroed per block, stored to memory;
// then token t's sums are C row t, and Tiles applies the scales with the same float ops
// in the same order as the VNNI path: the two agree bit for bit (the integer sums are
// exact either way).
//
// A tile load cannot take data from the vector stores in flight, and loads after a tile
// store wait for it, so the blocks are pipelined over Tiles' steps: block b is unpacked
// and its B stored in step b (right away, so the 8 weight vectors do not stay live
// beside the 16 accumulators: 6% faster), multiplied in step b + 1, its C stored in
// step b + 3 (its product long done) and its sums read in step b + 4, before that step's
// tile store. Three sets of tiles rotate so that consecutive blocks do not wait on each
// other's registers.
//
// Napkin math, 16 tokens: the 128 vpdpbusd + 64 broadcasts of a block become ~1 TDPBSUD
// (16 cycles), two tile loads (24 rows), a tile store (16 rows) and 16 row loads; the
// unpack (~45 uops) and the scale ops (~4 per token) stay. Measured on this VM (Sapphire
// Rapids under KVM) the tile work does not overlap the vector work well (with the tile
// ops removed the AMX loop runs ~1.7x faster): per 16-row call (matmul_bench, default
// model) 16 tokens take 12-21% less time than VNNI for the Q4_1 layers and ~5% less for
// the Q8_0 head, 12 tokens 2-8% less, 8-9 tokens about the same, fewer tokens more
// (quant_dot_internal.h: kAmxMinTokens); whole 576 x 1536 matrices at 16 tokens
// (qmatrix_bench) 16-20% less.
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
  // Tiles (C, A, B): (0, 1, 2), (3, 4, 5), (6, 7, 2) for blocks m % 3 = 0, 1, 2. The
  // configuration stays loaded after a call (no TILERELEASE: a decode step makes many calls
  // of 16 rows each on the same threads).
  static INGOT_ALWAYS_INLINE void Begin() {
    TileConfig cfg;
    cfg.rows[0] = NT;
    cfg.col_bytes[0] = 64;
    cfg.rows[1] = NT;
    cfg.col_bytes[1] = 32;
    cfg.rows[2] = 8;
    cfg.col_bytes[2] = 64;
    for (int i = 3; i < 8; ++i) {  // C, A, B of the blocks m % 3 = 1 (3, 4, 5) and 2 (6, 7, 2)
      cfg.rows[i] = cfg.rows[i - 3];
      cfg.col_bytes[i] = cfg.col_bytes[i - 3];
    }
    // LDTILECFG costs about as much as a 576-column tile of 16 rows: keep the thread's
    // configuration when it is already this one. Read back, not remembered, in case other
    // code on this thread (oneDNN in libtorch) configured or released the tiles since.
    TileConfig now;
    _tile_storeconfig(&now);
    if (std::memcmp(&now, &cfg, sizeof(cfg)) != 0) _tile_loadconfig(&cfg);
  }
  static INGOT_ALWAYS_INLINE void End() {}

  // The pipeline above: block b multiplied in step b + kMulLag, read in step b + kLag;
  // buffers are a ring of kRing blocks.
  static constexpr int64_t kMulLag = 1;
  static constexpr int64_t kLag = 4;
  static constexpr int kRing = 8;

  // Block b's weights and coefficients, right after its unpack (frees u's registers).
  INGOT_ALWAYS_INLINE void Stage(const Unpacked& u, const int8_t* qx0, int64_t b) {
    const int p = static_cast<int>(b % kRing);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) _mm512_store_si512(bw[p][k], u.q[k]);
    _mm512_store_ps(d[p], u.d);
    _mm512_store_ps(c[p], u.c);
    qx[p] = qx0;
  }
  INGOT_ALWAYS_INLINE void Block(const Unpacked&, const int8_t*, size_t xs, int64_t b, int64_t nb) {
    const int64_t m = b - kMulLag;  // the block multiplied now
    // First the product of the block multiplied two steps ago (done by now): later loads
    // wait for an earlier tile store.
    if (m >= 2 && m - 2 < nb) {
      int32_t* out = &sums[(m - 2) % kRing][0][0];
      switch ((m - 2) % 3) {
        case 0: _tile_stored(0, out, 64); break;
        case 1: _tile_stored(3, out, 64); break;
        default: _tile_stored(6, out, 64); break;
      }
    }
    // GCC 12's tileloadd asm names only the address, not the memory it reads: without
    // this the stores to bw may be dropped or moved past it.
    __asm__ volatile("" ::: "memory");
    if (m >= 0 && m < nb) {
      const int p = static_cast<int>(m % kRing);
      const void* a = qx[p];
      const long stride = static_cast<long>(xs);
      // The intrinsics take tile numbers as literal tokens.
#define INGOT_AMX_MULTIPLY(C, A, B) \
  _tile_zero(C);                    \
  _tile_loadd(A, a, stride);        \
  _tile_loadd(B, bw[p], 64);        \
  _tile_dpbsud(C, A, B)
      switch (m % 3) {
        case 0: INGOT_AMX_MULTIPLY(0, 1, 2); break;
        case 1: INGOT_AMX_MULTIPLY(3, 4, 5); break;
        default: INGOT_AMX_MULTIPLY(6, 7, 2); break;
      }
#undef INGOT_AMX_MULTIPLY
    }
  }

  INGOT_ALWAYS_INLINE __m512 Scale(const Unpacked&, int64_t s) const { return _mm512_load_ps(d[s % kRing]); }
  INGOT_ALWAYS_INLINE __m512 Offset(const Unpacked&, int64_t s) const { return _mm512_load_ps(c[s % kRing]); }
  INGOT_ALWAYS_INLINE __m512i Token(const Unpacked&, int t, const int8_t*, int64_t s) const {
    return _mm512_load_si512(sums[s % kRing][t]);
  }

  alignas(64) uint8_t bw[kRing][8][64];     // B: row k = u.q[k]
  alignas(64) int32_t sums[kRing][NT][16];  // C: [token][weight row]
  alignas(64) float d[kRing][16];           // the blocks' u.d
  alignas(64) float c[kRing][16];           // and u.c
  const int8_t* qx[kRing];                  // token 0's codes
};

}  // namespace ingot::kernels::internal::amx
