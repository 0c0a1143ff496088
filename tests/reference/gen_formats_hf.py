"""Unquantized transformers checkpoints: save_pretrained in each dtype and container
(hf-f32, hf-f16, hf-bf16, hf-sharded, hf-bin), a Qwen2 model with attention biases
(qwen2-f32) and a tied-embedding Llama (llama-tied). The logits are transformers'
forward of the checkpoint loaded back from the variant directory, in its own dtype."""
import json
import os

import torch

import gen_formats_common as c


def load_variant(path, dtype):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype).eval()


def save_dense(name, kind, dtype, forward, **save_kwargs):
    dst = c.variant_dir(name)
    model = c.load_base(kind).to(dtype)
    model.save_pretrained(dst, **save_kwargs)
    c.save_tokenizer(dst, kind)
    logits = c.hf_logits(load_variant(dst, dtype))
    c.write_reference(dst, "transformers", logits, kind=kind, forward=forward)
    return dst


def main():
    fwd = "transformers {} forward in {}, loaded back from this directory"
    save_dense("hf-f32", "llama", torch.float32, fwd.format("LlamaForCausalLM", "float32"))
    save_dense("hf-f16", "llama", torch.float16, fwd.format("LlamaForCausalLM", "float16"))
    save_dense("hf-bf16", "llama", torch.bfloat16, fwd.format("LlamaForCausalLM", "bfloat16"))
    dst = save_dense("hf-sharded", "llama", torch.float32,
                     fwd.format("LlamaForCausalLM", "float32"), max_shard_size="200KB")
    with open(os.path.join(dst, "model.safetensors.index.json")) as f:
        shards = set(json.load(f)["weight_map"].values())
    assert len(shards) == 3, shards
    save_dense("hf-bin", "llama", torch.float16, fwd.format("LlamaForCausalLM", "float16"),
               safe_serialization=False)
    save_dense("qwen2-f32", "qwen2", torch.float32, fwd.format("Qwen2ForCausalLM", "float32"))
    save_dense("llama-tied", "llama-tied", torch.float32,
               fwd.format("LlamaForCausalLM (tie_word_embeddings)", "float32"))


if __name__ == "__main__":
    main()
