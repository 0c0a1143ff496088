"""Shared pieces of the checkpoint-format generators (gen_formats.py, gen_formats_*.py):
the tokenizer, the tiny random models, the fixed tokens and reference.json.

Everything runs on the CPU in .venv-formats (tests/reference/regenerate_formats.sh).
The base models are rebuilt from a seed every run and saved once, unquantized, under
tests/reference/.cache/formats/ (git-ignored); each tool starts from those directories
the way a user starts from a downloaded checkpoint.
"""
import hashlib
import importlib.metadata
import json
import os
import re
import shutil

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "formats")
CACHE = os.path.join(ROOT, "tests", "reference", ".cache", "formats")
CALIBRATION = os.path.join(ROOT, "engine", "quant", "data", "calibration.txt")

SEED = 20261123
# 256 byte tokens + 61 merges + 3 special tokens (ids 0..2).
VOCAB_SIZE = 320
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# The 16 reference tokens: the first 16 ids of this text under the tokenizer below.
TOKENS_TEXT = "The Sun warms the oceans, and the water rises into the air as vapor."
N_TOKENS = 16

# Random init scales (see init_weights): large enough that logits spread over a few
# units and attention is not uniform, so a wrong layout shows up in the logits.
EMBED_STD = 1.0
LINEAR_STD = 0.125
NORM_STD = 0.1
BIAS_STD = 0.1



def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version(pkg):
    return importlib.metadata.version(pkg)


def clean_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def variant_dir(name):
    return clean_dir(os.path.join(OUT, name))


# ------------------------------------------------------------------ tokenizer
def train_tokenizer():
    """Byte-level BPE (GPT-2 pre-tokenizer regex, no prefix space) on calibration.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    with open(CALIBRATION, encoding="utf-8") as f:
        text = f.read()
    tok.train_from_iterator([text], trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def hf_tokenizer():
    """The tokenizer as transformers saves it (tokenizer.json, tokenizer_config.json with
    the chat template, special_tokens_map.json)."""
    from transformers import PreTrainedTokenizerFast
    t = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(), bos_token="<|endoftext|>",
                                eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                unk_token=None, model_max_length=256)
    t.chat_template = CHAT_TEMPLATE
    return t


def reference_tokens(tokenizer):
    ids = tokenizer(TOKENS_TEXT, add_special_tokens=False)["input_ids"][:N_TOKENS]
    assert len(ids) == N_TOKENS
    return [int(i) for i in ids]


# ------------------------------------------------------------------ models
def llama_config(tie=False):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=16, rope_theta=10000.0, rms_norm_eps=1e-5,
                       max_position_embeddings=256, tie_word_embeddings=tie,
                       bos_token_id=0, eos_token_id=2, pad_token_id=0, hidden_act="silu",
                       attention_bias=False, mlp_bias=False, torch_dtype="float32")


def qwen2_config():
    from transformers import Qwen2Config
    return Qwen2Config(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256,
                       tie_word_embeddings=False, bos_token_id=0, eos_token_id=2,
                       use_sliding_window=False, torch_dtype="float32")


def init_weights(model, seed):
    """Re-draws every parameter from a seeded generator: norms 1 + N(0, 0.1) (so a loader
    that ignores them is caught), embeddings N(0, 1), linears N(0, 0.125), biases
    N(0, 0.1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1.0 + NORM_STD * r)
            elif "embed_tokens" in name:
                p.copy_(EMBED_STD * r)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * r)
            else:
                p.copy_(LINEAR_STD * r)
    return model


def build_model(kind):
    """kind: 'llama', 'llama-tied' or 'qwen2'; float32, eval mode, seeded weights."""
    from transformers import GenerationConfig, LlamaForCausalLM, Qwen2ForCausalLM
    if kind == "qwen2":
        model = Qwen2ForCausalLM(qwen2_config())
    else:
        model = LlamaForCausalLM(llama_config(tie=(kind == "llama-tied")))
    init_weights(model, SEED + {"llama": 0, "llama-tied": 1, "qwen2": 2}[kind])
    if kind == "llama-tied":
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=2, pad_token_id=0)
    return model.eval()


def base_dir(kind):
    """The unquantized float32 checkpoint of `kind` (built on first use)."""
    path = os.path.join(CACHE, "base-" + kind)
    if not os.path.exists(os.path.join(path, "config.json")):
        clean_dir(path)
        build_model(kind).save_pretrained(path)
        hf_tokenizer().save_pretrained(path)
    return path


def load_base(kind, dtype=None):
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(base_dir(kind),
                                                torch_dtype=dtype or torch.float32).eval()


def tokens():
    """The 16 reference ids (cached so that the llama.cpp step, run in .venv-ref without
    transformers, reads the same ones)."""
    path = os.path.join(CACHE, "tokens.json")
    if not os.path.exists(path):
        from transformers import AutoTokenizer
        ids = reference_tokens(AutoTokenizer.from_pretrained(base_dir("llama")))
        with open(path, "w") as f:
            json.dump(ids, f)
    with open(path) as f:
        return json.load(f)


def hf_logits(model, ids=None):
    import torch
    ids = tokens() if ids is None else ids
    dev = next(model.parameters()).device
    with torch.no_grad():
        out = model(torch.tensor([ids], device=dev), use_cache=False).logits[0]
    return out.float().cpu().numpy()


def dense_logits(kind):
    """The float32 base model's logits through transformers (cached like tokens())."""
    path = os.path.join(CACHE, f"dense_logits-{kind}.npy")
    if not os.path.exists(path):
        np.save(path, hf_logits(load_base(kind)))
    return np.load(path)


def save_tokenizer(dst, kind="llama"):
    """Tokenizer files as transformers writes them (for tools that write none)."""
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(base_dir(kind), f), os.path.join(dst, f))


def write_reference(dst, tool, logits, kind="llama", forward="", notes=None, share_dense=True, **extra):
    """reference.json + logits.npy (the tool's forward). The float32 base model's logits
    through transformers are shared by every variant of that base:
    tests/data/formats/dense_logits-<kind>.npy, named in reference.json. With
    share_dense=False (a generator running another transformers, e.g. gen_seeds.py) the
    committed dense logits are only read, when that base has them, never rewritten."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    assert logits.shape == (N_TOKENS, VOCAB_SIZE), logits.shape
    assert np.isfinite(logits).all()
    np.save(os.path.join(dst, "logits.npy"), logits)
    dense_name = f"dense_logits-{kind}.npy"
    dense_path = os.path.join(OUT, dense_name)
    dense = None
    if share_dense:
        dense = dense_logits(kind)
        np.save(dense_path, dense)
    elif os.path.exists(dense_path):
        dense = np.load(dense_path)
    ref = {"tool": tool, "version": version(tool), "tokens": tokens(),
           "logits_file": "logits.npy", "base_model": kind, "forward": forward}
    if dense is not None:
        ref["dense_logits_file"] = "../" + dense_name
        ref["max_abs_diff_vs_dense"] = float(np.abs(logits - dense).max())
        ref["argmax_agreement_vs_dense"] = float((logits.argmax(1) == dense.argmax(1)).mean())
    ref.update(extra)
    if notes:
        ref["notes"] = notes
    text = re.sub(r'"tokens": \[[^\]]*\]', '"tokens": ' + json.dumps(ref["tokens"]),
                  json.dumps(ref, indent=1))  # the ids on one line
    with open(os.path.join(dst, "reference.json"), "w") as f:
        f.write(text + "\n")
    if dense is not None:
        print(f"  {os.path.basename(dst)}: max |logits - dense| = "
              f"{ref['max_abs_diff_vs_dense']:.4g}, argmax agreement "
              f"{ref['argmax_agreement_vs_dense']:.3f}", flush=True)
    else:
        print(f"  {os.path.basename(dst)}: written (no shared dense logits)", flush=True)
