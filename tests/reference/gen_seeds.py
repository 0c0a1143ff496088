"""Test vectors for the seed documents' own models and layouts, written by the peer
tools themselves (run through tests/reference/regenerate_seeds.sh, in .venv-seeds):

  smollm3-f32/   a tiny random SmolLM3ForCausalLM (4 layers, so layer 3 is a NoPE layer
                 under the default no_rope_layer_interval of 4; GQA; tied embeddings) saved
                 by transformers, with transformers' logits on the 16 reference tokens.
  gguf-smollm3-f32/  smollm3-f32 converted by llama.cpp's own convert_hf_to_gguf.py
                 (--outtype f32; the llama.cpp vendored in the pinned llama-cpp-python,
                 unpacked by llama_cpp_converter.sh), checked tensor by tensor against the
                 safetensors; llama.cpp's logits for it come from `gen_formats_gguf.py
                 --logits` in .venv-ref (regenerate_seeds.sh runs both).
  torchao-*/     the tiny random Llama of tests/data/formats (base "llama"), quantized the
                 way the SmolLM3 seed pipeline does it (transformers' TorchAoConfig around
                 a torchao config, then save_pretrained), with torchao's own logits.
                 torchao-int4-g32/ is torchao's CPU int4 form, which save_pretrained
                 cannot write: config.json + torch.save of the state dict (see
                 gen_torchao_int4); torchao-int4-pack.npz is ATen's int4 packing of fixed
                 codes under each CPU capability.

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


def write_reference(dst, tool, logits, base, forward, notes=None, **extra):
    """gen_formats_common's, reading the committed dense logits of `base` (when it is a
    shared base) instead of recomputing them with this venv's transformers."""
    c.write_reference(dst, tool, logits, kind=base, forward=forward, notes=notes, share_dense=False,
                      **extra)


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
    activations to int8 there). Int4 is gen_torchao_int4's (its CPU form is another
    config and cannot go through save_pretrained)."""
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
        if name == "torchao-int8wo":
            pickled_variant(model, name + "-bin", what)



# Rows of the int4 unpacking goldens (tests/data/formats/torchao-int4-pack.npz): AVX-512
# packs full blocks of 64 rows, AVX2 of 32, and either packs a shorter tail (80 = 64 + 16,
# 48 < 64) pairwise as the plain form does.
INT4_PACK_SHAPES = ((80, 64), (48, 32))
INT4_CAPABILITIES = ("default", "avx2", "avx512")
# The capability the int4 model vector is packed under (recorded in its reference.json).
INT4_MODEL_CAPABILITY = "avx512"


def _int4_subprocess(capability, *args):
    """Runs this script under ATEN_CPU_CAPABILITY=capability: ATen picks its int4 packing
    once per process, from the CPU (or that variable, which can only lower it)."""
    import subprocess
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, check=True)


def _check_capability(want):
    got = torch.backends.cpu.get_cpu_capability()
    assert got.lower() == want, (f"ATEN_CPU_CAPABILITY={want} gave {got}: regenerating the "
                                 "torchao int4 vectors needs a CPU with AVX-512 (F/BW/VL/DQ)")


def gen_torchao_int4():
    """torchao 0.18's only int4 weight form made on a CPU: PrototypeInt4WeightOnlyConfig
    (torchao.prototype.quantization.int4) -> Int4OpaqueTensor, asymmetric groups with a
    float zero (tinygemm's: w = (q - 8) * scale + zero), codes packed by ATen's
    _convert_weight_to_int4pack_for_cpu. Int4WeightOnlyConfig itself makes none on a CPU
    (its default "plain" packing needs the CUDA-only mslk package, "tile_packed_to_4d" a
    CUDA device, "plain_int32" an XPU or NPU, "preshuffled" mslk).

    Int4OpaqueTensor cannot be saved by save_pretrained (transformers 5.25 writes only
    safetensors, and torchao's flatten_tensor_state_dict refuses the class), and
    from_pretrained cannot read its config back (config_from_dict does not look in
    torchao.prototype.quantization.int4). So the directory is what a user does instead:
    config.json (with transformers' quantization_config) + torch.save of the state dict
    (pytorch_model.bin; the tensor pickles as _rebuild_wrapper_subclass + its attribute
    dict), loaded back with torch.load(weights_only=True) and load_state_dict(assign=True).

    ATen packs the codes differently per CPU capability (AVX-512: 64-row blocks, AVX2:
    32-row blocks, otherwise pairs of rows), and the file does not record which: the
    model vectors are packed under INT4_MODEL_CAPABILITY (in reference.json), and
    torchao-int4-pack.npz holds ATen's packing of fixed codes under each capability.
    Vectors: torchao-int4-g32 (TINYGEMM qparams, with torchao's dequantized weights) and
    torchao-int4-g64-hqq (HQQ's qparams, the same tensor and kernel)."""
    pack = {}
    for cap in INT4_CAPABILITIES:
        out = os.path.join(c.CACHE, f"int4-pack-{cap}.npz")
        _int4_subprocess(cap, "--int4-pack", out)
        for k, v in np.load(out).items():
            pack[k if k.startswith("codes") else f"{cap}_{k}"] = v
    np.savez(os.path.join(c.OUT, "torchao-int4-pack.npz"), **pack)
    _int4_subprocess(INT4_MODEL_CAPABILITY, "--int4-model")


def _int4_pack(out):
    cap = os.environ["ATEN_CPU_CAPABILITY"]
    _check_capability(cap)
    g = torch.Generator().manual_seed(c.SEED + 4)
    arrays = {}
    for n, k in INT4_PACK_SHAPES:
        q = torch.randint(0, 16, (n, k), generator=g, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        assert packed.shape == (n, k // 2) and packed.dtype == torch.uint8, packed.shape
        arrays[f"codes_{n}x{k}"] = q.numpy().astype(np.uint8)
        arrays[f"packed_{n}x{k}"] = packed.numpy()
    np.savez(out, **arrays)


def _int4_model():
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm
    from transformers import AutoModelForCausalLM, TorchAoConfig
    _check_capability(INT4_MODEL_CAPABILITY)
    group = 32
    what = f"PrototypeInt4WeightOnlyConfig(group_size={group})"
    model = AutoModelForCausalLM.from_pretrained(
        c.base_dir("llama"), dtype=torch.float32,
        quantization_config=TorchAoConfig(PrototypeInt4WeightOnlyConfig(group_size=group)))
    dst = os.path.join(c.OUT, f"torchao-int4-g{group}")
    back = pickled_variant(model, f"torchao-int4-g{group}", what,
                           notes="dequantized.npz: layer 0's q/k/gate/down weights as torchao's "
                                 "CPU kernel (_weight_int4pack_mm_for_cpu on the identity) "
                                 "computes them",
                           aten_cpu_capability=torch.backends.cpu.get_cpu_capability())
    # torchao's own dequantization: its CPU kernel applied to the identity.
    deq = {}
    for name, mod in back.named_modules():
        w = getattr(mod, "weight", None)
        if type(w).__name__ != "Int4OpaqueTensor":
            continue
        n, k = w.shape
        assert w.block_size == [1, group] and w.qdata.shape == (n, k // 2), (name, w.qdata.shape)
        assert w.scale_and_zero.shape == (k // group, n, 2), (name, w.scale_and_zero.shape)
        eye = torch.eye(k, dtype=torch.float32)
        wt = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, w.qdata, group, w.scale_and_zero)
        deq[name] = wt.t().contiguous().numpy()
        assert np.array_equal(deq[name], torch.nn.functional.linear(eye, w).t().numpy()), name
    assert len(deq) == 7 * back.config.num_hidden_layers, sorted(deq)
    # 64 rows (one AVX-512 block), 32 (a short one), 128 (two), 128 inputs.
    keep = ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.down_proj")
    np.savez(os.path.join(dst, "dequantized.npz"),
             **{f"model.layers.0.{m}": deq[f"model.layers.0.{m}"] for m in keep})
    # HQQ's qparams in the same tensor: scale and zero come from HQQ's solver, the codes
    # are packed and multiplied by the same kernel, so they mean the same.
    group = 64
    what = (f"PrototypeInt4WeightOnlyConfig(group_size={group}, "
            "int4_choose_qparams_algorithm=Int4ChooseQParamsAlgorithm.HQQ)")
    model = AutoModelForCausalLM.from_pretrained(
        c.base_dir("llama"), dtype=torch.float32,
        quantization_config=TorchAoConfig(PrototypeInt4WeightOnlyConfig(
            group_size=group, int4_choose_qparams_algorithm=Int4ChooseQParamsAlgorithm.HQQ)))
    pickled_variant(model, f"torchao-int4-g{group}-hqq", what,
                    aten_cpu_capability=torch.backends.cpu.get_cpu_capability())


def pickled_variant(model, name, what, notes=None, **extra):
    """The same quantized model as torch.save pickles it (transformers 5.25's save_pretrained
    writes only safetensors: safe_serialization=False is silently ignored): config.json
    beside pytorch_model.bin, each torchao weight a _rebuild_wrapper_subclass of its class
    with its attributes as state. Loaded back as torchao's serialization docs do it (an
    unquantized model, torch.load(weights_only=True), load_state_dict(assign=True)).
    Returns the model loaded back."""
    from transformers import AutoConfig, AutoModelForCausalLM
    dst = c.variant_dir(name)
    model.config.save_pretrained(dst)
    model.generation_config.save_pretrained(dst)
    torch.save(model.state_dict(), os.path.join(dst, "pytorch_model.bin"))
    c.hf_tokenizer().save_pretrained(dst)
    cfg = AutoConfig.from_pretrained(dst)
    del cfg.quantization_config
    back = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    state = torch.load(os.path.join(dst, "pytorch_model.bin"), weights_only=True)
    back.load_state_dict(state, assign=True, strict=True)
    back.eval()
    w = back.model.layers[0].self_attn.q_proj.weight
    assert type(w) is type(model.model.layers[0].self_attn.q_proj.weight), type(w)
    write_reference(dst, "torchao", c.hf_logits(back), "llama",
                    f"transformers {c.version('transformers')} + torchao forward in float32 of "
                    f"TorchAoConfig({what}), loaded back from this directory with torch.load + "
                    "load_state_dict(assign=True)", notes=notes, **extra)
    return back


def gen_hf_cache():
    import gen_hf_cache
    gen_hf_cache.main()


def gen_smollm3_gguf():
    import gen_formats_gguf as g
    # The converter's own gguf-py, for reading the file back (as the converter wrote it).
    sys.path.insert(0, os.path.join(g.CONVERTER, "gguf-py"))
    for name, outtype, src, _ in g.SEED_CASES:
        g.convert(os.path.join(c.OUT, src), name, outtype)
        with open(os.path.join(c.OUT, src, "config.json")) as f:
            cfg = json.load(f)
        g.check(name, os.path.join(c.OUT, src), cfg["num_attention_heads"],
                cfg["num_key_value_heads"])
        print(f"  {name}: {os.path.getsize(g.gguf_path(name))} bytes; every tensor equals "
              f"{src}'s", flush=True)


FAMILIES = {"smollm3": gen_smollm3, "smollm3_gguf": gen_smollm3_gguf, "torchao": gen_torchao,
            "torchao_int4": gen_torchao_int4, "hf_cache": gen_hf_cache}


def main(argv):
    if argv[:1] == ["--int4-pack"]:
        return _int4_pack(argv[1])
    if argv[:1] == ["--int4-model"]:
        return _int4_model()
    # The reference tokens must be the ones every other format vector uses.
    with open(os.path.join(c.OUT, "hf-f32", "reference.json")) as f:
        assert json.load(f)["tokens"] == c.tokens()
    for name in argv or list(FAMILIES):
        print(name, flush=True)
        FAMILIES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
