"""optimum-quanto checkpoints as its documented transformers workflow writes them:
QuantizedModelForCausalLM.quantize(model, weights=qint8|qint4, exclude="lm_head") (which
quantizes and freezes) + save_pretrained -> model.safetensors (the frozen QTensor
components under <linear>.weight._data / ._scale / ._shift ...; the rest in the model's
dtype) + quanto_qmap.json (module name -> {"weights": qtype, "activations": "none"}) +
config.json. Logits: QuantizedModelForCausalLM.from_pretrained(this directory) (requantize
from the qmap) and its forward on the CPU.

  quanto-int8   qint8 weights of the bfloat16 model (one scale per output row, symmetric)
  quanto-int4   qint4 weights of the float32 model (affine: scale and float shift). QModule
                groups 128 inputs only when in_features > 128; every linear here has 64 or
                128 inputs, so each output row is one group (scale/shift [out, 1]). float32
                because on the CPU a bfloat16 model with groups would make quanto pick its
                TinyGemm tensor (a torch-internal repacked layout) instead of the portable
                WeightQBitsTensor.
"""
import os

import torch

import gen_formats_common as c
import gen_formats_decode as d

CASES = [("quanto-int8", "qint8", torch.bfloat16), ("quanto-int4", "qint4", torch.float32)]


def main():
    from optimum.quanto import QuantizedModelForCausalLM, qint4, qint8
    qtypes = {"qint8": qint8, "qint4": qint4}
    for name, qtype, dtype in CASES:
        dst = c.variant_dir(name)
        model = c.load_base("llama", dtype)
        qmodel = QuantizedModelForCausalLM.quantize(model, weights=qtypes[qtype],
                                                    exclude="lm_head")
        qmodel.save_pretrained(dst)
        c.save_tokenizer(dst)
        del qmodel, model
        back = QuantizedModelForCausalLM.from_pretrained(dst)
        wtype = type(back._wrapped.model.layers[0].mlp.up_proj.weight).__name__
        from safetensors.torch import load_file
        sd = load_file(os.path.join(dst, "model.safetensors"))
        worst = 0.0
        for layer in range(2):
            for lin in d.LINEARS:
                p = f"model.layers.{layer}.{lin}"
                mod = back._wrapped.get_submodule(p)
                ref = d.probe(mod, mod.in_features, dtype)
                dec = d.quanto(sd, p, qtype, list(mod.weight.shape))
                worst = max(worst, d.compare(p, dec, ref))
        print(f"  {name}: README decoding matches optimum-quanto (max rel err {worst:.2g})")
        c.write_reference(dst, "optimum-quanto", c.hf_logits(back._wrapped.eval()),
                          forward="QuantizedModelForCausalLM.from_pretrained(this directory) "
                                  f"on the CPU (QLinear, weight {wtype}) in transformers "
                                  f"{c.version('transformers')} LlamaForCausalLM",
                          transformers_version=c.version("transformers"),
                          weights=qtype, dtype=str(dtype).replace("torch.", ""))


if __name__ == "__main__":
    main()
