"""AWQ checkpoint in AutoAWQ's GEMM layout, from a real autoawq 0.2.9 run on the CPU:
AutoAWQForCausalLM.from_pretrained(base, float16) -> quantize(w_bit 4, group 32,
zero_point, GEMM; AutoAWQ picks the CPU itself when there is no GPU) -> save_quantized ->
model.safetensors (qweight / qzeros / scales per linear, WQLinear_GEMM; the rest float16)
+ quantization_config in config.json. Logits: AutoAWQForCausalLM.from_quantized(this
directory, device_map="cpu", fuse_layers=False), WQLinear_GEMM's own torch fallback
(awq.utils.packing_utils.dequantize_gemm, then matmul in float16).

CPU deviation: triton is installed (a torch dependency) but has no GPU, and
WQLinear_GEMM prefers triton whenever it imports; the generator sets
awq.modules.linear.gemm.TRITON_AVAILABLE = False so that AutoAWQ takes its documented
no-kernel path. from_quantized also swaps in IPEX layers whenever the best device is the
CPU (and refuses without intel_extension_for_pytorch); the generator hides the CPU from
that one decision so that it builds WQLinear_GEMM, the layer the checkpoint was saved from.
Clipping search off (quantize(apply_clip=False)): AutoAWQ's _compute_best_clip asserts
that a linear's output count is a multiple of 64, and v_proj here has 2 KV heads x 16 =
32 outputs; the scale search (the "activation-aware" part) runs.
Calibration: 32 sequences of 64 tokens of calibration.txt.
"""
import os

import torch

import gen_formats_common as c
import gen_formats_decode as d

N_EXAMPLES, SEQ_LEN = 32, 64


def calib():
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(c.base_dir("llama"))
    with open(c.CALIBRATION, encoding="utf-8") as f:
        ids = tok(f.read(), add_special_tokens=False)["input_ids"]
    return [ids[i * SEQ_LEN:(i + 1) * SEQ_LEN] for i in range(N_EXAMPLES)]


def main():
    import awq.modules.linear.gemm as gemm
    from awq import AutoAWQForCausalLM
    from transformers import AutoTokenizer
    gemm.TRITON_AVAILABLE = False
    dst = c.variant_dir("awq-4bit-g32")
    quant_config = {"zero_point": True, "q_group_size": 32, "w_bit": 4, "version": "GEMM"}
    model = AutoAWQForCausalLM.from_pretrained(c.base_dir("llama"), torch_dtype=torch.float16,
                                               device_map="cpu")
    tok = AutoTokenizer.from_pretrained(c.base_dir("llama"))
    torch.manual_seed(0)
    model.quantize(tok, quant_config=quant_config, calib_data=calib(),
                   max_calib_samples=N_EXAMPLES, max_calib_seq_len=SEQ_LEN,
                   apply_clip=False)
    model.save_quantized(dst)
    tok.save_pretrained(dst)
    del model
    # from_quantized builds IPEX layers whenever get_best_device() is "cpu" (and refuses
    # without intel_extension_for_pytorch); seen from awq.models.base, report no device
    # so that it builds WQLinear_GEMM, the layer the checkpoint was saved from.
    import awq.models.base as awq_base
    best_device = awq_base.get_best_device
    awq_base.get_best_device = lambda: "none"
    try:
        back = AutoAWQForCausalLM.from_quantized(dst, fuse_layers=False, device_map={"": "cpu"},
                                                 torch_dtype=torch.float16)
    finally:
        awq_base.get_best_device = best_device
    qlinear = type(back.model.model.layers[0].mlp.up_proj)
    assert qlinear.__name__ == "WQLinear_GEMM", qlinear
    from safetensors.torch import load_file
    sd = load_file(os.path.join(dst, "model.safetensors"))
    worst = 0.0
    for layer in range(2):
        for lin in d.LINEARS:
            p = f"model.layers.{layer}.{lin}"
            mod = back.model.get_submodule(p)
            ref = d.probe(mod, mod.in_features, torch.float16)
            worst = max(worst, d.compare(p, d.awq(sd, p, 32), ref))
    print(f"  awq-4bit-g32: README decoding matches AutoAWQ (max rel err {worst:.2g})")
    c.write_reference(dst, "autoawq", c.hf_logits(back.model.eval()),
                      forward="AutoAWQForCausalLM.from_quantized(this directory, cpu, "
                              "float16, fuse_layers=False): WQLinear_GEMM torch fallback "
                              "(dequantize_gemm + matmul) in transformers "
                              f"{c.version('transformers')} LlamaForCausalLM",
                      notes="quantized on the CPU, apply_clip=False; calibration: "
                            f"{N_EXAMPLES} x {SEQ_LEN} tokens of calibration.txt",
                      transformers_version=c.version("transformers"))


if __name__ == "__main__":
    main()
