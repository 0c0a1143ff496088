"""Shared helpers for the tests under tests/deploy: paths, tools, rendering, parsing.

A missing tool (kubectl, promtool, hadolint, a Python package) skips a test with exit
code 77, which ctest reports as skipped, unless CI is set: under CI=true a missing
tool is a failure, since tests/deploy/setup_tools.sh and scripts/setup.sh install
them all.
"""

import os
import re
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / ".venv-deploy" / "bin"
BUILD_BIN = Path(os.environ.get("INGOT_BINARY_DIR", ROOT / "build")) / "bin"
SKIP_EXIT = 77

# Every kustomization the repository ships, rendered by the tests.
WORKLOADS = ("base", "overlays/cpu", "overlays/gpu")
KUSTOMIZATIONS = WORKLOADS + ("monitoring",)


def in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(what):
    """Ends the test: skipped (77) outside CI, failed under CI=true."""
    hint = "install it with tests/deploy/setup_tools.sh (scripts/setup.sh runs it)"
    if in_ci():
        print(f"FAIL: {what} is missing and CI is set, so this cannot be skipped; {hint}",
              flush=True)
        sys.exit(1)
    print(f"SKIP: {what} is missing; {hint}", flush=True)
    sys.exit(SKIP_EXIT)


def tool(name):
    """The path of a command-line tool: .venv-deploy/bin first, then PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        missing(f"the `{name}` command")
    return found


def require_module(name, package):
    try:
        return __import__(name)
    except ImportError:
        missing(f"the Python package {package} (import {name})")


yaml = require_module("yaml", "PyYAML")


def run(cmd, **kwargs):
    """Runs cmd, returns CompletedProcess; output captured as text."""
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


_render_cache = {}


def render(kustomization):
    """`kubectl kustomize deploy/<kustomization>` as a list of objects."""
    if kustomization not in _render_cache:
        result = run([tool("kubectl"), "kustomize", str(DEPLOY / kustomization)])
        if result.returncode != 0:
            raise AssertionError(
                f"kubectl kustomize deploy/{kustomization} failed:\n{result.stderr}")
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        if not docs:
            raise AssertionError(f"kubectl kustomize deploy/{kustomization} rendered nothing")
        _render_cache[kustomization] = docs
    return _render_cache[kustomization]


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    return found


def one(objects, kind, name=None):
    found = find(objects, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}{' ' + name if name else ''}, "
                             f"found {len(found)}")
    return found[0]


def port_of(address):
    """'0.0.0.0:50051' -> ('0.0.0.0', 50051)."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit():
        raise AssertionError(f"address {address!r} is not HOST:PORT")
    return host, int(port)


def cmake_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(\s*ingot\s+VERSION\s+([0-9.]+)", text)
    if not m:
        raise AssertionError("CMakeLists.txt: no `project(ingot VERSION x.y.z ...)`")
    return m.group(1)


# --- Metrics: what server/metrics.cc exports ------------------------------------------

METRICS_SOURCE = ROOT / "server" / "metrics.cc"


def exported_metrics():
    """{family name: type} for every family server/metrics.cc registers or collects.

    Registry families: prometheus::Build<Type>().Name("x"); collected ones:
    Family("x", help, MetricType::Type).
    """
    text = METRICS_SOURCE.read_text()
    families = {}
    for kind, name in re.findall(r"prometheus::Build(Counter|Gauge|Histogram|Summary)\(\)"
                                 r"\s*\.Name\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"", text):
        families[name] = kind.lower()
    # The help text may hold any character (';' too): scan up to the next Family(.
    for name, kind in re.findall(r"\bFamily\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"\s*,"
                                 r"(?:(?!\bFamily\().)*?MetricType::(Counter|Gauge|Histogram|Summary)",
                                 text, flags=re.S):
        families[name] = kind.lower()
    if not families:
        raise AssertionError(f"{METRICS_SOURCE}: found no metric families; has the way "
                             "metrics are declared changed? Update exported_metrics().")
    return families


SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def series_family(series, families):
    """The family a series name belongs to ('x_bucket' -> 'x' for a histogram x)."""
    if series in families:
        return series
    for family, kind in families.items():
        for suffix in SERIES_SUFFIXES.get(kind, ()):
            if series == family + suffix:
                return family
    return None


# --- PromQL: the metric and label names an expression uses -----------------------------

_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "start", "end",
}


def grafana_to_promql(expr):
    """Replaces Grafana's template variables with values PromQL parses."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    expr = expr.replace("$__interval", "1m")
    expr = re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", "x", expr)
    return expr


def promql_names(expr):
    """(metric names, label names) an expression refers to.

    Strings, durations and numbers are dropped; an identifier followed by `(` is a
    function or aggregation; identifiers in `by (...)`, `without (...)`, `on (...)`,
    `ignoring (...)`, `group_left/right (...)` and on the left of a matcher inside
    `{...}` are label names; what is left are metric names.
    """
    labels = set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    # Matchers: {a="x", b!~"y"} -> label names; keep a placeholder for the selector.
    def matchers(m):
        for name in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)):
            labels.add(name)
        return " "
    expr = re.sub(r"\{([^{}]*)\}", matchers, expr)
    def grouping(m):
        labels.update(n for n in re.split(r"[\s,]+", m.group(2)) if n)
        return " "
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)",
                  grouping, expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery durations
    expr = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", expr)
    metrics = set()
    for m in re.finditer(r"(?<![a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _PROMQL_KEYWORDS:
            continue
        metrics.add(name)
    return metrics, labels


def label_values_queries(query):
    """Grafana `label_values(expr, label)` -> (expr, label); (query, None) otherwise."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    if m:
        return m.group(1), m.group(2)
    return query, None


def dashboard():
    import json
    path = DEPLOY / "monitoring" / "ingot-dashboard.json"
    return json.loads(path.read_text())


def dashboard_queries(dash):
    """[(where, PromQL)] for every panel target and query variable of a dashboard."""
    out = []
    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}",
                                grafana_to_promql(t["expr"])))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        expr, _ = label_values_queries(q)
        out.append((f"variable ${v['name']}", grafana_to_promql(expr)))
    return out


def alert_rules(monitoring=None):
    """[(where, PromQL)] for every rule of the PrometheusRule in deploy/monitoring."""
    objects = monitoring if monitoring is not None else render("monitoring")
    out = []
    for rule_obj in find(objects, "PrometheusRule"):
        for group in rule_obj["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                out.append((f"rule {group['name']}/{name}", rule["expr"]))
    return out


def adapter_rules():
    """The prometheus-adapter rules shipped for the HorizontalPodAutoscaler."""
    path = DEPLOY / "monitoring" / "prometheus-adapter-rules.yaml"
    return yaml.safe_load(path.read_text())["rules"]["custom"]


def adapter_query(rule, namespace="ingot", pods=("ingotd-0", "ingotd-1")):
    """An adapter rule's metricsQuery as the adapter expands it for one HPA lookup."""
    series = re.search(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "pod"))


def main():
    """unittest.main that exits 0/1 (77 stays with missing())."""
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    ran = result.testsRun
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print(f"{ran - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)
