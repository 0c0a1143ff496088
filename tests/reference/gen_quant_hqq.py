#!/usr/bin/env python3
"""Golden data for ingot's HQQ and MLX quantizers (engine/quant/hqq.cc, mlx.cc), from
the peers themselves: hqq 0.2.8.post1 (HQQLinear on CPU, compute dtype float16) and
mlx 0.32.4 (mx.quantize / mx.dequantize, Linux CPU wheel). Run in .venv-quant via
tests/reference/regenerate_quant.sh (or `.venv-quant/bin/python <this file>`).

Writes into tests/data/quant/hqq/:
  index.json      the cases and the files each one uses (shapes, params, peer versions)
  w_<name>.f16 / .f32   weight matrices, raw little-endian, row-major (rows, cols)
  <case>.codes.u8 HQQ: codes, one byte per weight, row-major (rows, cols)
  <case>.scale.*  per (row, group) scale, row-major (rows, cols / group)
  <case>.zero.*   HQQ: per (row, group) zero (w = (q - zero) * scale)
  <case>.bias.*   MLX: per (row, group) bias (w = q * scale + bias)
  <case>.deq.*    the peer's own dequantization, (rows, cols)
  <case>.packed.u8  MLX: the uint32 words mx.quantize returns, as bytes (rows, cols*bits/8):
                  an LSB-first bitstream per row, ingot's kAffine row layout

HQQ notes (what the C++ must reproduce):
  * HQQLinear(..., device="cpu") runs the proximal solver
    (optimize_weights_proximal_legacy) in float32; on CUDA it would run in float16.
    torch runs single-threaded here: with more threads torch splits the whole-matrix
    error sum by thread, and a near-tie in the solver's early stop can then end it one
    iteration earlier or later than ingot (seen in 1 of 10 576x1536 trials, 4 codes).
  * hqq 0.2.8's HQQLinear.initialize() drops quant_zero/quant_scale ("deprecated,
    ignored"); the quantized-meta cases below call HQQLinear.quantize() directly with the
    zero/scale params hqq_base_quant_config() builds, which still implements them.
  * scale/zero are stored as float16 (compute_dtype) after quantization.
"""
import json
import os
import sys

import numpy as np
import torch

import hqq
from hqq.core.quantize import HQQLinear, BaseQuantizeConfig

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "quant", "hqq")


def peer_version(name):
    from importlib.metadata import version
    return version(name)


def make_weight(rng, rows, cols):
    """Gaussian weights with heavy-tailed outliers, a constant group, and a zero row
    (the peers' edge handling: HQQ's denom <= 1e-4, MLX's eps and q0 == 0)."""
    w = rng.standard_normal((rows, cols)) * 0.02
    w += (rng.standard_t(3, (rows, cols)) * 0.01) * (rng.random((rows, cols)) < 0.02)
    w[1, :16] = 0.0123            # a constant run (a whole group for group 16)
    w[2, :] = 0.0                 # an all-zero row
    w[3, :] *= 1e-3               # a tiny-range row
    return w


def write(name, arr):
    arr = np.ascontiguousarray(arr)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return name


# ---------------------------------------------------------------------------- HQQ
def hqq_case(cases, name, wname, w16, bits, group, quant_zero=False, quant_scale=False):
    rows, cols = w16.shape
    W = torch.from_numpy(w16.astype(np.float32))
    cfg = BaseQuantizeConfig(nbits=bits, group_size=group, axis=1,
                             quant_zero=quant_zero, quant_scale=quant_scale)
    h = HQQLinear(None, cfg, compute_dtype=torch.float16, device="cpu")
    h.quantize(W.clone(), cfg["weight_quant_params"], cfg["scale_quant_params"],
               cfg["zero_quant_params"])
    meta = h.meta
    assert meta["axis"] == 1 and meta["quant_zero"] == quant_zero
    # Codes: unpack, drop 3-bit word padding, back to (rows, cols).
    q = h.unpack(dtype=torch.uint8)
    q = q[: rows * cols // group].reshape(rows, cols).numpy().astype(np.uint8)
    deq = h.dequantize().to(torch.float16).numpy()
    # The scale/zero the weight uses (dequantized from their 8-bit codes when quantized).
    if quant_zero:
        from hqq.core.quantize import Quantizer
        zero = Quantizer.dequantize(meta["zero_q"], meta["meta_zero"])
    else:
        zero = meta["zero"]
    if quant_scale:
        from hqq.core.quantize import Quantizer
        scale = Quantizer.dequantize(meta["scale_q"], meta["meta_scale"])
    else:
        scale = meta["scale"]
    scale = scale.to(torch.float16).reshape(rows, cols // group).numpy()
    zero = zero.to(torch.float16).reshape(rows, cols // group).numpy()
    assert np.all(q < (1 << bits))
    cases.append({
        "name": name, "method": "hqq", "weight": wname, "rows": rows, "cols": cols,
        "bits": bits, "group": group, "axis": 1, "quant_zero": quant_zero,
        "quant_scale": quant_scale, "round_zero": cfg["weight_quant_params"]["round_zero"],
        "codes": write(f"{name}.codes.u8", q),
        "scale": write(f"{name}.scale.f16", scale),
        "zero": write(f"{name}.zero.f16", zero),
        "deq": write(f"{name}.deq.f16", deq),
    })


# ---------------------------------------------------------------------------- MLX
def mlx_reference(w, bits, group):
    """MLX 0.32's affine quantize (mlx/backend/cpu/quantized.cpp `quantize`) in numpy
    float32, to check that the pinned wheel does what we read in its source."""
    w = w.astype(np.float32).reshape(-1, group)
    n_bins = np.float32((1 << bits) - 1)
    eps = np.float32(1e-7)
    w_min, w_max = w.min(axis=1), w.max(axis=1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, eps).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nz = q0 != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(nz, edge / q0, scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = np.rint((w - bias[:, None]) / scale[:, None])
    q = np.clip(q, 0, n_bins).astype(np.uint8)
    return q, scale, bias


def mlx_case(cases, name, wname, w, bits, group):
    import mlx.core as mx
    rows, cols = w.shape
    wq, s, b = mx.quantize(mx.array(w), group_size=group, bits=bits)
    deq = np.array(mx.dequantize(wq, s, b, group_size=group, bits=bits))
    packed = np.array(wq).view(np.uint8).reshape(rows, -1)
    s, b = np.array(s), np.array(b)
    # Unpack the LSB-first bitstream (MLX's words are little-endian uint32).
    bitsarr = np.unpackbits(packed, axis=1, bitorder="little")[:, : cols * bits]
    q = (bitsarr.reshape(rows, cols, bits) << np.arange(bits)).sum(axis=2).astype(np.uint8)
    rq, rs, rb = mlx_reference(w, bits, group)
    assert np.array_equal(rq.reshape(rows, cols), q), name
    assert np.array_equal(rs.astype(w.dtype).reshape(s.shape), s), name
    assert np.array_equal(rb.astype(w.dtype).reshape(b.shape), b), name
    ext = "f16" if w.dtype == np.float16 else "f32"
    cases.append({
        "name": name, "method": "mlx", "weight": wname, "rows": rows, "cols": cols,
        "bits": bits, "group": group, "dtype": ext,
        "packed": write(f"{name}.packed.u8", packed),
        "scale": write(f"{name}.scale.{ext}", s),
        "bias": write(f"{name}.bias.{ext}", b),
        "deq": write(f"{name}.deq.{ext}", deq.astype(w.dtype)),
    })


def main():
    # One thread: torch's sums (the solver's group means and its whole-matrix error, whose
    # comparison decides the early stop) then run in the fixed order ingot reproduces.
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    torch.manual_seed(0)
    rng = np.random.default_rng(20240503)
    weights = {}
    wa = make_weight(rng, 32, 256).astype(np.float16)
    wb = make_weight(rng, 24, 320).astype(np.float16)
    wc = make_weight(rng, 16, 256).astype(np.float32)   # MLX float32 input
    weights["a"] = {"rows": 32, "cols": 256, "dtype": "f16", "file": write("w_a.f16", wa)}
    weights["b"] = {"rows": 24, "cols": 320, "dtype": "f16", "file": write("w_b.f16", wb)}
    weights["c"] = {"rows": 16, "cols": 256, "dtype": "f32", "file": write("w_c.f32", wc)}

    cases = []
    hqq_case(cases, "hqq_a_b4_g64", "a", wa, 4, 64)
    hqq_case(cases, "hqq_a_b4_g128", "a", wa, 4, 128)
    hqq_case(cases, "hqq_a_b3_g64", "a", wa, 3, 64)
    hqq_case(cases, "hqq_a_b2_g16", "a", wa, 2, 16)
    hqq_case(cases, "hqq_a_b1_g32", "a", wa, 1, 32)
    hqq_case(cases, "hqq_a_b8_g256", "a", wa, 8, 256)
    hqq_case(cases, "hqq_b_b4_g32", "b", wb, 4, 32)
    hqq_case(cases, "hqq_b_b3_g16", "b", wb, 3, 16)
    hqq_case(cases, "hqq_a_b4_g64_qzqs", "a", wa, 4, 64, quant_zero=True, quant_scale=True)
    hqq_case(cases, "hqq_a_b2_g32_qz", "a", wa, 2, 32, quant_zero=True)

    mlx_case(cases, "mlx_a_b4_g64", "a", wa, 4, 64)
    mlx_case(cases, "mlx_a_b4_g32", "a", wa, 4, 32)
    mlx_case(cases, "mlx_a_b8_g128", "a", wa, 8, 128)
    mlx_case(cases, "mlx_b_b4_g64", "b", wb, 4, 64)
    mlx_case(cases, "mlx_b_b8_g32", "b", wb, 8, 32)
    mlx_case(cases, "mlx_c_b4_g128", "c", wc, 4, 128)
    mlx_case(cases, "mlx_c_b8_g64", "c", wc, 8, 64)

    index = {
        "peers": {"hqq": peer_version("hqq"), "mlx": peer_version("mlx"),
                  "torch": torch.__version__, "numpy": np.__version__},
        "layout": "raw little-endian, row-major; codes one byte per weight",
        "weights": weights,
        "cases": cases,
    }
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total} bytes to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
