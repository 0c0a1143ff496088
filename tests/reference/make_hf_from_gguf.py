#!/usr/bin/env python3
"""A Hugging Face (transformers) directory made from a llama-architecture GGUF file.

    make_hf_from_gguf.py IN.gguf OUT_DIR

Writes OUT_DIR/ (created; files in it are overwritten):
  model.safetensors        every tensor dequantized to float32 by the gguf package
                           (gguf.quants.dequantize), named as transformers names them;
                           attn_q/attn_k rows put back from llama.cpp's interleaved rope
                           order into transformers' rotate-halves order; no lm_head when
                           the GGUF has no output.weight (tied embeddings)
  config.json              LlamaForCausalLM, every value from the GGUF metadata
  tokenizer.json           built with the `tokenizers` library: byte-level BPE from
                           tokenizer.ggml.tokens/merges, the pre-tokenizer llama.cpp uses
                           for tokenizer.ggml.pre, control tokens as special added tokens
  tokenizer_config.json    special tokens, add_bos/eos_token, chat_template
  generation_config.json   bos/eos/pad ids

Only the peers' own libraries: gguf, numpy, safetensors, tokenizers (pinned in
tests/reference/requirements-hf.txt, installed into .venv-hf by setup_hf_tools.sh), so
the C++ tests can make the directory at test time without torch. Refuses (exit 1, a
message naming the key or tensor) what it does not know how to convert rather than
writing a directory that loads differently from the GGUF.
"""
import json
import os
import sys
import time

import numpy as np
import gguf
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

# GGUF tensor name (per block: after "blk.N.") -> transformers name (after "model.layers.N.").
BLOCK_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
TOP_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# GGUF token types (llama.cpp's llama_token_type).
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4


def fail(msg):
    sys.exit(f"make_hf_from_gguf: {msg}")


class Meta:
    """Typed access to a GGUFReader's key/value pairs."""

    def __init__(self, reader, path):
        self.fields = reader.fields
        self.path = path

    def get(self, key, default=None, required=False):
        f = self.fields.get(key)
        if f is None:
            if required:
                fail(f"{self.path}: metadata key '{key}' is missing")
            return default
        return f.contents()


def float32_value(x):
    """A GGUF float32 as the shortest decimal that reads back as the same float32
    (1e-05, not 9.999999747378752e-06): what a config.json author writes."""
    return float(str(np.float32(x)))


def unpermute_rows(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute: GGUF row h*hd + 2i + j holds
    transformers row h*hd + j*hd/2 + i (rope pairs interleaved vs. halves). w: (rows, cols)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        fail(f"cannot un-permute {rows} rows into {n_head} heads")
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert_tensors(reader, meta, n_head, n_head_kv, n_layer):
    """{transformers name: float32 array} for every GGUF tensor."""
    out = {}
    for t in reader.tensors:
        name = t.name
        if name in TOP_TENSORS:
            hf = TOP_TENSORS[name]
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in BLOCK_TENSORS or not layer.isdigit() or int(layer) >= n_layer:
                fail(f"{meta.path}: tensor '{name}' has no transformers counterpart here")
            hf = f"model.layers.{layer}.{BLOCK_TENSORS[rest]}"
        else:
            # rope_freqs.weight (Llama 3.1 rope scaling) and other extras would change
            # the model if dropped.
            fail(f"{meta.path}: tensor '{name}' has no transformers counterpart here")
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        # numpy order is GGUF's ne reversed: (out, in) for matrices, as nn.Linear stores.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = w.reshape(shape)
        if name.endswith("attn_q.weight"):
            w = unpermute_rows(w, n_head)
        elif name.endswith("attn_k.weight"):
            w = unpermute_rows(w, n_head_kv)
        out[hf] = np.ascontiguousarray(w)
    return out


def tokenizer_parts(meta):
    model = meta.get("tokenizer.ggml.model", required=True)
    if model != "gpt2":
        fail(f"{meta.path}: tokenizer.ggml.model '{model}' is not supported (gpt2 byte-level BPE)")
    tokens = list(meta.get("tokenizer.ggml.tokens", required=True))
    types = [int(x) for x in meta.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))]
    merges = list(meta.get("tokenizer.ggml.merges", required=True))
    if len(types) != len(tokens):
        fail(f"{meta.path}: {len(types)} token types for {len(tokens)} tokens")
    return tokens, types, merges


def pre_tokenizer_for(pre, path):
    """The `tokenizers` pre-tokenizer equal to llama.cpp's split for tokenizer.ggml.pre
    (llama-vocab.cpp's regex_exprs for that pre type)."""
    # GPT-2's split regex (ByteLevel use_regex=True) is llama.cpp's default BPE split.
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre in ("gpt-2", "default"):
        return byte_level
    if pre == "smollm":
        # llama.cpp: "\p{N}" then the GPT-2 regex; HF SmolLM: digits one by one, then ByteLevel.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    fail(f"{path}: tokenizer.ggml.pre '{pre}' is not supported here (smollm, gpt-2, default)")


def build_tokenizer(meta, tokens, types, merges, add_bos, add_eos, bos, eos):
    vocab = {}
    for i, tok in enumerate(tokens):
        if tok in vocab:
            fail(f"{meta.path}: token {tok!r} appears twice (ids {vocab[tok]} and {i})")
        vocab[tok] = i
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            fail(f"{meta.path}: merge {m!r} is not 'a b'")
        pairs.append((parts[0], parts[1]))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs, dropout=None, continuing_subword_prefix="",
                              end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizer_for(meta.get("tokenizer.ggml.pre", "default"), meta.path)
    tk.decoder = decoders.ByteLevel()
    post = [processors.ByteLevel(trim_offsets=False)]
    if add_bos or add_eos:
        # As llama.cpp tokenizes: BOS before and EOS after each sequence, when asked.
        def seq(piece, type_id):
            return (([f"{tokens[bos]}:{type_id}"] if add_bos else []) + [f"{piece}:{type_id}"] +
                    ([f"{tokens[eos]}:{type_id}"] if add_eos else []))
        special = {tokens[i]: i for i in ([bos] if add_bos else []) + ([eos] if add_eos else [])}
        post.append(processors.TemplateProcessing(single=seq("$A", 0), pair=seq("$A", 0) + seq("$B", 1),
                                                  special_tokens=list(special.items())))
    tk.post_processor = post[0] if len(post) == 1 else processors.Sequence(post)
    # Control tokens are special (matched whole in text, skipped when decoding with
    # skip_special_tokens); user-defined ones are matched whole but decoded as text.
    added = []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED):
            added.append(AddedToken(tok, special=ty == TOKEN_CONTROL, normalized=False,
                                    single_word=False, lstrip=False, rstrip=False))
        elif ty != TOKEN_NORMAL:
            fail(f"{meta.path}: token {i} {tok!r} has type {ty}, which this converter does not map")
    tk.add_tokens(added)
    for a in added:
        if tk.token_to_id(a.content) != vocab[a.content]:
            fail(f"added token {a.content!r} did not keep its id {vocab[a.content]}")
    return tk


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out_dir = sys.argv[1], sys.argv[2]
    t0 = time.time()
    if not os.path.isfile(src):
        fail(f"{src}: no such file")
    reader = gguf.GGUFReader(src)
    meta = Meta(reader, src)
    arch = meta.get("general.architecture", required=True)
    if arch != "llama":
        fail(f"{src}: architecture '{arch}' is not supported (llama)")
    a = arch + "."
    n_layer = int(meta.get(a + "block_count", required=True))
    n_embd = int(meta.get(a + "embedding_length", required=True))
    n_head = int(meta.get(a + "attention.head_count", required=True))
    n_head_kv = int(meta.get(a + "attention.head_count_kv", n_head))
    head_dim = int(meta.get(a + "attention.key_length", n_embd // n_head))
    rope_dim = int(meta.get(a + "rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        fail(f"{src}: rope.dimension_count {rope_dim} != head dim {head_dim} (partial rope) is not supported")
    scaling = meta.get(a + "rope.scaling.type", "none")
    if scaling != "none":
        fail(f"{src}: {a}rope.scaling.type '{scaling}' is not supported")
    tokens, types, merges = tokenizer_parts(meta)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    vocab_size = int(embd.shape[1])
    if len(tokens) != vocab_size:
        fail(f"{src}: {len(tokens)} tokens but token_embd has {vocab_size} rows")
    bos = int(meta.get("tokenizer.ggml.bos_token_id", required=True))
    eos = int(meta.get("tokenizer.ggml.eos_token_id", required=True))
    pad = meta.get("tokenizer.ggml.padding_token_id")
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": n_embd,
        "intermediate_size": int(meta.get(a + "feed_forward_length", required=True)),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(meta.get(a + "context_length", required=True)),
        "rms_norm_eps": float32_value(meta.get(a + "attention.layer_norm_rms_epsilon", required=True)),
        "rope_theta": float32_value(meta.get(a + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if pad is not None:
        config["pad_token_id"] = int(pad)

    tensors = convert_tensors(reader, meta, n_head, n_head_kv, n_layer)
    tk = build_tokenizer(meta, tokens, types, merges, add_bos, add_eos, bos, eos)

    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    tk.save(os.path.join(out_dir, "tokenizer.json"))
    added_decoder = {
        str(i): {"content": tokens[i], "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": types[i] == TOKEN_CONTROL}
        for i in range(len(tokens)) if types[i] in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
    }
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "clean_up_tokenization_spaces": False,
        "model_max_length": config["max_position_embeddings"],
        "added_tokens_decoder": added_decoder,
    }
    if pad is not None:
        tok_config["pad_token"] = tokens[int(pad)]
    if unk is not None:
        tok_config["unk_token"] = tokens[int(unk)]
    template = meta.get("tokenizer.chat_template")
    if template is not None:
        tok_config["chat_template"] = template
    gen_config = {"bos_token_id": bos, "eos_token_id": eos}
    if pad is not None:
        gen_config["pad_token_id"] = int(pad)
    for name, obj in (("config.json", config), ("tokenizer_config.json", tok_config),
                      ("generation_config.json", gen_config)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    n_params = sum(w.size for w in tensors.values())
    print(f"make_hf_from_gguf: {src} -> {out_dir}: {len(tensors)} tensors, {n_params} parameters "
          f"(float32), tied={tied}, pre={meta.get('tokenizer.ggml.pre', 'default')}, "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
