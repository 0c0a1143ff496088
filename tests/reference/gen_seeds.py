"""Test vectors for the seed documents' own models and layouts, written by the peer
tools themselves (run through tests/reference/regenerate_seeds.sh, in .venv-seeds):

  smollm3-f32/   a tiny random SmolLM3ForCausalLM (4 layers, so layer 3 is a NoPE layer
                 under the default no_rope_layer_interval of 4; GQA; tied embeddings) saved
                 by transformers, with transformers' logits on the 16 reference tokens.
  torchao-*/     the tiny random Llama of tests/data/formats (base "llama"), quantized the
                 way the SmolLM3 seed pipeline does it (transformers' TorchAoConfig around
                 a torchao config, then save_pretrained), with torchao's own logits.

The tokenizer, the reference tokens and the Llama base come from gen_formats_common.py,
so these directories read like the other format vectors (reference.json, logits.npy);
the shared dense_logits-llama.npy is read, never rewritten, here.
"""
import json
import os
import sys

import numpy as np
import torch

import gen_formats_common as c

SMOLLM3_SEED = c.SEED + 3


def smollm3_model():
    from transformers import GenerationConfig, SmolLM3Config, SmolLM3ForCausalLM
    cfg = SmolLM3Config(vocab_size=c.VOCAB_SIZE, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                        rope_theta=50000.0, rms_norm_eps=1e-6, max_position_embeddings=256,
                        tie_word_embeddings=True, bos_token_id=0, eos_token_id=2,
                        pad_token_id=0, use_sliding_window=False)
    # A theta other than the 10000 loaders default to, so a missed key shows.
    assert cfg.rope_parameters["rope_theta"] == 50000.0, cfg.rope_parameters
    # transformers' default pattern: every 4th layer (index 3) without RoPE.
    assert list(cfg.no_rope_layers) == [1, 1, 1, 0], cfg.no_rope_layers
    model = SmolLM3ForCausalLM(cfg)
    c.init_weights(model, SMOLLM3_SEED)
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=2, pad_token_id=0)
    return model.eval()


def write_reference(dst, tool, logits, base, forward, notes=None):
    """gen_formats_common's, reading the committed dense logits of `base` (when it is a
    shared base) instead of recomputing them with this venv's transformers."""
    c.write_reference(dst, tool, logits, kind=base, forward=forward, notes=notes, share_dense=False)


def gen_smollm3():
    from transformers import AutoModelForCausalLM
    dst = c.variant_dir("smollm3-f32")
    smollm3_model().save_pretrained(dst)
    c.hf_tokenizer().save_pretrained(dst)
    back = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
    assert type(back).__name__ == "SmolLM3ForCausalLM"
    write_reference(dst, "transformers", c.hf_logits(back), "smollm3",
                    "transformers SmolLM3ForCausalLM forward in float32, loaded back from this directory",
                    notes="no_rope_layers [1, 1, 1, 0]: layer 3 attends without RoPE")


def gen_torchao():
    """The seed pipeline's int8 variants: transformers' TorchAoConfig quantizes the
    float32 Llama while loading it; save_pretrained writes safetensors (transformers 5
    flattens each Int8Tensor into _weight_qdata/_weight_scale/_weight_zero_point and
    names its class in the file's metadata). Logits: transformers + torchao's forward of
    the directory loaded back, in float32 (the dynamic config quantizes each token's
    activations to int8 there). torchao 0.18's int4 layouts cannot be made on a CPU
    (plain needs the CUDA-only mslk package, tile_packed_to_4d a CUDA device), so no int4
    vector is written here."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig
    for name, cfg, what in (("torchao-int8wo", Int8WeightOnlyConfig(), "Int8WeightOnlyConfig()"),
                            ("torchao-int8dq", Int8DynamicActivationInt8WeightConfig(),
                             "Int8DynamicActivationInt8WeightConfig()")):
        dst = c.variant_dir(name)
        model = AutoModelForCausalLM.from_pretrained(c.base_dir("llama"), dtype=torch.float32,
                                                     quantization_config=TorchAoConfig(cfg))
        model.save_pretrained(dst)
        c.hf_tokenizer().save_pretrained(dst)
        back = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
        w = back.model.layers[0].self_attn.q_proj.weight
        assert type(w).__name__ == "Int8Tensor", type(w)
        write_reference(dst, "torchao", c.hf_logits(back), "llama",
                        f"transformers {c.version('transformers')} + torchao forward in float32 of "
                        f"TorchAoConfig({what}), loaded back from this directory")


def gen_hf_cache():
    import gen_hf_cache
    gen_hf_cache.main()


FAMILIES = {"smollm3": gen_smollm3, "torchao": gen_torchao, "hf_cache": gen_hf_cache}


def main(argv):
    # The reference tokens must be the ones every other format vector uses.
    with open(os.path.join(c.OUT, "hf-f32", "reference.json")) as f:
        assert json.load(f)["tokens"] == c.tokens()
    for name in argv or list(FAMILIES):
        print(name, flush=True)
        FAMILIES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
