#!/usr/bin/env python3
"""Golden data for ingot's bitsandbytes, torchao and optimum-quanto quantizers
(engine/quant/bnb.cc, torchao.cc, quanto.cc), produced by the peers themselves on CPU:
bitsandbytes 0.50.2, torchao 0.18.0, optimum-quanto 0.2.7 over torch 2.15 (pinned in
requirements-quant.txt). Run in .venv-quant via tests/reference/regenerate_quant.sh (or
`.venv-quant/bin/python <this file>`).

Writes into tests/data/quant/torch/ (raw little-endian, row-major):
  index.json            inputs, cases, and the files each case uses
  w_<name>.f32          weight matrices (rows, cols)
  x_<name>.f32          activations for the matmul cases (tokens, cols)
  bnb_dynamic_map.f32   bitsandbytes' signed 8-bit dynamic map (256), as its CPU code reads it
  bnb_<nf4|fp4>_values.f32  the 16 values bitsandbytes' CPU dequantizer gives codes 0..15
  <case>.codes.u8       kCodebook: bnb's packed bytes (rows*cols/2, first element high nibble)
                        kAffine: ingot's row layout (LSB-first bitstream per row, bits/code)
  <case>.absmax.f32     bnb 4-bit without double quant: per-block absmax
  <case>.absmax_code.u8 / .absmax_scale.f32   bnb double quant: nested codes, per-256 scale
                        (absmax_offset is in index.json, exact as an f32 bit pattern too)
  <case>.scale.f16      kAffine: per (row, group) scale as ingot stores it (f16 of the peer's)
  <case>.zero.f16       kAffine kZero: zero (w = (q - zero) * scale); kBias: bias (w = q*scale + bias)
  <case>.peer_scale.f32 the peer's own scale before ingot's f16 rounding (f32, or bf16 widened)
  <case>.peer_zero.f32  torchao int4 / quanto int2-4: the peer's zero_point / shift as f32
  <case>.deq.f32        the peer's own dequantization of the first deq_rows rows (deq_rows, cols)
  <case>.y.f32          LLM.int8 / int8_dynamic: the peer's matmul output (tokens, rows)
  <case>.y_tok.f32      the same with every token run alone (LLM.int8 decides outlier
                        columns per batch; ingot per token)

Notes on what the C++ must reproduce (details in the C++ files):
  * bnb 4-bit on CPU is the torch "default" op (bucketize on f32 midpoints; x * (1/absmax));
    the nested absmax goes through libbitsandbytes_cpu's LUT quantizer (65536 bins).
  * bnb int8 (Int8Params) casts the weight to float16 before int8_vectorwise_quant.
  * torchao int8 (Int8Tensor.from_hp): scale = absmax / 127.5 (f32), q in [-128, 127].
  * torchao int4 needs bfloat16 weights; the PLAIN packing needs mslk (CUDA) and
    TILE_PACKED_TO_4D a CUDA device check, so the cases call the tinygemm primitives those
    tensors use (_choose_qparams_affine_tinygemm / _quantize_affine_tinygemm /
    _dequantize_affine_tinygemm): w = (q - 8) * scale + zero, bf16 arithmetic.
  * quanto qint2/qint4 on float32 weights (bf16 + group 128 on CPU would pick its
    TinyGemm tensor instead): MaxOptimizer scale = (max - min) / (2^bits - 1), shift = -min,
    q = round((w + shift) / scale); dequant = q * scale - shift.
"""
import json
import logging
import os
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "quant", "torch")


def peer_version(name):
    from importlib.metadata import version
    return version(name)


def write(name, arr):
    arr = np.ascontiguousarray(arr)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return name


# The peer's dequantization is stored for the first rows only (all of "c"): codes and
# scales are compared in full, and the dequantization is a per-element formula.
DEQ_ROWS = {"a": 4, "b": 4, "c": 8}


def write_deq(case, name, weight, deq):
    deq = np.asarray(deq, dtype=np.float32)[:DEQ_ROWS[weight]]
    case["deq_rows"] = int(deq.shape[0])
    case["deq"] = write(f"{name}.deq.f32", deq)


def f32_bits(x):
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def pack_bits_lsb(q, bits):
    """Codes (rows, cols) in [0, 2^bits) -> ingot's kAffine rows: LSB-first bitstream."""
    rows, cols = q.shape
    row_bytes = (cols * bits + 7) // 8
    out = np.zeros((rows, row_bytes), dtype=np.uint8)
    q = q.astype(np.uint32)
    for c in range(cols):
        bit = c * bits
        v = q[:, c] << (bit % 8)
        out[:, bit // 8] |= (v & 0xFF).astype(np.uint8)
        if (bit % 8) + bits > 8:
            out[:, bit // 8 + 1] |= (v >> 8).astype(np.uint8)
    return out


# ---------------------------------------------------------------- inputs
def make_inputs(rng):
    w = {}
    # typical linear weights
    w["a"] = (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)
    # heavy tails, odd row count
    b = rng.standard_normal((17, 512)) * 0.05
    b += rng.standard_t(3, (17, 512)) * 0.02 * (rng.random((17, 512)) < 0.05)
    w["b"] = b.astype(np.float32)
    # awkward rows
    c = rng.standard_normal((8, 256)) * 0.03
    c[0, [5, 77, 200]] = [2.5, -3.0, 1.75]     # outliers in a row
    c[1, :] = 0.0                              # all-zero row
    c[2, 64:192] = 0.0                         # all-zero blocks / groups
    c[3, :128] = 0.5                           # a constant group (max == min)
    c[4, :] *= 1e-3                            # tiny range: f16 subnormal scales
    c[5, :] = ((np.arange(256) % 17) - 8) * 0.25  # exact halves: rounding ties
    c[6, :] = -np.abs(c[6, :])                 # all-negative row (code 0 / -1.0)
    w["c"] = c.astype(np.float32)
    return w


def make_activation(rng, tokens, cols):
    """Activations with LLM.int8-style outlier features: columns 3 and 17 are large in
    every token; token 2 has one more outlier (column 40) of its own."""
    x = rng.standard_normal((tokens, cols)).astype(np.float32)
    x[:, 3] = rng.uniform(8, 20, tokens) * np.sign(rng.standard_normal(tokens))
    x[:, 17] = -rng.uniform(6.5, 12, tokens)
    x[2, 40] = 9.0
    return x


# ---------------------------------------------------------------- bitsandbytes
def bnb_cases(W, X, cases):
    import bitsandbytes as bnb
    import bitsandbytes.functional as BF

    # the dynamic map and the 4-bit tables as the CPU code reads them
    _, st = BF.quantize_blockwise(torch.randn(256), blocksize=256)
    write("bnb_dynamic_map.f32", st.code.numpy().astype(np.float32))
    for qt in ("nf4", "fp4"):
        codes = np.tile(np.arange(16, dtype=np.uint8), 4)
        packed = torch.from_numpy((codes[0::2] << 4) | codes[1::2]).view(-1, 1)
        qs = BF.QuantState(absmax=torch.ones(1), shape=torch.Size([1, 64]), dtype=torch.float32,
                           blocksize=64, code=BF.get_4bit_type(qt, device="cpu"), quant_type=qt)
        vals = BF.dequantize_4bit(packed, qs).numpy().reshape(-1)[:16]
        write(f"bnb_{qt}_values.f32", vals.astype(np.float32))

    plan = []
    for wn in ("a", "b", "c"):
        plan += [(wn, "nf4", 64, True), (wn, "fp4", 64, True)]
    plan += [("b", "nf4", 64, False), ("b", "fp4", 64, False), ("b", "nf4", 128, True),
             ("c", "nf4", 64, False)]
    for wn, qt, bs, dq in plan:
        w = torch.from_numpy(W[wn])
        packed, st = BF.quantize_4bit(w, blocksize=bs, compress_statistics=dq, quant_type=qt)
        deq = BF.dequantize_4bit(packed, st)
        name = f"bnb_{qt}_b{bs}{'_dq' if dq else ''}_{wn}"
        case = {"name": name, "method": "bnb4", "weight": wn, "quant_type": qt, "blocksize": bs,
                "double_quant": dq, "rows": int(w.shape[0]), "cols": int(w.shape[1]),
                "codes": write(f"{name}.codes.u8", packed.numpy().reshape(-1))}
        write_deq(case, name, wn, deq.numpy())
        if dq:
            case["absmax_code"] = write(f"{name}.absmax_code.u8", st.absmax.numpy())
            case["absmax_scale"] = write(f"{name}.absmax_scale.f32", st.state2.absmax.numpy())
            case["absmax_block"] = int(st.state2.blocksize)
            case["absmax_offset"] = float(st.offset.item())
            case["absmax_offset_bits"] = f32_bits(st.offset.item())
        else:
            case["absmax"] = write(f"{name}.absmax.f32", st.absmax.numpy())
        cases.append(case)

    # LLM.int8: Int8Params quantizes on the move to a device; Linear8bitLt's forward
    for wn in ("a", "c"):
        w = torch.from_numpy(W[wn])
        rows, cols = w.shape
        lin = bnb.nn.Linear8bitLt(cols, rows, bias=False, has_fp16_weights=False, threshold=6.0)
        lin.weight = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
        lin = lin.to("cpu")
        CB, SCB = lin.weight.CB, lin.weight.SCB
        if CB is None or CB.dtype != torch.int8:  # .to("cpu") did not quantize: do what it does
            CB, SCB, _ = BF.int8_vectorwise_quant(w.to(torch.float16))
            lin.weight = bnb.nn.Int8Params(CB, requires_grad=False, has_fp16_weights=False)
            lin.weight.CB, lin.weight.SCB = CB, SCB
            lin.state.CB, lin.state.SCB = CB, SCB
        lin.eval()
        x = torch.from_numpy(X[wn])
        with torch.no_grad():
            y = lin(x)
            y_tok = torch.cat([lin(x[t:t + 1]) for t in range(x.shape[0])])
        deq = BF.int8_vectorwise_dequant(CB, SCB)
        peer_scale = (SCB * np.float32(7.874015718698502e-3)).numpy().astype(np.float32)
        name = f"bnb_int8_{wn}"
        cases.append({
            "name": name, "method": "bnb_int8", "weight": wn, "activation": wn, "bits": 8,
            "group": int(cols), "zero_kind": "zero", "threshold": 6.0,
            "rows": int(rows), "cols": int(cols),
            "codes": write(f"{name}.codes.u8", (CB.numpy().astype(np.int16) + 128).astype(np.uint8)),
            "scale": write(f"{name}.scale.f16", peer_scale.astype(np.float16)),
            "zero": write(f"{name}.zero.f16", np.full(rows, 128, dtype=np.float16)),
            "peer_scale": write(f"{name}.peer_scale.f32", peer_scale),
            "y": write(f"{name}.y.f32", y.float().numpy()),
            "y_tok": write(f"{name}.y_tok.f32", y_tok.float().numpy()),
        })
        write_deq(cases[-1], name, wn, deq.numpy())


# ---------------------------------------------------------------- torchao
def torchao_cases(W, X, cases):
    from torchao.quantization import (Int8DynamicActivationInt8WeightConfig,
                                      Int8WeightOnlyConfig, quantize_)
    from torchao.quantization.quant_primitives import (
        MappingType, _choose_qparams_affine_tinygemm, _dequantize_affine_tinygemm,
        _quantize_affine_tinygemm)

    def linear(w):
        rows, cols = w.shape
        lin = torch.nn.Linear(cols, rows, bias=False)
        lin.weight.data = torch.from_numpy(w).clone()
        return lin

    for wn in ("a", "b", "c"):
        lin = linear(W[wn])
        quantize_(lin, Int8WeightOnlyConfig())
        qw = lin.weight
        qdata = qw.qdata.numpy().astype(np.int16)
        scale = qw.scale.float().numpy().reshape(-1).astype(np.float32)
        rows, cols = qdata.shape
        name = f"torchao_int8_{wn}"
        case = {"name": name, "method": "torchao_int8", "weight": wn, "bits": 8, "group": int(cols),
                "zero_kind": "zero", "rows": int(rows), "cols": int(cols),
                "codes": write(f"{name}.codes.u8", (qdata + 128).astype(np.uint8)),
                "scale": write(f"{name}.scale.f16", scale.astype(np.float16)),
                "zero": write(f"{name}.zero.f16", np.full(rows, 128, dtype=np.float16)),
                "peer_scale": write(f"{name}.peer_scale.f32", scale)}
        write_deq(case, name, wn, qw.dequantize().detach().float().numpy())
        if wn in X:
            dyn = linear(W[wn])
            quantize_(dyn, Int8DynamicActivationInt8WeightConfig())
            assert np.array_equal(dyn.weight.qdata.numpy(), qw.qdata.numpy())
            x = torch.from_numpy(X[wn])
            with torch.no_grad():
                case["activation"] = wn
                case["y"] = write(f"{name}.y.f32", dyn(x).float().numpy())
        cases.append(case)

    for wn, g in (("a", 128), ("b", 128), ("c", 128), ("b", 32), ("b", 64), ("b", 256)):
        wb = torch.from_numpy(W[wn]).to(torch.bfloat16)
        rows, cols = wb.shape
        block = (1, g)
        scale, zero = _choose_qparams_affine_tinygemm(
            wb, MappingType.ASYMMETRIC, block, torch.int32, 0, 15,
            scale_dtype=torch.bfloat16, zero_point_dtype=torch.bfloat16)
        q = _quantize_affine_tinygemm(wb, list(block), scale, zero, torch.int32, 0, 15)
        deq = _dequantize_affine_tinygemm(q, list(block), scale, zero, torch.int32, 0, 15,
                                          output_dtype=torch.float32)
        s32 = scale.float().numpy().reshape(-1).astype(np.float32)
        z32 = zero.float().numpy().reshape(-1).astype(np.float32)
        bias = (z32 - np.float32(8) * s32).astype(np.float32)  # w = q*s + (z - 8s)
        name = f"torchao_int4_g{g}_{wn}"
        cases.append({
            "name": name, "method": "torchao_int4", "weight": wn, "bits": 4, "group": g,
            "zero_kind": "bias", "rows": int(rows), "cols": int(cols),
            "codes": write(f"{name}.codes.u8", pack_bits_lsb(q.numpy(), 4)),
            "scale": write(f"{name}.scale.f16", s32.astype(np.float16)),
            "zero": write(f"{name}.zero.f16", bias.astype(np.float16)),
            "peer_scale": write(f"{name}.peer_scale.f32", s32),
            "peer_zero": write(f"{name}.peer_zero.f32", z32),
        })
        write_deq(cases[-1], name, wn, deq.numpy())


# ---------------------------------------------------------------- optimum-quanto
def quanto_cases(W, cases):
    from optimum.quanto import freeze, qint2, qint4, qint8, quantize
    from optimum.quanto.tensor.optimizers import MaxOptimizer
    from optimum.quanto.tensor.weights import quantize_weight

    def module_weight(w, qt):
        rows, cols = w.shape
        m = torch.nn.Sequential(torch.nn.Linear(cols, rows, bias=False))
        m[0].weight.data = torch.from_numpy(w).clone()
        quantize(m, weights=qt)
        freeze(m)
        return m[0].weight, m[0].weight_group_size

    for wn in ("a", "b", "c"):
        qw, _ = module_weight(W[wn], qint8)
        data = qw._data.detach().numpy().astype(np.int16)
        rows, cols = data.shape
        scale = qw._scale.detach().float().numpy().reshape(-1).astype(np.float32)
        name = f"quanto_int8_{wn}"
        cases.append({
            "name": name, "method": "quanto", "weight": wn, "bits": 8, "group": int(cols),
            "zero_kind": "zero", "rows": int(rows), "cols": int(cols),
            "codes": write(f"{name}.codes.u8", (data + 128).astype(np.uint8)),
            "scale": write(f"{name}.scale.f16", scale.astype(np.float16)),
            "zero": write(f"{name}.zero.f16", np.full(rows, 128, dtype=np.float16)),
            "peer_scale": write(f"{name}.peer_scale.f32", scale),
        })
        write_deq(cases[-1], name, wn, qw.dequantize().detach().float().numpy())

    plan = [("a", qint4, None), ("b", qint4, None), ("c", qint4, None), ("a", qint2, None),
            ("b", qint2, None), ("b", qint4, 64), ("c", qint2, 32)]
    for wn, qt, g in plan:
        w = torch.from_numpy(W[wn]).clone()
        rows, cols = w.shape
        if g is None:  # the module picks the group size (128 here)
            qw, g = module_weight(W[wn], qt)
        else:
            scale, shift = MaxOptimizer()(w, qtype=qt, axis=0, group_size=g)
            qw = quantize_weight(w, qt, axis=0, scale=scale, shift=shift, group_size=g,
                                 optimized=False)
        data = qw._data.unpack().numpy().reshape(rows, cols)
        s32 = qw._scale.detach().float().numpy().reshape(-1).astype(np.float32)
        shift = qw._shift.detach().float().numpy().reshape(-1).astype(np.float32)
        name = f"quanto_int{qt.bits}_g{g}_{wn}"
        cases.append({
            "name": name, "method": "quanto", "weight": wn, "bits": qt.bits, "group": int(g),
            "zero_kind": "bias", "rows": int(rows), "cols": int(cols),
            "codes": write(f"{name}.codes.u8", pack_bits_lsb(data, qt.bits)),
            "scale": write(f"{name}.scale.f16", s32.astype(np.float16)),
            "zero": write(f"{name}.zero.f16", (-shift).astype(np.float16)),
            "peer_scale": write(f"{name}.peer_scale.f32", s32),
            "peer_zero": write(f"{name}.peer_zero.f32", shift),
        })
        write_deq(cases[-1], name, wn, qw.dequantize().detach().float().numpy())


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    torch.manual_seed(0)
    rng = np.random.default_rng(20261123)
    W = make_inputs(rng)
    X = {"a": make_activation(rng, 6, 256), "c": make_activation(rng, 4, 256)}
    inputs = {}
    for k, v in W.items():
        inputs["w_" + k] = {"file": write(f"w_{k}.f32", v), "shape": list(v.shape)}
    for k, v in X.items():
        inputs["x_" + k] = {"file": write(f"x_{k}.f32", v), "shape": list(v.shape)}
    cases = []
    bnb_cases(W, X, cases)
    torchao_cases(W, X, cases)
    quanto_cases(W, cases)
    index = {
        "generator": "tests/reference/gen_quant_torch.py",
        "peers": {p: peer_version(p) for p in
                  ("torch", "bitsandbytes", "torchao", "optimum-quanto", "numpy")},
        "inputs": inputs,
        "bnb_dynamic_map": "bnb_dynamic_map.f32",
        "bnb_nf4_values": "bnb_nf4_values.f32",
        "bnb_fp4_values": "bnb_fp4_values.f32",
        "cases": cases,
    }
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total // 1024} KiB to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
