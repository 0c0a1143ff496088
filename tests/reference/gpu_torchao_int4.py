"""torchao 0.18's CUDA int4 weight (Int4WeightOnlyConfig(int4_packing_format=
"tile_packed_to_4d") -> Int4TilePackedTo4dTensor), made by torchao itself on cuda:0.
Run by tests/gpu/torchao_int4.sh on the GPU host (torch 2.11, no network; only torch is
needed here, numpy, safetensors and transformers are used when present); its output is
turned into tests/data/formats/torchao-int4-tile-g32 by gen_torchao_int4_tile.py on a CPU.

Input: the float32 tiny Llama of tests/data/formats/hf-f32/model.safetensors (the base
every torchao vector is quantized from), read here without the safetensors package.
Like transformers' TorchAoConfig with dtype=bfloat16, every tensor goes to bf16 (from_hp
asserts a bf16 weight) and each decoder linear (7 per layer) is quantized with
quantize_(nn.Linear, config) on cuda:0; embeddings, norms and lm_head stay bf16.

Writes into OUT/ (nothing else is touched):
  info.json                     versions, device, timings, what each weight looked like
                                (class, module, attribute shapes, its __dict__ keys:
                                torch.save's state for _rebuild_wrapper_subclass), and the
                                checks below with their results
  g<G>/config_dict.json         torchao's config_to_dict(config) (transformers'
                                quantization_config.quant_type.default)
  g<G>/pytorch_model.bin        torch.save(state_dict), weights moved to CPU
  g<G>/pickled_q_proj.bin       torch.save of layer 0's q_proj weight alone
  g<G>/model.safetensors        torchao's flatten_tensor_state_dict + safetensors
                                save_file, with metadata {"format": "pt", ...} as
                                transformers 5 writes it; when the safetensors package is
                                missing: g<G>/flat.pt (the flattened tensors) and
                                g<G>/flat_metadata.json instead
  g<G>/reference.pt             {name: {"dequantized": f32 (n, k) (tinygemm kernel
                                _weight_int4pack_mm on the bf16 identity, cropped),
                                "via_linear": F.linear(eye) through the subclass,
                                "x": f32 (4, k), "y": f32 (4, n) = F.linear(x) through the
                                subclass (bf16 in, bf16 out), "codes": uint8 (N, K) torchao's
                                own tinygemm codes of the padded weight (recomputed with its
                                quant primitives), "dequantize": w.dequantize() if it exists}}
  g32/hf/, g32/hf_logits.pt     only when transformers is there (the GPU image has 5.17)
                                and time allows: save_pretrained of hf-f32 loaded with
                                TorchAoConfig(config) on cuda:0, and its forward's logits
                                (torchao's own bf16 forward) on the 16 reference tokens
  pack_check.pt                 ATen's CUDA _convert_weight_to_int4pack of fixed codes
                                (gen_torchao_int4_tile_pack.SHAPES): {"codes_..": uint8,
                                "packed_..": int32}, to compare with ingot's emulation
  *.npz                         the same arrays as npz (but the codes), when numpy is
                                there
tests/gpu/torchao_int4.sh packs all of it into one torchao_int4.tgz (the device tool
brings back at most 8 files).

  python3 tests/reference/gpu_torchao_int4.py OUT [--no-cuda | --rehearse-cpu]
--no-cuda stops before the first CUDA call (imports, weights, configs, the emulation):
the CPU-side check of this script against the wheel. --rehearse-cpu runs all of it on
the CPU with ATen's two CUDA-only ops replaced by ingot's emulation (packing) and a
plain dequantizing matmul, and the capability check faked: it rehearses the script's
own steps (quantize_, state dicts, flattening, saving), not torchao's numbers.
"""
import json
import os
import struct
import sys
import time

T0 = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BASE = os.path.join(ROOT, "tests", "data", "formats", "hf-f32", "model.safetensors")
GROUPS = (32, 64)
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
SEED = 20261207

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import numpy as np
except ImportError:  # the GPU host's python may have torch only
    np = None


def read_safetensors(path):
    """{name: tensor} of a safetensors file (F32/BF16/F16 only), without the package."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = bytearray(blob[base + a:base + b])
        out[name] = torch.frombuffer(raw, dtype=dtypes[meta["dtype"]]).reshape(meta["shape"]).clone()
    return out


def describe(w):
    d = {"class": type(w).__name__, "module": type(w).__module__, "shape": list(w.shape),
         "dtype": str(w.dtype), "state_keys": sorted(getattr(w, "__dict__", {}).keys())}
    for attr in ("qdata", "scale_and_zero", "act_pre_scale"):
        t = getattr(w, attr, None)
        d[attr] = None if t is None else {"shape": list(t.shape), "dtype": str(t.dtype),
                                          "device": str(t.device)}
    d["block_size"] = list(getattr(w, "block_size", []) or [])
    return d


def rehearse_on_cpu(emu):
    """Stand-ins for the CUDA-only ops (see --rehearse-cpu)."""
    def pack(u8, inner):
        codes = np.zeros((u8.shape[0], u8.shape[1] * 2), dtype=np.uint8)
        codes[:, ::2], codes[:, 1::2] = u8.numpy() >> 4, u8.numpy() & 15
        return torch.from_numpy(emu.emulate(codes, int(inner)))

    def int4mm(a, qdata, group, sz):
        n_pad = qdata.shape[0] * 8
        inner = qdata.shape[3] * 2
        k_pad = qdata.shape[1] * inner * 16
        words = qdata.numpy().view(np.uint32).ravel()
        n = np.arange(n_pad)[:, None]
        k = np.arange(k_pad)[None, :]
        r = k % (inner * 16)
        r2 = r % 32
        t = (n % 8) * 4 + (r2 // 2) % 4
        j = r2 // 8 + 4 * (r2 % 2)
        w = (((n // 8) * (k_pad // (inner * 16)) + k // (inner * 16)) * 32 + t) * (inner // 2) + r // 32
        q = torch.from_numpy(((words[w] >> (4 * j).astype(np.uint32)) & 15).astype(np.float32))
        s = sz[..., 0].float().t().repeat_interleave(group, 1)
        z = sz[..., 1].float().t().repeat_interleave(group, 1)
        return (a.float() @ ((q - 8) * s + z).t()).to(torch.bfloat16)

    torch.ops.aten._convert_weight_to_int4pack = pack
    torch.ops.aten._weight_int4pack_mm = int4mm
    torch.cuda.get_device_capability = lambda *a: (9, 0)
    torch.cuda.get_device_name = lambda *a: "cpu (rehearsal)"


def save_npz(path, arrays):
    if np is not None:
        np.savez(path, **{k: v.numpy() for k, v in arrays.items()})


def main(argv):
    out = argv[0]
    no_cuda = "--no-cuda" in argv
    os.makedirs(out, exist_ok=True)
    info = {"argv": argv, "torch": torch.__version__, "numpy": None if np is None else np.__version__,
            "checks": {}, "weights": {}, "timings": {}}
    import torchao
    from torchao.core.config import config_to_dict
    from torchao.quantization import Int4WeightOnlyConfig, quantize_
    from torchao.quantization import quant_primitives as qp
    from torchao.quantization.quantize_.workflows import Int4PackingFormat
    info["torchao"] = torchao.__version__
    try:
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict
    except Exception as e:  # recorded: the pickle form is still written
        flatten_tensor_state_dict = None
        info["flatten_import_error"] = repr(e)
    try:
        import safetensors.torch as st
        info["safetensors"] = __import__("safetensors").__version__
    except ImportError:
        st = None
    sys.path.insert(0, HERE)
    import gen_torchao_int4_tile_pack as emu
    base = {k: v.to(torch.bfloat16) for k, v in read_safetensors(BASE).items()}
    layers = 1 + max(int(k.split(".")[2]) for k in base if k.startswith("model.layers."))
    configs = {g: Int4WeightOnlyConfig(group_size=g, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)
               for g in GROUPS}
    for g, cfg in configs.items():
        os.makedirs(os.path.join(out, f"g{g}"), exist_ok=True)
        with open(os.path.join(out, f"g{g}", "config_dict.json"), "w") as f:
            json.dump(config_to_dict(cfg), f, indent=1, sort_keys=True)
    info["timings"]["setup_s"] = round(time.time() - T0, 2)
    if no_cuda:
        info["stopped"] = "--no-cuda: before the first CUDA call"
        with open(os.path.join(out, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(json.dumps(info, indent=1))
        return

    dev = torch.device("cuda:0")
    if "--rehearse-cpu" in argv:
        rehearse_on_cpu(emu)
        dev = torch.device("cpu")
    info["device"] = torch.cuda.get_device_name(0)
    info["capability"] = list(torch.cuda.get_device_capability(0))

    # ATen's packing of fixed codes, against ingot's emulation (compared on the CPU side
    # too, from pack_check.pt, when numpy is missing here).
    gen = torch.Generator().manual_seed(SEED)
    pack = {}
    for n, k, inner in emu.SHAPES:
        codes = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.int32)
        u8 = ((codes[:, ::2] << 4) | codes[:, 1::2]).to(torch.uint8)
        packed = torch.ops.aten._convert_weight_to_int4pack(u8.to(dev).contiguous(), inner).cpu()
        key = f"{n}x{k}_i{inner}"
        pack[f"codes_{key}"] = codes.to(torch.uint8)
        pack[f"packed_{key}"] = packed
        if np is not None:
            same = bool(np.array_equal(emu.emulate(codes.numpy(), inner), packed.numpy()))
            info["checks"][f"pack_{key}_equals_emulation"] = same
    torch.save(pack, os.path.join(out, "pack_check.pt"))
    save_npz(os.path.join(out, "pack_check.npz"), pack)
    info["timings"]["pack_check_s"] = round(time.time() - T0, 2)

    for g, cfg in configs.items():
        gdir = os.path.join(out, f"g{g}")
        state = {}
        ref = {}
        for name, t in base.items():
            state[name] = t
        for layer in range(layers):
            for lin_name in LINEARS:
                mod = f"model.layers.{layer}.{lin_name}"
                w_hp = base[mod + ".weight"]
                n, k = w_hp.shape
                lin = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device=dev)
                with torch.no_grad():
                    lin.weight.copy_(w_hp.to(dev))
                quantize_(lin, cfg)
                w = lin.state_dict()["weight"]
                info["weights"][f"g{g}/{mod}"] = describe(w)
                qdata, sz = w.qdata, w.scale_and_zero
                n_pad, k_pad = qdata.shape[0] * 8, qdata.shape[1] * qdata.shape[3] * 2 * 16
                eye = torch.eye(k_pad, dtype=torch.bfloat16, device=dev)
                deq = torch.ops.aten._weight_int4pack_mm(eye, qdata, g, sz)[:k, :n].t().contiguous().float().cpu()
                via_linear = F.linear(torch.eye(k, dtype=torch.bfloat16, device=dev), w).t().contiguous().float().cpu()
                x = torch.randn(4, k, generator=gen).to(torch.bfloat16)
                y = F.linear(x.to(dev), w).float().cpu()
                # torchao's own codes of the padded weight, as from_hp computes them.
                hp_pad = F.pad(w_hp.to(dev), (0, k_pad - k, 0, n_pad - n))
                scale, zero = qp._choose_qparams_affine_tinygemm(
                    hp_pad, qp.MappingType.ASYMMETRIC, (1, g), torch.int32, 0, 15,
                    scale_dtype=torch.bfloat16, zero_point_dtype=torch.bfloat16)
                codes = qp._quantize_affine_tinygemm(hp_pad, [1, g], scale, zero, torch.int32, 0, 15).cpu()
                r = {"dequantized": deq, "via_linear": via_linear, "x": x.float(), "y": y,
                     "codes": codes.to(torch.uint8)}
                if hasattr(w, "dequantize"):
                    try:
                        r["dequantize"] = w.dequantize().float().cpu()
                    except Exception as e:
                        info["weights"][f"g{g}/{mod}"]["dequantize_error"] = repr(e)
                ref[mod] = r
                try:
                    state[mod + ".weight"] = w.to("cpu")
                except Exception as e:  # pickled with its cuda:0 location then
                    info["weights"][f"g{g}/{mod}"]["to_cpu_error"] = repr(e)
                    state[mod + ".weight"] = w
                if np is not None:
                    real = qdata.cpu().numpy()
                    info["checks"][f"g{g}/{mod}: qdata == emulate(torchao codes)"] = bool(
                        np.array_equal(emu.emulate(codes.numpy().astype(np.uint8), 8), real))
                info["checks"][f"g{g}/{mod}: linear(eye) == int4pack_mm(eye)"] = bool(torch.equal(via_linear, deq))
        torch.save(state, os.path.join(gdir, "pytorch_model.bin"))
        # One weight alone, for the committed vector (the whole pickle is ~750 KB, most
        # of it K padded to 1024).
        one = "model.layers.0.self_attn.q_proj.weight"
        torch.save({one: state[one]}, os.path.join(gdir, "pickled_q_proj.bin"))
        torch.save(ref, os.path.join(gdir, "reference.pt"))
        if np is not None:
            save_npz(os.path.join(gdir, "reference.npz"),
                     {f"{m}/{key}": v for m, r in ref.items() for key, v in r.items() if key != "codes"})
        if flatten_tensor_state_dict is not None:
            try:
                flat, meta = flatten_tensor_state_dict(state)
                meta = dict(meta, format="pt")
                if st is not None:
                    st.save_file(flat, os.path.join(gdir, "model.safetensors"), metadata=meta)
                else:
                    torch.save(flat, os.path.join(gdir, "flat.pt"))
                    with open(os.path.join(gdir, "flat_metadata.json"), "w") as f:
                        json.dump(meta, f, indent=1)
            except Exception as e:
                info[f"g{g}_flatten_error"] = repr(e)
        info["timings"][f"g{g}_s"] = round(time.time() - T0, 2)
    info["all_checks_pass"] = all(info["checks"].values())
    with open(os.path.join(out, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    # Last, and only if there is time and transformers (the GPU image has 5.17): the
    # checkpoint as a user makes it (TorchAoConfig + save_pretrained) and torchao's own
    # forward's logits (bf16, on cuda:0). Extra evidence, not needed for the vector.
    if time.time() - T0 < 45:
        try:
            transformers_pass(out, configs[32], dev, info)
        except Exception as e:
            info["transformers_error"] = repr(e)[:2000]
        info["timings"]["transformers_s"] = round(time.time() - T0, 2)
        with open(os.path.join(out, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
    print(json.dumps({k: v for k, v in info.items() if k != "weights"}, indent=1))


def transformers_pass(out, cfg, dev, info):
    """g32/hf/: save_pretrained of hf-f32 loaded with TorchAoConfig(cfg) on cuda:0, and
    g32/hf_logits.pt: its forward's logits on the 16 reference tokens."""
    import transformers
    from transformers import AutoModelForCausalLM, TorchAoConfig
    info["transformers"] = transformers.__version__
    src = os.path.dirname(BASE)
    with open(os.path.join(src, "reference.json")) as f:
        tokens = json.load(f)["tokens"]
    placed = {"device_map": str(dev)} if dev.type == "cuda" else {}  # device_map needs accelerate
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16, quantization_config=TorchAoConfig(cfg),
                                                 **placed).eval()
    w = model.model.layers[0].self_attn.q_proj.weight
    info["transformers_weight_class"] = type(w).__name__
    with torch.no_grad():
        logits = model(torch.tensor([tokens], device=dev), use_cache=False).logits[0].float().cpu()
    torch.save({"tokens": tokens, "logits": logits}, os.path.join(out, "g32", "hf_logits.pt"))
    model.save_pretrained(os.path.join(out, "g32", "hf"))
    info["transformers_saved"] = sorted(os.listdir(os.path.join(out, "g32", "hf")))


if __name__ == "__main__":
    main(sys.argv[1:])
