#!/usr/bin/env python3
"""Quantization quality and speed report for the default model (docs/quality.md).

Starts its own ingotd on a free loopback port with the default model as `src`, then for
every method and bit width: QuantizeModel into a new model, EvaluateModel against `src`
on the shipped held-out text (perplexity, mean KL of the next-token distributions, top-1
agreement), `ingot bench` for decode speed, and the resident bytes the server reports;
then unloads it. Last, decode speed of ingot against llama.cpp (llama-cpp-python in
.venv-ref) on the same Q4_0 and Q4_1 files, interleaved, at each thread count.

Run through scripts/quality_report.sh (sets up, builds, makes .venv-ref). Options:
  --methods hqq,gptq     only rows whose method is listed
  --eval-tokens N        tokens of the held-out text scored per model (default 2048)
  --threads N            compute threads for ingotd and llama.cpp (default 2)
  --no-peer              skip the llama.cpp comparison
"""
import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BIN = os.path.join(ROOT, "build", "bin")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PEER_PY = os.path.join(ROOT, ".venv-ref", "bin", "python")

# (label, quantize flags). Group sizes divide SmolLM2's 576/1536 columns.
ROWS = [
    ("none f16", ["-m", "none", "--quant-type", "f16"]),
    ("gguf Q8_0", ["-m", "gguf", "--quant-type", "q8_0"]),
    ("gguf Q5_1", ["-m", "gguf", "--quant-type", "q5_1"]),
    ("gguf Q5_0", ["-m", "gguf", "--quant-type", "q5_0"]),
    ("gguf Q4_1", ["-m", "gguf", "--quant-type", "q4_1"]),
    ("gguf Q4_0", ["-m", "gguf", "--quant-type", "q4_0"]),
    ("bitsandbytes int8", ["-m", "bitsandbytes", "-b", "8"]),
    ("bitsandbytes nf4 +dq", ["-m", "bitsandbytes", "-b", "4", "--quant-type", "nf4"]),
    ("bitsandbytes nf4", ["-m", "bitsandbytes", "-b", "4", "--quant-type", "nf4", "--no-double-quant"]),
    ("bitsandbytes fp4 +dq", ["-m", "bitsandbytes", "-b", "4", "--quant-type", "fp4"]),
    ("hqq 8 g64", ["-m", "hqq", "-b", "8", "-g", "64"]),
    ("hqq 4 g64", ["-m", "hqq", "-b", "4", "-g", "64"]),
    ("hqq 3 g64", ["-m", "hqq", "-b", "3", "-g", "64"]),
    ("hqq 2 g32", ["-m", "hqq", "-b", "2", "-g", "32"]),
    ("hqq 1 g32", ["-m", "hqq", "-b", "1", "-g", "32"]),
    ("quanto int8", ["-m", "quanto", "-b", "8"]),
    ("quanto int4 g64", ["-m", "quanto", "-b", "4", "-g", "64"]),
    ("quanto int2 g64", ["-m", "quanto", "-b", "2", "-g", "64"]),
    ("torchao int8 weight-only", ["-m", "torchao", "--quant-type", "int8_weight_only"]),
    ("torchao int8 dynamic", ["-m", "torchao", "--quant-type", "int8_dynamic"]),
    ("torchao int4 weight-only g64", ["-m", "torchao", "--quant-type", "int4_weight_only", "-g", "64"]),
    ("mlx 8 g64", ["-m", "mlx", "-b", "8", "-g", "64"]),
    ("mlx 4 g64", ["-m", "mlx", "-b", "4", "-g", "64"]),
    ("gptq 4 g64", ["-m", "gptq", "-b", "4", "-g", "64"]),
    ("gptq 3 g64", ["-m", "gptq", "-b", "3", "-g", "64"]),
    ("awq 4 g64", ["-m", "awq", "-b", "4", "-g", "64"]),
    # AutoAWQ's defaults are duo scaling and the clipping search; without them, the
    # llm-awq scale search alone (ingot's AWQ before both landed).
    ("awq 4 g64 no clip", ["-m", "awq", "-b", "4", "-g", "64", "--option", "clip=false"]),
    ("awq 4 g64 no duo, no clip", ["-m", "awq", "-b", "4", "-g", "64", "--option", "duo_scaling=false",
                                   "--option", "clip=false"]),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, threads, models):
        self.addr = f"127.0.0.1:{free_port()}"
        args = [os.path.join(BIN, "ingotd"), "--listen", self.addr, "--metrics-listen", "",
                "--threads", str(threads), "--log-level", "warn"]
        for name, path in models:
            args += ["--model", f"{name}={path}"]
        self.proc = subprocess.Popen(args)
        for _ in range(600):
            if self.proc.poll() is not None:
                sys.exit(f"ingotd exited with {self.proc.returncode}")
            try:
                self.cli(["models"])
                return
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        sys.exit("ingotd did not come up")

    def cli(self, args, parse=False):
        out = subprocess.run([os.path.join(BIN, "ingot"), "-s", self.addr] + args, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout
        return json.loads(out.strip().splitlines()[-1]) if parse else out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def median_bench(server, model, runs):
    b = server.cli(["bench", model, "--runs", str(runs), "--json"], parse=True)
    return b["median_prefill_tokens_per_second"], b["median_decode_tokens_per_second"]


def speed(server, args, model):
    """prefill, decode tok/s; None, None with --no-speed."""
    return (None, None) if args.no_speed else median_bench(server, model, args.bench_runs)


def fmt_speed(v):
    return "—" if v is None else f"{v:.1f}"


def weight_bytes(info):
    """Bytes of every weight tensor (all kinds); not bytes_resident, which counts the
    KV pool too (a loaded model has one, a quantized copy gets its own when served)."""
    return sum(int(k["bytes"]) for k in info["tensor_kinds"])


def kinds_bytes(info):
    linear = sum(int(k["bytes"]) for k in info["tensor_kinds"] if k["kind"] in ("attention", "mlp"))
    params = sum(int(k["parameters"]) for k in info["tensor_kinds"] if k["kind"] in ("attention", "mlp"))
    other = {k["kind"]: int(k["bytes"]) for k in info["tensor_kinds"] if k["kind"] not in ("attention", "mlp")}
    reprs = sorted({k["representation"] for k in info["tensor_kinds"] if k["kind"] in ("attention", "mlp")})
    return linear, params, other, "+".join(reprs)


def quality_rows(server, args, rows, flush):
    """Appends the source row and one row per ROWS entry not already in `rows`."""
    done = {r["label"] for r in rows}
    if "source (Q4_1 file)" not in done:
        quality_source_row(server, args, rows, flush)
    for label, flags in ROWS:
        method = flags[flags.index("-m") + 1]
        if label in done or (args.methods and method not in args.methods):
            continue
        quality_row(server, args, rows, flush, label, flags)


def quality_source_row(server, args, rows, flush):
    src_info = json.loads(server.cli(["info", "src", "--json"]).strip())["model"]
    lin, params, other, rep = kinds_bytes(src_info)
    ev = server.cli(["eval", "src", "--max-tokens", str(args.eval_tokens), "--json"], parse=True)
    pre, dec = speed(server, args, "src")
    rows.insert(0, {"label": "source (Q4_1 file)", "repr": rep, "bytes": weight_bytes(src_info),
                    "linear_bytes": lin, "bpw": 8.0 * lin / params, "ppl": ev["perplexity"], "kl": 0.0,
                    "top1": 1.0, "quantize_s": 0.0, "prefill": pre, "decode": dec, "other": other})
    flush()
    print(f"source: ppl {ev['perplexity']:.3f}, decode {fmt_speed(dec)} tok/s", file=sys.stderr)


def quality_row(server, args, rows, flush, label, flags):
    try:
        q = server.cli(["quantize", "src", "q"] + flags + ["--json"], parse=True)
    except subprocess.CalledProcessError as e:
        rows.append({"label": label, "error": e.stderr.strip().splitlines()[-1]})
        flush()
        print(f"{label}: refused: {rows[-1]['error']}", file=sys.stderr)
        return
    info = q["model"]
    lin, params, other, rep = kinds_bytes(info)
    ev = server.cli(["eval", "q", "--reference", "src", "--max-tokens", str(args.eval_tokens), "--json"],
                    parse=True)
    pre, dec = speed(server, args, "q")
    server.cli(["unload", "q"])
    # proto3 JSON leaves out zeros: a lossless requantization has KL 0.
    row = {"label": label, "flags": " ".join(flags), "repr": rep, "method_used": q.get("method_used"),
           "bytes": weight_bytes(info), "linear_bytes": lin, "bpw": 8.0 * lin / params,
           "ppl": ev["perplexity"], "kl": ev.get("mean_kl", 0.0), "top1": ev.get("top1_agreement", 0.0),
           "quantize_s": q["seconds"], "prefill": pre, "decode": dec, "other": other, "note": q.get("note", "")}
    rows.append(row)
    flush()
    print(f"{label}: {rep} bpw {row['bpw']:.3f} ppl {row['ppl']:.3f} kl {row['kl']:.4f} "
          f"quantize {row['quantize_s']:.1f}s decode {fmt_speed(dec)}", file=sys.stderr)


def peer_rows(args, tmp):
    """ingot vs llama.cpp on the same GGUF files, alternating, per thread count."""
    q4_0 = os.path.join(tmp, "SmolLM2-135M-Instruct.Q4_0.gguf")
    files = [("Q4_1", MODEL), ("Q4_0", q4_0)]
    out = []
    made = False
    for threads in args.peer_threads:
        for name, path in files:
            if name == "Q4_0" and not made:
                subprocess.run([PEER_PY, os.path.join(ROOT, "tests", "reference", "bench_llama_cpp.py"),
                                "--runs", "1", "--threads", "1", "--requantize", q4_0, "--type", "q4_0"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                made = True
            ingot_dec, ingot_pre, peer_dec, peer_pre = [], [], [], []
            server = Server(threads, [("m", path)])
            try:
                for _ in range(args.peer_rounds):
                    p, d = median_bench(server, "m", args.bench_runs)
                    ingot_pre.append(p)
                    ingot_dec.append(d)
                    r = subprocess.run([PEER_PY, os.path.join(ROOT, "tests", "reference", "bench_llama_cpp.py"),
                                        "--runs", str(args.bench_runs), "--threads", str(threads),
                                        "--model", path], check=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
                    res = json.loads(r.stdout)
                    peer = res["results"][f"threads_{threads}"]
                    peer_pre.append(peer["prefill_tok_s"])
                    peer_dec.append(peer["decode_tok_s"])
            finally:
                server.stop()
            row = {"file": name, "threads": threads, "peer": res["peer"],
                   "ingot_prefill": statistics.median(ingot_pre), "ingot_decode": statistics.median(ingot_dec),
                   "peer_prefill": statistics.median(peer_pre), "peer_decode": statistics.median(peer_dec)}
            out.append(row)
            print(f"{name} threads {threads}: ingot {row['ingot_prefill']:.1f}/{row['ingot_decode']:.1f} "
                  f"llama.cpp {row['peer_prefill']:.1f}/{row['peer_decode']:.1f}", file=sys.stderr)
    return out


def fmt_bytes(n):
    return f"{n / 2**20:.1f} MiB"


def command_flags(args):
    """The options of the run that made a report, as the command line gave them."""
    flags = [f for f, on in (("--no-peer", args.no_peer), ("--no-speed", args.no_speed)) if on]
    if args.eval_tokens != 2048:
        flags.append(f"--eval-tokens {args.eval_tokens}")
    return "".join(" " + f for f in flags)


def write_markdown(path, args, rows, peers, started):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "# Quantization quality and speed of the default model",
        "",
        f"Made by `bash scripts/quality_report.sh{command_flags(args)}` on {started:%Y-%m-%d} "
        f"({os.cpu_count()} cores, {cpu}, {platform.system()}); ingotd with --threads {args.threads}.",
        "",
        "Every row quantizes the loaded default model (SmolLM2-135M-Instruct) with ingot's own",
        "quantizer, then scores it on the shipped held-out text (engine/quant/data/heldout.txt, not",
        f"used for calibration; first {args.eval_tokens} tokens, windows of 512) against the source model.",
        "**The source is itself a Q4_1 GGUF** (the only SmolLM2 file on PyPI): every method",
        "starts from Q4_1-dequantized weights, and KL divergence, top-1 agreement and perplexity",
        "are relative to that Q4_1 model, not to the f16 original. The output head and the",
        "embedding stay as loaded (Q8_0, tied; skipped by default, as transformers does).",
        "",
        "- bytes: the weights of the whole model (all kinds); bits/weight: of the quantized",
        "  linear layers only (attention + MLP, scales, zeros and codebooks included).",
        "- KL: mean KL(source || quantized) of next-token distributions; top-1: how often both",
        "  models' most likely next token agree.",
        (f"- decode / prefill: `ingot bench` medians of {args.bench_runs} runs (128-token prompt, 64 generated, greedy)."
         if not args.no_speed else
         "- decode / prefill: not measured in this run (`--no-speed`: the machine was shared with other builds,\n"
         "  so speeds would not compare between rows; the quality columns do not depend on the load). Current\n"
         "  speed figures: the README's serving table and docs/decode-profile.md; quantize s is this run's."),
        "- docs/quality-notes.md explains what is out of line (written by hand for one run).",
        "",
        "| method | representation | bytes | bits/weight | perplexity | KL | top-1 | quantize s | prefill tok/s | decode tok/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | refused: {r['error']} | | | | | | | | |")
            continue
        lines.append(
            f"| {r['label']} | {r['repr']} | {fmt_bytes(r['bytes'])} | {r['bpw']:.3f} | {r['ppl']:.3f} | "
            f"{r['kl']:.4f} | {100 * r['top1']:.1f}% | {r['quantize_s']:.1f} | {fmt_speed(r['prefill'])} | "
            f"{fmt_speed(r['decode'])} |")
    if peers:
        lines += [
            "",
            "## Decode speed against llama.cpp",
            "",
            f"Same GGUF file, same machine, same thread count, alternating ingot and {peers[0]['peer']}",
            f"{args.peer_rounds} times (each a median of {args.bench_runs} runs; the table gives the median of the",
            "rounds). The Q4_0 file is made from the Q4_1 file by llama.cpp's own quantizer",
            "(llama_model_quantize). ingot is measured through its server (gRPC streaming, sampling",
            "included); llama.cpp in-process through its Python binding.",
            "",
            "| file | threads | ingot prefill | llama.cpp prefill | ingot decode | llama.cpp decode | decode ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for p in peers:
            lines.append(
                f"| {p['file']} | {p['threads']} | {p['ingot_prefill']:.1f} | {p['peer_prefill']:.1f} | "
                f"{p['ingot_decode']:.1f} | {p['peer_decode']:.1f} | {p['ingot_decode'] / p['peer_decode']:.2f}x |")
    elif args.no_peer:
        lines += ["", "Against llama.cpp: `tests/bench/bench_compare.sh` (single stream, `ingot bench` against",
                  "llama-bench) and `tests/bench/serve_compare.sh` (N streams against llama-server); their",
                  "latest figures are in the README and docs/decode-profile.md."]
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "quality.md"))
    ap.add_argument("--json-out", default=os.path.join(ROOT, "docs", "quality.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-tokens", type=int, default=2048)
    ap.add_argument("--bench-runs", type=int, default=3)
    ap.add_argument("--methods", type=lambda s: set(s.split(",")), default=None)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--peer-threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--peer-rounds", type=int, default=3)
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows (and llama.cpp comparison) already in --json-out; run the rest")
    ap.add_argument("--no-speed", action="store_true",
                    help="quality columns only: no `ingot bench` per row (for a run on a busy machine)")
    args = ap.parse_args()
    started = datetime.datetime.now()
    rows, peers = [], []
    if args.resume and os.path.exists(args.json_out):
        with open(args.json_out) as f:
            prev = json.load(f)
        rows, peers = prev.get("rows", []), prev.get("peer", [])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)

    def flush():  # the report so far, so that a long run can be read (or cut) midway
        write_markdown(args.out, args, rows, peers, started)
        with open(args.json_out, "w") as f:
            json.dump({"rows": rows, "peer": peers, "threads": args.threads,
                       "eval_tokens": args.eval_tokens}, f, indent=1)

    # Speed against llama.cpp first: it needs the machine to itself for the least time.
    if not args.no_peer and not peers:
        with tempfile.TemporaryDirectory() as tmp:
            peers.extend(peer_rows(args, tmp))
        flush()
    server = Server(args.threads, [("src", MODEL)])
    try:
        quality_rows(server, args, rows, flush)
    finally:
        server.stop()
    flush()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
