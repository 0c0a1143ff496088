"""GGUF checkpoints from llama.cpp's own converter, and llama.cpp's logits for them.

Two steps, two venvs (tests/reference/regenerate_formats.sh runs both; for SEED_CASES,
converted from the seed models by gen_seeds.py, regenerate_seeds.sh runs step 2 with
`--logits seeds`):
  1. `gen_formats.py gguf` (.venv-formats): llama.cpp's convert_hf_to_gguf.py, taken from
     the llama.cpp that the pinned llama-cpp-python sdist vendors (requirements.txt;
     regenerate_formats.sh unpacks convert_hf_to_gguf.py, conversion/ and gguf-py/ into
     tests/reference/.cache/llama.cpp/), converts the float32 base Llama with
     --outtype f32 and --outtype q8_0, with that llama.cpp's own gguf-py. It runs in a
     child process so that its gguf-py, not the gguf wheel, is the one imported.
  2. `gen_formats_gguf.py --logits` (.venv-ref, llama-cpp-python): loads each GGUF and
     evaluates the 16 tokens in one batch (logits_all) -> logits.npy, reference.json.

One deviation from a plain `convert_hf_to_gguf.py` run: the converter names the BPE
pre-tokenizer by hashing the tokenization of a fixed text and refuses unknown hashes (a
new tokenizer is registered in convert_hf_to_gguf_update.py). The tokenizer here is
byte-level BPE with the GPT-2 split regex (pre_tokenizers.ByteLevel(use_regex=True)),
so the child process maps an unrecognized hash to "gpt-2" (what the converter writes for
openai-community/gpt2), llama.cpp's name for exactly that pre-tokenizer; everything else
is the converter's own code. Step 2 checks that llama.cpp tokenizes the reference text
to the same 16 ids as transformers.
"""
import json
import os
import subprocess
import sys

import numpy as np

import gen_formats_common as c
import gen_formats_decode as d

CONVERTER = os.path.join(c.ROOT, "tests", "reference", ".cache", "llama.cpp")
CASES = [("gguf-f32", "f32"), ("gguf-q8_0", "q8_0")]
# Converted from the seed models by gen_seeds.py (.venv-seeds: SmolLM3 needs a newer
# transformers than .venv-formats holds): (name, outtype, source directory, base model).
SEED_CASES = [("gguf-smollm3-f32", "f32", "smollm3-f32", "smollm3")]

CHILD = r"""
import os, runpy, sys
conv = sys.argv[1]
sys.path[:0] = [conv, os.path.join(conv, "gguf-py")]
import conversion.base as cb
orig = cb.TextModel.get_vocab_base_pre
def pre(self, tokenizer):
    try:
        return orig(self, tokenizer)
    except NotImplementedError:
        return "gpt-2"  # byte-level BPE with the GPT-2 regex (see gen_formats_gguf.py)
cb.TextModel.get_vocab_base_pre = pre
sys.argv = [os.path.join(conv, "convert_hf_to_gguf.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def gguf_path(name):
    return os.path.join(c.OUT, name, "model.gguf")


def convert(src_dir, name, outtype):
    """convert_hf_to_gguf.py src_dir -> tests/data/formats/<name>/model.gguf (a fresh
    directory), in a child process (see CHILD)."""
    script = os.path.join(CONVERTER, "convert_hf_to_gguf.py")
    if not os.path.exists(script):
        sys.exit(f"{script} is missing: tests/reference/llama_cpp_converter.sh unpacks it "
                 "from the pinned llama-cpp-python sdist")
    c.variant_dir(name)
    subprocess.run([sys.executable, "-c", CHILD, CONVERTER, src_dir,
                    "--outfile", gguf_path(name), "--outtype", outtype],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    """Step 1 (.venv-formats): convert."""
    c.tokens()
    c.dense_logits("llama")  # cached for step 2, which has no torch
    for name, outtype in CASES:
        convert(c.base_dir("llama"), name, outtype)
        print(f"  {name}: {os.path.getsize(gguf_path(name))} bytes; README decoding matches "
              f"(max rel err {check(name):.2g})", flush=True)


# GGUF tensor -> HF tensor of the base checkpoint (README "gguf-*").
GGUF_NAMES = {"token_embd": "model.embed_tokens", "output": "lm_head",
              "output_norm": "model.norm"}
GGUF_BLOCK = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
              "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
              "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def check(name, hf_dir=None, n_head=None, n_head_kv=None):
    """README layout vs the HF weights converted (by default the base Llama; tensor
    names, the Q/K row permutation) and, for Q8_0, vs gguf-py's own dequantize."""
    import gguf
    from safetensors.numpy import load_file
    if hf_dir is None:
        cfg = c.llama_config()
        hf_dir, n_head, n_head_kv = (c.base_dir("llama"), cfg.num_attention_heads,
                                     cfg.num_key_value_heads)
    hf = load_file(os.path.join(hf_dir, "model.safetensors"))
    worst = 0.0
    for t in gguf.GGUFReader(gguf_path(name)).tensors:
        stem, _, _ = t.name.rpartition(".")
        if stem.startswith("blk."):
            _, bid, part = stem.split(".")
            key = f"model.layers.{bid}.{GGUF_BLOCK[part]}.weight"
        else:
            key = GGUF_NAMES[stem] + ".weight"
        ref = hf[key]
        rows = ref.shape[0]
        cols = ref.shape[1] if ref.ndim == 2 else 1
        assert [int(x) for x in t.shape] == ([cols, rows] if ref.ndim == 2 else [rows]), t.name
        if t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
            w = d.gguf_q8_0(t.data, rows, cols)
            d.compare(t.name, w, gguf.quants.dequantize(t.data, t.tensor_type), rel=0)
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
            w = np.asarray(t.data, np.float32).reshape(ref.shape)
        if stem.endswith("attn_q"):
            w = d.gguf_unpermute(w, n_head)
        elif stem.endswith("attn_k"):
            w = d.gguf_unpermute(w, n_head_kv)
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            d.compare(t.name, w, ref, rel=0)
        else:  # Q8_0: |error| <= d / 2 per block, d = absmax / 127
            worst = max(worst, d.compare(t.name, w, ref, rel=1 / 127))
    return worst


def llama_cpp_logits(name, f32_kv=False):
    """llama.cpp's logits for the reference tokens on <name>/model.gguf (K/V cache in
    llama.cpp's default f16, or in f32 with f32_kv)."""
    from llama_cpp import GGML_TYPE_F32, Llama
    kv = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if f32_kv else {}
    llm = Llama(model_path=gguf_path(name), n_ctx=64, n_batch=64, n_ubatch=64,
                n_threads=1, n_threads_batch=1, logits_all=True, verbose=False, **kv)
    ids = c.tokens()
    lc_ids = llm.tokenize(c.TOKENS_TEXT.encode(), add_bos=False, special=False)
    assert lc_ids[:len(ids)] == ids, (lc_ids, ids)
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def logits(seeds_only=False):
    """Step 2 (.venv-ref): llama.cpp's logits, for CASES and SEED_CASES (only the latter
    with `--logits seeds`, as regenerate_seeds.sh runs it)."""
    with open(os.path.join(CONVERTER, "VERSION")) as f:
        converter = f.read().strip()
    forward = ("llama-cpp-python Llama(model.gguf, logits_all=True).eval(tokens): one batch "
               "of 16, no BOS added, 1 thread")
    notes = ("unrecognized BPE pre-tokenizer hash mapped to 'gpt-2'; llama.cpp tokenizes "
             "the reference text to the same ids")
    for name, outtype in [] if seeds_only else CASES:
        c.write_reference(os.path.join(c.OUT, name), "llama-cpp-python", llama_cpp_logits(name),
                          forward=forward,
                          converter=f"convert_hf_to_gguf.py --outtype {outtype} from the "
                                    f"llama.cpp vendored in {converter}",
                          notes=notes)
    for name, outtype, src, kind in SEED_CASES:
        if not os.path.exists(gguf_path(name)):
            sys.exit(f"{gguf_path(name)} is missing: tests/reference/regenerate_seeds.sh "
                     "smollm3_gguf converts it")
        # K/V in f32: with llama.cpp's default f16 cache these logits (up to ~46) move
        # by 1e-2 from transformers', which would hide a real difference.
        out = llama_cpp_logits(name, f32_kv=True)
        # The transformers logits of the checkpoint converted (gen_seeds.py).
        hf = np.load(os.path.join(c.OUT, src, "logits.npy"))
        c.write_reference(os.path.join(c.OUT, name), "llama-cpp-python", out, kind=kind,
                          forward=forward.replace("1 thread", "1 thread, type_k = type_v = "
                                                  "GGML_TYPE_F32"),
                          notes=notes, share_dense=False,
                          converter=f"convert_hf_to_gguf.py --outtype {outtype} of ../{src} "
                                    f"from the llama.cpp vendored in {converter}",
                          transformers_logits_file=f"../{src}/logits.npy",
                          max_abs_diff_vs_transformers=float(np.abs(out - hf).max()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--logits"]:
        logits(seeds_only=sys.argv[2:] == ["seeds"])
    else:
        main()
