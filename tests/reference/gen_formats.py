#!/usr/bin/env python3
"""Checkpoints in every format ingot loads, written by the tools that define the formats,
with each tool's own logits on 16 fixed tokens: tests/data/formats/<variant>/ (see
tests/data/formats/README.md for the layouts). Run through
tests/reference/regenerate_formats.sh (it builds .venv-formats from
requirements-formats*.txt); everything runs on the CPU.

  gen_formats.py                 every family
  gen_formats.py hf bnb          only those families (hf bnb hqq gptq awq mlx quanto gguf)

The gguf family writes the .gguf files only; their logits come from llama-cpp-python in
.venv-ref (`.venv-ref/bin/python tests/reference/gen_formats_gguf.py --logits`, which
regenerate_formats.sh runs). Each quantized family also decodes its files with
gen_formats_decode.py (the layouts as tests/data/formats/README.md states them) and fails
if that disagrees with the tool's own dequantization.

The families live in gen_formats_<family>.py; gen_formats_common.py builds the tokenizer
(byte-level BPE trained on engine/quant/data/calibration.txt) and the seeded random
models, and writes reference.json / logits.npy / dense_logits.npy.
"""
import importlib
import logging
import os
import sys
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

FAMILIES = ["hf", "bnb", "hqq", "gptq", "awq", "mlx", "quanto", "gguf"]


def main(argv):
    import torch
    torch.set_num_threads(1)  # reproducible reductions
    families = argv or FAMILIES
    for fam in families:
        if fam not in FAMILIES:
            sys.exit(f"unknown family {fam!r}; expected some of {' '.join(FAMILIES)}")
    for fam in families:
        print(f"== {fam}", flush=True)
        importlib.import_module(f"gen_formats_{fam}").main()
        if fam == "quanto":  # the single-.pth layout, from the same quanto tensors
            importlib.import_module("gen_formats_quanto_pth").main()


if __name__ == "__main__":
    main(sys.argv[1:])
