"""ingot's OWN numpy emulation of ATen's CUDA int4 packing -- not a peer vector.

torch's _convert_weight_to_int4pack runs only on a CUDA (or ROCm/XPU/MPS) device, so no
CPU can produce its output. This script re-implements, loop for loop, the NVIDIA branch of
the kernel that makes it, written from the source of
aten/src/ATen/native/cuda/int4mm.cu (pytorch/pytorch 05f814fe):
_convert_weight_to_int4pack_cuda and matrix_to_m16n8k16_Bint4_layout<InnerKTiles>
(kNTileSize 8, kKTileSize 16, one warp of 32 lanes per (kOuterTile, nTile) block), with
torchao 0.18's input step before it (Int4TilePackedTo4dTensor.from_hp's quant_2d: uint8
(n, k/2), even column in the high nibble).

It writes tests/data/formats/torchao-int4-tile-pack.npz: for each (n, k, inner_k_tiles)
below, codes_<n>x<k>_i<I> uint8 (n, k) in 0..15 and packed_<n>x<k>_i<I> int32
(ceil(n/8), k/(I*16), 32, I/2). tests/quant/torchao_tile_test.cc unpacks them with
engine/formats/layouts/torchao.cc's UnpackInt4Tile, which is written from its own index
formula (torchao.h), so the two readings of the kernel are checked against each other.
What the real kernel writes is checked by tests/gpu/torchao_int4.sh on a CUDA device
(tests/reference/gpu_torchao_int4.py records packed == emulation there).

  python3 tests/reference/gen_torchao_int4_tile_pack.py    (numpy only; deterministic)
"""
import os
import sys

import numpy as np

# (n, k, inner_k_tiles): torchao uses 8; 2 and 4 are the kernel's other instances. 20 is
# not a multiple of the 8-row n-tile (ATen pads the rows past n with byte 0); 256 with 8
# is two outer k-tiles.
SHAPES = ((20, 256, 8), (16, 64, 2), (8, 128, 4))
SEED = 20261207


def quant_2d(codes):
    """torchao's quant_2d: (n, k) codes -> uint8 (n, k/2), byte j = code[2j] << 4 | code[2j+1]."""
    return ((codes[:, ::2] << 4) | codes[:, 1::2]).astype(np.uint8)


def convert_weight_to_int4pack(packed_u8, inner_k_tiles):
    """_convert_weight_to_int4pack_cuda(in uint8 (n, k/2), innerKTiles) -> int32
    (ceil(n/8), k/(innerKTiles*16), 32, innerKTiles/2), NVIDIA branch."""
    n, half_k = packed_u8.shape
    k_tile = 16
    assert (half_k * 2) % (inner_k_tiles * k_tile) == 0 and inner_k_tiles in (2, 4, 8)
    n_tiles = -(-n // 8)
    k_super = half_k * 2 // (inner_k_tiles * k_tile)
    out = np.zeros((n_tiles, k_super, 32, inner_k_tiles // 2), dtype=np.uint32)
    for k_outer in range(k_super):          # blockIdx.x
        for n_tile in range(n_tiles):       # blockIdx.y
            for t in range(32):             # threadIdx.x
                for inner in range(0, inner_k_tiles, 2):
                    n0 = n_tile * 8 + t // 4
                    k_base0 = (k_outer * inner_k_tiles + inner) * k_tile // 2
                    ks = [k_base0 + t % 4, k_base0 + t % 4 + 4]
                    k_base1 = k_base0 + k_tile // 2
                    ks += [k_base1 + t % 4, k_base1 + t % 4 + 4]
                    v = [int(packed_u8[n0, kk]) if n0 < n and kk < half_k else 0 for kk in ks]
                    pack = (((v[3] & 0xF) << 28) | ((v[2] & 0xF) << 24) | ((v[1] & 0xF) << 20) |
                            ((v[0] & 0xF) << 16) | ((v[3] & 0xF0) << 8) | ((v[2] & 0xF0) << 4) |
                            (v[1] & 0xF0) | ((v[0] & 0xF0) >> 4))
                    out[n_tile, k_outer, t, inner // 2] = pack
    return out.view(np.int32)


def emulate(codes, inner_k_tiles):
    """(n, k) codes 0..15 -> what torchao + ATen's CUDA pack store as qdata."""
    return convert_weight_to_int4pack(quant_2d(codes.astype(np.int64)), inner_k_tiles)


def main(out):
    rng = np.random.default_rng(SEED)
    arrays = {}
    for n, k, inner in SHAPES:
        codes = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
        packed = emulate(codes, inner)
        # Every code lands once: the packing is a bijection onto the non-padding nibbles.
        assert packed.shape == (-(-n // 8), k // (inner * 16), 32, inner // 2), packed.shape
        arrays[f"codes_{n}x{k}_i{inner}"] = codes
        arrays[f"packed_{n}x{k}_i{inner}"] = packed
    np.savez(out, **arrays)
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(here, "..", "data", "formats", "torchao-int4-tile-pack.npz"))
