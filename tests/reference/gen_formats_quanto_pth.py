"""The quanto single-file layout the issue names ("the seeds' single .pth with an
embedded quanto_config"): one torch.save'd dict holding the quantized model's state dict
and the quantization config, next to config.json and the tokenizer files.

  quanto-int4-pth/model.pth = torch.save({"model_state_dict": <optimum-quanto's state
      dict of tests/data/formats/quanto-int4>, "quanto_config": {"weights": "qint4",
      "activations": "none", "exclude": ["lm_head"]}})

The tensors are optimum-quanto's own (the ones quanto-int4/model.safetensors holds:
<linear>.weight._data._data, ._scale, ._shift), so the tool's logits are quanto-int4's;
reference.json and logits.npy are copied from there. Run after gen_formats_quanto.py.
"""
import json
import os
import shutil

import torch
from safetensors.torch import load_file

import gen_formats_common as c


def main():
    src = os.path.join(c.OUT, "quanto-int4")
    dst = c.variant_dir("quanto-int4-pth")
    state = load_file(os.path.join(src, "model.safetensors"))
    with open(os.path.join(src, "quanto_qmap.json")) as f:
        qmap = json.load(f)
    weights = sorted({v["weights"] for v in qmap.values()})
    assert weights == ["qint4"], weights
    config = {"weights": "qint4", "activations": "none", "exclude": ["lm_head"]}
    torch.save({"model_state_dict": state, "quanto_config": config}, os.path.join(dst, "model.pth"))
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "logits.npy"):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    with open(os.path.join(src, "reference.json")) as f:
        ref = json.load(f)
    ref["layout"] = "single model.pth: {'model_state_dict': quanto tensors, 'quanto_config': {...}}"
    with open(os.path.join(dst, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"  quanto-int4-pth: {os.path.getsize(os.path.join(dst, 'model.pth'))} bytes")


if __name__ == "__main__":
    main()
