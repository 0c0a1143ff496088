"""PyTorch's own numbers for the issue-16 benchmark's shapes, on the GPU host's torch.

The linear layers of one decode step of a Llama-2-7B-shaped model (32 layers of q, k, v,
o 4096x4096, gate and up 11008x4096, down 4096x11008, and a 4096 x VOCAB head) through
torch's own kernels, on random weights made on the device:
  bf16     F.linear (cuBLAS)
  int8     torch._weight_int8pack_mm (int8 weight-only, one bf16 scale per row)
  int4/gN  torch._weight_int4pack_mm (tinygemm: tensor-core tiled int4, groups of N,
           bf16 scale and zero per group; the kernel torchao's int4 weight-only runs)
and, when torchao is importable (tests/gpu/torchao_int4.sh installs the carried wheel),
torchao's own quantize_ over nn.Linear layers of the same shapes:
  torchao int8wo / int4wo-gN.
Each step (m tokens through all 225 layers, chained) is captured once in a CUDA graph and
replayed, so Python and launch overhead are gone: the numbers are what these kernels
can do for the weights alone, an upper bound for a whole model (no attention, norms,
rope or sampling), to compare with forward_bench's decode through ingot.
Prints one line per row: tokens/s at m = 1 and 16, the weight bytes, and the share of
the measured copy bandwidth batch-1 reaches (bytes read per token / time / bandwidth).

  python3 tests/gpu/torch_7b.py [--vocab 49152] [--rows bf16,int8,int4/g128,int4/g32] [--bandwidth GBPS]
  python3 tests/gpu/torch_7b.py --bandwidth-only   (the copy bandwidth alone, GB/s)
  python3 tests/gpu/torch_7b.py --device cpu --layers 1 --small   (a smoke test on a CPU)
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [(4096, 4096)] * 4 + [(11008, 4096)] * 2 + [(4096, 11008)]  # (out, in) per layer


def copy_bandwidth(device):
    """Device copy bandwidth (read + write bytes / time), GB/s: median of 10 copies of 1 GiB."""
    if device.type != "cuda":
        return float("nan")
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    t = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        y.copy_(x)
        e.record()
        torch.cuda.synchronize()
        t.append(s.elapsed_time(e) / 1e3)
    del x, y
    return 2 * (1 << 30) / statistics.median(t) / 1e9


class Layer:
    """One linear layer in one of torch's weight-only forms."""

    def __init__(self, kind, n, k, device, gen):
        self.kind, self.n, self.k = kind, n, k
        if kind == "bf16":
            self.w = (torch.randn(n, k, device=device, generator=gen) * 0.02).to(torch.bfloat16)
            self.bytes = self.w.nbytes
        elif kind == "int8":
            self.w = torch.randint(-128, 128, (n, k), device=device, dtype=torch.int8, generator=gen)
            self.scale = (torch.rand(n, device=device, generator=gen) * 1e-3).to(torch.bfloat16)
            self.bytes = self.w.nbytes + self.scale.nbytes
        elif kind.startswith("int4/g"):
            self.group = int(kind[len("int4/g"):])
            q = torch.randint(0, 16, (n, k), device=device, dtype=torch.int32, generator=gen)
            if device.type == "cuda":
                packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)  # even column high
                self.w = torch._convert_weight_to_int4pack(packed, 8)
            else:
                self.w = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            s = torch.rand(k // self.group, n, device=device, generator=gen) * 1e-3
            z = torch.randn(k // self.group, n, device=device, generator=gen) * 1e-3
            self.sz = torch.stack([s, z], -1).to(torch.bfloat16).contiguous()
            self.bytes = self.w.nbytes + self.sz.nbytes
        else:
            raise ValueError(kind)

    def __call__(self, x):
        if self.kind == "bf16":
            return F.linear(x, self.w)
        if self.kind == "int8":
            return torch._weight_int8pack_mm(x, self.w, self.scale)
        if x.device.type == "cuda":
            return torch._weight_int4pack_mm(x, self.w, self.group, self.sz)
        return torch._weight_int4pack_mm_for_cpu(x, self.w, self.group, self.sz)


class TorchaoLayers:
    """torchao's quantize_ over one nn.Linear per layer (each its own weight, as in a
    model: weights shared between layers would partly sit in L2)."""

    def __init__(self, kind, shapes, device, gen):
        import torchao.quantization as tq
        if kind == "torchao-int8wo":
            config = tq.Int8WeightOnlyConfig()
        else:
            group = int(kind.split("-g")[1])
            config = tq.Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d")
        self.layers = []
        for n, k in shapes:
            lin = torch.nn.Linear(k, n, bias=False, device=device, dtype=torch.bfloat16)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(n, k, device=device, generator=gen) * 0.02)
            tq.quantize_(lin, config)
            self.layers.append(lin)
        self.bytes = sum(_subclass_bytes(l.weight) for l in self.layers)


def _subclass_bytes(t):
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_subclass_bytes(getattr(t, n)) for n in names)
    return t.nbytes


def step_fn(layers, x_by_width):
    """All layers on m tokens. Each layer's input is a slice of a fixed buffer of its
    width (the values do not matter for the time; chaining the outputs would need the
    norms and activations in between), so a CUDA graph replays the same launches."""
    def run():
        out = None
        for layer in layers:
            out = layer(x_by_width[layer_in(layer)])
        return out
    return run


def layer_in(layer):
    return layer.k if hasattr(layer, "k") else layer.in_features


def time_step(run, device, reps):
    if device.type != "cuda":
        run()
        t0 = time.perf_counter()
        for _ in range(reps):
            run()
        return (time.perf_counter() - t0) / reps
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    graph.replay()
    torch.cuda.synchronize()
    t = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        torch.cuda.synchronize()
        t.append(s.elapsed_time(e) / 1e3)
    del graph
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--vocab", type=int, default=49152, help="the head's rows (ingot's 7B file: 49152)")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--rows", default="bf16,int8,int4/g128,int4/g32,torchao-int8wo,torchao-int4wo-g128")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--small", action="store_true", help="1/16 of every dimension (smoke test)")
    ap.add_argument("--bandwidth", type=float, default=0,
                    help="the device's copy bandwidth in GB/s, measured by the caller (<= 1: measure)")
    ap.add_argument("--bandwidth-only", action="store_true",
                    help="print the measured copy bandwidth in whole GB/s and stop (bench_7b.sh's probe)")
    a = ap.parse_args()
    device = torch.device(a.device)
    if a.bandwidth_only:
        print(f"{copy_bandwidth(device):.0f}")
        return 0
    def dim(x):  # --small: 1/16, rounded up to a multiple of 256 (the int4 groups divide it)
        return -(-x // 16 // 256) * 256 if a.small else x
    shapes = [(dim(n), dim(k)) for n, k in SHAPES] * a.layers + [(dim(a.vocab), dim(4096))]
    bw = a.bandwidth if a.bandwidth > 1 else copy_bandwidth(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; copy bandwidth {bw:.0f} GB/s; {a.layers} layers + head, "
          f"vocab {a.vocab}{' (1/16 shapes)' if a.small else ''}")
    print(f"{'torch row':<24} {'b1 tok/s':>9} {'b16 tok/s':>10} {'GB':>6} {'% bw':>6}")
    for row in a.rows.split(","):
        gen = torch.Generator(device=device).manual_seed(7)
        try:
            if row.startswith("torchao"):
                try:
                    import torchao  # noqa: F401
                except ImportError:
                    print(f"{row:<24} skipped: torchao is not installed here")
                    continue
                if device.type != "cuda" and "int4" in row:
                    print(f"{row:<24} skipped: torchao's int4 tile packing needs CUDA")
                    continue
                made = TorchaoLayers(row, shapes, device, gen)
                layers, nbytes = made.layers, made.bytes
            else:
                # Every layer its own weight (shared ones would partly sit in L2).
                layers = [Layer(row, n, k, device, gen) for n, k in shapes]
                nbytes = sum(l.bytes for l in layers)
        except Exception as e:  # a kernel this torch build lacks: say so, go on
            print(f"{row:<24} skipped: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        res = []
        try:
            for m in (1, 16):
                xs = {k: torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16)
                      for k in {layer_in(l) for l in layers}}
                sec = time_step(step_fn(layers, xs), device, a.reps)
                res.append(m / sec)
        except Exception as e:  # a kernel or a capture failing: this row only
            print(f"{row:<24} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
            del layers
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            continue
        gb = nbytes / 1e9
        pct = 100 * res[0] * gb / bw if bw == bw else float("nan")
        print(f"{row:<24} {res[0]:9.1f} {res[1]:10.1f} {gb:6.2f} {pct:5.0f}%", flush=True)
        del layers
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
