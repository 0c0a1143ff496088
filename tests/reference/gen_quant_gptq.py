#!/usr/bin/env python3
"""Golden vectors for ingot's round-to-nearest affine groups, GPTQ and AWQ scale search
(engine/quant/rtn.cc, gptq.cc, awq.cc), from the peers themselves, run on the CPU:

  auto-gptq 0.7.1   auto_gptq/quantization/quantizer.py (Quantizer) and gptq.py (GPTQ:
                    add_batch, fasterquant)
  autoawq 0.2.9     awq/quantize/quantizer.py (AwqQuantizer._search_best_scale,
                    duo_scaling=False, and its pseudo_quantize_tensor)

Both are CUDA packages whose top-level __init__ pulls in model code (and, for auto-gptq,
an older transformers); only the pure-torch modules above are imported, without running
the packages' __init__ (see import_peers). tests/reference/regenerate_quant.sh gptq
installs them into .venv-quant without their dependencies (requirements-quant-nodeps.txt)
and runs this script.

Writes into tests/data/quant/gptq/ (raw little-endian arrays + index.json):
  rtn_w.f32            RTN weight (rows, cols)
  rtn_<case>.{q.u8,scale.f32,zero.f32}   Quantizer(perchannel, sym).find_params per
                       (row, group) and quantize(); codes recovered from the dequantized
                       values as round(Q / scale + zero)
  gptq_w.f32           GPTQ weight (rows, cols)
  gptq_h_upper.f32     the peer's H (f32, = 2/n sum x x^T from add_batch over 2048
                       correlated input tokens, two input channels all zero = dead), upper
                       triangle row by row; every case quantizes with exactly this H (the
                       C++ side passes it as hessian with tokens = 2, so 2/n * hessian = H)
  gptq_<case>.{q.u8,scale.f32,zero.f32}  fasterquant(blocksize=128, percdamp, group_size,
                       actorder, static_groups=actorder); codes from Q with the returned
                       scale/zero/g_idx
  awq_w0.f32, awq_w1.f32, awq_x.f16  two linears sharing one input, and the input
                       (tokens, cols) with a few outlier channels
  awq_<case>.s.f32     best scales; the index also records the chosen grid index, each
                       grid point's loss and the gap to the runner-up (so the C++ test
                       can tell a real disagreement from a near-tie)
"""
import importlib
import json
import os

import numpy as np
import peer_imports
import torch
import torch.nn as nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "quant", "gptq")


def import_peers():
    """The peers' algorithm modules, imported without their packages' __init__."""
    peer_imports.stub_packages("auto_gptq", ["quantization"])
    gptq = importlib.import_module("auto_gptq.quantization.gptq")
    quantizer = importlib.import_module("auto_gptq.quantization.quantizer")
    # fasterquant() ends with torch.cuda.synchronize(), which needs a GPU; on the CPU
    # there is nothing to wait for.
    torch.cuda.synchronize = lambda *a, **k: None
    peer_imports.stub_datasets()
    awq = importlib.import_module("awq.quantize.quantizer")
    return gptq, quantizer, awq


def save(name, arr):
    arr = np.ascontiguousarray(arr)
    arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(os.path.join(OUT, name))
    return name


def codes_from(q_deq, scale, zero, g_idx):
    """Codes behind the peer's dequantized Q = scale * (q - zero)."""
    s = scale[:, g_idx]
    z = zero[:, g_idx]
    q = torch.round(q_deq / s + z)
    assert torch.equal(s * (q - z), q_deq), "codes do not reproduce the peer's Q"
    return q.to(torch.uint8)


def rtn_cases(quantizer_mod, index):
    g = torch.Generator().manual_seed(1234)
    rows, cols = 24, 256
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[1] = w[1].abs()              # all positive: the range's lower end is 0
    w[2] = -w[2].abs()             # all negative
    w[3, :64] = 0.0                # an all-zero group -> [-1, 1]
    w[4, 64:128] = 0.02            # a constant group
    w[5] *= 40.0                   # large values
    w[6, ::7] *= 30.0              # outliers
    index["rtn"] = {"rows": rows, "cols": cols, "w": save("rtn_w.f32", w.numpy()), "cases": []}
    for bits, group, sym in ((4, 64, False), (4, 128, True), (3, 32, False), (2, 64, False),
                             (8, 256, False), (4, 256, True), (5, 16, True)):
        qz = quantizer_mod.Quantizer()
        qz.configure(bits, perchannel=True, sym=sym, mse=False)
        codes = torch.zeros(rows, cols, dtype=torch.uint8)
        scales, zeros = [], []
        for c0 in range(0, cols, group):
            qz.find_params(w[:, c0:c0 + group], weight=True)
            deq = qz.quantize(w[:, c0:c0 + group])
            q = torch.round(deq / qz.scale + qz.zero)
            assert torch.equal(qz.scale * (q - qz.zero), deq)
            codes[:, c0:c0 + group] = q.to(torch.uint8)
            scales.append(qz.scale.reshape(rows, 1))
            zeros.append(qz.zero.reshape(rows, 1))
        name = f"rtn_b{bits}_g{group}_{'sym' if sym else 'asym'}"
        index["rtn"]["cases"].append({
            "name": name, "bits": bits, "group_size": group, "symmetric": sym,
            "q": save(name + ".q.u8", codes.numpy()),
            "scale": save(name + ".scale.f32", torch.cat(scales, 1).numpy()),
            "zero": save(name + ".zero.f32", torch.cat(zeros, 1).numpy())})


def gptq_cases(gptq_mod, index):
    g = torch.Generator().manual_seed(4321)
    rows, cols, tokens = 24, 320, 2048
    w = torch.randn(rows, cols, generator=g) * 0.04
    w[:, 5] *= 8.0
    # Correlated inputs: a random mixing of latent factors plus noise, per-channel
    # magnitudes spread over ~2 decades; two dead input channels. More tokens than
    # columns (as in real calibration) keeps H well conditioned, so the peer's f32
    # Cholesky is accurate enough to compare codes with.
    latent = torch.randn(tokens, 64, generator=g)
    mix = torch.randn(64, cols, generator=g) / 6.0
    x = latent @ mix + 0.3 * torch.randn(tokens, cols, generator=g)
    x *= torch.exp(torch.randn(cols, generator=g) * 0.8)
    x[:, 17] = 0.0
    x[:, 200] = 0.0
    layer = nn.Linear(cols, rows, bias=False)
    acc = gptq_mod.GPTQ(layer)
    for t0 in range(0, tokens, 256):  # the peer's own accumulation, batch by batch
        acc.add_batch(x[t0:t0 + 256].unsqueeze(0), None)
    h = acc.H.clone()  # f32, = 2/n sum x x^T
    iu = np.triu_indices(cols)
    index["gptq"] = {"rows": rows, "cols": cols, "w": save("gptq_w.f32", w.numpy()),
                     "h_upper": save("gptq_h_upper.f32", h.numpy()[iu]),
                     "dead_columns": [17, 200], "cases": []}
    for bits, group, sym, act_order, damp in ((5, 40, False, False, 0.02),
                                              (4, 64, False, False, 0.01),
                                              (3, 32, True, False, 0.01),
                                              (4, 80, False, False, 0.05),
                                              (4, 160, False, False, 0.01),
                                              (4, 64, False, True, 0.01),
                                              (4, 32, True, True, 0.01),
                                              (8, 320, False, False, 0.01),
                                              (2, 64, False, False, 0.1)):
        with torch.no_grad():
            layer.weight.copy_(w)
        gq = gptq_mod.GPTQ(layer)
        gq.quantizer.configure(bits, perchannel=True, sym=sym, mse=False)
        gq.H = h.clone()
        gq.nsamples = tokens
        scale, zero, g_idx = gq.fasterquant(blocksize=128, percdamp=damp, group_size=group,
                                            actorder=act_order, static_groups=act_order)
        q_deq = layer.weight.data.float()
        assert cols % group == 0  # our storage: groups divide the row
        assert torch.equal(g_idx.long(), torch.arange(cols) // group)  # contiguous groups
        codes = codes_from(q_deq, scale, zero, g_idx.long())
        name = (f"gptq_b{bits}_g{group}_{'sym' if sym else 'asym'}"
                f"{'_act' if act_order else ''}_d{damp}")
        index["gptq"]["cases"].append({
            "name": name, "bits": bits, "group_size": group, "symmetric": sym,
            "act_order": act_order, "damp": damp,
            "q": save(name + ".q.u8", codes.numpy()),
            "scale": save(name + ".scale.f32", scale.numpy()),
            "zero": save(name + ".zero.f32", zero.numpy())})


def awq_cases(awq_mod, index):
    g = torch.Generator().manual_seed(777)
    cols, tokens = 256, 128
    r0, r1 = 32, 16
    w0 = torch.randn(r0, cols, generator=g) * 0.05
    w1 = torch.randn(r1, cols, generator=g) * 0.05
    x = torch.randn(tokens, cols, generator=g) * torch.exp(torch.randn(cols, generator=g) * 0.5)
    x[:, [3, 77, 130, 201]] *= 25.0  # salient channels, as in LLM activations
    x = x.to(torch.float16).float()  # f16 values, stored as f16
    index["awq"] = {"cols": cols, "tokens": tokens, "rows": [r0, r1],
                    "w": [save("awq_w0.f32", w0.numpy()), save("awq_w1.f32", w1.numpy())],
                    "x": save("awq_x.f16", x.half().numpy()), "cases": []}
    for bits, group, sym in ((4, 64, False), (4, 128, False), (3, 32, False), (4, 64, True)):
        fcs = [nn.Linear(cols, r, bias=False) for r in (r0, r1)]
        with torch.no_grad():
            fcs[0].weight.copy_(w0)
            fcs[1].weight.copy_(w1)
        block = peer_imports.SharedInput(fcs)
        aq = awq_mod.AwqQuantizer.__new__(awq_mod.AwqQuantizer)  # skip model loading
        aq.w_bit, aq.group_size, aq.zero_point = bits, group, not sym
        aq.duo_scaling = False
        aq.max_chunk_memory = 1024 * 1024 * 1024
        aq.n_parallel_calib_samples = None
        losses = []
        compute_loss = aq._compute_loss

        def record(*a, _f=compute_loss, **k):
            losses.append(_f(*a, **k))
            return losses[-1]

        aq._compute_loss = record
        _, names, best = aq._search_best_scale(block, block.norm, list(block.linears), x,
                                               module2inspect=block)
        best_i = int(np.argmin(losses))
        ordered = sorted(losses)
        name = f"awq_b{bits}_g{group}_{'sym' if sym else 'asym'}"
        index["awq"]["cases"].append({
            "name": name, "bits": bits, "group_size": group, "symmetric": sym, "grid": 20,
            "best_index": best_i, "losses": losses,
            "relative_gap": (ordered[1] - ordered[0]) / ordered[0],
            "s": save(name + ".s.f32", best.float().numpy())})
    # act_abs_mean as AutoAWQ forms x_mean (f32 sum of |x| over tokens / tokens).
    index["awq"]["act_abs_mean"] = save(
        "awq_act_abs_mean.f32", (x.abs().to(torch.float32).sum(0) / tokens).numpy())


def main():
    gptq_mod, quantizer_mod, awq_mod = import_peers()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    from importlib.metadata import version
    index = {"peers": {"auto-gptq": version("auto-gptq"), "autoawq": version("autoawq"),
                       "torch": torch.__version__},
             "layout": "row-major little-endian; q.u8 one code per byte (rows, cols); "
                       "scale/zero f32 (rows, cols / group_size)"}
    rtn_cases(quantizer_mod, index)
    gptq_cases(gptq_mod, index)
    awq_cases(awq_mod, index)
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
