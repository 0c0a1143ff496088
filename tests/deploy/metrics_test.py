#!/usr/bin/env python3
"""Every metric the deployment queries is one ingotd exports.

The PromQL of the alerts (PrometheusRule), the Grafana dashboard (panels and
variables), the prometheus-adapter rule and the HPA's metric name are parsed for
metric and label names, then checked twice:

- against server/metrics.cc (the families it registers or collects and their types):
  a histogram may only be queried through _bucket/_sum/_count, since its bare name
  has no samples; `up` is the one name Prometheus itself makes.
- against a real scrape, when build/bin/ingotd exists: the server starts from
  deploy/base's config (model roots moved to models/, gRPC and metrics on free
  loopback ports by flag; plain --model flags for a binary without --config), loads
  the default model if models/ has it, answers one generation and one failing
  LoadModel, and /metrics is read. A family that has no samples yet (no
  quantization ran, say) is absent from a scrape, so such names are reported as
  "source only" rather than failed. Names found in the scrape must have the labels
  the queries group or match on. The scrape also passes `promtool check metrics`.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from deploy_util import (BUILD_BIN, ROOT, adapter_query, adapter_rules, alert_rules,
                         dashboard, dashboard_queries, exported_metrics, find, main,
                         promql_names, render, run, series_family, tool, yaml)

# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SYNTHETIC = {"up"}
# Labels the Prometheus operator's scrape adds to every series of a ServiceMonitor.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
# prometheus-cpp's Exposer reports on itself; metrics.cc does not declare these.
EXPOSER_PREFIX = "exposer_"
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def references():
    """[(where, PromQL)] of everything deploy/ queries."""
    refs = alert_rules() + dashboard_queries(dashboard())
    for r in adapter_rules():
        refs.append((f"prometheus-adapter seriesQuery {r['name']['as']}", r["seriesQuery"]))
        refs.append((f"prometheus-adapter metricsQuery {r['name']['as']}", adapter_query(r)))
    for k in ("base", "overlays/gpu"):
        for hpa in find(render(k), "HorizontalPodAutoscaler"):
            for m in hpa["spec"]["metrics"]:
                refs.append((f"deploy/{k} HPA {hpa['metadata']['name']}",
                             m["pods"]["metric"]["name"]))
    return refs


def parse_exposition(text):
    """{family: {"type": t, "labels": set}} from the Prometheus text format."""
    families = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            families.setdefault(name, {"type": kind, "labels": set(), "samples": 0})
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            if not m:
                raise AssertionError(f"unparsable exposition line: {line!r}")
            series = m.group(1)
            family = series_family(series, types) or series
            entry = families.setdefault(family, {"type": "untyped", "labels": set(),
                                                 "samples": 0})
            entry["samples"] += 1
            entry["labels"].update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
    return families


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SourceTest(unittest.TestCase):
    def test_metrics_cc_parses(self):
        families = exported_metrics()
        # Cross-check the parser on names the README documents.
        readme = (ROOT / "README.md").read_text()
        documented = set(re.findall(r"`((?:ingot|process)_[a-z_]+)", readme))
        self.assertTrue(documented, "README.md documents no metric names")
        self.assertEqual(sorted(documented - set(families)), [],
                         "README.md names metrics server/metrics.cc does not export")

    def test_every_queried_metric_is_exported(self):
        families = exported_metrics()
        problems = []
        count = 0
        for where, expr in references():
            metrics, _ = promql_names(expr)
            if not metrics:
                problems.append(f"{where}: no metric name found in {expr!r}")
            for name in metrics:
                count += 1
                if name in PROMETHEUS_SYNTHETIC:
                    continue
                family = series_family(name, families)
                if family is None:
                    problems.append(f"{where}: {name} is not exported by server/metrics.cc")
                elif families[family] in ("histogram", "summary") and name == family:
                    problems.append(f"{where}: {name} is a {families[family]}; query "
                                    f"{name}_bucket, _sum or _count")
        self.assertEqual(problems, [])
        self.assertGreater(count, 20)

    def test_the_parser_finds_names_and_labels(self):
        metrics, labels = promql_names(
            'histogram_quantile(0.9, sum by (le, model) (rate(ingot_x_bucket{job="a", '
            'code=~"A|B"}[5m]))) / on (pod) group_left up offset 5m > bool 1e3')
        self.assertEqual(metrics, {"ingot_x_bucket", "up"})
        self.assertEqual(labels, {"le", "model", "job", "code", "pod"})


@unittest.skipUnless((BUILD_BIN / "ingotd").exists(),
                     f"{BUILD_BIN / 'ingotd'} is not built: scrape check not run")
class ScrapeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="ingot-scrape-")
        grpc_port, metrics_port = free_port(), free_port()
        cls.server = f"127.0.0.1:{grpc_port}"
        ingotd = str(BUILD_BIN / "ingotd")
        cmd = [ingotd, "--listen", cls.server,
               "--metrics-listen", f"127.0.0.1:{metrics_port}", "--threads", "1"]
        cls.with_model = DEFAULT_MODEL.exists()
        cls.model = "smol"
        if "--config" in run([ingotd, "--help"]).stdout:
            cmd += ["--config", cls.deployed_config()]
        elif cls.with_model:
            cmd += ["--model", f"{cls.model}={DEFAULT_MODEL}"]
        print(f"\nscrape from: {' '.join(cmd)}", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGOT_")}
        cls.log_path = Path(cls.tmp.name) / "ingotd.log"
        with open(cls.log_path, "w") as log:
            cls.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL)
        try:
            cls.text = cls.exercise_and_scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        except BaseException:
            cls.stop()
            raise

    @classmethod
    def deployed_config(cls):
        """deploy/base's ingotd.yaml with its model root moved to models/ (the flags
        move the listeners to loopback)."""
        cm = [c for c in find(render("base"), "ConfigMap")
              if c["metadata"]["name"].startswith("ingotd-config")][0]
        config = yaml.safe_load(cm["data"]["ingotd.yaml"])
        config["model_roots"] = [str(DEFAULT_MODEL.parent)]
        models = [m for m in config["models"]
                  if m["source"].rsplit("/", 1)[1] == DEFAULT_MODEL.name]
        if not models:
            raise AssertionError(f"deploy/base's config does not load {DEFAULT_MODEL.name}")
        for m in models:
            m["source"] = str(DEFAULT_MODEL)
        config["models"] = models if cls.with_model else []
        cls.model = models[0]["name"]
        path = Path(cls.tmp.name) / "ingotd.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    @classmethod
    def exercise_and_scrape(cls, url):
        cli = str(BUILD_BIN / "ingot")
        deadline = time.monotonic() + 120
        while True:
            if cls.proc.poll() is not None:
                raise AssertionError(f"ingotd exited ({cls.proc.returncode}):\n"
                                     f"{cls.log_path.read_text()}")
            if run([cli, "--server", cls.server, "models"], timeout=30).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError("ingotd did not answer within 120 s")
            time.sleep(0.2)
        if cls.with_model:
            gen = run([cli, "--server", cls.server, "generate", cls.model, "Hello", "-n", "4",
                       "--temperature", "0"], timeout=120)
            if gen.returncode != 0:
                raise AssertionError(f"ingot generate failed: {gen.stderr}")
            # A second copy loaded and unloaded: an eviction (reason unload_request)
            # and an unload duration, the series of the lifecycle panels.
            for args in (["load", "evicted", str(DEFAULT_MODEL), "--context-length", "256"],
                         ["unload", "evicted"]):
                step = run([cli, "--server", cls.server] + args, timeout=120)
                if step.returncode != 0:
                    raise AssertionError(f"ingot {args[0]} failed: {step.stderr}")
        # A refused LoadModel (inside the model root, so the engine sees it): the
        # failure series the alert watches.
        bad = run([cli, "--server", cls.server, "load", "missing",
                   str(DEFAULT_MODEL.parent / f"missing-{os.getpid()}.gguf")], timeout=60)
        if bad.returncode == 0:
            raise AssertionError("loading a missing file succeeded")
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode()

    @classmethod
    def stop(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.tmp.cleanup()

    @classmethod
    def tearDownClass(cls):
        cls.stop()

    def test_scrape_passes_promtool_lint(self):
        result = run([tool("promtool"), "check", "metrics"], input=self.text)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_scraped_families_are_the_declared_ones(self):
        declared = exported_metrics()
        scraped = parse_exposition(self.text)
        undeclared = sorted(f for f in scraped
                            if f not in declared and not f.startswith(EXPOSER_PREFIX))
        self.assertEqual(undeclared, [], "exported but not found in server/metrics.cc: the "
                         "source parser (deploy_util.exported_metrics) misses them")
        for family, info in scraped.items():
            if family in declared:
                self.assertEqual(info["type"], declared[family], family)
        absent = sorted(set(declared) - set(scraped))
        print(f"\nfamilies declared in server/metrics.cc without samples in this scrape: "
              f"{', '.join(absent) or 'none'}")
        # What this test exercised must be there.
        expected = {"ingot_model_loads_total", "ingot_quantizations_in_flight",
                    "process_resident_memory_bytes", "ingot_lora_requests_info"}
        if self.with_model:
            expected |= {"ingot_requests_total", "ingot_generated_tokens_total",
                         "ingot_prompt_tokens_total", "ingot_time_to_first_token_seconds",
                         "ingot_request_duration_seconds", "ingot_requests_running",
                         "ingot_model_memory_bytes", "ingot_device_memory_used_bytes",
                         "ingot_device_memory_total_bytes", "ingot_model_load_duration_seconds",
                         "ingot_model_evictions_total", "ingot_model_unload_duration_seconds",
                         "ingot_model_state", "ingot_model_info", "ingot_model_file_backed_bytes"}
        self.assertEqual(sorted(expected - set(scraped)), [])

    def test_served_models_info_lists_the_loaded_model(self):
        # The endpoint picker's --lora-info-metric (deploy/overlays/gateway): one series,
        # the served models as running adapters, max_lora an integer, the value the
        # scrape's Unix time (the picker keeps the newest series).
        series = re.findall(r'^ingot_lora_requests_info\{([^}]*)\} (\S+)$', self.text, flags=re.M)
        self.assertEqual(len(series), 1, self.text)
        labels = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', series[0][0]))
        self.assertEqual(set(labels), {"running_lora_adapters", "waiting_lora_adapters", "max_lora"})
        served = [m for m in labels["running_lora_adapters"].split(",") if m]
        self.assertEqual(served, [self.model] if self.with_model else [])
        self.assertEqual(int(labels["max_lora"]), len(served))
        self.assertLess(abs(float(series[0][1]) - time.time()), 300)
        if self.with_model:
            info = re.findall(r'^ingot_model_info\{([^}]*)\} 1$', self.text, flags=re.M)
            self.assertEqual([dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', i))["model"] for i in info],
                             [self.model])

    def test_queried_metrics_and_labels_exist_in_the_scrape(self):
        scraped = parse_exposition(self.text)
        source_only = set()
        problems = []
        for where, expr in references():
            metrics, labels = promql_names(expr)
            known = set(TARGET_LABELS)
            complete = True
            for name in metrics - PROMETHEUS_SYNTHETIC:
                family = series_family(name, {f: i["type"] for f, i in scraped.items()})
                if family is None or not scraped[family]["samples"]:
                    source_only.add(name)
                    complete = False
                    continue
                known |= scraped[family]["labels"]
            if complete:
                unknown = labels - known
                if unknown:
                    problems.append(f"{where}: labels {sorted(unknown)} are on no series of "
                                    f"{sorted(metrics)}")
        print(f"\nqueried metrics checked against server/metrics.cc only (no samples in this "
              f"scrape): {', '.join(sorted(source_only)) or 'none'}")
        self.assertEqual(problems, [])
        if self.with_model:
            # With a model loaded only the quantization families may lack samples.
            self.assertEqual(sorted(n for n in source_only if "quantization" not in n), [])


if __name__ == "__main__":
    main()
