"""A Hugging Face cache laid out by huggingface_hub itself (run in .venv-seeds, through
tests/reference/regenerate_seeds.sh hf_cache):

  tests/data/hf_cache/hub/models--ingot-test--tiny-llama/
      blobs/<etag>                 the files' bytes, named by their ETag
      refs/main, refs/v1           the commit each ref points at
      snapshots/<commit>/<file>    relative symlinks into blobs/

huggingface_hub downloads tests/data/formats/hf-f32's files with hf_hub_download from a
small Hub stand-in served on 127.0.0.1 (it answers the resolve URLs with the headers the
real Hub sends: X-Repo-Commit, X-Linked-Etag, Content-Length), at two commits: `main`
(the files as they are) and tag `v1` (the same, with config.json's
max_position_embeddings at 128), so a loader that ignores the revision is caught. No
network is touched: HF_HUB_OFFLINE is off only for the loopback endpoint.
"""
import hashlib
import http.server
import json
import os
import shutil
import threading

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SRC = os.path.join(ROOT, "tests", "data", "formats", "hf-f32")
OUT = os.path.join(ROOT, "tests", "data", "hf_cache")
REPO = "ingot-test/tiny-llama"
FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json"]


def revisions():
    """{revision name: (commit, {file: bytes})}."""
    main = {f: open(os.path.join(SRC, f), "rb").read() for f in FILES}
    cfg = json.loads(main["config.json"])
    cfg["max_position_embeddings"] = 128
    v1 = dict(main, **{"config.json": (json.dumps(cfg, indent=2) + "\n").encode()})
    out = {}
    for name, files in (("main", main), ("v1", v1)):
        h = hashlib.sha1()
        for f in FILES:
            h.update(f.encode() + b"\0" + hashlib.sha256(files[f]).digest())
        out[name] = (h.hexdigest(), files)
    return out


def serve(revs):
    by_commit = {commit: files for commit, files in revs.values()}

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def lookup(self):
            # /{org}/{name}/resolve/{revision}/{filename}
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 5 or "/".join(parts[:2]) != REPO or parts[2] != "resolve":
                return None
            rev, fname = parts[3], parts[4]
            commit = revs[rev][0] if rev in revs else rev
            files = by_commit.get(commit)
            if files is None or fname not in files:
                return None
            return commit, files[fname]

        def answer(self, body):
            found = self.lookup()
            if found is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            commit, data = found
            etag = hashlib.sha256(data).hexdigest()
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):
            self.answer(False)

        def do_GET(self):
            self.answer(True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    revs = revisions()
    server = serve(revs)
    cache = os.path.join(OUT, "hub")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(cache)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    from huggingface_hub import hf_hub_download
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    for rev in ("main", "v1"):
        for f in FILES:
            hf_hub_download(REPO, f, revision=rev, cache_dir=cache, endpoint=endpoint)
    server.shutdown()
    # Lock files are huggingface_hub's scratch state, not part of the layout readers use.
    shutil.rmtree(os.path.join(cache, ".locks"), ignore_errors=True)
    import huggingface_hub
    repo_dir = os.path.join(cache, "models--" + REPO.replace("/", "--"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"tool": "huggingface_hub", "version": huggingface_hub.__version__, "repo_id": REPO,
                   "revisions": {name: commit for name, (commit, _) in revs.items()},
                   "source": "tests/data/formats/hf-f32",
                   "v1_change": "config.json max_position_embeddings 128"}, f, indent=1)
        f.write("\n")
    for dirpath, _, names in sorted(os.walk(repo_dir)):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            print(os.path.relpath(p, OUT), "->", os.readlink(p) if os.path.islink(p) else "")


if __name__ == "__main__":
    main()
