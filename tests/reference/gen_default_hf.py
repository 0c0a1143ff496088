#!/usr/bin/env python3
"""Golden data for "the default model from GGUF and from a Hugging Face directory made
from it gives the same greedy output" (tests/integration/default_hf_test.cc).

    .venv-formats/bin/python tests/reference/gen_default_hf.py

(.venv-formats from tests/reference/regenerate_formats.sh: transformers, torch; .venv-ref
from tests/reference/regenerate.sh: llama-cpp-python. Needs the default model,
scripts/fetch_model.sh.) Makes the directory with tests/reference/make_hf_from_gguf.py
in a temporary directory, then writes tests/data/formats/default_hf/greedy.json:

  prompts[]: name, text (the chat one as transformers' apply_chat_template renders
    `messages`), ids (transformers' tokenizer from the made directory, special tokens
    parsed, no BOS as tokenizer_config says), llama_cpp_ids (llama.cpp on the GGUF; the
    generator fails unless equal), and two greedy continuations of up to MAX_NEW tokens,
    stopping after the first of stop_ids:
      transformers: the made directory in transformers, float32, eager attention, prompt
        in one forward then one token per call with the KV cache; per step id, second
        (runner-up) id and margin (top-1 minus top-2 logit)
      llama_cpp: llama.cpp on the original GGUF from the same prompt ids (Q4_1 weights,
        activations quantized to 8 bits for the dots, f16 KV cache), same fields
    and last_logits: max |transformers - llama.cpp| over the vocabulary at the prompt's
    last position (the sanity check that the made directory is the GGUF's model: the
    generator fails above LOGIT_BOUND).

Deterministic for the pinned peers (their versions are recorded in the file).
"""
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from gen_formats_common import sha256_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "formats", "default_hf", "greedy.json")
# llama-cpp-python's interpreter; INGOT_REF_PYTHON overrides (a worktree without its own .venv-ref).
REF_PYTHON = os.environ.get("INGOT_REF_PYTHON", os.path.join(ROOT, ".venv-ref", "bin", "python"))

MAX_NEW = 24
THREADS = 2
# <|endoftext|>, <|im_end|>: the GGUF's eos and the control token llama.cpp and ingot also
# end generation on.
STOP_IDS = [0, 2]
# transformers (exact float32 weights) against llama.cpp (8-bit activations in its Q4_1
# dots): tests/model/llama_test.cc allows 1.5 on llama.cpp's own forward pass; a wrong
# q/k un-permutation or tensor mapping is off by whole units everywhere.
LOGIT_BOUND = 1.5
# A step whose top-1/top-2 margin is below this is a near-tie: another float32
# evaluation of the same weights (other summation order) may pick the runner-up there.
TIE_MARGIN = 0.01

PROMPTS = [
    {"name": "plain", "text": "The capital of France is"},
    {"name": "code", "text": 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'},
    {"name": "chat", "messages": [{"role": "user", "content": "What is the boiling point of water at sea level?"}]},
]


def step_record(logits):
    order = np.argsort(-logits, kind="stable")[:2]
    return {"id": int(order[0]), "second": int(order[1]),
            "margin": round(float(logits[order[0]] - logits[order[1]]), 5)}


def llama_cpp_part(job_path):
    """In .venv-ref: llama.cpp's tokens, greedy steps and last-position logits."""
    import llama_cpp
    from llama_cpp import Llama

    with open(job_path) as f:
        job = json.load(f)
    llm = Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=THREADS,
                n_threads_batch=THREADS, seed=0, verbose=False)
    n_vocab = llm.n_vocab()
    out = {"peer": f"llama-cpp-python {llama_cpp.__version__}", "prompts": []}
    for i, p in enumerate(job["prompts"]):
        ids = llm.tokenize(p["text"].encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(p["ids"])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
        last = os.path.join(os.path.dirname(job_path), f"llama_cpp_last_{i}.npy")
        np.save(last, logits)
        steps = []
        for _ in range(MAX_NEW):
            steps.append(step_record(logits))
            if steps[-1]["id"] in STOP_IDS:
                break
            llm.eval([steps[-1]["id"]])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
        out["prompts"].append({"ids": ids, "steps": steps, "last_logits_file": last})
    print(json.dumps(out))


def transformers_greedy(model, torch, ids):
    steps = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        last = out.logits[0, -1].float().numpy().copy()
        logits = last
        for _ in range(MAX_NEW):
            steps.append(step_record(logits))
            if steps[-1]["id"] in STOP_IDS:
                break
            out = model(input_ids=torch.tensor([[steps[-1]["id"]]]), past_key_values=out.past_key_values,
                        use_cache=True)
            logits = out.logits[0, -1].float().numpy()
    return steps, last


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--llama-cpp":
        llama_cpp_part(sys.argv[2])
        return
    import safetensors
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="ingot-default-hf-") as tmp:
        made = os.path.join(tmp, "hf")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "make_hf_from_gguf.py"),
                        MODEL, made], check=True)
        made_sha = {f: sha256_file(os.path.join(made, f)) for f in sorted(os.listdir(made))}
        tok = AutoTokenizer.from_pretrained(made)
        model = AutoModelForCausalLM.from_pretrained(made, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
        model.eval()
        prompts = []
        for p in PROMPTS:
            q = {"name": p["name"]}
            if "messages" in p:
                q["messages"] = p["messages"]
                q["text"] = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
            else:
                q["text"] = p["text"]
            q["ids"] = tok(q["text"], add_special_tokens=True)["input_ids"]
            steps, last = transformers_greedy(model, torch, q["ids"])
            q["transformers"] = {"ids": [s["id"] for s in steps], "steps": steps}
            q["_last"] = last
            prompts.append(q)

        job = os.path.join(tmp, "job.json")
        with open(job, "w") as f:
            json.dump({"prompts": [{"text": q["text"], "ids": q["ids"]} for q in prompts]}, f)
        res = subprocess.run([REF_PYTHON, os.path.abspath(__file__), "--llama-cpp", job], check=True,
                             capture_output=True, text=True)
        lcpp = json.loads(res.stdout.strip().splitlines()[-1])
        for q, l in zip(prompts, lcpp["prompts"]):
            if l["ids"] != q["ids"]:
                sys.exit(f"{q['name']}: llama.cpp tokenizes {l['ids']}, transformers {q['ids']}")
            q["llama_cpp_ids"] = l["ids"]
            q["llama_cpp"] = {"ids": [s["id"] for s in l["steps"]], "steps": l["steps"]}
            diff = np.abs(q.pop("_last") - np.load(l["last_logits_file"]))
            q["last_logits"] = {"max_abs_diff_transformers_vs_llama_cpp": round(float(diff.max()), 4),
                                "mean_abs_diff": round(float(diff.mean()), 5)}
            if diff.max() > LOGIT_BOUND:
                sys.exit(f"{q['name']}: transformers and llama.cpp differ by {diff.max():.3f} in a logit "
                         f"(> {LOGIT_BOUND}): the made directory is not the GGUF's model")
            a, b = q["transformers"]["ids"], q["llama_cpp"]["ids"]
            agree = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            q["greedy_agreement_transformers_vs_llama_cpp"] = agree

    out = {
        "description": "The default model's GGUF turned into a Hugging Face directory by "
                       "tests/reference/make_hf_from_gguf.py; transformers' tokens and greedy "
                       "continuation from that directory, llama.cpp's from the GGUF. Made by "
                       "tests/reference/gen_default_hf.py.",
        "model": os.path.basename(MODEL),
        "model_sha256": sha256_file(MODEL),
        "made_dir_sha256": made_sha,
        "peers": {"transformers": transformers.__version__, "torch": torch.__version__,
                  "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
                  "gguf": importlib.metadata.version("gguf"), "llama_cpp": lcpp["peer"]},
        "settings": {"transformers": "float32, attn_implementation=eager, prompt in one forward, then one "
                                     "token per call with the KV cache",
                     "llama_cpp": f"n_threads={THREADS}, prompt in one batch, then one token per eval",
                     "max_new_tokens": MAX_NEW, "stop_ids": STOP_IDS, "threads": THREADS},
        "tie_margin": TIE_MARGIN,
        "tie_margin_note": "a step whose top-1/top-2 margin is below tie_margin is a near-tie: another "
                           "float32 evaluation of the same weights may pick the runner-up there and "
                           "continue differently; compare greedy ids up to the first such step",
        "logit_bound": LOGIT_BOUND,
        "prompts": prompts,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for q in prompts:
        print(f"{q['name']}: {len(q['ids'])} prompt ids, transformers {len(q['transformers']['ids'])} greedy "
              f"(min margin {min(s['margin'] for s in q['transformers']['steps']):.4f}), llama.cpp agrees on "
              f"{q['greedy_agreement_transformers_vs_llama_cpp']}, last logits max |d| "
              f"{q['last_logits']['max_abs_diff_transformers_vs_llama_cpp']}")
    print(OUT)


if __name__ == "__main__":
    main()
