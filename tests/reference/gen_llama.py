#!/usr/bin/env python3
"""Golden forward-pass data from llama.cpp (llama-cpp-python) for the default model.

Writes tests/data/llama/:
  logits.json      prompts, llama.cpp token ids, top-32 (id, logit) at every position
  logits_last.f16  the full logits vector at the last position of each logits.json
                   prompt: raw little-endian IEEE float16, shape [n_prompts, n_vocab],
                   row i = prompts[i]
  greedy.json      greedy (argmax) generations of up to 48 tokens, with the top-1 minus
                   top-2 logit margin at every step
Both JSONs also carry peer checks: llama.cpp one-batch vs one-token-per-call logits, and
llama.cpp vs our own exact float64 forward pass on the dequantized weights (the scale of
tolerances a test against this data needs).

Run through tests/reference/regenerate.sh llama (it installs the pinned peers into
.venv-ref and fetches the model). Deterministic: same build, same bytes.
"""
import json
import os
import platform
import sys
import time

import numpy as np

import llama_cpp
from llama_cpp import Llama

from gen_formats_common import sha256_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "llama")

N_CTX = 2048
N_BATCH = 512  # >= every prompt here, so a prompt is evaluated as one batch
N_THREADS = 2
TOP_K = 32
GREEDY_MAX_NEW = 48
STOP_IDS = [0, 2]  # <|endoftext|>, <|im_end|>
# Suggested threshold for tests: where llama.cpp's own top-1/top-2 margin is below it,
# a different but equally valid implementation may pick the other token, so greedy
# comparisons stop at the first such step.
TIE_MARGIN = 0.5

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(messages, add_generation_prompt=True):
    """ChatML as the model's own template renders it (default system prompt included
    when the conversation has none)."""
    if messages[0]["role"] != "system":
        messages = [{"role": "system", "content": DEFAULT_SYSTEM}] + messages
    s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        s += "<|im_start|>assistant\n"
    return s


CHAT_CHECKS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
     {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}],
]

LOGITS_PROMPTS = [
    ("plain", "The capital of France is"),
    ("chat", chatml([{"role": "user", "content": "What is the boiling point of water at sea level?"}])),
    ("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n'
             "        return n\n    return"),
    ("paragraph",
     "The history of bread goes back at least 30,000 years. Around 10,000 BC, with the dawn "
     "of the Neolithic age and the spread of agriculture, grains became the mainstay of "
     "making bread. Yeast spores are ubiquitous, including on the surface of cereal grains, "
     "so any dough left to rest will become naturally leavened. There were multiple sources "
     "of leavening available for early bread; airborne yeasts could be harnessed by leaving "
     "uncooked dough exposed to air for some time before cooking, and the Gauls used the foam "
     "skimmed from beer"),
]

GREEDY_PROMPTS = [
    ("raw_story", "Once upon a time, in a small village by the sea,"),
    ("raw_facts", "The three primary colors are"),
    ("raw_code", "# Python function that reverses a string\ndef reverse_string(s):"),
    ("raw_list", "Here is a list of the planets in our solar system:\n1."),
    ("chat_capital", chatml([{"role": "user", "content": "What is the capital of France?"}])),
    ("chat_haiku", chatml([{"role": "user", "content": "Write a haiku about the ocean."}])),
    ("chat_system", chatml([
        {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
        {"role": "user", "content": "Why is the sky blue?"}])),
    ("chat_multiturn", chatml([
        {"role": "user", "content": "Hi! What's 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And what is that times 10?"}])),
    ("raw_recipe", "To make a simple tomato soup, you will need"),
    ("raw_history", "The Roman Empire was"),
    ("raw_science", "Photosynthesis is the process by which"),
    ("raw_unicode", "Café, naïve, 東京 and emoji 🙂: a short note on text encoding.\n"),
    ("chat_explain", chatml([{"role": "user", "content": "Explain what a computer program is."}])),
    ("chat_list", chatml([{"role": "user", "content": "Give me three tips for learning to code."}])),
    ("raw_weather", "The weather forecast for tomorrow says"),
    ("raw_letter", "Dear Sir or Madam,\n\nI am writing to"),
    ("chat_translate", chatml([{"role": "user", "content": "Translate 'good morning' into Spanish."}])),
    ("chat_math", chatml([{"role": "user", "content": "What is 12 times 12?"}])),
]


def r4(x):
    return round(float(x), 4)


def top_k(logits, k):
    # Descending logit, ties by ascending id (stable sort on -logit).
    idx = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), r4(logits[i])] for i in idx]


def margin_top2(logits):
    idx = np.argsort(-logits, kind="stable")[:2]
    return int(idx[0]), int(idx[1]), float(logits[idx[0]] - logits[idx[1]])


class ExactForward:
    """Our own float64 forward pass over the gguf package's dequantized weights (no
    activation quantization, float64 KV): measures how far llama.cpp itself is from exact
    arithmetic on the same weights, which sets the scale of test tolerances. Only summary
    statistics are written."""

    def __init__(self, path):
        from gguf import GGUFReader
        from gguf.quants import dequantize
        r = GGUFReader(path)
        f = lambda k: r.fields[k].contents()
        self.n_layer = f("llama.block_count")
        self.n_head = f("llama.attention.head_count")
        self.n_kv = f("llama.attention.head_count_kv")
        self.d = f("llama.embedding_length") // self.n_head
        self.eps = f("llama.attention.layer_norm_rms_epsilon")
        self.theta = f("llama.rope.freq_base")
        self.w = {}
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape)]
            self.w[t.name] = np.asarray(dequantize(t.data, t.tensor_type),
                                        dtype=np.float64).reshape(shape)
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def _rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):  # llama.cpp NORM mode: rotate adjacent pairs (x0, x1)
        inv = self.theta ** (-np.arange(0, self.d, 2) / self.d)
        a = pos[:, None, None] * inv[None, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = x0 * np.cos(a) - x1 * np.sin(a)
        y[..., 1::2] = x0 * np.sin(a) + x1 * np.cos(a)
        return y

    def logits(self, toks):
        T, H, KV, D, w = len(toks), self.n_head, self.n_kv, self.d, self.w
        x = w["token_embd.weight"][toks]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self._rms(x, w[p + "attn_norm.weight"])
            q = self._rope((h @ w[p + "attn_q.weight"].T).reshape(T, H, D), pos)
            k = self._rope((h @ w[p + "attn_k.weight"].T).reshape(T, KV, D), pos)
            v = (h @ w[p + "attn_v.weight"].T).reshape(T, KV, D)
            o = np.empty((T, H, D))
            for hh in range(H):
                kv = hh // (H // KV)
                sc = q[:, hh] @ k[:, kv].T / np.sqrt(D) + mask
                sc = np.exp(sc - sc.max(1, keepdims=True))
                o[:, hh] = (sc / sc.sum(1, keepdims=True)) @ v[:, kv]
            x = x + o.reshape(T, H * D) @ w[p + "attn_output.weight"].T
            h = self._rms(x, w[p + "ffn_norm.weight"])
            g = h @ w[p + "ffn_gate.weight"].T
            x = x + (g / (1 + np.exp(-g)) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        return self._rms(x, w["output_norm.weight"]) @ self.out.T


def build_info():
    info = {"llama_cpp_python": llama_cpp.__version__}
    try:
        info["system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    except Exception as e:  # pragma: no cover
        info["system_info"] = f"unavailable: {e}"
    # No build number or commit is exposed; the vendored libraries' versions are.
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    if os.path.isdir(libdir):
        info["libs"] = sorted(n for n in os.listdir(libdir) if n.count(".") >= 4)
    info["build"] = "pip install from sdist, default CMake options (GGML_NATIVE: -march=native)"
    info["python"] = platform.python_version()
    info["machine"] = platform.machine()
    return info


def main():
    if not os.path.exists(MODEL):
        sys.exit(f"gen_llama: {MODEL} missing; run scripts/fetch_model.sh")
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()

    llm = Llama(model_path=MODEL, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH,
                n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
                seed=0, verbose=False)
    n_vocab = llm.n_vocab()
    meta = llm.metadata
    bos = llm.token_bos()
    eos = llm.token_eos()

    # Our ChatML strings must be what the model's own template renders.
    import jinja2
    tmpl = jinja2.Environment().from_string(meta["tokenizer.chat_template"])
    for msgs in CHAT_CHECKS:
        want = tmpl.render(messages=msgs, add_generation_prompt=True)
        assert chatml(msgs) == want, (chatml(msgs), want)

    def tokenize(text):
        # add_bos=True lets llama.cpp add BOS only if the model asks for it
        # (tokenizer.ggml.add_bos_token); special=True parses <|im_start|> etc.
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def prefill(tokens):
        assert len(tokens) <= N_BATCH
        llm.reset()
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)

    common = {
        "generator": "tests/reference/gen_llama.py",
        "peer": build_info(),
        "model": {
            "path": "models/SmolLM2-135M-Instruct.Q4_1.gguf",
            "sha256": sha256_file(MODEL),
            "n_vocab": n_vocab,
            "bos_id": bos,
            "eos_id": eos,
            "add_bos_token_metadata": str(meta.get("tokenizer.ggml.add_bos_token")).lower() == "true",
        },
        "settings": {
            "n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_BATCH,
            "n_threads": N_THREADS, "n_threads_batch": N_THREADS, "logits_all": True,
            "kv_cache_type": "f16 (llama.cpp default)", "flash_attn": False,
            "tokenize": "llama_tokenize(add_special=True, parse_special=True)",
            "prompt_evaluation": "whole prompt in one llama_decode batch",
        },
    }

    # ---- logits.json + logits_last.f16 -------------------------------------------
    prompts_out = []
    last_rows = []
    for name, text in LOGITS_PROMPTS:
        toks = tokenize(text)
        logits = prefill(toks)
        prompts_out.append({
            "name": name,
            "text": text,
            "tokens": [int(t) for t in toks],
            "bos_added": len(toks) > len(llm.tokenize(text.encode("utf-8"), add_bos=False,
                                                      special=True)),
            "top_k": [top_k(row, TOP_K) for row in logits],
        })
        last_rows.append(logits[-1].astype(np.float16))
    last = np.stack(last_rows).astype("<f2")
    last_path = os.path.join(OUT, "logits_last.f16")
    last.tofile(last_path)

    # How good is the peer itself? Per prompt: the one-batch logits against (a) the same
    # prompt fed one token per decode call (another matmul/attention path inside
    # llama.cpp) and (b) our exact float64 forward pass on the dequantized weights.
    exact = ExactForward(MODEL)

    def compare(a, b):
        d = np.abs(a - b)
        return {"max_abs_diff": r4(d.max()), "mean_abs_diff": r4(d.mean()),
                "argmax_agree": r4((a.argmax(1) == b.argmax(1)).mean())}

    checks = []
    for p in prompts_out:
        toks = p["tokens"]
        batch = prefill(toks)
        llm.reset()
        for t in toks:
            llm.eval([t])
        step = np.array(llm.scores[: len(toks)], dtype=np.float32)
        checks.append({"name": p["name"], "batch_vs_one_token_calls": compare(batch, step),
                       "batch_vs_exact_f64": compare(batch, exact.logits(toks))})

    logits_doc = dict(common)
    logits_doc.update({
        "layout": {
            "prompts[i].tokens": "llama.cpp token ids of the prompt (no BOS: the model sets add_bos_token false)",
            "prompts[i].top_k[p]": f"top-{TOP_K} [token_id, logit] after position p (predicting token p+1), "
                                   "logit descending, ties by ascending id, logits rounded to 4 decimals",
            "logits_last_file": "tests/data/llama/logits_last.f16: raw little-endian IEEE float16, "
                                "shape [len(prompts), n_vocab], row i = full logits at the last "
                                "position of prompts[i]",
        },
        "top_k": TOP_K,
        "logits_last_file": "logits_last.f16",
        "logits_last_sha256": sha256_file(last_path),
        "logits_last_shape": [len(LOGITS_PROMPTS), n_vocab],
        "peer_checks": {
            "what": "|logit| differences over every position and the whole vocab of each "
                    "prompt, and the fraction of positions whose argmax agrees: the top_k "
                    "data (one batch) vs the same prompt one token per llama_decode call, and "
                    "vs an exact float64 forward pass on the gguf package's dequantized weights "
                    "(llama.cpp quantizes activations to 8 bits for its Q4_1/Q8_0 dot products "
                    "and keeps K/V in f16, so a float32 engine differs from it by about this much)",
            "prompts": checks,
        },
        "prompts": prompts_out,
    })
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump(logits_doc, f, separators=(",", ":"))
        f.write("\n")

    # ---- greedy.json -------------------------------------------------------------
    gens = []
    for name, text in GREEDY_PROMPTS:
        toks = tokenize(text)
        prefill(toks)
        steps = []
        finish = "length"
        for _ in range(GREEDY_MAX_NEW):
            row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            t1, t2, m = margin_top2(row)
            steps.append({"id": t1, "margin": r4(m), "logit": r4(row[t1]), "second_id": t2})
            if t1 in STOP_IDS:
                finish = "stop"
                break
            llm.eval([t1])
        out_ids = [s["id"] for s in steps]
        gens.append({
            "name": name,
            "prompt": text,
            "prompt_tokens": [int(t) for t in toks],
            "generated": out_ids,
            "text": llm.detokenize([i for i in out_ids if i not in STOP_IDS],
                                   special=True).decode("utf-8", errors="replace"),
            "finish": finish,
            "min_margin": min(s["margin"] for s in steps),
            "steps": steps,
        })

    # Teacher-forced exact float64 check of every greedy step: how much llama.cpp's
    # top-1/top-2 margin is off, and the margins at which the exact argmax differs.
    m_err, disagree = [], []
    for g in gens:
        seq = g["prompt_tokens"] + g["generated"][:-1]
        rows = exact.logits(seq)[len(g["prompt_tokens"]) - 1:]
        for j, (st, row) in enumerate(zip(g["steps"], rows)):
            m_err.append(abs(float(row[st["id"]] - row[st["second_id"]]) - st["margin"]))
            if int(row.argmax()) != st["id"]:
                disagree.append({"name": g["name"], "step": j, "margin": st["margin"],
                                 "exact_argmax": int(row.argmax())})
    tf_check = {
        "what": "teacher-forced exact float64 forward pass (dequantized weights) over every "
                "step: |exact margin - llama.cpp margin| for llama.cpp's top-2 pair, and the "
                "steps where the exact argmax differs from llama.cpp's choice",
        "steps": len(m_err),
        "margin_error": {"median": r4(np.median(m_err)), "p95": r4(np.percentile(m_err, 95)),
                         "max": r4(max(m_err))},
        "argmax_disagreements": disagree,
    }

    greedy_doc = dict(common)
    greedy_doc.update({
        "layout": {
            "generations[i].generated": "token ids chosen by argmax (lowest id on an exact tie), "
                                        "including the stop token when one was chosen",
            "generations[i].steps[j]": "{id: chosen token, margin: top-1 minus top-2 logit, "
                                       "logit: top-1 logit, second_id: runner-up token}",
            "finish": "'stop' (a stop id was chosen; it is the last entry) or 'length'",
        },
        "sampling": "greedy argmax over raw logits: temperature 0, no repetition penalty, "
                    "prompt prefilled in one batch then one token per decode call",
        "max_new_tokens": GREEDY_MAX_NEW,
        "stop_ids": STOP_IDS,
        "tie_margin": TIE_MARGIN,
        "tie_margin_note": "two ways to use it. Free-running: compare generated ids only "
                           "before the first step whose margin < tie_margin (past it llama.cpp "
                           "is near a tie and an equally valid engine may go elsewhere). "
                           "Teacher-forced (recommended, covers every step): feed "
                           "prompt_tokens + generated[:j] and require the engine's argmax to be "
                           "id, or id/second_id where margin < tie_margin",
        "peer_check": tf_check,
        "generations": gens,
    })
    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump(greedy_doc, f, indent=None, separators=(",", ":"))
        f.write("\n")

    sizes = {n: os.path.getsize(os.path.join(OUT, n)) for n in sorted(os.listdir(OUT))}
    print(f"gen_llama: wrote {OUT} {sizes} in {time.time() - t0:.1f}s")
    for c in checks:
        print(f"  {c['name']}: {c}")
    print(f"  greedy teacher-forced vs exact: {tf_check['margin_error']}, "
          f"disagreements at margins {[d['margin'] for d in disagree]}")


if __name__ == "__main__":
    main()
