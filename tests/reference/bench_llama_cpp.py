#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) speed on the default model, for comparison with ingot.

For n_threads in (1, 2): prefill of a 128-token prompt in one llama_decode batch
(tokens/s) and greedy decode of 64 tokens after it, one token per llama_decode call
(tokens/s; positions 128..191, argmax included). One warm-up, then --runs timed runs
(default 5); medians and every run are printed as JSON on stdout.

  .venv-ref/bin/python tests/reference/bench_llama_cpp.py [--runs 5] [--threads 1,2] [--model F.gguf]
(tests/reference/regenerate.sh installs .venv-ref.)
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PREFILL_TOKENS = 128
DECODE_TOKENS = 64

TEXT = (
    "The history of bread goes back at least 30,000 years. Around 10,000 BC, with the dawn "
    "of the Neolithic age and the spread of agriculture, grains became the mainstay of making "
    "bread. Yeast spores are ubiquitous, including on the surface of cereal grains, so any "
    "dough left to rest will become naturally leavened. There were multiple sources of "
    "leavening available for early bread. Airborne yeasts could be harnessed by leaving "
    "uncooked dough exposed to air for some time before cooking. Pliny the Elder reported that "
    "the Gauls and Iberians used the foam skimmed from beer to produce a lighter kind of bread "
    "than other peoples. Parts of the ancient world that drank wine instead of beer used a "
    "paste composed of grape juice and flour that was allowed to begin fermenting, or wheat "
    "bran steeped in wine, as a source for yeast."
)


def bench(model, n_threads, runs):
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_ubatch=512,
                n_threads=n_threads, n_threads_batch=n_threads, logits_all=False,
                verbose=False)
    toks = llm.tokenize(TEXT.encode("utf-8"), add_bos=True, special=False)
    assert len(toks) >= PREFILL_TOKENS, len(toks)
    toks = toks[:PREFILL_TOKENS]
    n_vocab = llm.n_vocab()

    def last_logits():  # logits_all=False: llama.cpp keeps only the last row
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    prefill, decode = [], []
    for r in range(runs + 1):  # run 0 is the warm-up
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        nxt = int(np.argmax(last_logits()))
        t2 = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            llm.eval([nxt])
            nxt = int(np.argmax(last_logits()))
        t3 = time.perf_counter()
        if r:
            prefill.append(PREFILL_TOKENS / (t1 - t0))
            decode.append(DECODE_TOKENS / (t3 - t2))
    return {
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 1),
        "prefill_runs": [round(x, 1) for x in prefill],
        "decode_runs": [round(x, 1) for x in decode],
    }


def requantize(src, dst, type_name):
    """llama.cpp's own quantizer (llama_model_quantize) from an already quantized file."""
    ftype = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
             "q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0, "q5_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1,
             "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[type_name]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed: {rc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--requantize", metavar="OUT.gguf",
                    help="first write the model requantized to --type with llama.cpp's quantizer")
    ap.add_argument("--type", default="q4_0", choices=["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
    a = ap.parse_args()
    if a.requantize:
        requantize(a.model, a.requantize, a.type)
        a.model = a.requantize
    out = {
        "peer": "llama-cpp-python " + llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "cpu": platform.processor() or platform.machine(),
        "model": os.path.relpath(a.model, ROOT),
        "prefill_tokens": PREFILL_TOKENS,
        "decode_tokens": DECODE_TOKENS,
        "runs": a.runs,
        "statistic": "median tokens/s over runs after one warm-up",
        "results": {},
    }
    for n in (int(x) for x in a.threads.split(",")):
        out["results"][f"threads_{n}"] = bench(a.model, n, a.runs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
