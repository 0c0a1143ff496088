#!/usr/bin/env python3
"""The peer tools on checkpoints that ingot exported (SaveModel): golden logits for the
peer-export test in tests/quant/save_test.cc (SaveIngot.PeerExports*).

ingot writes the exports (the test does it too, deterministically: hf-f32 quantized by
ingot, then saved in the peer's layout):
  build/bin/save_test --gtest_filter='SaveIngot.PeerExports*'
  -> /tmp/ingot_peer_export/{bnb-nf4-dq,bnb-fp4,bnb-int8,mlx-4bit-g64,gptq-4bit-g32,
     hqq-4bit-g64}/ (config.json with the tool's quantization config, model.safetensors
     in the tool's tensor layout, tokenizer.json, tokenizer_config.json,
     generation_config.json; gptq also quantize_config.json)
then:
  .venv-formats/bin/python tests/reference/gen_export_peers.py [NAME_OR_DIR ...] [--out DIR]
(default: the six names above under /tmp/ingot_peer_export; an argument that is a
directory is used as is, its basename naming the output) writes, per export,
tests/data/formats/export/<name>/logits.npy (float32 [16, 320]) and reference.json.

Each export is loaded by the peer tool itself, never patched up here:
  bnb-*  transformers AutoModelForCausalLM.from_pretrained(dir, torch_dtype=float32,
         device_map="cpu") with bitsandbytes on the CPU. The one check lifted is
         gen_formats_bnb.allow_cpu() (transformers 4.51 admits bitsandbytes on the CPU
         only through Intel's IPEX; bitsandbytes 0.50 has its own CPU backend). Missing,
         unexpected or mismatched tensors (which transformers only warns about, then
         initializes at random) count as a refusal. Activations are float32: the
         non-quantized tensors are upcast on load (exact), every Linear4bit gets
         compute_dtype float32 (a run-time knob; the config's bnb_4bit_compute_dtype is
         only its default) and its AVX512-BF16 CPU repacking is turned off (that path
         computes in bfloat16 and exists only on some CPUs), so the 4-bit linears are
         bitsandbytes' dequantize_4bit to float32 + F.linear. Linear8bitLt is LLM.int8 as
         bitsandbytes does it: the float32 input is cast to float16, row-quantized to int8
         (columns above llm_int8_threshold kept in float16), int8 matmul, float32 output.
  mlx-*  mlx_lm.load(dir) (strict load_weights) on mlx's Linux CPU backend, then
         model.set_dtype(float32) (casts the float scales/biases/norms exactly; the
         uint32 codes are untouched) so the forward is float32. The forward in the
         export's own dtype is also run, its distance recorded.
  gptq-* auto-gptq's AutoGPTQForCausalLM.from_quantized(dir, device="cpu",
         torch_dtype=float32), as gen_formats_gptq.py reads its own checkpoints (without
         CUDA QuantLinear falls back to its torch dequantize-and-matmul; exllama/marlin/
         triton off, as they need CUDA). float32: the f16 scales are upcast exactly.
         auto-gptq loads through accelerate's non-strict load_checkpoint_in_model, so
         the model's state_dict keys are compared with the file's here: any missing or
         unexpected tensor counts as a refusal. (transformers' own GPTQ path needs
         optimum, which this environment does not have.)
  hqq-*  transformers AutoModelForCausalLM.from_pretrained(dir, torch_dtype=float32,
         device_map="cpu"): HqqHfQuantizer rebuilds each HQQLinear from the stored state
         (HQQLinear.load_state_dict); the one check lifted is gen_formats_hqq.allow_cpu()
         (transformers 4.51 refuses HQQ without CUDA). transformers sets HQQLinear's
         compute dtype to the load dtype, so dequantization ((W_q - zero) * scale, f16
         meta upcast exactly) and matmul run in float32 (PYTORCH backend). Missing,
         unexpected or mismatched tensors count as a refusal.
A peer that refuses an export is reported (its exact message) and the others go on;
the exit status is then 1.

reference.json: {"peer": {package: version}, "source": ..., "tokens": (from
tests/data/formats/hf-f32/reference.json), "logits_file": "logits.npy", "compute": ...,
"export_model_sha256": sha256 of the export's model.safetensors (a stale vector shows as
a different hash), "export_quantization": the export's config quantization dict,
"max_abs_logit", "dense_logits_file": "../../dense_logits-llama.npy" (= hf-f32's own
transformers float32 logits), "max_abs_diff_vs_dense", "argmax_agreement_vs_dense"}.
"""
import argparse
import json
import os
import re
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_formats_common as c  # noqa: E402

FORMATS = os.path.join(c.ROOT, "tests", "data", "formats")
EXPORT_ROOT = "/tmp/ingot_peer_export"
DEFAULT_NAMES = ["bnb-nf4-dq", "bnb-fp4", "bnb-int8", "mlx-4bit-g64", "gptq-4bit-g32",
                 "hqq-4bit-g64"]
DENSE = os.path.join(FORMATS, "dense_logits-llama.npy")


def reference_tokens():
    with open(os.path.join(FORMATS, "hf-f32", "reference.json")) as f:
        return json.load(f)["tokens"]


class PeerRefused(Exception):
    pass


# ------------------------------------------------------------------ bitsandbytes
def bnb_logits(src, tokens):
    import torch
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM
    from gen_formats_bnb import allow_cpu
    allow_cpu()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            src, torch_dtype=torch.float32, device_map="cpu", output_loading_info=True)
    except Exception as e:  # the peer's own words
        raise PeerRefused(f"{type(e).__name__}: {e}") from e
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise PeerRefused(f"transformers from_pretrained loading info: {bad}")
    model.eval()
    n4 = n8 = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.compute_dtype = torch.float32
            m.compute_type_is_set = True
            m.support_avx512bf16_for_cpu = False
            n4 += 1
        elif isinstance(m, bnb.nn.Linear8bitLt):
            n8 += 1
    if n4 + n8 == 0:
        raise PeerRefused("transformers loaded no bitsandbytes Linear4bit/Linear8bitLt "
                          "module (the quantization_config was not applied)")
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False).logits[0]
    kind = (f"{n4} Linear4bit (dequantize_4bit to float32 + F.linear)" if n4 else
            f"{n8} Linear8bitLt (LLM.int8: float16 input row-quantized to int8, "
            "outlier columns in float16, int8 matmul, float32 out)")
    compute = (f"transformers {c.version('transformers')} LlamaForCausalLM, "
               f"torch_dtype float32 on the CPU, {kind}; everything else float32")
    peer = {p: c.version(p) for p in ("transformers", "bitsandbytes", "torch")}
    return out.float().numpy(), compute, peer, {}


def bnb_source(cfg):
    q = cfg.get("quantization_config", {})
    if q.get("load_in_4bit"):
        t = str(q.get("bnb_4bit_quant_type", "?")).upper()
        dq = " with double quant" if q.get("bnb_4bit_use_double_quant") else ", no double quant"
        return (f"bitsandbytes 4-bit {t}{dq} (compute dtype "
                f"{q.get('bnb_4bit_compute_dtype')}, torch_dtype {cfg.get('torch_dtype')})")
    if q.get("load_in_8bit"):
        return f"bitsandbytes LLM.int8 (torch_dtype {cfg.get('torch_dtype')})"
    return f"bitsandbytes, unrecognized quantization_config {q}"


# ------------------------------------------------------------------ MLX
def mlx_logits(src, tokens):
    import mlx.core as mx
    from mlx_lm import load
    try:
        model, _ = load(src)
    except Exception as e:
        raise PeerRefused(f"{type(e).__name__}: {e}") from e
    from mlx.utils import tree_flatten
    dtypes = {}  # dtype -> number of the loaded model's tensors in it
    for _, v in tree_flatten(model.parameters()):
        k = str(v.dtype).replace("mlx.core.", "")
        dtypes[k] = dtypes.get(k, 0) + 1
    native = np.array(model(mx.array([tokens]))[0].astype(mx.float32))
    model.set_dtype(mx.float32)
    out = np.array(model(mx.array([tokens]))[0].astype(mx.float32))
    floats = "/".join(sorted(k for k in dtypes if k.startswith(("float", "bfloat"))))
    compute = (f"mlx_lm.load(export) + model.set_dtype(float32) (the export's {floats} "
               f"float tensors upcast exactly), mlx-lm's Llama forward in float32 on "
               f"mlx {c.version('mlx')}'s CPU backend")
    extra = {"export_dtypes": dtypes,
             "max_abs_diff_float32_vs_export_dtype_forward": float(np.abs(out - native).max())}
    peer = {p: c.version(p) for p in ("mlx", "mlx-lm")}
    return out, compute, peer, extra


def mlx_source(cfg):
    q = cfg.get("quantization", {})
    return (f"MLX {q.get('mode', 'affine')} {q.get('bits')}-bit, group {q.get('group_size')} "
            "(mlx-lm layout)")


# ------------------------------------------------------------------ GPTQ
def gptq_logits(src, tokens):
    import torch
    from auto_gptq import AutoGPTQForCausalLM
    from safetensors import safe_open
    try:
        back = AutoGPTQForCausalLM.from_quantized(
            src, device="cpu", use_triton=False, use_marlin=False, disable_exllama=True,
            disable_exllamav2=True, torch_dtype=torch.float32)
    except Exception as e:
        raise PeerRefused(f"{type(e).__name__}: {e}") from e
    model = back.model.eval()
    with safe_open(os.path.join(src, "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    expected = set(model.state_dict().keys())
    if model.config.tie_word_embeddings:
        expected.discard("lm_head.weight")
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing or unexpected:
        raise PeerRefused(f"auto-gptq model vs export tensors: missing {missing[:8]}, "
                          f"unexpected {unexpected[:8]}")
    qlinears = [m for m in model.modules() if type(m).__name__ == "QuantLinear"]
    if not qlinears:
        raise PeerRefused("auto-gptq loaded no QuantLinear module")
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False).logits[0]
    ql = type(qlinears[0])
    compute = (f"auto-gptq {c.version('auto-gptq')} AutoGPTQForCausalLM.from_quantized(export, "
               f"cpu, torch_dtype float32): {len(qlinears)} {ql.__module__}.QuantLinear "
               f"(torch dequantize-and-matmul fallback, float32) in transformers "
               f"{c.version('transformers')} LlamaForCausalLM; everything else float32")
    peer = {p: c.version(p) for p in ("auto-gptq", "transformers", "torch")}
    return out.float().numpy(), compute, peer, {}


def gptq_source(cfg):
    q = cfg.get("quantization_config", {})
    return (f"GPTQ {q.get('bits')}-bit, group_size {q.get('group_size')}, sym {q.get('sym')}, "
            f"desc_act {q.get('desc_act')} (AutoGPTQ v1 layout)")


# ------------------------------------------------------------------ HQQ
def hqq_logits(src, tokens):
    import torch
    from hqq.core.quantize import HQQLinear
    from transformers import AutoModelForCausalLM
    from gen_formats_hqq import allow_cpu
    try:
        with allow_cpu():
            model, info = AutoModelForCausalLM.from_pretrained(
                src, torch_dtype=torch.float32, device_map="cpu", output_loading_info=True)
    except Exception as e:
        raise PeerRefused(f"{type(e).__name__}: {e}") from e
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise PeerRefused(f"transformers from_pretrained loading info: {bad}")
    model.eval()
    hqq = [m for m in model.modules() if isinstance(m, HQQLinear)]
    if not hqq:
        raise PeerRefused("transformers loaded no HQQLinear module "
                          "(the quantization_config was not applied)")
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False).logits[0]
    compute = (f"transformers {c.version('transformers')} LlamaForCausalLM with the export's "
               f"HqqConfig, torch_dtype float32 on the CPU: {len(hqq)} hqq HQQLinear "
               f"({hqq[0].backend.name} backend: dequantize (W_q - zero) * scale in float32, "
               "matmul); everything else float32")
    peer = {p: c.version(p) for p in ("transformers", "hqq", "torch")}
    return out.float().numpy(), compute, peer, {}


def hqq_source(cfg):
    q = cfg.get("quantization_config", {}).get("quant_config", {})
    w = q.get("weight_quant_params") or q
    return (f"HQQ {w.get('nbits')}-bit, group_size {w.get('group_size')}, axis "
            f"{w.get('axis')} (transformers HqqConfig layout)") if "nbits" in w else \
        f"HQQ per-tag config {sorted(q)} (transformers HqqConfig layout)"


# ------------------------------------------------------------------ driver
def write(dst, logits, ref):
    os.makedirs(dst, exist_ok=True)
    np.save(os.path.join(dst, "logits.npy"), logits)
    text = re.sub(r'"tokens": \[[^\]]*\]', '"tokens": ' + json.dumps(ref["tokens"]),
                  json.dumps(ref, indent=1))
    with open(os.path.join(dst, "reference.json"), "w") as f:
        f.write(text + "\n")


def run(src, name, out_root, tokens, dense):
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    method = cfg.get("quantization_config", {}).get("quant_method")
    if name.startswith("bnb") or method == "bitsandbytes":
        fn, source, qkey = bnb_logits, bnb_source(cfg), "quantization_config"
    elif method == "gptq":
        fn, source, qkey = gptq_logits, gptq_source(cfg), "quantization_config"
    elif method == "hqq":
        fn, source, qkey = hqq_logits, hqq_source(cfg), "quantization_config"
    else:
        fn, source, qkey = mlx_logits, mlx_source(cfg), "quantization"
    logits, compute, peer, extra = fn(src, tokens)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits.shape != dense.shape:
        raise PeerRefused(f"logits shape {logits.shape}, expected {dense.shape}")
    if not np.isfinite(logits).all():
        raise PeerRefused("non-finite logits")
    ref = {"peer": peer,
           "source": f"ingot SaveModel export of tests/data/formats/hf-f32 quantized as {source}",
           "export_dir": src,
           "tokens": tokens, "logits_file": "logits.npy", "compute": compute,
           "export_model_sha256": c.sha256_file(os.path.join(src, "model.safetensors")),
           "export_quantization": cfg.get(qkey),
           "max_abs_logit": float(np.abs(logits).max()),
           "dense_logits_file": "../../dense_logits-llama.npy",
           "max_abs_diff_vs_dense": float(np.abs(logits - dense).max()),
           "argmax_agreement_vs_dense": float((logits.argmax(1) == dense.argmax(1)).mean())}
    ref.update(extra)
    write(os.path.join(out_root, name), logits, ref)
    print(f"  {name}: loaded by {', '.join(f'{k} {v}' for k, v in peer.items())}; "
          f"max |logit| {ref['max_abs_logit']:.4g}, max |diff vs dense| "
          f"{ref['max_abs_diff_vs_dense']:.4g}, argmax agreement "
          f"{ref['argmax_agreement_vs_dense']:.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("exports", nargs="*", help="export names under "
                    f"{EXPORT_ROOT} or export directories (default: {DEFAULT_NAMES})")
    ap.add_argument("--out", default=os.path.join(FORMATS, "export"),
                    help="output root (default tests/data/formats/export)")
    args = ap.parse_args()
    tokens = reference_tokens()
    dense = np.load(DENSE)
    failed = []
    for arg in args.exports or DEFAULT_NAMES:
        src = arg if os.path.isdir(arg) else os.path.join(EXPORT_ROOT, arg)
        name = os.path.basename(os.path.normpath(src))
        if not os.path.isdir(src):
            print(f"  {name}: MISSING {src} (run save_test first)", flush=True)
            failed.append(name)
            continue
        try:
            run(src, name, args.out, tokens, dense)
        except PeerRefused as e:
            print(f"  {name}: PEER REFUSED: {e}", flush=True)
            failed.append(name)
        except Exception:
            print(f"  {name}: FAILED after loading:\n{traceback.format_exc()}", flush=True)
            failed.append(name)
    if failed:
        print("not written: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
