#!/usr/bin/env python3
"""Serving load benchmark: N concurrent greedy streams against ingotd or llama-server.

For each N in --streams (default 1,4,16,64), N threads wait on a barrier, then each
opens one streaming generation with its own prompt of --prompt-tokens tokens (default
64) and asks for --gen-tokens tokens (default 64). Per N it prints aggregate generated
tokens/s (all completion tokens / wall time from the first send to the last stream's
end), client-side TTFT p50/p95 (send -> first streamed token), the median per-stream
decode rate after the first token, streams that ended short of --gen-tokens (EOS), and
errors. The N = 1 row is the single-stream figure.

Targets (the same prompts, built from the same text and tokenizer, for both):
  --ingot HOST:PORT --model NAME  ingotd over gRPC: ingot.v1.GenerationService/Generate,
      stubs generated at run time from --proto-dir (default: this checkout's proto/)
      with grpcio-tools. temperature 0. ingot has no ignore-EOS switch: the prompts are
      prose cut mid-sentence, which the model continues; completion tokens are the ones
      the server reports, and short streams are counted.
  --llama URL                     llama.cpp's llama-server, POST /completion with
      stream, n_predict, temperature 0, ignore_eos, cache_prompt false (true in the
      shared-prefix mode); Server-Sent Events "data: {...}" per token.

Prompts: stream i gets a random 8-hex-digit tag followed by the text below from a
different word onward, cut to --prompt-tokens tokens with the server's own tokenizer
(Tokenize / /tokenize + /detokenize). Tags come from --seed (default: the clock), so
neither a later N nor a later run finds its prompts in a prefix cache; streams share
at most the tag's first token or two.

--shared-prefix-tokens S: every prompt is the same S-token system text (tagged per run)
plus a distinct short question; one warm-up request with that system text runs first
(a popular system prompt is cached in steady state; --cold-prefix warms up with other
text instead). Compare an ingot model loaded with and without its prefix cache:
  --load PATH [--no-prefix-cache] [--max-sequences K] [--kv-cache-bytes B] loads
  --model NAME from PATH first (LoadModelRequest) unless a model of that name exists.

Output: a Markdown table on stdout; --json FILE writes every run (per-stream numbers
included). --compare A.json B.json ... prints the combined table of earlier runs with
ratios of the first target to the second (what tests/bench/serve_compare.sh prints).

  python tests/bench/serve_bench.py --ingot 127.0.0.1:50051 --model smol --streams 1,4
  python tests/bench/serve_bench.py --llama http://127.0.0.1:8089 --streams 4 --json l.json
  python tests/bench/serve_bench.py --compare ingot.json llama.json
"""
import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

# Plain prose (~800 tokens) that a small model keeps continuing: no lists, no
# dialogue, no end of story in sight.
TEXT = (
    "The harbor town woke slowly in the winter months, when the fishing boats stayed "
    "tied to the stone quay and the gulls walked the empty market square as if they "
    "owned it. Mara kept the lighthouse at the end of the northern breakwater, as her "
    "mother had before her, and every morning she climbed the hundred and twelve steps "
    "to wipe the salt from the great lens and write the weather in a ledger whose first "
    "pages were older than the town hall. The wind came mostly from the west, carrying "
    "rain that tasted of iron, and on clear days she could see the grey line of the "
    "islands where her grandfather had been born. Below her the river met the sea in a "
    "wide brown fan, and the ferry that crossed it twice a day left a long white scar "
    "on the water that closed again before the ferry reached the far bank. In the town "
    "the baker opened before dawn, and the smell of bread rose through the narrow "
    "streets long before the first shutters were pulled up. The schoolmaster walked his "
    "dog along the sea wall at seven, the postmistress sorted letters by lamplight, and "
    "the old men who had once sailed to the cod banks sat on the bench outside the "
    "chandlery arguing about tides they would never sail again. Nobody remembered who "
    "had planted the row of crooked pines along the cliff road, but everyone agreed "
    "that they leaned a little further every year, as if listening for something far "
    "out at sea. In spring the boats were scraped and painted, nets were mended on the "
    "slipway, and the whole town smelled of tar and linseed oil. Children ran between "
    "the hulls collecting lost floats and bits of coloured glass, and the harbor master "
    "pretended not to see them. The summer brought visitors from the cities inland, who "
    "photographed the lighthouse and asked Mara whether she was lonely up there. She "
    "told them the truth, which was that the light was never lonely: it spoke to every "
    "ship that passed, and the ships answered with their horns in the fog. In autumn the "
    "storms returned, and she spent long nights watching the beam sweep across the "
    "breaking water, counting the seconds between flashes to make sure the old clockwork "
    "kept its rhythm. Once, during the great gale that tore the roof from the fish "
    "market, the mechanism jammed, and she turned the lens by hand for six hours until "
    "the wind dropped and the engineer could come out along the breakwater. The town "
    "gave her a silver medal for it, which she kept in a drawer with her mother's "
    "compass and a photograph of the keeper's cottage before the new road was built. "
    "Years later, when the light was automated and the council sent a letter thanking "
    "her for her service, she moved into a small house above the bakery, where she "
    "could still see the beam turning at night from her kitchen window. She kept the "
    "ledger, though, and went on writing the weather in it every morning, because the "
    "sea did not know that anything had changed, and neither, she decided, did she. "
    "The river kept carrying silt from the hills, the ferry kept crossing, and the "
    "pines along the cliff road leaned a little further toward the water each year."
)
WORDS = TEXT.split()
QUESTIONS = ["the lighthouse", "the ferry", "the winter", "the storms", "the bakery",
             "the harbor master", "the pines", "the ledger", "the visitors", "the river"]


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---- ingotd over gRPC --------------------------------------------------------------

def load_ingot_stubs(proto_dir):
    """Generates the Python modules of proto_dir/ingot/v1/*.proto into a temp dir."""
    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp(prefix="ingot_pb_")
    v1 = os.path.join(proto_dir, "ingot", "v1")
    files = sorted(os.path.join(v1, f) for f in os.listdir(v1) if f.endswith(".proto"))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + proto_dir, "-I" + well_known, "--python_out=" + out,
                      "--grpc_python_out=" + out] + files)
    if rc != 0:
        sys.exit(f"protoc failed ({rc}) on {v1}")
    sys.path.insert(0, out)
    from ingot.v1 import generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc
    return generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc


class IngotTarget:
    kind = "ingot"

    def __init__(self, address, model, proto_dir, timeout):
        import grpc
        from google.protobuf import json_format
        self.grpc, self.json_format = grpc, json_format
        (self.gen, gen_grpc, self.mdl, mdl_grpc) = load_ingot_stubs(proto_dir)
        self.address, self.model, self.timeout = address, model, timeout
        self.channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.generation = gen_grpc.GenerationServiceStub(self.channel)
        self.models = mdl_grpc.ModelServiceStub(self.channel)

    def describe(self):
        return f"ingotd {self.address} model {self.model}"

    def load(self, source, prefix_cache, max_sequences, kv_cache_bytes):
        """LoadModel NAME from source unless NAME is loaded; returns its ModelInfo dict."""
        try:
            self.models.GetModel(self.mdl.GetModelRequest(name=self.model), timeout=30)
            print(f"# model {self.model} already loaded: its own settings apply", file=sys.stderr)
            return self.model_info()
        except self.grpc.RpcError as e:
            if e.code() != self.grpc.StatusCode.NOT_FOUND:
                raise
        req = self.mdl.LoadModelRequest(name=self.model, source=source)
        fields = req.DESCRIPTOR.fields_by_name
        for key, value in (("prefix_cache", prefix_cache), ("max_sequences", max_sequences),
                           ("kv_cache_bytes", kv_cache_bytes)):
            if value is None:
                continue
            if key not in fields:
                sys.exit(f"LoadModelRequest in this proto has no field {key}; "
                         f"point --proto-dir at the server's proto/")
            setattr(req, key, value)
        for _ in self.models.LoadModel(req, timeout=600):
            pass
        return self.model_info()

    def model_info(self):
        resp = self.models.GetModel(self.mdl.GetModelRequest(name=self.model), timeout=30)
        try:  # protobuf >= 5.26: show false/0 fields (prefix_cache: false) too
            info = self.json_format.MessageToDict(resp, preserving_proto_field_name=True,
                                                  always_print_fields_with_no_presence=True)
        except TypeError:
            info = self.json_format.MessageToDict(resp, preserving_proto_field_name=True)
        info = info.get("model", info)
        info.pop("tensor_kinds", None)
        return info

    def truncate(self, text, n):
        req = self.gen.TokenizeRequest(model=self.model, text=text, add_special=False,
                                       parse_special=False)
        pieces = self.generation.Tokenize(req, timeout=60).pieces
        if len(pieces) < n:
            sys.exit(f"prompt text has {len(pieces)} tokens, fewer than {n}")
        return b"".join(pieces[:n]).decode("utf-8", "ignore")

    def stream(self, prompt, gen_tokens, shared_prefix, on_tokens):
        req = self.gen.GenerateRequest(model=self.model, prompt=prompt, max_tokens=gen_tokens,
                                       temperature=0.0)
        final = None
        for msg in self.generation.Generate(req, timeout=self.timeout):
            if msg.token_ids:
                on_tokens(len(msg.token_ids))
            if msg.finish_reason:
                final = msg
        if final is None:
            raise RuntimeError("stream ended without a final message")
        reason = self.gen.FinishReason.Name(final.finish_reason)
        if reason == "FINISH_REASON_CANCELLED":
            raise RuntimeError("cancelled by the server")
        extra = {"finish_reason": reason,
                 "server_ttft_s": final.timings.time_to_first_token_seconds}
        for field in ("cached_prompt_tokens",):
            if field in final.usage.DESCRIPTOR.fields_by_name:
                extra[field] = getattr(final.usage, field)
        if "queue_seconds" in final.timings.DESCRIPTOR.fields_by_name:
            extra["server_queue_s"] = final.timings.queue_seconds
        return final.usage.prompt_tokens, final.usage.completion_tokens, extra


# ---- llama-server over HTTP ----------------------------------------------------------

class LlamaTarget:
    kind = "llama"

    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        self.host, self.port = u.hostname, u.port or 80
        self.url, self.timeout = url, timeout

    def describe(self):
        return f"llama-server {self.url}"

    def _post(self, path, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:200]!r}")
            return json.loads(data)
        finally:
            conn.close()

    def model_info(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", "/props")
            resp = conn.getresponse()
            props = json.loads(resp.read()) if resp.status == 200 else {}
        finally:
            conn.close()
        keep = ("total_slots", "model_path", "build_info", "n_ctx")
        info = {k: props[k] for k in keep if k in props}
        gen = props.get("default_generation_settings", {})
        if "n_ctx" in gen:
            info["n_ctx_slot"] = gen["n_ctx"]
        return info

    def truncate(self, text, n):
        ids = self._post("/tokenize", {"content": text, "add_special": False})["tokens"]
        if len(ids) < n:
            sys.exit(f"prompt text has {len(ids)} tokens, fewer than {n}")
        return self._post("/detokenize", {"tokens": ids[:n]})["content"]

    def stream(self, prompt, gen_tokens, shared_prefix, on_tokens):
        body = {"prompt": prompt, "n_predict": gen_tokens, "temperature": 0.0, "stream": True,
                "ignore_eos": True, "cache_prompt": bool(shared_prefix),
                "return_tokens": True}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", "/completion", json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
            counted, final = 0, None
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.startswith(b"data: "):
                    continue
                ev = json.loads(line[6:])
                if "error" in ev:
                    raise RuntimeError(f"server error: {ev['error']}")
                n = len(ev.get("tokens") or []) or (1 if ev.get("content") else 0)
                if n:
                    counted += n
                    on_tokens(n)
                if ev.get("stop"):
                    final = ev
                    break
        finally:
            conn.close()
        if final is None:
            raise RuntimeError("stream ended without a stop event")
        timings = final.get("timings", {})
        extra = {"finish_reason": final.get("stop_type", ""),
                 "server_ttft_s": timings.get("prompt_ms", 0.0) / 1e3}
        if "cache_n" in timings:  # prompt tokens reused from the slot's cache
            extra["cached_prompt_tokens"] = timings["cache_n"]
        return (final.get("tokens_evaluated", 0), final.get("tokens_predicted", counted), extra)


# ---- prompts and one load level ------------------------------------------------------

def distinct_prompts(target, n, prompt_tokens, rng):
    prompts = []
    for i in range(n):
        start = (i * 53 + rng.randrange(len(WORDS))) % len(WORDS)
        words = WORDS[start:] + WORDS[:start]
        text = f"{rng.getrandbits(32):08x} " + " ".join(words)
        prompts.append(target.truncate(text, prompt_tokens))
    return prompts


def shared_system(target, prefix_tokens, rng):
    text = f"Session {rng.getrandbits(32):08x}. Read this story. " + TEXT
    return target.truncate(text, prefix_tokens)


def question(rng, i):
    # Ends mid-sentence so the model goes on (a question mark invites an early EOS).
    topic = QUESTIONS[i % len(QUESTIONS)]
    return (f"\n\nReader's note {i + 1} ({rng.getrandbits(16):04x}) on {topic}: in the story, "
            f"{topic}")


def run_level(target, prompts, gen_tokens, shared_prefix):
    n = len(prompts)
    barrier = threading.Barrier(n)
    streams = [None] * n

    def worker(i):
        rec = {"error": None, "ttft_s": None, "end_s": None, "prompt_tokens": 0,
               "completion_tokens": 0}
        barrier.wait()
        t0 = time.perf_counter()
        rec["send"] = t0

        def on_tokens(count):
            if rec["ttft_s"] is None:
                rec["ttft_s"] = time.perf_counter() - t0

        try:
            p, c, extra = target.stream(prompts[i], gen_tokens, shared_prefix, on_tokens)
            rec.update(prompt_tokens=p, completion_tokens=c, **extra)
        except Exception as e:  # noqa: BLE001 -- every failure is one error of this stream
            rec["error"] = f"{type(e).__name__}: {e}"[:300]
        rec["end"] = time.perf_counter()
        streams[i] = rec

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_first = min(s["send"] for s in streams)
    t_last = max(s["end"] for s in streams)
    ok = [s for s in streams if not s["error"]]
    tokens = sum(s["completion_tokens"] for s in ok)
    wall = t_last - t_first
    ttft = [s["ttft_s"] for s in ok if s["ttft_s"] is not None]
    decode = [(s["completion_tokens"] - 1) / (s["end"] - s["send"] - s["ttft_s"])
              for s in ok if s["ttft_s"] is not None and s["completion_tokens"] > 1]
    for s in streams:
        s["end_s"] = s.pop("end") - t_first
        s["send_s"] = s.pop("send") - t_first
    errors = [s["error"] for s in streams if s["error"]]
    return {
        "streams": n,
        "completion_tokens": tokens,
        "prompt_tokens_mean": statistics.mean(s["prompt_tokens"] for s in ok) if ok else 0,
        "tokens_per_stream_mean": tokens / len(ok) if ok else 0,
        "short_streams": sum(1 for s in ok if s["completion_tokens"] < gen_tokens),
        "wall_s": wall,
        "aggregate_tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_ms": None if not ttft else percentile(ttft, 50) * 1e3,
        "ttft_p95_ms": None if not ttft else percentile(ttft, 95) * 1e3,
        "decode_tok_s_per_stream_p50": percentile(decode, 50),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "per_stream": streams,
    }


# ---- tables --------------------------------------------------------------------------

def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def print_runs(result):
    print(f"\n{result['target']} ({result['describe']}), {result['mode']}, "
          f"gen {result['gen_tokens']} tokens/stream")
    print("| N | prompt tok | gen tok/stream | wall s | aggregate tok/s | TTFT p50 ms | "
          "TTFT p95 ms | decode tok/s/stream | short | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["runs"]:
        print(f"| {r['streams']} | {fmt(r['prompt_tokens_mean'], 0)} | "
              f"{fmt(r['tokens_per_stream_mean'])} | {fmt(r['wall_s'], 2)} | "
              f"{fmt(r['aggregate_tok_s'])} | {fmt(r['ttft_p50_ms'], 0)} | "
              f"{fmt(r['ttft_p95_ms'], 0)} | {fmt(r['decode_tok_s_per_stream_p50'])} | "
              f"{r['short_streams']} | {r['errors']} |")
        if r["first_error"]:
            print(f"  first error at N={r['streams']}: {r['first_error']}")


# ModelInfo (ingot) and /props (llama-server) fields worth a line under the table.
SERVER_KEYS = ("backend", "weight_bytes", "kv_cache_bytes", "kv_cache_dtype", "kv_bytes_per_token",
               "max_sequences", "prefix_cache", "context_length", "total_slots", "n_ctx",
               "n_ctx_slot", "build_info")


def ratio(a, b):
    return None if a is None or not b else a / b


def compare(paths):
    """Combined table: runs grouped by (mode, N), one column group per label in file order."""
    results = []
    for p in paths:
        with open(p) as f:
            results.append(json.load(f))
    labels = []
    by = {}  # (mode, N) -> label -> run
    for res in results:
        base, k = res["label"], 2
        while any((res["mode"], r["streams"]) in by and res["label"] in by[(res["mode"], r["streams"])]
                  for r in res["runs"]):  # the same label run twice: keep both apart
            res["label"] = f"{base}#{k}"
            k += 1
        if res["label"] not in labels:
            labels.append(res["label"])
        for r in res["runs"]:
            by.setdefault((res["mode"], r["streams"]), {})[res["label"]] = r
    a = labels[0]
    b = labels[1] if len(labels) > 1 else None
    single = {lab: by.get(("distinct", 1), {}).get(lab) for lab in labels}
    modes = sorted({m for m, _ in by})
    for mode in modes:
        keys = sorted(n for m, n in by if m == mode)
        head = ["N"]
        for lab in labels:
            head += [f"{lab} tok/s", f"{lab} TTFT p50/p95 ms", f"{lab} err"]
        # Shared prefix: how many times lower TTFT is with the cache (b/a); else a/b.
        ttft_ratio = f"{b}/{a} TTFT p50" if mode == "shared" else f"{a}/{b} TTFT p50"
        if b:
            head += [f"{a}/{b} tok/s", ttft_ratio]
        if mode == "distinct":
            head += [f"{a} vs its N=1"]
        print(f"\n{mode} prompts")
        print("| " + " | ".join(head) + " |")
        print("|" + "---:|" * len(head))
        for n in keys:
            row = by[(mode, n)]
            cells = [("1 (single stream)" if n == 1 and mode == "distinct" else str(n))]
            for lab in labels:
                r = row.get(lab)
                cells += ["-", "-", "-"] if r is None else [
                    fmt(r["aggregate_tok_s"]),
                    f"{fmt(r['ttft_p50_ms'], 0)} / {fmt(r['ttft_p95_ms'], 0)}",
                    f"{r['errors']}" + (f" ({r['short_streams']} short)" if r["short_streams"] else "")]
            ra, rb = row.get(a), row.get(b) if b else None
            if b:
                ta, tb = ra and ra["ttft_p50_ms"], rb and rb["ttft_p50_ms"]
                cells += [fmt(ratio(ra and ra["aggregate_tok_s"], rb and rb["aggregate_tok_s"]), 2),
                          fmt(ratio(tb, ta) if mode == "shared" else ratio(ta, tb), 2)]
            if mode == "distinct":
                s = single.get(a)
                cells += [fmt(ratio(ra and ra["aggregate_tok_s"], s and s["aggregate_tok_s"]), 2)]
            print("| " + " | ".join(cells) + " |")
        if mode == "distinct" and all(single.get(lab) for lab in labels):
            print("\nsingle stream, decode tok/s after the first token: " + ", ".join(
                f"{lab} {fmt(single[lab]['decode_tok_s_per_stream_p50'])}" for lab in labels))
    last = {res["label"]: res for res in results}
    for lab, res in last.items():
        seeds = [str(r["seed"]) for r in results if r["label"] == lab]
        print(f"\n{lab}: {res['describe']}; prompt {res['prompt_tokens']} tokens, "
              f"gen {res['gen_tokens']}, seeds {','.join(seeds)}; "
              + json.dumps({k: v for k, v in res["server"].items() if k in SERVER_KEYS}))


# ---- main ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ingot", metavar="HOST:PORT", help="ingotd's gRPC address")
    ap.add_argument("--model", default="smol", help="ingot model name (default smol)")
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    ap.add_argument("--load", metavar="PATH", help="LoadModel --model from PATH first")
    ap.add_argument("--no-prefix-cache", action="store_true", help="with --load: prefix_cache false")
    ap.add_argument("--max-sequences", type=int, help="with --load: LoadModelRequest.max_sequences")
    ap.add_argument("--kv-cache-bytes", type=int, help="with --load: LoadModelRequest.kv_cache_bytes")
    ap.add_argument("--llama", metavar="URL", help="llama-server base URL")
    ap.add_argument("--streams", default="1,4,16,64", help="comma-separated N (default 1,4,16,64)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--shared-prefix-tokens", type=int, default=0, metavar="S",
                    help="same S-token system text + a distinct question per stream")
    ap.add_argument("--cold-prefix", action="store_true",
                    help="shared-prefix mode: warm up with other text, not the system text")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured requests per N (default 1)")
    ap.add_argument("--seed", type=int, help="prompt tags (default: from the clock)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per request")
    ap.add_argument("--label", help="name of this target in tables (default ingot / llama)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--compare", nargs="+", metavar="JSON", help="print the combined table of these")
    args = ap.parse_args()

    if args.compare:
        compare(args.compare)
        return
    if bool(args.ingot) == bool(args.llama):
        ap.error("give exactly one of --ingot and --llama (or --compare)")
    levels = [int(x) for x in args.streams.split(",") if x]
    seed = args.seed if args.seed is not None else time.time_ns() % (1 << 31)
    rng = random.Random(seed)

    if args.ingot:
        target = IngotTarget(args.ingot, args.model, args.proto_dir, args.timeout)
        if args.load:
            target.load(args.load, False if args.no_prefix_cache else None,
                        args.max_sequences, args.kv_cache_bytes)
    else:
        target = LlamaTarget(args.llama, args.timeout)
    shared = args.shared_prefix_tokens > 0
    result = {
        "target": target.kind, "label": args.label or target.kind,
        "describe": target.describe(),
        "mode": "shared" if shared else "distinct",
        "prompt_tokens": args.shared_prefix_tokens if shared else args.prompt_tokens,
        "gen_tokens": args.gen_tokens, "seed": seed,
        "cold_prefix": args.cold_prefix if shared else None,
        "server": target.model_info(), "runs": [],
    }
    for n in levels:
        if shared:
            system = shared_system(target, args.shared_prefix_tokens, rng)
            prompts = [system + question(rng, i) for i in range(n)]
            warm = ([distinct_prompts(target, 1, args.shared_prefix_tokens, rng)[0]]
                    if args.cold_prefix else [system + question(rng, n + 1)])
        else:
            prompts = distinct_prompts(target, n, args.prompt_tokens, rng)
            warm = distinct_prompts(target, 1, args.prompt_tokens, rng)
        for _ in range(args.warmup):
            target.stream(warm[0], min(8, args.gen_tokens), shared, lambda c: None)
        print(f"# {result['label']}: N={n} ...", file=sys.stderr, flush=True)
        result["runs"].append(run_level(target, prompts, args.gen_tokens, shared))
    if args.ingot:
        result["server_after"] = target.model_info()
    print_runs(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
