"""bitsandbytes checkpoints as transformers writes them: from_pretrained(base,
quantization_config=BitsAndBytesConfig(...)) quantizes on load (bitsandbytes' CPU backend),
save_pretrained writes model.safetensors with the packed weights and quant-state tensors
and quantization_config inside config.json. The logits are the checkpoint loaded back
from the variant directory through transformers + bitsandbytes (Linear4bit / Linear8bitLt
on the CPU)."""
import json
import os

import torch

import gen_formats_common as c
import gen_formats_decode as d


def check(dst, model):
    """README layout (gen_formats_decode) vs the bitsandbytes modules' own weights."""
    from safetensors.torch import load_file
    sd = load_file(os.path.join(dst, "model.safetensors"))
    worst = 0.0
    for layer in range(2):
        for lin in d.LINEARS:
            p = f"model.layers.{layer}.{lin}"
            mod = model.get_submodule(p)
            qs_key = [k for k in sd if k.startswith(p + ".weight.quant_state.")]
            if qs_key:
                qs = json.loads(bytes(sd[qs_key[0]].tolist()).decode())
                dec = d.bnb_4bit(sd, p, qs)
            else:
                dec = d.bnb_int8(sd, p)
            dtype = model.model.embed_tokens.weight.dtype
            worst = max(worst, d.compare(p, dec, d.probe(mod, mod.in_features, dtype)))
    return worst


def quantize_and_save(name, bnb_config, dtype):
    from transformers import AutoModelForCausalLM
    dst = c.variant_dir(name)
    model = AutoModelForCausalLM.from_pretrained(c.base_dir("llama"), torch_dtype=dtype,
                                                 quantization_config=bnb_config,
                                                 device_map="cpu").eval()
    model.save_pretrained(dst)
    c.save_tokenizer(dst)
    del model
    back = AutoModelForCausalLM.from_pretrained(dst, device_map="cpu").eval()
    print(f"  {name}: README decoding matches bitsandbytes (max rel err {check(dst, back):.2g})")
    c.write_reference(dst, "bitsandbytes", c.hf_logits(back),
                      forward=f"transformers {c.version('transformers')} LlamaForCausalLM "
                              f"with bitsandbytes {type(back.model.layers[0].mlp.up_proj).__name__}"
                              " modules on the CPU, loaded back from this directory",
                      transformers_version=c.version("transformers"))


def allow_cpu():
    """transformers 4.51 lets bitsandbytes onto the CPU only through Intel's IPEX
    (_validate_bnb_multi_backend_availability); bitsandbytes 0.50 has its own CPU backend,
    which later transformers use directly. Lift just that check."""
    import transformers.integrations as integrations
    integrations.validate_bnb_backend_availability = lambda raise_exception=False: True


def main():
    from transformers import BitsAndBytesConfig
    allow_cpu()
    quantize_and_save("bnb-nf4", BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16), torch.bfloat16)
    quantize_and_save("bnb-fp4", BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
        bnb_4bit_compute_dtype=torch.float32), torch.float32)
    quantize_and_save("bnb-int8", BitsAndBytesConfig(load_in_8bit=True), torch.float16)


if __name__ == "__main__":
    main()
