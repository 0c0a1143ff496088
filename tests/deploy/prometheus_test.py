"""End to end with a real Prometheus: the Debian `prometheus` server scrapes a real
ingotd (default model) on loopback every second while the ingot CLI runs generations;
then Prometheus' HTTP API answers the token counters, the latency histograms and every
query of the Grafana dashboard with data.
"""
import json
import os
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

from deploy_util import BUILD_BIN, ROOT, dashboard, dashboard_queries, missing, tool

MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} within {seconds} s")


class PrometheusEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (BUILD_BIN / "ingotd").exists() or not MODEL.exists():
            missing(f"{BUILD_BIN / 'ingotd'} and the default model (scripts/test.sh builds and fetches them)")
        prometheus = tool("prometheus")
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls.tmp.name)
        cls.grpc = f"127.0.0.1:{free_port()}"
        metrics_port = free_port()
        cls.prom = f"127.0.0.1:{free_port()}"
        cls.procs = []
        cls.logs = [open(tmp / "ingotd.log", "w"), open(tmp / "prometheus.log", "w")]
        cls.ingotd = subprocess.Popen(
            [str(BUILD_BIN / "ingotd"), "--listen", cls.grpc, "--metrics-listen", f"127.0.0.1:{metrics_port}",
             "--model", f"smol={MODEL}", "--threads", "2", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=cls.logs[0])
        cls.procs.append(cls.ingotd)
        # The scrape config the ServiceMonitor amounts to, pointed at loopback.
        (tmp / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: ingotd\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
        cls.prometheus = subprocess.Popen(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address={cls.prom}"],
            stdout=subprocess.DEVNULL, stderr=cls.logs[1])
        cls.procs.append(cls.prometheus)
        cli = [str(BUILD_BIN / "ingot"), "--server", cls.grpc]
        wait_for(lambda: subprocess.run(cli + ["models"], capture_output=True).returncode == 0, "ingotd serving")
        wait_for(lambda: urllib.request.urlopen(f"http://{cls.prom}/-/ready").status == 200, "prometheus ready")
        wait_for(lambda: cls.query("up{job='ingotd'}") and cls.query("up{job='ingotd'}")[0]["value"][1] == "1",
                 "prometheus scraping ingotd")
        for prompt in ("The capital of France is", "Write a haiku about rivers", "2 + 2 ="):
            r = subprocess.run(cli + ["generate", "smol", prompt, "-n", "12"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        # A second copy loaded and unloaded: the lifecycle series (issue 17).
        for args in (["load", "evicted", str(MODEL), "--context-length", "256"], ["unload", "evicted"]):
            r = subprocess.run(cli + args, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        # A few scrapes after the last generation, so rate() has two points that differ.
        time.sleep(4)

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            p.terminate()
        for p in cls.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in cls.logs:
            f.close()
        cls.tmp.cleanup()

    @classmethod
    def query(cls, expr):
        url = f"http://{cls.prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body}")
        return body["data"]["result"]

    def test_token_counters(self):
        gen = self.query("sum(ingot_generated_tokens_total{model='smol'})")
        self.assertTrue(gen, "no ingot_generated_tokens_total series")
        self.assertGreaterEqual(float(gen[0]["value"][1]), 3)
        prompt = self.query("sum(ingot_prompt_tokens_total{model='smol'})")
        self.assertGreater(float(prompt[0]["value"][1]), 10)
        ok = self.query("sum(ingot_requests_total{model='smol',code='OK'})")
        self.assertEqual(float(ok[0]["value"][1]), 3)

    def test_latency_histograms(self):
        for family in ("ingot_time_to_first_token_seconds", "ingot_request_duration_seconds",
                       "ingot_time_per_output_token_seconds"):
            res = self.query(f"histogram_quantile(0.9, sum by (le) ({family}_bucket))")
            self.assertTrue(res, family)
            v = float(res[0]["value"][1])
            self.assertTrue(0 < v < 120, f"{family} p90 = {v}")

    def test_lifecycle_series(self):
        evicted = self.query("sum by (reason) (ingot_model_evictions_total{model='evicted'})")
        self.assertEqual([(e["metric"]["reason"], float(e["value"][1])) for e in evicted],
                         [("unload_request", 1.0)])
        ready = self.query("ingot_model_state{model='smol', device='cpu', state='ready'}")
        self.assertEqual([float(e["value"][1]) for e in ready], [1.0])
        self.assertFalse(self.query("ingot_model_state{model='evicted'}"), "an unloaded model keeps a state")
        loads = self.query("sum by (model) (ingot_model_load_duration_seconds_count)")
        self.assertEqual(sorted((e["metric"]["model"], float(e["value"][1])) for e in loads),
                         [("evicted", 1.0), ("smol", 1.0)])
        unloads = self.query("ingot_model_unload_duration_seconds_count")
        self.assertEqual([float(e["value"][1]) for e in unloads], [1.0])

    def test_every_dashboard_query_runs(self):
        # Range functions over 5m see the samples of this run; every query must parse
        # and evaluate, and those about this model's traffic must return data.
        empty = []
        for where, expr in dashboard_queries(dashboard()):
            # grafana_to_promql spells every template variable "x": match anything.
            expr = expr.replace('=~"x"', '=~".*"').replace('="x"', '=~".*"')
            try:
                res = self.query(expr)
            except Exception as e:  # noqa: BLE001 - report which query
                self.fail(f"{where}: {expr}: {e}")
            if not res:
                empty.append(where)
        self.assertLess(len(empty), len(dashboard_queries(dashboard())) // 2,
                        f"most dashboard queries returned nothing: {empty}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
