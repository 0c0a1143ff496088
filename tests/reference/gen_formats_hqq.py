"""HQQ checkpoints, axis=1 (groups along the input dimension) unless named -axis0,
compute dtype float16:

  hqq-<bits>bit-g<group>      hqq's own format: AutoHQQHFModel.quantize_model(device="cpu")
                              + AutoHQQHFModel.save_quantized -> config.json + qmodel.pt
                              (torch.save of {module name: module state_dict}); logits from
                              AutoHQQHFModel.from_quantized(device="cpu").
  hqq-4bit-g64-axis0          the same with axis=0 (Quantizer.quantize's own default: the
                              weight reshaped to [group, -1], groups down its columns), plus
                              dequantized.npz: HQQLinear.dequantize() of two linears
                              (float16), the weights ingot's reader must reproduce.
  hqq-4bit-g64-hf             transformers' HqqConfig layout: from_pretrained(base,
                              quantization_config=HqqConfig(...)) + save_pretrained ->
                              model.safetensors + quantization_config in config.json;
                              logits from from_pretrained(variant dir).

transformers 4.51's HqqHfQuantizer.validate_environment refuses to run without CUDA;
everything after that check runs hqq's HQQLinear on the device it is given, so the
generator lifts only that check (see allow_cpu) and quantizes on the CPU. On the CPU
HQQLinear's proximal solver runs in float32 (on CUDA: float16), so a GPU run gives
slightly different codes; the layout is the same.
"""
import contextlib
import os

import torch

import gen_formats_common as c
import gen_formats_decode as d

CASES = [(4, 64), (2, 32)]
AXIS0_CASES = [(4, 64)]
# Linears whose hqq dequantization is stored for axis=0: k_proj has fewer outputs (32)
# than a group (64), so each group holds two inputs of every output; down_proj has 128
# inputs.
AXIS0_DEQUANTIZED = ["model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"]


@contextlib.contextmanager
def allow_cpu():
    from transformers.quantizers.quantizer_hqq import HqqHfQuantizer
    orig = HqqHfQuantizer.validate_environment

    def validate(self, *args, **kwargs):
        is_available = torch.cuda.is_available
        torch.cuda.is_available = lambda: True
        try:
            return orig(self, *args, **kwargs)
        finally:
            torch.cuda.is_available = is_available

    HqqHfQuantizer.validate_environment = validate
    try:
        yield
    finally:
        HqqHfQuantizer.validate_environment = orig


def check(model, state, axis=1):
    """README layout vs HQQLinear.dequantize(); state(p) -> the stored entries of linear p."""
    worst = 0.0
    for layer in range(2):
        for lin in d.LINEARS:
            p = f"model.layers.{layer}.{lin}"
            s = state(p)
            dec = d.hqq(s["W_q"], d.f32(s["scale"]), d.f32(s["zero"]), int(s["nbits"]),
                        int(s["group_size"]), [int(x) for x in s["shape"]], axis)
            ref = model.get_submodule(p).dequantize()
            worst = max(worst, d.compare(p, dec, d.f32(ref)))
    return worst


def hqq_native(bits, group, axis=1):
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel
    name = f"hqq-{bits}bit-g{group}" + ("-axis0" if axis == 0 else "")
    dst = c.variant_dir(name)
    model = c.load_base("llama")
    cfg = BaseQuantizeConfig(nbits=bits, group_size=group, axis=axis)
    AutoHQQHFModel.quantize_model(model, quant_config=cfg, compute_dtype=torch.float16,
                                  device="cpu")
    AutoHQQHFModel.save_quantized(model, dst)
    c.save_tokenizer(dst)
    del model
    back = AutoHQQHFModel.from_quantized(dst, compute_dtype=torch.float16, device="cpu")
    stored = torch.load(os.path.join(dst, "qmodel.pt"), weights_only=True)
    err = check(back, lambda p: {k: v for k, v in stored[p].items()}, axis)
    print(f"  {name}: README decoding matches hqq (max rel err {err:.2g})")
    if axis == 0:
        import numpy as np
        with torch.no_grad():
            deq = {p: back.get_submodule(p).dequantize().to(torch.float16).numpy()
                   for p in AXIS0_DEQUANTIZED}
        np.savez(os.path.join(dst, "dequantized.npz"), **deq)
    c.write_reference(dst, "hqq", c.hf_logits(back.eval()),
                      forward="hqq AutoHQQHFModel.from_quantized(this directory, float16, "
                              "cpu): HQQLinear (PYTORCH backend: dequantize, then matmul) in "
                              f"transformers {c.version('transformers')} LlamaForCausalLM",
                      quant_config={"nbits": bits, "group_size": group, "axis": axis},
                      notes="quantized on the CPU (proximal solver in float32)")


def hqq_transformers(bits, group):
    from transformers import AutoModelForCausalLM, HqqConfig
    dst = c.variant_dir(f"hqq-{bits}bit-g{group}-hf")
    with allow_cpu():
        model = AutoModelForCausalLM.from_pretrained(
            c.base_dir("llama"), torch_dtype=torch.float16, device_map="cpu",
            quantization_config=HqqConfig(nbits=bits, group_size=group, axis=1))
        model.save_pretrained(dst)
        c.save_tokenizer(dst)
        del model
        back = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float16,
                                                    device_map="cpu").eval()
    from safetensors.torch import load_file
    sd = load_file(os.path.join(dst, "model.safetensors"))
    err = check(back, lambda p: {k[len(p) + 1:]: v for k, v in sd.items()
                                 if k.startswith(p + ".")})
    print(f"  hqq-{bits}bit-g{group}-hf: README decoding matches hqq (max rel err {err:.2g})")
    c.write_reference(dst, "hqq", c.hf_logits(back),
                      forward=f"transformers {c.version('transformers')} LlamaForCausalLM "
                              "with HqqConfig, loaded back from this directory: hqq "
                              "HQQLinear in float16 on the CPU",
                      transformers_version=c.version("transformers"),
                      notes="transformers' CUDA check lifted; quantized on the CPU "
                            "(proximal solver in float32)")


def main():
    for bits, group in CASES:
        hqq_native(bits, group)
    for bits, group in AXIS0_CASES:
        hqq_native(bits, group, axis=0)
    # The HqqConfig layout stores the same HQQLinear state (W_q packed as in qmodel.pt),
    # so one bit width shows it; 2-bit packing is covered by hqq-2bit-g32.
    hqq_transformers(4, 64)


if __name__ == "__main__":
    main()
