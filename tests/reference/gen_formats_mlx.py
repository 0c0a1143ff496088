"""MLX checkpoints from mlx-lm's own converter (mlx_lm.convert: load the HF checkpoint,
cast, nn.quantize every Linear and Embedding whose input size divides the group, save):
model.safetensors (<name>.weight uint32-packed codes, .scales, .biases), config.json with
"quantization" (and the same under "quantization_config"), model.safetensors.index.json
and the tokenizer files (and the README.md model card it writes). mlx-4bit-g32 also has
weights.npz: the same arrays written with mx.savez (one .npz is enough for the container).
Logits: mlx_lm.load(this directory) and the mlx-lm Llama forward on mlx's CPU backend
(Linux wheel mlx[cpu]).

  mlx-4bit-g32   q_bits 4, group 32, dtype float16 (scales/biases and norms float16)
  mlx-8bit-g64   q_bits 8, group 64, dtype bfloat16
"""
import os
import shutil

import numpy as np

import gen_formats_common as c
import gen_formats_decode as d

CASES = [  # name, bits, group, dtype, also write weights.npz
    ("mlx-4bit-g32", 4, 32, "float16", True),
    ("mlx-8bit-g64", 8, 64, "bfloat16", False),
]


def main():
    import mlx.core as mx
    from mlx_lm import convert, load
    for name, bits, group, dtype, npz in CASES:
        dst = os.path.join(c.OUT, name)
        if os.path.isdir(dst):
            shutil.rmtree(dst)  # convert() refuses an existing directory
        convert(c.base_dir("llama"), dst, quantize=True, q_group_size=group, q_bits=bits,
                dtype=dtype)
        if npz:
            weights = mx.load(os.path.join(dst, "model.safetensors"))
            mx.savez(os.path.join(dst, "weights.npz"), **weights)
        from safetensors.torch import load_file
        sd = load_file(os.path.join(dst, "model.safetensors"))
        arrays = mx.load(os.path.join(dst, "model.safetensors"))
        worst = 0.0
        names = ["model.embed_tokens", "lm_head"] + [
            f"model.layers.{i}.{lin}" for i in range(2) for lin in d.LINEARS]
        for p in names:
            ref = mx.dequantize(arrays[p + ".weight"], arrays[p + ".scales"],
                                arrays[p + ".biases"], group_size=group, bits=bits)
            ref = np.array(ref.astype(mx.float32))
            # mx.dequantize computes in the scales' dtype: bfloat16 keeps 8 bits.
            rel = 1.6e-2 if dtype == "bfloat16" else 4e-3
            worst = max(worst, d.compare(p, d.mlx(sd, p, bits, group), ref, rel=rel))
        print(f"  {name}: README decoding matches mx.dequantize (max rel err {worst:.2g})")
        model, _ = load(dst)
        logits = model(mx.array([c.tokens()]))[0].astype(mx.float32)
        c.write_reference(dst, "mlx-lm", np.array(logits),
                          forward="mlx_lm.load(this directory) + the mlx-lm Llama forward "
                                  f"on mlx {c.version('mlx')}'s CPU backend",
                          mlx_version=c.version("mlx"),
                          quantization={"bits": bits, "group_size": group, "dtype": dtype})


if __name__ == "__main__":
    main()
