"""Runs the real build/bin/ingotd on free loopback ports for the Python tests (the
HTTP API here, client/python's tests too): gRPC, /metrics and the OpenAI-compatible
HTTP API, the default model preloaded as "default"."""
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY_DIR = Path(os.environ.get("INGOT_BINARY_DIR", ROOT / "build"))
INGOTD = BINARY_DIR / "bin" / "ingotd"
MODEL = Path(os.environ.get("INGOT_DEFAULT_MODEL", ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
# A prompt whose greedy continuation keeps going (no early EOS): long streams.
COUNTING_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


def require_binaries():
    """Skips (fails under CI) when ingotd or the default model is missing."""
    missing = [str(p) for p in (INGOTD, MODEL) if not p.exists()]
    if missing:
        message = f"missing {', '.join(missing)} (scripts/build.sh, scripts/fetch_model.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ingotd:
    def __init__(self, *extra_args, env=None, http=True, model=True):
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port() if http else 0
        self.dir = tempfile.mkdtemp(prefix="ingot-py-")
        self.log_path = os.path.join(self.dir, "ingotd.log")
        args = [str(INGOTD), "--listen", f"127.0.0.1:{self.grpc_port}",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--threads", "2"]
        if http:
            args += ["--http-listen", f"127.0.0.1:{self.http_port}"]
        if model:
            args += ["--model", f"default={MODEL}"]
        args += list(extra_args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("INGOT_")}
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                     stdin=subprocess.DEVNULL)
        self._wait_listening()

    def _wait_listening(self, timeout=180):
        deadline = time.monotonic() + timeout
        ports = [self.grpc_port] + ([self.http_port] if self.http_port else [])
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingotd exited with {self.proc.returncode}:\n{self.read_log()}")
            if "listening on" in self.read_log() and all(self._open(p) for p in ports):
                return
            time.sleep(0.1)
        raise RuntimeError(f"ingotd did not start in {timeout}s:\n{self.read_log()}")

    @staticmethod
    def _open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.http_port}/v1"

    @property
    def grpc_address(self):
        return f"127.0.0.1:{self.grpc_port}"

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, series):
        """The value of the first sample line starting with `series`, or -1."""
        for line in self.metrics().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return -1.0

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_for(done, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(interval)
    return done()
