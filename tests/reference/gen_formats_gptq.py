"""GPTQ checkpoints in AutoGPTQ's layout, from a real auto-gptq 0.7.1 quantize() run on
the CPU: LlamaGPTQForCausalLM.quantize(calibration examples) -> pack_model (which packs on
the CPU anyway) -> save_quantized -> gptq_model-<bits>bit-<group>g.safetensors (qweight,
qzeros, scales, g_idx per linear; the rest float16) + quantize_config.json + config.json
(with quantization_config). Logits: AutoGPTQForCausalLM.from_quantized(this directory,
device="cpu") whose QuantLinear (qlinear_cuda_old / qlinear_cuda) falls back to its torch
dequantize-and-matmul path without the CUDA extension.

CPU deviations (the algorithm and the packing are auto-gptq's own):
  * AutoGPTQForCausalLM.from_pretrained refuses to run without CUDA, so the generator
    loads the float16 model with transformers (what from_pretrained does inside) and wraps
    it in LlamaGPTQForCausalLM(model, quantized=False, quantize_config) itself.
  * quantize() moves each layer to CUDA_0 while it runs; the generator points
    auto_gptq.modeling._base.CUDA_0 at the CPU, and turns torch.cuda.synchronize (called
    at the end of GPTQ.fasterquant) into a no-op.
Calibration: 32 sequences of 64 tokens of engine/quant/data/calibration.txt.
"""
import glob

import torch

import gen_formats_common as c
import gen_formats_decode as d

CASES = [  # name, bits, group, desc_act
    ("gptq-4bit-g32", 4, 32, False),
    ("gptq-4bit-g32-actorder", 4, 32, True),
    ("gptq-3bit-g32", 3, 32, False),
]
N_EXAMPLES, SEQ_LEN = 32, 64


def patch_for_cpu():
    import auto_gptq.modeling._base as base
    base.CUDA_0 = torch.device("cpu")
    torch.cuda.synchronize = lambda *a, **k: None


def examples():
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(c.base_dir("llama"))
    with open(c.CALIBRATION, encoding="utf-8") as f:
        ids = tok(f.read(), add_special_tokens=False)["input_ids"]
    out = []
    for i in range(N_EXAMPLES):
        chunk = ids[i * SEQ_LEN:(i + 1) * SEQ_LEN]
        out.append({"input_ids": chunk, "attention_mask": [1] * len(chunk)})
    return out


def quantize(name, bits, group, desc_act):
    from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig
    from auto_gptq.modeling.llama import LlamaGPTQForCausalLM
    dst = c.variant_dir(name)
    qcfg = BaseQuantizeConfig(bits=bits, group_size=group, desc_act=desc_act, sym=True,
                              damp_percent=0.01, true_sequential=True, static_groups=False)
    model = c.load_base("llama", torch.float16)
    model.seqlen = model.config.max_position_embeddings
    gm = LlamaGPTQForCausalLM(model, False, qcfg)
    torch.manual_seed(0)
    gm.quantize(examples(), use_triton=False, cache_examples_on_gpu=False)
    gm.save_quantized(dst, use_safetensors=True)
    c.save_tokenizer(dst)
    del gm, model
    back = AutoGPTQForCausalLM.from_quantized(dst, device="cpu", use_triton=False,
                                              use_marlin=False, disable_exllama=True,
                                              disable_exllamav2=True,
                                              torch_dtype=torch.float16)
    qlinear = type(back.model.model.layers[0].mlp.up_proj)
    from safetensors.torch import load_file
    sd = load_file(glob.glob(f"{dst}/*.safetensors")[0])
    worst = 0.0
    for layer in range(2):
        for lin in d.LINEARS:
            p = f"model.layers.{layer}.{lin}"
            mod = back.model.get_submodule(p)
            ref = d.probe(mod, mod.infeatures, torch.float16)
            worst = max(worst, d.compare(p, d.gptq(sd, p, bits), ref))
    print(f"  {name}: README decoding matches auto-gptq (max rel err {worst:.2g})")
    c.write_reference(dst, "auto-gptq", c.hf_logits(back.model.eval()),
                      forward=f"AutoGPTQForCausalLM.from_quantized(this directory, cpu, "
                              f"float16): {qlinear.__module__}.QuantLinear torch fallback in "
                              f"transformers {c.version('transformers')} LlamaForCausalLM",
                      notes="quantize() run on the CPU (CUDA_0 pointed at the CPU); "
                            f"calibration: {N_EXAMPLES} x {SEQ_LEN} tokens of "
                            "calibration.txt",
                      transformers_version=c.version("transformers"))


def main():
    patch_for_cpu()
    for case in CASES:
        quantize(*case)


if __name__ == "__main__":
    main()
