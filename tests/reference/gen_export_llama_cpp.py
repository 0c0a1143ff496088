#!/usr/bin/env python3
"""llama.cpp on a GGUF that ingot exported: the golden greedy tokens for
tests/quant/checkpoint_test.cc (CheckpointExport.LlamaCppAgreesOnTheExport).

ingot writes the file (the test does it too, deterministically):
  build/bin/checkpoint_test --gtest_filter='CheckpointExport.GgufRoundTrip*'
  -> $TMPDIR/export_hf-f32.gguf (gtest's TempDir, /tmp/ by default)
then:
  .venv-ref/bin/python tests/reference/gen_export_llama_cpp.py /tmp/export_hf-f32.gguf
writes tests/data/formats/export/llama_cpp_greedy.json: llama.cpp's tokenization of the
prompt and 16 greedy tokens after it, read from the file ingot wrote.
"""
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PROMPT = "The cat sat on"


def main():
    path = sys.argv[1]
    llm = Llama(model_path=path, n_ctx=128, verbose=False, n_threads=1)
    toks = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
    llm.eval(toks)
    greedy = []
    for _ in range(16):
        nxt = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))
        greedy.append(nxt)
        llm.eval([nxt])
    out = {"peer": "llama-cpp-python " + llama_cpp.__version__, "source": "ingot ExportGguf of tests/data/formats/hf-f32",
           "prompt": PROMPT, "prompt_tokens": toks, "greedy": greedy}
    dst = os.path.join(ROOT, "tests", "data", "formats", "export", "llama_cpp_greedy.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
    print(dst)


if __name__ == "__main__":
    main()
