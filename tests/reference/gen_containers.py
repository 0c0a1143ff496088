#!/usr/bin/env python3
"""Checkpoint container test files for engine/formats/{safetensors,torch_pickle,npz}.cc,
written by the real tools: safetensors.torch.save_file and huggingface_hub's sharded
writer, torch.save (zip format, protocols 2 and 4, plus the legacy format), the pickle
module itself, numpy.save / savez / savez_compressed. Run in .venv-quant
(`.venv-quant/bin/python tests/reference/gen_containers.py`); needs torch, numpy,
safetensors, huggingface_hub and hqq (all in that venv).

Writes into tests/data/formats/containers/ (a few KB in all):
  dtypes.safetensors        every safetensors dtype, a 0-d and an empty tensor, metadata
  sharded/                  huggingface_hub.save_torch_state_dict with a tiny max shard
                            size: model-0000k-of-0000n.safetensors + model.safetensors.index.json
  state_dict.pt             torch.save of an OrderedDict: shared-storage views, strided
                            tensors (transpose, expand, step slice), a Parameter, a tensor
                            with a Python attribute, every dtype torch can store, nested
                            HQQ-like meta dicts, lists, tuples, a set, bytes, int keys
  state_dict_p4.pt          the same object with pickle_protocol=4 (FRAME, MEMOIZE, ...)
  tensor.pt                 torch.save of a bare tensor (the root is the tensor)
  hqq_linear.pt             torch.save(HQQLinear(...).state_dict()) from hqq itself
  plain_p0.pt / plain_p2.pt / plain_p5.pt
                            zip archives in torch's layout whose data.pkl is
                            pickle.dumps(<plain values>, protocol=0/2/5): text opcodes,
                            sets, bytes, floats, big ints
  evil.pt                   torch.save of an object whose __reduce__ is os.system
  legacy.pt                 torch.save(..., _use_new_zipfile_serialization=False)
  arrays.npz                numpy.savez: every supported dtype, 0-d, empty, a positional arr_0
  arrays_compressed.npz     numpy.savez_compressed of the same arrays
  single.npy                numpy.save of one array
  fortran.npy / big_endian.npy / complex.npy   numpy.save of arrays ingot must refuse
  expected.json             per file: each tensor's dtype, shape and raw bytes (hex,
                            little-endian, row-major, as torch/numpy produce them), and the
                            plain values of the pickles
"""
import collections
import importlib.metadata
import io
import json
import os
import pickle
import shutil
import sys
import zipfile

import numpy as np
import torch
import safetensors
import safetensors.torch
import huggingface_hub

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "formats", "containers")

TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
NP_TO_ST = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
    "uint64": "U64", "bool": "BOOL",
}


def tensor_record(t):
    t = t.detach().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"dtype": TORCH_TO_ST[t.dtype], "shape": list(t.shape), "hex": raw.hex()}


def array_record(a):
    a = a.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    return {"dtype": NP_TO_ST[a.dtype.name], "shape": list(a.shape), "hex": a.tobytes().hex()}


def flatten(obj, prefix, out):
    """The dotted-path flattening ingot's TorchCheckpoint::FlattenTensors promises."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = tensor_record(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    return out


def plain(obj):
    """Plain pickled values as JSON (tuples/sets as lists, bytes as {"bytes": hex})."""
    if isinstance(obj, bytes):
        return {"bytes": obj.hex()}
    if isinstance(obj, dict):
        return {"dict": [[plain(k), plain(v)] for k, v in obj.items()]}
    if isinstance(obj, (set, frozenset)):
        return [plain(v) for v in sorted(obj)]
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def every_dtype(g):
    """One small tensor per dtype torch and safetensors share."""
    f = torch.randn(2, 3, generator=g)
    return {
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f32": f,
        "f16": (f * 3).half(),
        "bf16": (f * 5).bfloat16(),
        "i64": torch.tensor([-(2 ** 40), 7, 2 ** 62], dtype=torch.int64),
        "i32": torch.tensor([[-5, 2 ** 30], [3, -1]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300, 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -1], dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8).reshape(2, 3),
        "u16": torch.tensor([1, 65535], dtype=torch.uint16),
        "u32": torch.tensor([4000000000, 5], dtype=torch.uint32),
        "u64": torch.tensor([2 ** 63 + 5, 1], dtype=torch.uint64),
        "bool": torch.tensor([True, False, True]),
        "f8_e4m3": torch.tensor([0.5, -448.0, 1.0]).to(torch.float8_e4m3fn),
        "f8_e5m2": torch.tensor([0.25, -57344.0]).to(torch.float8_e5m2),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }


def write_safetensors(expected):
    tensors = every_dtype(gen(1))
    path = os.path.join(OUT, "dtypes.safetensors")
    meta = {"format": "pt", "source": "gen_containers.py"}
    safetensors.torch.save_file(tensors, path, metadata=meta)
    expected["dtypes.safetensors"] = {
        "metadata": meta, "tensors": {k: tensor_record(v) for k, v in tensors.items()}}

    g = gen(2)
    sd = {f"model.layers.{i}.{n}": torch.randn(4, 8, generator=g).to(dt)
          for i in range(3) for n, dt in (("q_proj.weight", torch.float16),
                                           ("norm.weight", torch.float32))}
    sd["lm_head.weight"] = torch.randn(5, 8, generator=g).bfloat16()
    d = os.path.join(OUT, "sharded")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    huggingface_hub.save_torch_state_dict(sd, d, max_shard_size=200,
                                          metadata={"format": "pt"})
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    expected["sharded"] = {
        "files": sorted(set(index["weight_map"].values())),
        "tensors": {k: tensor_record(v) for k, v in sd.items()}}


def state_dict_object():
    g = gen(3)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    p = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    p_state = torch.nn.Parameter(torch.randn(3, generator=g))
    p_state.note = "parameter with a Python attribute"
    with_attr = torch.randn(2, generator=g)
    with_attr.tag = 7
    tied = torch.randn(3, 2, generator=g).half()
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["rows"] = base[1:3]                  # view: storage offset 6
    sd["col"] = base[:, 4]                  # view: offset 4, stride 6
    sd["transposed"] = base.t()             # stride (1, 6)
    sd["step"] = base[::2, 1::2]            # offset 1, stride (12, 2)
    sd["expanded"] = torch.tensor([1.0, -2.0]).expand(3, 2)  # stride (0, 1)
    sd["param"] = p
    sd["param_with_state"] = p_state
    sd["with_attr"] = with_attr
    sd["tied_a"] = tied
    sd["tied_b"] = tied                     # the same object again (memo)
    sd["dtypes"] = every_dtype(gen(4))
    sd["layers"] = [
        {"self_attn": {"q_proj": {"weight": torch.randn(2, 4, generator=g).bfloat16()}}},
        {"self_attn": {"q_proj": {"weight": torch.randn(2, 4, generator=g).bfloat16()}}},
    ]
    sd["meta"] = {
        "nbits": 4, "group_size": 64, "axis": 1, "packing": "4bit_u8",
        "view_as_float": False, "round_zero": True, "optimize": True,
        "shape": torch.Size([4, 6]), "compute_dtype": torch.float16,
        "unpack_view_dtype": torch.uint8, "device": torch.device("cpu"),
        "scale": torch.randn(4, 1, generator=g).half(),
        "zero_scale": {"scale": torch.ones(2, dtype=torch.float16), "nbits": 8},
        "quant_scale": False, "eps": 1e-5, "big": 2 ** 40, "neg": -3, "none": None,
    }
    sd["pair"] = (torch.tensor([1, 2], dtype=torch.int32), "second")
    sd["tags"] = {3, 1, 2}
    sd["blob"] = b"\x00\x01\xfe\xff"
    sd["by_index"] = {0: torch.tensor([0.5]), 1: torch.tensor([1.5])}
    return sd


def plain_object():
    return {
        "int": 1, "neg": -7, "byte": 255, "short": 65535, "int32": -(2 ** 31),
        "big": 2 ** 62, "bigneg": -(2 ** 63), "float": 0.1, "huge": 1e300,
        "true": True, "false": False, "none": None,
        "str": "text with ünïcödé and 'quotes'", "empty": "", "bytes": b"\x00\xff\x10",
        "list": [1, [2, [3, []]], "x"], "tuple": (1, 2.5, "t"), "single": (9,),
        "set": {5, 4}, "frozen": frozenset({"a"}), "nested": {"a": {"b": {"c": [True]}}},
        7: "int key",
    }


def write_plain_archive(path, obj, protocol):
    """torch's zip layout (<name>/data.pkl, byteorder) around a plain pickle."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("plain/data.pkl", pickle.dumps(obj, protocol=protocol))
        z.writestr("plain/byteorder", "little")
        z.writestr("plain/version", "3\n")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def write_torch(expected):
    sd = state_dict_object()
    torch.save(sd, os.path.join(OUT, "state_dict.pt"))
    torch.save(sd, os.path.join(OUT, "state_dict_p4.pt"), pickle_protocol=4)
    flat = flatten(sd, "", {})
    meta = {k: v for k, v in sd["meta"].items()
            if v is None or type(v) in (int, float, str, bool)}
    rec = {"tensors": flat, "meta": meta, "pair_1": sd["pair"][1],
           "tags": sorted(sd["tags"]), "blob": sd["blob"].hex(), "root_keys": list(sd.keys())}
    expected["state_dict.pt"] = rec
    expected["state_dict_p4.pt"] = rec

    t = torch.randn(3, 5, generator=gen(5)).t()  # strided root
    torch.save(t, os.path.join(OUT, "tensor.pt"))
    expected["tensor.pt"] = {"tensors": {"": tensor_record(t)}}

    from hqq.core.quantize import HQQLinear, BaseQuantizeConfig
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 8, bias=True)
    h = HQQLinear(lin, BaseQuantizeConfig(nbits=4, group_size=64),
                  compute_dtype=torch.float16, device="cpu")
    hsd = h.state_dict()
    torch.save(hsd, os.path.join(OUT, "hqq_linear.pt"))
    expected["hqq_linear.pt"] = {"tensors": flatten(hsd, "", {})}

    for proto in (0, 2, 5):
        name = f"plain_p{proto}.pt"
        write_plain_archive(os.path.join(OUT, name), plain_object(), proto)
        expected[name] = {"plain": plain(plain_object())}

    torch.save({"weight": torch.zeros(2), "payload": Evil()}, os.path.join(OUT, "evil.pt"))
    torch.save({"w": torch.ones(2)}, os.path.join(OUT, "legacy.pt"),
               _use_new_zipfile_serialization=False)


def write_numpy(expected):
    rng = np.random.default_rng(6)
    arrays = {
        "f64": rng.standard_normal(3),
        "f32": rng.standard_normal((2, 3)).astype(np.float32),
        "f16": rng.standard_normal((3, 2)).astype(np.float16),
        "i64": np.array([-(2 ** 40), 2 ** 62], dtype=np.int64),
        "i32": np.array([[-5, 2 ** 30]], dtype=np.int32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "i8": np.array([-128, 127, -1], dtype=np.int8),
        "u64": np.array([2 ** 63 + 5], dtype=np.uint64),
        "u32": np.array([4000000000], dtype=np.uint32),
        "u16": np.array([65535, 1], dtype=np.uint16),
        "u8": np.arange(250, 256, dtype=np.uint8).reshape(3, 2),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.25, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "strided": rng.standard_normal((4, 4)).astype(np.float32)[:, ::2],  # saved as C order
    }
    positional = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.savez(os.path.join(OUT, "arrays.npz"), positional, **arrays)
    np.savez_compressed(os.path.join(OUT, "arrays_compressed.npz"), positional, **arrays)
    rec = {"arr_0": array_record(positional)}
    rec.update({k: array_record(v) for k, v in arrays.items()})
    expected["arrays.npz"] = {"arrays": rec}
    expected["arrays_compressed.npz"] = {"arrays": rec}

    single = rng.standard_normal((2, 2)).astype(np.float32)
    np.save(os.path.join(OUT, "single.npy"), single)
    expected["single.npy"] = {"arrays": {"single": array_record(single)}}
    np.save(os.path.join(OUT, "fortran.npy"), np.asfortranarray(rng.standard_normal((2, 3))))
    np.save(os.path.join(OUT, "big_endian.npy"), np.arange(3, dtype=">f4"))
    np.save(os.path.join(OUT, "complex.npy"), np.arange(3, dtype=np.complex64))


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {"versions": {"torch": torch.__version__, "numpy": np.__version__,
                             "safetensors": safetensors.__version__,
                             "huggingface_hub": huggingface_hub.__version__,
                             "hqq": importlib.metadata.version("hqq"),
                             "python": sys.version.split()[0]}}
    write_safetensors(expected)
    write_torch(expected)
    write_numpy(expected)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, n)) for dp, _, ns in os.walk(OUT) for n in ns)
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
