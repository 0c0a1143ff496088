#!/usr/bin/env python3
"""Golden vectors for AWQ's duo scaling and clipping search (engine/quant/awq.cc,
awq_clip.cc), from autoawq 0.2.9 itself, run on the CPU:

  AwqQuantizer._search_best_scale with duo_scaling=True (AutoAWQ's default: the scales
      come from the activations' mean |x| and the group-normalised mean |w| per input
      channel, s = x_mean^r / (w_mean^(1-r) + 1e-4)), and
  AwqQuantizer._compute_best_clip (the search behind apply_clip: per output row and
      group, max |w| shrunk over (1 - i/20), i < 10, keeping the shrink of least output
      error on the group's inputs), run as AwqQuantizer.quantize runs it: on the weight
      already multiplied by the chosen scales and on the inputs divided by them.

The tiny layer is two linears that read one input (as gate/up), 64 and 128 outputs
(_compute_best_clip takes output rows 64 at a time and asserts the count divides), and
1030 input tokens with a few salient channels, so that the clip search's token subsample
(every max(1, tokens // 512)-th token) takes every 2nd one.

autoawq is a CUDA package whose top-level __init__ pulls in model code; only
awq/quantize/quantizer.py is imported, without the package's __init__ (see gen_quant_gptq
.py). Installed into .venv-quant without its dependencies (requirements-quant-nodeps.txt)
by tests/reference/regenerate_quant.sh awq.

Writes into tests/data/quant/awq/ (raw little-endian arrays + index.json):
  w0.f32, w1.f32, x.f16   the two weights (rows, cols) and the input (tokens, cols)
  x_mean.f32              AutoAWQ's x_mean (f32 sum of |x| over tokens / tokens)
  <case>.s.f32            best duo scales; the index has each grid point's loss and the
                          relative gap to the runner-up (a near-tie would make the
                          comparison meaningless)
  <case>.clip<i>.f32      the clip search's max |w| per (row, group) of linear i, on
                          w_i * s with inputs x / s; the index counts the (row, group)
                          pairs whose best two shrinks are within 1e-3 of each other
"""
import importlib
import json
import os

import numpy as np
import peer_imports
import torch
import torch.nn as nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "quant", "awq")


def import_awq():
    """awq.quantize.quantizer, imported without the package's __init__."""
    peer_imports.stub_packages("awq", ["quantize", "utils", "modules"])
    peer_imports.stub_datasets()
    return importlib.import_module("awq.quantize.quantizer")


def save(name, arr):
    arr = np.ascontiguousarray(arr)
    arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(os.path.join(OUT, name))
    return name


def quantizer(awq_mod, bits, group, sym):
    aq = awq_mod.AwqQuantizer.__new__(awq_mod.AwqQuantizer)  # skip model loading
    aq.w_bit, aq.group_size, aq.zero_point = bits, group, not sym
    aq.duo_scaling = True
    aq.max_chunk_memory = 1024 * 1024 * 1024
    aq.n_parallel_calib_samples = None
    return aq


def clip_errors(aq, w, x, n_grid=20, max_shrink=0.5, n_sample_token=512):
    """Each shrink's error per (row, group), as _compute_best_clip forms it (its own
    pseudo_quantize_tensor), to tell near-ties apart; the vectors are the peer's output."""
    rows, cols = w.shape
    g = aq.group_size
    xf = x.reshape(1, x.shape[0], -1, g)
    xf = xf[:, ::max(1, xf.shape[1] // n_sample_token)]
    wg = w.reshape(rows, 1, -1, g)
    org_max = wg.abs().amax(dim=-1, keepdim=True)
    org_out = (xf * wg).sum(dim=-1)
    errs = []
    for i in range(int(max_shrink * n_grid)):
        mv = org_max * (1 - i / n_grid)
        q = aq.pseudo_quantize_tensor(torch.clamp(wg, -mv, mv))[0]
        errs.append((((xf * q).sum(dim=-1) - org_out) ** 2).mean(dim=1).reshape(rows, -1))
    return torch.stack(errs)  # (shrinks, rows, groups)


def main():
    awq_mod = import_awq()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    from importlib.metadata import version
    g = torch.Generator().manual_seed(2718)
    cols, tokens, rows = 128, 1030, (64, 128)
    ws = [torch.randn(r, cols, generator=g) * 0.05 for r in rows]
    ws[0][:, 9] *= 3.0  # a column of large weights: duo scaling's w_mean sees it
    ws[1][5, ::11] *= 8.0  # outliers within some groups: the clip search trims them
    x = torch.randn(tokens, cols, generator=g) * torch.exp(torch.randn(cols, generator=g) * 0.5)
    x[:, [3, 40, 77, 101]] *= 25.0  # salient channels, as in LLM activations
    x = x.to(torch.float16).float()  # f16 values, stored as f16
    index = {"peers": {"autoawq": version("autoawq"), "torch": torch.__version__},
             "layout": "row-major little-endian; clip f32 (rows, cols / group_size)",
             "cols": cols, "tokens": tokens, "rows": list(rows),
             "w": [save(f"w{i}.f32", w.numpy()) for i, w in enumerate(ws)],
             "x": save("x.f16", x.half().numpy()),
             "x_mean": save("x_mean.f32", (x.abs().to(torch.float32).sum(0) / tokens).numpy()),
             "cases": []}
    for bits, group, sym in ((4, 64, False), (4, 128, False), (3, 32, False), (4, 32, True)):
        name = f"duo_b{bits}_g{group}_{'sym' if sym else 'asym'}"
        fcs = [nn.Linear(cols, r, bias=False) for r in rows]
        with torch.no_grad():
            for fc, w in zip(fcs, ws):
                fc.weight.copy_(w)
        block = peer_imports.SharedInput(fcs)
        aq = quantizer(awq_mod, bits, group, sym)
        losses = []
        compute_loss = aq._compute_loss

        def record(*a, _f=compute_loss, **k):
            losses.append(_f(*a, **k))
            return losses[-1]

        aq._compute_loss = record
        _, _, s = aq._search_best_scale(block, block.norm, list(block.linears), x,
                                        module2inspect=block)
        ordered = sorted(losses)
        case = {"name": name, "bits": bits, "group_size": group, "symmetric": sym,
                "grid": 20, "duo_scaling": True, "best_index": int(np.argmin(losses)),
                "losses": losses, "relative_gap": (ordered[1] - ordered[0]) / ordered[0],
                "s": save(name + ".s.f32", s.float().numpy()), "clip": [],
                "clip_near_ties": []}
        # The clip search as quantize() runs it after apply_scale: weights times s, the
        # layer's recorded inputs divided by s.
        xs = x / s.view(1, -1)
        for i, w in enumerate(ws):
            wsc = w * s.view(1, -1)
            max_val = aq._compute_best_clip(wsc, xs).reshape(w.shape[0], -1)
            errs = clip_errors(aq, wsc, xs)
            org_max = wsc.reshape(w.shape[0], -1, group).abs().amax(dim=-1)
            mine = org_max * (1 - errs.argmin(dim=0) / 20)
            top2 = errs.sort(dim=0).values[:2]
            tie = (top2[1] - top2[0]) <= 1e-3 * top2[0]
            assert torch.equal(mine[~tie], max_val[~tie]), "clip errors differ from the peer's"
            case["clip"].append(save(f"{name}.clip{i}.f32", max_val.numpy()))
            case["clip_near_ties"].append(int(tie.sum()))
            shrunk = int((max_val < org_max).sum())
            print(f"  {name} linear {i}: {shrunk} of {max_val.numel()} groups clipped, "
                  f"{int(tie.sum())} near-ties")
        index["cases"].append(case)
        print(f"  {name}: best grid index {case['best_index']}, gap {case['relative_gap']:.3g}")
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
