#!/usr/bin/env python3
"""Golden bytes for ingot's GGUF quantizers (kernels/cpu/quantize_ref.h), from llama.cpp
itself: ggml_quantize_chunk of the libggml-base that llama-cpp-python ships, called
through ctypes with no importance matrix (the path llama-quantize takes without an
imatrix: quantize_row_<type>_ref). Run via `tests/reference/regenerate.sh quant_gguf`.

Writes into tests/data/quant/gguf/:
  inputs.f32          the explicit cases' f32 inputs, little-endian, concatenated
  expected_<type>.bin llama.cpp's bytes for every case of that type, concatenated
  index.json          cases (name, rows, cols, float offset) and, per type, the ggml type
                      number, block size/bytes and each case's byte offset; the "stress"
                      set: a PRNG both sides implement (below), and per type the FNV-1a 64
                      hash of llama.cpp's bytes for each chunk of rows; and
                      "llama_model_quantize": per type, whether llama.cpp's model quantizer
                      (pure, no imatrix) wrote for every 2-D tensor of a tiny random llama
                      the bytes ggml_quantize_chunk gives (the script fails otherwise).

Stress generator (tests/kernels/quantize_test.cc has the same): element i of the
rows x cols matrix (row-major) takes r = mix(seed + (i + 1) * G) and
r2 = mix(seed ^ K2 + (i + 1) * G), with mix = splitmix64's finalizer and G its golden
increment; s = (r & M21) + ((r >> 21) & M21) + ((r >> 42) & M21) - 3 * 2^20, value =
f32(s) * 2^(e_row - 20) (exact: |s| < 2^22, power-of-two scale). Row parameters come
from q = mix(seed ^ K3 + (row + 1) * G): e_row = (q % 21) - 14, kind = row % 8:
  0..3 plain; 4 each 32-block scaled by 2^((mix(seed ^ K4 + (row*nb + b + 1) * G) % 7) - 4);
  5 |value|; 6 zero where r2 & 1; 7 value * 32 where ((r2 >> 1) & 31) == 0.
"""
import ctypes
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "quant", "gguf")

TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
         T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]

MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
G = np.uint64(0x9E3779B97F4A7C15)
K2 = np.uint64(0xD1B54A32D192ED03)
K3 = np.uint64(0x8CB92BA72F3D8DD7)
K4 = np.uint64(0xA0761D6478BD642F)
STRESS = dict(seed=0x1D60C0DE, rows=1024, cols=1024, chunk_rows=64)


def load_ggml():
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    libdir = os.path.join(os.path.dirname(spec.origin), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    return lib


def ggml_quantize(lib, qtype, x):
    """llama.cpp's bytes for x (rows, cols) quantized to qtype without an imatrix."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    block, size = GGML_QUANT_SIZES[qtype]
    assert cols % block == 0 and not lib.ggml_quantize_requires_imatrix(int(qtype))
    out = np.zeros(rows * cols // block * size, dtype=np.uint8)
    n = lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, cols, None)
    assert n == out.size, (qtype.name, n, out.size)
    return out.tobytes()


def mix(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream(base, n):
    with np.errstate(over="ignore"):
        return mix(np.uint64(base) + (np.arange(1, n + 1, dtype=np.uint64) * G))


def stress_matrix(seed, rows, cols):
    seed = np.uint64(seed)
    n = rows * cols
    r = stream(seed, n)
    r2 = stream(seed ^ K2, n)
    m21 = np.uint64((1 << 21) - 1)
    s = ((r & m21) + ((r >> np.uint64(21)) & m21) + ((r >> np.uint64(42)) & m21)).astype(np.int64)
    s -= 3 << 20
    q = stream(seed ^ K3, rows)
    e_row = (q % np.uint64(21)).astype(np.int64) - 14
    scale = np.ldexp(np.float32(1), (e_row - 20).astype(np.int32)).astype(np.float32)
    x = s.astype(np.float32).reshape(rows, cols) * scale[:, None]
    r2 = r2.reshape(rows, cols)
    nb = cols // 32
    blk = (stream(seed ^ K4, rows * nb) % np.uint64(7)).astype(np.int32).reshape(rows, nb) - 4
    for row in range(rows):
        kind = row % 8
        if kind == 4:
            x[row] *= np.repeat(np.ldexp(np.float32(1), blk[row]).astype(np.float32), 32)
        elif kind == 5:
            x[row] = np.abs(x[row])
        elif kind == 6:
            x[row][(r2[row] & np.uint64(1)) == 1] = 0
        elif kind == 7:
            hit = ((r2[row] >> np.uint64(1)) & np.uint64(31)) == 0
            x[row][hit] *= np.float32(32)
    assert x.dtype == np.float32
    return x


def fnv1a64(data):
    h = 0xCBF29CE484222325
    # Vectorized FNV would need a sequential scan; bytes objects are small enough here.
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def explicit_cases(rng):
    cases = []

    def add(name, x):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        cases.append((name, x))

    add("normal_4x512", rng.standard_normal((4, 512)) * 0.02)
    add("heavy_tailed_3x256", rng.standard_t(2.0, (3, 256)) * 0.05)
    add("block_scales_2x512",
        rng.standard_normal((2, 512)) * np.repeat(2.0 ** rng.integers(-6, 3, (2, 16)), 32, axis=1))
    add("one_block_3x32", rng.standard_normal((3, 32)))  # classic types only
    n = 256
    g = rng.standard_normal(n)
    add("zeros", np.zeros(n))
    add("constant_pos", np.full(n, 0.5))
    add("constant_neg", np.full(n, -3.0))
    add("negative_only", -np.abs(g))
    add("positive_only", np.abs(rng.standard_normal(n)) + 0.1)
    add("tiny_1e-30", rng.standard_normal(n) * 1e-30)
    add("subnormal_f32", rng.standard_normal(n) * 1e-40)
    add("below_group_eps", np.concatenate([rng.standard_normal(128) * 1e-16, rng.standard_normal(128)]))
    add("huge_1e30", rng.standard_normal(n) * 1e30)
    add("near_fp16_max", rng.standard_normal(n) * 3e4)
    add("fp16_overflow_1e6", rng.standard_normal(n) * 1e6)
    one_hot = np.zeros(n)
    one_hot[::37] = rng.standard_normal(len(one_hot[::37])) * 4
    add("sparse_spikes", one_hot)
    add("alternating", np.tile([1.0, -1.0], n // 2))
    add("ramp", np.linspace(-1.0, 1.0, n))
    add("integer_grid", (np.arange(n) % 16) - 8.0)
    half_ties = np.arange(n, dtype=np.float64) * 0.0625 - 8.0  # many exact .5 quotients
    add("half_ties", half_ties)
    zero_groups = rng.standard_normal(n)
    zero_groups[16:48] = 0
    zero_groups[128:160] = 0
    add("zero_subgroups", zero_groups)
    add("near_constant", 1.0 + rng.standard_normal(n) * 1e-6)
    outlier = rng.standard_normal(n) * 0.01
    outlier[[5, 77, 200]] = [40.0, -55.0, 12.0]
    add("outliers", outlier)
    mixed = rng.standard_normal(n)
    mixed *= np.repeat(10.0 ** rng.integers(-8, 4, 16), 16)
    add("mixed_magnitudes", mixed)
    return cases


# llama_ftype whose default tensor type is each block type (pure: every 2-D tensor).
FTYPES = {T.F16: 1, T.BF16: 32, T.Q4_0: 2, T.Q4_1: 3, T.Q5_0: 8, T.Q5_1: 9, T.Q8_0: 7,
          T.Q2_K: 10, T.Q3_K: 11, T.Q4_K: 14, T.Q5_K: 16, T.Q6_K: 18}


def write_tiny_llama(path, rng):
    """A random 1-layer llama in F32 that llama_model_quantize accepts."""
    n_embd, n_ff, n_vocab, n_head = 256, 512, 256, 4
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(n_vocab)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([1] * n_vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    shapes = {"token_embd.weight": (n_vocab, n_embd), "output.weight": (n_vocab, n_embd),
              "blk.0.attn_q.weight": (n_embd, n_embd), "blk.0.attn_k.weight": (n_embd, n_embd),
              "blk.0.attn_v.weight": (n_embd, n_embd), "blk.0.attn_output.weight": (n_embd, n_embd),
              "blk.0.ffn_gate.weight": (n_ff, n_embd), "blk.0.ffn_up.weight": (n_ff, n_embd),
              "blk.0.ffn_down.weight": (n_embd, n_ff)}
    tensors = {}
    for name, shape in shapes.items():
        tensors[name] = (rng.standard_t(4.0, shape) * 0.02).astype(np.float32)
        w.add_tensor(name, tensors[name])
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, np.ones(n_embd, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def llama_model_quantize_agrees(lib, rng, tmpdir):
    """Per type: whether llama_model_quantize (pure, no imatrix) wrote, for every 2-D
    tensor of a tiny model, the bytes ggml_quantize_chunk gives; and how many bytes."""
    import llama_cpp
    global _QUIET
    _QUIET = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())  # no per-tensor progress lines
    llama_cpp.llama_backend_init()
    src = os.path.join(tmpdir, "tiny-f32.gguf")
    tensors = write_tiny_llama(src, rng)
    result = {}
    for qtype, ftype in FTYPES.items():
        dst = os.path.join(tmpdir, f"tiny-{qtype.name}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.pure = True
        params.nthread = 2
        rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
        assert rc == 0, (qtype.name, rc)
        reader = gguf.GGUFReader(dst)
        same, nbytes = True, 0
        for t in reader.tensors:
            if t.name not in tensors:
                continue
            assert t.tensor_type == qtype, (qtype.name, t.name, t.tensor_type)
            got = np.asarray(t.data).tobytes()
            same &= got == ggml_quantize(lib, qtype, tensors[t.name])
            nbytes += len(got)
        result[qtype.name] = {"agrees": bool(same), "bytes": nbytes}
    return result


def gguf_py_agrees(qtype, x, expected):
    """Whether gguf-py's numpy quantizer (written to match ggml) gives the same bytes."""
    try:
        with np.errstate(all="ignore"):
            got = np.asarray(gguf.quants.quantize(x, qtype)).tobytes()
    except (NotImplementedError, TypeError, ValueError, gguf.quants.QuantError):
        return None
    return got == expected


def main():
    os.makedirs(OUT, exist_ok=True)
    lib = load_ggml()
    rng = np.random.default_rng(20261103)
    cases = explicit_cases(rng)

    index = {
        "peer": f"llama-cpp-python {llama_cpp_version()} libggml-base ggml_quantize_chunk, "
                "imatrix = NULL",
        "cases": [], "types": {},
    }
    inputs = bytearray()
    for name, x in cases:
        index["cases"].append({"name": name, "rows": x.shape[0], "cols": x.shape[1],
                               "offset": len(inputs) // 4})
        inputs += x.astype("<f4").tobytes()
    with open(os.path.join(OUT, "inputs.f32"), "wb") as f:
        f.write(inputs)

    sp = STRESS
    stress = stress_matrix(sp["seed"], sp["rows"], sp["cols"])
    index["stress"] = dict(sp, input_fnv1a64=f"{fnv1a64(stress.astype('<f4').tobytes()):016x}",
                           types={})

    total = len(inputs)
    for qtype in TYPES:
        block, size = GGML_QUANT_SIZES[qtype]
        entry = {"ggml_type": int(qtype), "block_size": block, "type_size": size,
                 "file": f"expected_{qtype.name.lower()}.bin", "offsets": [],
                 "gguf_py_agrees": []}
        blob = bytearray()
        for (name, x), c in zip(cases, index["cases"]):
            if x.shape[1] % block:
                entry["offsets"].append(-1)
                entry["gguf_py_agrees"].append(None)
                continue
            raw = ggml_quantize(lib, qtype, x)
            entry["offsets"].append(len(blob))
            entry["gguf_py_agrees"].append(gguf_py_agrees(qtype, x, raw))
            blob += raw
        with open(os.path.join(OUT, entry["file"]), "wb") as f:
            f.write(blob)
        total += len(blob)
        index["types"][qtype.name] = entry

        raw = np.frombuffer(ggml_quantize(lib, qtype, stress), dtype=np.uint8)
        row_bytes = sp["cols"] // block * size
        chunk = sp["chunk_rows"] * row_bytes
        index["stress"]["types"][qtype.name] = [
            f"{fnv1a64(raw[i:i + chunk].tobytes()):016x}" for i in range(0, raw.size, chunk)]
        agree = [a for a in entry["gguf_py_agrees"] if a is not None]
        print(f"gen_quant_gguf: {qtype.name}: {len(blob)} bytes; gguf-py agrees on "
              f"{sum(agree)}/{len(agree)} cases" if agree else
              f"gen_quant_gguf: {qtype.name}: {len(blob)} bytes; no gguf-py quantizer")

    import tempfile
    with tempfile.TemporaryDirectory() as tmpdir:
        index["llama_model_quantize"] = llama_model_quantize_agrees(lib, rng, tmpdir)
    for name, r in index["llama_model_quantize"].items():
        print(f"gen_quant_gguf: llama_model_quantize {name}: {r['bytes']} bytes, "
              f"{'same as' if r['agrees'] else 'DIFFERENT from'} ggml_quantize_chunk")
        assert r["agrees"], name

    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"gen_quant_gguf: {os.path.relpath(OUT, ROOT)}: {total} bytes of data")


def llama_cpp_version():
    from importlib.metadata import version
    return version("llama_cpp_python")


if __name__ == "__main__":
    sys.exit(main())
