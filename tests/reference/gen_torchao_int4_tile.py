"""Assembles tests/data/formats/torchao-int4-tile-g32/ from what tests/gpu/torchao_int4.sh
brought back from a CUDA device (torchao_int4.tgz + info.json), on a CPU: torchao 0.18's
Int4WeightOnlyConfig(group_size=32, int4_packing_format="tile_packed_to_4d") of the tiny
Llama (hf-f32), i.e. Int4TilePackedTo4dTensor weights, in both forms torchao writes:

  model.safetensors   transformers' save_pretrained on the device when it ran there, else
                      torchao's flatten_tensor_state_dict (what save_pretrained calls): <module>._weight_qdata
                      int32 (N/8, K/128, 32, 4), <module>._weight_scale_and_zero bf16
                      (K/32, N, 2) (N, K padded to 8 and 1024), the class in the metadata
  pickled_q_proj.bin  torch.save of {layer 0's q_proj weight} alone (a _rebuild_wrapper_subclass
                      of torchao.quantization.Int4TilePackedTo4dTensor, its __dict__ as
                      state): the pickle form, one weight of it (the whole state dict's pickle,
                      ~750 KB, stays in the device output; this script checks that each of
                      its weights equals model.safetensors')
  config.json         transformers' own, when it ran on the device (save_pretrained of
                      hf-f32 loaded with TorchAoConfig(config), dtype bfloat16); else
                      hf-f32's model config as transformers 5.25 writes it (from
                      torchao-int4-g32), dtype bfloat16, quantization_config as
                      TorchAoConfig.to_dict writes it around torchao's own config_to_dict
  tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json
                      copied from torchao-int4-g32 (the same tokenizer as every format vector)
  dequantized.npz     layer 0's q/k/gate/down weights as torchao's tinygemm kernel computes
                      them (_weight_int4pack_mm on the bf16 identity, f32)
  linear.npz          x_<module> (4, K) and y_<module> (4, N): F.linear through the
                      quantized weight on the device (bf16 in and out), same modules
  logits.npy, reference.json
                      transformers' LlamaForCausalLM forward in float32 over the
                      16 reference tokens, its linears set to torchao's dequantized weights
                      and every other tensor the checkpoint's bf16 one: the model the CUDA
                      checkpoint stands for, in f32 as the other vectors' logits (torchao's
                      own forward on the device runs in bf16: its distance to these is
                      recorded as torchao_bf16_forward_max_abs_diff when it ran)

Before writing anything it checks the device's output against ingot's reading of the
layout: ATen's CUDA packing of fixed codes equals gen_torchao_int4_tile_pack's emulation;
each weight's qdata equals the emulation applied to torchao's own codes (g32 and g64);
the dequantized weights equal bf16((q - 8) * scale + zero) from those codes; and the
pickled and flattened forms hold the same tensors.

  python3 tests/reference/gen_torchao_int4_tile.py DEVICE_OUT [--out DIR] [--allow-rehearsal]
DEVICE_OUT: the folder holding torchao_int4.tgz (the device tool's files_at) or one it was
unpacked into. Needs torch, numpy, transformers and torchao (to unpickle the weights), as
.venv-seeds has them (requirements-seeds.txt).
--allow-rehearsal accepts the output of `torchao_int4.sh OUT --rehearse-cpu` (the CPU
stand-ins), for testing this script; write that to another --out, never to the vector.
"""
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_torchao_int4_tile_pack as emu  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FORMATS = os.path.join(ROOT, "tests", "data", "formats")
NAME = "torchao-int4-tile-g32"
GROUP = 32
TEMPLATE = os.path.join(FORMATS, "torchao-int4-g32")  # config and tokenizer files
COPIED = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")
KEEP = ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.down_proj")


def unpack_device_out(path, tmp):
    if os.path.isfile(os.path.join(path, "torchao_int4.tgz")):
        with tarfile.open(os.path.join(path, "torchao_int4.tgz")) as t:
            t.extractall(tmp, filter="data")
        return tmp
    if os.path.isfile(path) and path.endswith(".tgz"):
        with tarfile.open(path) as t:
            t.extractall(tmp, filter="data")
        return tmp
    return path


def bf16_round(x):
    """float32 -> nearest bf16 (ties to even), as float32."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


def check(src, info):
    """The device's output against ingot's reading of the layout; returns a summary."""
    summary = {}
    pack = torch.load(os.path.join(src, "pack_check.pt"), weights_only=True)
    for n, k, inner in emu.SHAPES:
        key = f"{n}x{k}_i{inner}"
        got = pack[f"packed_{key}"].numpy()
        want = emu.emulate(pack[f"codes_{key}"].numpy(), inner)
        assert np.array_equal(got, want), f"ATen's CUDA packing of {key} differs from ingot's emulation"
        summary[f"pack {key}"] = "ATen == emulation"
    for g in (32, 64):
        gdir = os.path.join(src, f"g{g}")
        if not os.path.isdir(gdir):
            continue
        state = torch.load(os.path.join(gdir, "pytorch_model.bin"), weights_only=False)
        ref = torch.load(os.path.join(gdir, "reference.pt"), weights_only=True)
        worst = 0.0
        for mod, r in ref.items():
            w = state[mod + ".weight"]
            assert type(w).__name__ == "Int4TilePackedTo4dTensor", type(w)
            qdata = w.qdata.cpu().numpy()
            codes = r["codes"].numpy()
            assert np.array_equal(emu.emulate(codes, 8), qdata), f"g{g} {mod}: qdata != emulate(codes)"
            n, k = r["dequantized"].shape
            sz = w.scale_and_zero.float().cpu().numpy()  # (K/g, N, 2)
            s = np.repeat(sz[:, :n, 0].T, g, axis=1)[:, :k]
            z = np.repeat(sz[:, :n, 1].T, g, axis=1)[:, :k]
            want = bf16_round((codes[:n, :k].astype(np.float32) - 8) * s + z)
            d = np.abs(want - r["dequantized"].numpy())
            # the kernel rounds one bf16 fma, this f32 then bf16: at most 1 ulp apart
            # (2^-7 relative at worst)
            worst = max(worst, float((d / (np.abs(want) * 2 ** -7 + 1e-6)).max()))
        summary[f"g{g}"] = (f"{len(ref)} weights: qdata == emulate(torchao's codes); dequantized vs "
                            f"bf16((q-8)*s+z): worst {worst:.3g} bf16 ulps")
        assert worst <= 1.0, summary[f"g{g}"]
    return summary


def transformers_logits(src, state, ref, tokens):
    """transformers' Llama in float32 with torchao's dequantized linears."""
    from transformers import AutoConfig, LlamaForCausalLM
    cfg = AutoConfig.from_pretrained(os.path.join(FORMATS, "hf-f32"))
    model = LlamaForCausalLM(cfg).eval()
    sd = {}
    for name, t in state.items():
        mod = name[:-len(".weight")] if name.endswith(".weight") else None
        if mod in ref:
            sd[name] = ref[mod]["dequantized"].float()
        else:
            sd[name] = t.float()
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False).logits[0]
    return out.float().numpy(), cfg


def write_safetensors(src, dst):
    hf = os.path.join(src, "hf")
    if os.path.isfile(os.path.join(hf, "model.safetensors")):
        shutil.copy(os.path.join(hf, "model.safetensors"), dst)
        return "written by transformers' save_pretrained on the device (TorchAoConfig, dtype bfloat16)"
    if os.path.isfile(os.path.join(src, "model.safetensors")):
        shutil.copy(os.path.join(src, "model.safetensors"), dst)
        return "copied from the device"
    if os.path.isfile(os.path.join(src, "flat.pt")):
        from safetensors.torch import save_file
        flat = torch.load(os.path.join(src, "flat.pt"), weights_only=True)
        with open(os.path.join(src, "flat_metadata.json")) as f:
            meta = json.load(f)
        save_file(flat, dst, metadata=meta)
        return "written here from the device's flatten_tensor_state_dict output (no safetensors there)"
    return None


def main(argv):
    allow_rehearsal = "--allow-rehearsal" in argv
    out_root = FORMATS
    if "--out" in argv:
        out_root = argv[argv.index("--out") + 1]
    device_out = argv[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = unpack_device_out(device_out, tmp)
        with open(os.path.join(src, "info.json")) as f:
            info = json.load(f)
        if "rehearsal" in info.get("device", "") and not allow_rehearsal:
            sys.exit("this is a --rehearse-cpu output (CPU stand-ins for ATen's CUDA ops): "
                     "pass --allow-rehearsal and an --out outside tests/data")
        if allow_rehearsal and os.path.abspath(out_root) == os.path.abspath(FORMATS):
            sys.exit("--allow-rehearsal needs --out outside tests/data/formats")
        assert info.get("all_checks_pass") is not False, {k: v for k, v in info["checks"].items() if not v}
        summary = check(src, info)
        gsrc = os.path.join(src, f"g{GROUP}")
        dst = os.path.join(out_root, NAME)
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        for f in COPIED:
            shutil.copy(os.path.join(TEMPLATE, f), os.path.join(dst, f))
        if os.path.isfile(os.path.join(gsrc, "hf", "config.json")):  # transformers' own
            for f in ("config.json", "generation_config.json"):
                shutil.copy(os.path.join(gsrc, "hf", f), os.path.join(dst, f))
        else:
            with open(os.path.join(TEMPLATE, "config.json")) as f:
                cfg = json.load(f)
            with open(os.path.join(gsrc, "config_dict.json")) as f:
                cfg["quantization_config"]["quant_type"]["default"] = json.load(f)
            cfg["dtype"] = "bfloat16"
            with open(os.path.join(dst, "config.json"), "w") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)
                f.write("\n")
        shutil.copy(os.path.join(gsrc, "pickled_q_proj.bin"), os.path.join(dst, "pickled_q_proj.bin"))
        st_note = write_safetensors(gsrc, os.path.join(dst, "model.safetensors"))
        state = torch.load(os.path.join(gsrc, "pytorch_model.bin"), weights_only=False)
        if st_note is not None:
            from safetensors.torch import load_file
            flat = load_file(os.path.join(dst, "model.safetensors"))
            for name, t in state.items():
                if type(t).__name__ == "Int4TilePackedTo4dTensor":
                    mod, leaf = name.rsplit(".", 1)
                    for attr in ("qdata", "scale_and_zero"):
                        assert torch.equal(flat[f"{mod}._{leaf}_{attr}"], getattr(t, attr).cpu()), (name, attr)
                else:
                    assert torch.equal(flat[name], t), name
            summary["forms"] = "pytorch_model.bin and model.safetensors hold the same tensors"
        ref = torch.load(os.path.join(gsrc, "reference.pt"), weights_only=True)
        np.savez(os.path.join(dst, "dequantized.npz"),
                 **{f"model.layers.0.{m}": np.ascontiguousarray(ref[f"model.layers.0.{m}"]["dequantized"].numpy())
                    for m in KEEP})
        lin = {}
        for m in KEEP:
            r = ref[f"model.layers.0.{m}"]
            lin[f"x_model.layers.0.{m}"] = np.ascontiguousarray(r["x"].numpy())
            lin[f"y_model.layers.0.{m}"] = np.ascontiguousarray(r["y"].numpy())
        np.savez(os.path.join(dst, "linear.npz"), **lin)
        with open(os.path.join(FORMATS, "hf-f32", "reference.json")) as f:
            tokens = json.load(f)["tokens"]
        logits, _ = transformers_logits(src, state, ref, tokens)
        np.save(os.path.join(dst, "logits.npy"), logits.astype(np.float32))
        dense = np.load(os.path.join(FORMATS, "dense_logits-llama.npy"))
        torchao_forward = {}
        if os.path.isfile(os.path.join(gsrc, "hf_logits.pt")):
            hf_logits = torch.load(os.path.join(gsrc, "hf_logits.pt"), weights_only=True)
            assert hf_logits["tokens"] == tokens
            torchao_forward = {"torchao_bf16_forward_max_abs_diff": float(
                np.abs(hf_logits["logits"].numpy() - logits).max())}
        import transformers
        reference = {
            "tool": "torchao", "version": info["torchao"], "tokens": tokens, "logits_file": "logits.npy",
            "base_model": "llama",
            "forward": (f"transformers {transformers.__version__} LlamaForCausalLM forward in float32 with "
                        "torchao's dequantized weights (_weight_int4pack_mm on the bf16 identity, on "
                        f"{info.get('device')}) as linears and the checkpoint's bf16 tensors elsewhere"),
            "dense_logits_file": "../dense_logits-llama.npy",
            "max_abs_diff_vs_dense": float(np.abs(logits - dense).max()),
            "argmax_agreement_vs_dense": float((logits.argmax(1) == dense.argmax(1)).mean()),
            "device": info.get("device"), "torch": info.get("torch"),
            "config": f"Int4WeightOnlyConfig(group_size={GROUP}, int4_packing_format='tile_packed_to_4d')",
            "made_by": "tests/gpu/torchao_int4.sh + tests/reference/gen_torchao_int4_tile.py",
            "checks": summary, **torchao_forward,
            "notes": ("dequantized.npz and linear.npz: layer 0's q/k/gate/down; pickled_q_proj.bin: "
                      "torch.save of layer 0's q_proj weight alone; model.safetensors: " +
                      (st_note or "not written (torchao's flattening failed on the device)")),
        }
        text = json.dumps(reference, indent=1)
        text = text.replace(json.dumps(tokens, indent=1).replace("\n", "\n "), json.dumps(tokens))
        with open(os.path.join(dst, "reference.json"), "w") as f:
            f.write(text + "\n")
    total = packed = 0
    for f in sorted(os.listdir(dst)):
        with open(os.path.join(dst, f), "rb") as fh:
            blob = fh.read()
        total += len(blob)
        packed += len(zlib.compress(blob, 6))
        print(f"  {f}: {len(blob)} bytes ({len(zlib.compress(blob, 6))} zlib'd, as git stores it)")
    print(f"{dst}: {total} bytes, {packed} as git objects; max |logits - dense| = "
          f"{reference['max_abs_diff_vs_dense']:.4g}")
    for k, v in summary.items():
        print(f"  check {k}: {v}")


if __name__ == "__main__":
    main(sys.argv[1:])
