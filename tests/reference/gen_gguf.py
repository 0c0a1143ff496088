#!/usr/bin/env python3
"""Golden data for the GGUF reader and the GGML reference dequantizers, from the gguf
Python package (a peer we did not write). Run via `tests/reference/regenerate.sh gguf`.

Writes into tests/data/gguf/:
  dequant_<type>.bin   per GGML type: raw blocks and the floats gguf.quants.dequantize
                       gives for them (tests/kernels/dequant_test.cc).
  peer_writer.gguf     a tiny file from gguf.GGUFWriter holding every metadata value
  peer_writer.json     type and a few tensors, and what it holds, for
                       tests/formats/gguf_test.cc.

dequant_<type>.bin layout (little-endian):
  char magic[4] = "IDQ1"; u32 ggml_type; u32 n_cases;
  n_cases x { u32 n_elements; u32 n_bytes; u8 bytes[n_bytes]; f32 values[n_elements]; }
Cases: random blocks (scales forced finite, one subnormal and one at the fp16 maximum),
and, where gguf can quantize the type, a random normal vector quantized by gguf.
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "gguf")

# Byte offsets of the fp16 scale fields inside one block (ggml's block layouts).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82],   # scales[16] qs[64] d dmin
    T.Q3_K: [108],      # hmask[32] qs[64] scales[12] d
    T.Q4_K: [0, 2], T.Q5_K: [0, 2],
    T.Q6_K: [208],      # ql[128] qh[64] scales[16] d
    T.IQ4_NL: [0], T.IQ4_XS: [0],
    T.TQ1_0: [52],      # qs[48] qh[4] d
    T.TQ2_0: [64],      # qs[64] d
}
# Plain element types: values are generated, not random bytes (no nan/inf).
PLAIN = {T.F32: np.float32, T.F16: np.float16, T.BF16: None, T.F64: np.float64,
         T.I8: np.int8, T.I16: np.int16, T.I32: np.int32, T.I64: np.int64}
# gguf has no dequantizer for these; numpy's cast is the peer.
NUMPY_CAST = {T.F64, T.I8, T.I16, T.I32, T.I64}


def random_blocks(rng, qtype, n_blocks):
    block, size = GGML_QUANT_SIZES[qtype]
    raw = bytearray(rng.integers(0, 256, n_blocks * size, dtype=np.uint8).tobytes())
    for b in range(n_blocks):
        for off in F16_FIELDS.get(qtype, []):
            if b == 0:
                bits = 0x0003                     # subnormal scale
            elif b == 1:
                bits = 0x7BFF if off == F16_FIELDS[qtype][0] else 0x3C00  # 65504, 1.0
            else:
                bits = int(np.float16(rng.uniform(-1, 1)).view(np.uint16))
            struct.pack_into("<H", raw, b * size + off, bits)
        if qtype == T.MXFP4:                      # E8M0 exponent near 2^0
            raw[b * size] = int(rng.integers(100, 150))
    return bytes(raw)


def plain_values(rng, qtype, n):
    if qtype == T.BF16:
        f = (rng.standard_normal(n) * 10).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    dtype = PLAIN[qtype]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(1 << 40)), min(info.max, 1 << 40)
        v = rng.integers(lo, hi, n, dtype=dtype, endpoint=True)
        v[:2] = [info.min if info.min >= -(1 << 24) else -(1 << 24), 0]
        return v.astype(dtype).tobytes()
    v = (rng.standard_normal(n) * 100).astype(dtype)
    if dtype == np.float16:
        v[:4] = np.array([65504, -0.0, 6e-8, 1e-5], dtype=np.float16)  # max, -0, subnormals
    return v.tobytes()


def dequantize(qtype, raw):
    data = np.frombuffer(raw, dtype=np.uint8)
    if qtype in NUMPY_CAST:
        return np.frombuffer(raw, dtype=PLAIN[qtype]).astype(np.float32)
    return np.asarray(gguf.quants.dequantize(data, qtype), dtype=np.float32).ravel()


def write_dequant(qtype, rng):
    block, size = GGML_QUANT_SIZES[qtype]
    cases = []
    if qtype in PLAIN:
        raws = [plain_values(rng, qtype, 67)]
    else:
        raws = [random_blocks(rng, qtype, 3 if block >= 256 else 8)]
    try:
        x = rng.standard_normal(2 * max(block, 32)).astype(np.float32)
        if qtype in (T.I8, T.I16, T.I32, T.I64):
            raise NotImplementedError
        raws.append(np.asarray(gguf.quants.quantize(x, qtype)).tobytes())
    except (NotImplementedError, TypeError, ValueError):
        pass
    for raw in raws:
        values = dequantize(qtype, raw)
        assert values.size * size == len(raw) * block, qtype.name
        assert np.all(np.isfinite(values)), qtype.name
        cases.append((raw, values))
    out = bytearray(b"IDQ1" + struct.pack("<II", int(qtype), len(cases)))
    for raw, values in cases:
        out += struct.pack("<II", values.size, len(raw)) + raw
        out += values.astype("<f4").tobytes()
    path = os.path.join(OUT, f"dequant_{qtype.name.lower()}.bin")
    with open(path, "wb") as f:
        f.write(out)
    return path, len(out)


def dequant_types():
    for qtype in T:
        if qtype in PLAIN or qtype in F16_FIELDS or qtype == T.MXFP4:
            yield qtype


def write_peer_gguf(rng):
    """A tiny GGUF from the peer writer: every value type, arrays of each, a nested
    array, custom alignment and a few tensors; the JSON says what it holds."""
    path = os.path.join(OUT, "peer_writer.gguf")
    w = gguf.GGUFWriter(path, "llama")
    V = gguf.GGUFValueType
    meta = [("general.architecture", "string", "llama")]

    def add(key, vtype, value, sub=None):
        w.add_key_value(key, value, vtype, sub_type=sub)
        name = vtype.name.lower()
        meta.append((key, name if sub is None else f"array:{sub.name.lower()}", value))

    add("t.u8", V.UINT8, 255)
    add("t.i8", V.INT8, -128)
    add("t.u16", V.UINT16, 65535)
    add("t.i16", V.INT16, -32768)
    add("t.u32", V.UINT32, 4294967295)
    add("t.i32", V.INT32, -2147483648)
    add("t.f32", V.FLOAT32, 0.15625)
    add("t.bool", V.BOOL, True)
    add("t.str", V.STRING, "h\u00e9llo \u2603")
    add("t.u64", V.UINT64, 18446744073709551615)
    add("t.i64", V.INT64, -9223372036854775808)
    add("t.f64", V.FLOAT64, 3.141592653589793)
    add("a.u8", V.ARRAY, [0, 1, 255], V.UINT8)
    add("a.i8", V.ARRAY, [-128, 127], V.INT8)
    add("a.u16", V.ARRAY, [0, 65535], V.UINT16)
    add("a.i16", V.ARRAY, [-32768, 32767], V.INT16)
    add("a.u32", V.ARRAY, [0, 4294967295], V.UINT32)
    add("a.i32", V.ARRAY, [-2147483648, 2147483647], V.INT32)
    add("a.f32", V.ARRAY, [0.5, -2.25], V.FLOAT32)
    add("a.bool", V.ARRAY, [True, False, True], V.BOOL)
    add("a.str", V.ARRAY, ["a", "", "\u00fc"], V.STRING)
    add("a.u64", V.ARRAY, [0, 18446744073709551615], V.UINT64)
    add("a.i64", V.ARRAY, [-9223372036854775808, 1], V.INT64)
    add("a.f64", V.ARRAY, [1e300, -0.1], V.FLOAT64)
    w.add_key_value("a.nested", [[1, 2], [3]], V.ARRAY)  # inner arrays of int32
    meta.append(("a.nested", "array:array", [[1, 2], [3]]))
    w.add_custom_alignment(64)
    meta.append(("general.alignment", "uint32", 64))

    tensors = []
    f32 = rng.standard_normal((3, 5)).astype(np.float32)   # ne = [5, 3]
    w.add_tensor("w.f32", f32)
    tensors.append(("w.f32", int(T.F32), [5, 3], f32.tobytes()))
    f16 = rng.standard_normal(7).astype(np.float16)
    w.add_tensor("w.f16", f16)
    tensors.append(("w.f16", int(T.F16), [7], f16.tobytes()))
    i32 = np.arange(-2, 4, dtype=np.int32).reshape(2, 3)
    w.add_tensor("w.i32", i32)
    tensors.append(("w.i32", int(T.I32), [3, 2], i32.tobytes()))
    q = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), T.Q4_0)
    w.add_tensor("w.q4_0", q, raw_dtype=T.Q4_0)
    tensors.append(("w.q4_0", int(T.Q4_0), [64, 2], np.asarray(q).tobytes()))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    def jsonable(v):
        # Integers above 2^53 survive JSON as strings.
        if isinstance(v, bool) or not isinstance(v, int):
            return [jsonable(x) for x in v] if isinstance(v, list) else v
        return str(v)

    doc = {
        "version": 3,
        "alignment": 64,
        "metadata": [{"key": k, "type": t, "value": jsonable(v)} for k, t, v in meta],
        "tensors": [{"name": n, "type": t, "dims": d, "hex": b.hex()}
                    for n, t, d, b in tensors],
    }
    with open(os.path.join(OUT, "peer_writer.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=True)
        f.write("\n")
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    total = 0
    for qtype in dequant_types():
        path, n = write_dequant(qtype, rng)
        total += n
        print(f"gen_gguf: {os.path.relpath(path, ROOT)} ({n} bytes)")
    path = write_peer_gguf(rng)
    total += os.path.getsize(path)
    print(f"gen_gguf: {os.path.relpath(path, ROOT)}; {total} bytes in all")


if __name__ == "__main__":
    sys.exit(main())
