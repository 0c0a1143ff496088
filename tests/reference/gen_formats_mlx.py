"""MLX checkpoints from mlx-lm's own converter (mlx_lm.convert: load the HF checkpoint,
cast, nn.quantize every Linear and Embedding whose input size divides the group, save):
model.safetensors (<name>.weight uint32-packed codes, .scales, .biases), config.json with
"quantization" (and the same under "quantization_config"), model.safetensors.index.json
and the tokenizer files. Plus weights.npz: the same arrays written with mx.savez.
Logits: mlx_lm.load(this directory) and the mlx-lm Llama forward on mlx's CPU backend
(Linux wheel mlx[cpu]).

  mlx-4bit-g32   q_bits 4, group 32, dtype float16 (scales/biases and norms float16)
  mlx-8bit-g64   q_bits 8, group 64, dtype bfloat16
"""
import os
import shutil

import numpy as np

import gen_formats_common as c

CASES = [("mlx-4bit-g32", 4, 32, "float16"), ("mlx-8bit-g64", 8, 64, "bfloat16")]


def main():
    import mlx.core as mx
    from mlx_lm import convert, load
    for name, bits, group, dtype in CASES:
        dst = os.path.join(c.OUT, name)
        if os.path.isdir(dst):
            shutil.rmtree(dst)  # convert() refuses an existing directory
        convert(c.base_dir("llama"), dst, quantize=True, q_group_size=group, q_bits=bits,
                dtype=dtype)
        weights = mx.load(os.path.join(dst, "model.safetensors"))
        mx.savez(os.path.join(dst, "weights.npz"), **weights)
        model, _ = load(dst)
        logits = model(mx.array([c.tokens()]))[0].astype(mx.float32)
        c.write_reference(dst, "mlx-lm", np.array(logits),
                          forward="mlx_lm.load(this directory) + the mlx-lm Llama forward "
                                  f"on mlx {c.version('mlx')}'s CPU backend",
                          mlx_version=c.version("mlx"),
                          quantization={"bits": bits, "group_size": group, "dtype": dtype})


if __name__ == "__main__":
    main()
