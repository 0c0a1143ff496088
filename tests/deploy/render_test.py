#!/usr/bin/env python3
"""Renders every kustomization under deploy/ and validates what comes out.

- `kubectl kustomize` renders deploy/base, overlays/cpu, overlays/gpu and monitoring.
- Built-in kinds validate against the Kubernetes JSON schemas of kubernetes-validate,
  strict (unknown fields are errors), for the oldest and newest Kubernetes we support.
- ServiceMonitor and PrometheusRule (CRDs, no schema there) validate against the
  pydantic models cloudcoil generates from the prometheus-operator v0.80.1 CRD
  schemas (types, enums, patterns such as durations); the model's dump is compared
  with the input, so a field the CRD does not have is reported too.
- The objects agree with each other and with the config they carry: ports, probes,
  drain deadline vs grace period, threads vs CPU limit, memory budget vs memory limit,
  selectors, the HPA's metric, the GPU overlay's device and resources.
- When build/bin/ingotd has --check-config, ingotd's own parser accepts every config
  the kustomizations carry (model roots and sources moved under a temporary directory,
  since they exist only in the cluster).
"""

import os
import re
import tempfile
import unittest
from pathlib import Path

from deploy_util import (BUILD_BIN, DEPLOY, KUSTOMIZATIONS, WORKLOADS, adapter_rules,
                         cmake_version, exported_metrics, find, main, missing, one,
                         port_of, render, require_module, run, yaml)

# Kubernetes releases the manifests must validate against: the oldest we support
# (native gRPC probes and PDB unhealthyPodEvictionPolicy are GA there) and the newest
# kubernetes-validate knows.
K8S_VERSIONS = ("1.31.0", "1.37.0")
CONFIG_PATH = "/etc/ingot/ingotd.yaml"
RUN_AS_USER = 10001  # the Dockerfile's USER


def parse_quantity(q):
    """A Kubernetes quantity ('2', '500m', '3Gi', '1.5G') as a float in base units."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m:
        raise AssertionError(f"bad quantity {q!r}")
    factors = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    if m.group(2) not in factors:
        raise AssertionError(f"unknown quantity suffix in {q!r}")
    return float(m.group(1)) * factors[m.group(2)]


def diff_unknown(given, dumped, path=""):
    """Paths present in `given` but dropped (or changed) by the model's round trip."""
    problems = []
    if isinstance(given, dict) and isinstance(dumped, dict):
        for k, v in given.items():
            if k not in dumped:
                problems.append(f"{path}.{k}: not a field of the CRD schema")
            else:
                problems += diff_unknown(v, dumped[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(dumped, list) and len(given) == len(dumped):
        for i, (a, b) in enumerate(zip(given, dumped)):
            problems += diff_unknown(a, b, f"{path}[{i}]")
    elif given != dumped:
        problems.append(f"{path}: {given!r} became {dumped!r}")
    return problems


class Workload:
    """The objects of one rendered workload kustomization, with the ingotd config."""

    def __init__(self, name):
        self.name = name
        self.objects = render(name)
        self.deployment = one(self.objects, "Deployment", "ingotd")
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.container = next(c for c in self.pod["containers"] if c["name"] == "ingotd")
        mounts = {m["name"]: m for m in self.container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        self.mounts, self.volumes = mounts, volumes
        config_dir = CONFIG_PATH.rsplit("/", 1)[0]
        config_mount = [m for m in mounts.values() if m["mountPath"] == config_dir]
        if len(config_mount) != 1:
            raise AssertionError(f"{name}: nothing mounted at {config_dir}")
        cm_name = volumes[config_mount[0]["name"]]["configMap"]["name"]
        self.configmap = one(self.objects, "ConfigMap", cm_name)
        key = CONFIG_PATH.rsplit("/", 1)[1]
        if key not in self.configmap.get("data", {}):
            raise AssertionError(f"{name}: ConfigMap {cm_name} has no key {key}")
        self.config = yaml.safe_load(self.configmap["data"][key])
        self.labels = self.deployment["spec"]["template"]["metadata"]["labels"]

    def selects_pods(self, selector):
        return bool(selector) and all(self.labels.get(k) == v for k, v in selector.items())


class RenderAndSchemaTest(unittest.TestCase):
    def test_every_builtin_object_validates_against_kubernetes_schemas(self):
        kv = require_module("kubernetes_validate", "kubernetes-validate")
        checked = 0
        for k in KUSTOMIZATIONS:
            for obj in render(k):
                if obj["apiVersion"].startswith("monitoring.coreos.com/"):
                    continue
                where = f"deploy/{k}: {obj['kind']}/{obj['metadata']['name']}"
                for version in K8S_VERSIONS:
                    try:
                        kv.validate(obj, version, strict=True)
                    except kv.SchemaNotFoundError as e:
                        self.fail(f"{where}: no schema ({e.message})")
                    except kv.ValidationError as e:
                        self.fail(f"{where} is invalid for Kubernetes {version} at "
                                  f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}")
                checked += 1
        self.assertGreater(checked, 10)

    def test_prometheus_operator_objects_validate_against_crd_models(self):
        try:
            from cloudcoil.models.prometheus_operator import v1
        except ImportError:
            missing("the Python package cloudcoil.models.prometheus_operator")
        crds = [o for o in render("monitoring")
                if o["apiVersion"].startswith("monitoring.coreos.com/")]
        kinds = sorted(o["kind"] for o in crds)
        self.assertEqual(kinds, ["PrometheusRule", "ServiceMonitor"])
        for obj in crds:
            self.assertEqual(obj["apiVersion"], "monitoring.coreos.com/v1")
            model = getattr(v1, obj["kind"])
            try:
                parsed = model.model_validate(obj)
            except Exception as e:  # pydantic.ValidationError names the field
                self.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e}")
            dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
            problems = diff_unknown(obj, dumped)
            self.assertEqual(problems, [], f"{obj['kind']}/{obj['metadata']['name']}")

    def test_no_object_sets_a_namespace(self):
        # The namespace is the operator's choice (kubectl -n, or a kustomization on top).
        for k in KUSTOMIZATIONS:
            for obj in render(k):
                self.assertNotIn("namespace", obj["metadata"],
                                 f"deploy/{k}: {obj['kind']}/{obj['metadata']['name']}")


class WorkloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workloads = {k: Workload(k) for k in WORKLOADS}

    def each(self):
        """The workloads; assertion messages name the kustomization."""
        return list(self.workloads.values())

    def test_image_tags_are_pinned_and_match_the_variant(self):
        version = cmake_version()
        expected = {"base": "cpu", "overlays/cpu": "cpu", "overlays/gpu": "cuda"}
        for w in self.each():
            for c in w.pod["containers"] + w.pod.get("initContainers", []):
                image = c["image"]
                name, sep, tag = image.rpartition(":")
                self.assertTrue(sep and "/" not in tag, f"{image}: no tag")
                self.assertNotEqual(tag, "latest", image)
                self.assertEqual(tag, f"{version}-{expected[w.name]}",
                                 f"{image}: tag should be <CMake project version>-<variant>")
                self.assertEqual(c.get("imagePullPolicy"), "IfNotPresent", image)

    def test_server_runs_the_mounted_config(self):
        for w in self.each():
            self.assertEqual(w.container.get("args"), ["--config", CONFIG_PATH], w.name)
            config_mount = [m for m in w.container["volumeMounts"]
                            if m["mountPath"] == CONFIG_PATH.rsplit("/", 1)[0]]
            self.assertTrue(config_mount[0].get("readOnly"), f"{w.name}: config mount")
            for key in ("listen", "metrics_listen", "drain_seconds", "threads", "devices",
                        "model_roots", "models", "limits", "tls", "auth", "log"):
                self.assertIn(key, w.config, f"{w.name}: config lacks {key}")

    def test_ports_agree_between_config_container_probes_and_services(self):
        for w in self.each():
            host, grpc_port = port_of(w.config["listen"])
            mhost, metrics_port = port_of(w.config["metrics_listen"])
            # Probes and scrapes come from outside the pod: loopback would refuse them.
            self.assertEqual((host, mhost), ("0.0.0.0", "0.0.0.0"), w.name)
            ports = {p["name"]: p["containerPort"] for p in w.container["ports"]}
            self.assertEqual(ports, {"grpc": grpc_port, "metrics": metrics_port},
                             f"{w.name}: container ports vs listen/metrics_listen")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = w.container.get(probe)
                self.assertIsNotNone(p, f"{w.name}: no {probe}")
                self.assertEqual(p.get("grpc"), {"port": grpc_port, "service": ""},
                                 f"{w.name}: {probe} must ask grpc.health.v1 on the gRPC port")
            services = find(w.objects, "Service")
            headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
            self.assertEqual(len(headless), 1, f"{w.name}: one headless Service for "
                             "client-side load balancing")
            for s in services:
                self.assertTrue(w.selects_pods(s["spec"]["selector"]),
                                f"Service {s['metadata']['name']} selects no ingotd pod")
                for p in s["spec"]["ports"]:
                    self.assertIn(p["targetPort"], ports, f"Service {s['metadata']['name']}")
            self.assertEqual([p["port"] for p in headless[0]["spec"]["ports"]], [grpc_port],
                             w.name)
            metrics = [s for s in services if s is not headless[0]]
            self.assertEqual(len(metrics), 1, f"{w.name}: one Service for /metrics")
            self.assertEqual([p["targetPort"] for p in metrics[0]["spec"]["ports"]], ["metrics"],
                             w.name)

    def test_startup_probe_allows_slow_model_loads(self):
        for w in self.each():
            p = w.container["startupProbe"]
            budget = p.get("periodSeconds", 10) * p.get("failureThreshold", 3)
            self.assertGreaterEqual(budget, 300, f"{w.name}: startup probe gives up after {budget}s")

    def test_grace_period_covers_prestop_and_drain(self):
        for w in self.each():
            cmd = w.container["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(cmd[0], "sleep", f"{w.name}: preStop {cmd}")
            pre_stop = float(cmd[1])
            drain = float(w.config["drain_seconds"])
            grace = w.pod["terminationGracePeriodSeconds"]
            # The grace period runs from the start of preStop; ingotd drains after it.
            self.assertGreaterEqual(grace, pre_stop + drain + 5,
                                    f"{w.name}: grace {grace}s < preStop {pre_stop}s + "
                                    f"drain_seconds {drain}s + 5s to exit")
            self.assertLessEqual(grace, pre_stop + drain + 60,
                                 f"{w.name}: grace {grace}s far beyond what draining needs")

    def test_threads_and_memory_budget_fit_the_container(self):
        for w in self.each():
            res = w.container["resources"]
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    self.assertIn(r, res.get(kind, {}), f"{w.name}: no {kind}.{r}")
            cpu_limit = parse_quantity(res["limits"]["cpu"])
            self.assertEqual(w.config["threads"], int(cpu_limit),
                             f"{w.name}: threads should equal the CPU limit")
            budget = w.config["devices"]["cpu"]["memory_budget_bytes"]
            limit = parse_quantity(res["limits"]["memory"])
            self.assertGreater(budget, 0, f"{w.name}: 0 = node memory inside a container")
            self.assertLessEqual(budget, 0.75 * limit,
                                 f"{w.name}: cpu budget {budget} leaves too little of the "
                                 f"{res['limits']['memory']} limit for KV cache and runtime")
            for c in w.pod.get("initContainers", []):
                self.assertIn("limits", c.get("resources", {}), f"{w.name}: {c['name']}")

    def test_security_context(self):
        for w in self.each():
            sc = w.pod["securityContext"]
            self.assertTrue(sc.get("runAsNonRoot"), w.name)
            self.assertEqual(sc.get("runAsUser"), RUN_AS_USER, w.name)
            self.assertEqual(sc.get("seccompProfile"), {"type": "RuntimeDefault"}, w.name)
            self.assertFalse(w.pod.get("automountServiceAccountToken", True), w.name)
            for c in w.pod["containers"] + w.pod.get("initContainers", []):
                csc = c.get("securityContext", {})
                where = f"{w.name}: container {c['name']}"
                self.assertIs(csc.get("allowPrivilegeEscalation"), False, where)
                self.assertIs(csc.get("readOnlyRootFilesystem"), True, where)
                self.assertEqual(csc.get("capabilities", {}).get("drop"), ["ALL"], where)
            # A read-only root needs somewhere writable for temporary files.
            tmp = [m for m in w.container["volumeMounts"] if m["mountPath"] == "/tmp"]
            self.assertEqual(len(tmp), 1, f"{w.name}: no /tmp volume")
            self.assertIn("emptyDir", w.volumes[tmp[0]["name"]], w.name)

    def test_models_come_from_the_claim_under_the_model_roots(self):
        for w in self.each():
            roots = w.config["model_roots"]
            by_path = {m["mountPath"]: m for m in w.container["volumeMounts"]}
            for root in roots:
                self.assertIn(root, by_path, f"{w.name}: model root {root} is not mounted")
                claim = w.volumes[by_path[root]["name"]]["persistentVolumeClaim"]["claimName"]
                one(w.objects, "PersistentVolumeClaim", claim)
            self.assertTrue(w.config["models"], f"{w.name}: no model to load at start")
            for m in w.config["models"]:
                self.assertTrue(any(m["source"].startswith(r.rstrip("/") + "/") for r in roots),
                                f"{w.name}: {m['source']} is outside model_roots {roots}")
            # The seeding init container writes where the server reads.
            seed = w.pod["initContainers"][0]
            self.assertEqual([m["mountPath"] for m in seed["volumeMounts"]], roots, w.name)

    def test_pdb_and_hpa_target_the_deployment(self):
        for w in self.each():
            pdb = one(w.objects, "PodDisruptionBudget")
            self.assertTrue(w.selects_pods(pdb["spec"]["selector"]["matchLabels"]),
                            f"{w.name}: the PodDisruptionBudget selects no ingotd pod")
            hpa = one(w.objects, "HorizontalPodAutoscaler")
            ref = hpa["spec"]["scaleTargetRef"]
            self.assertEqual((ref["kind"], ref["name"]), ("Deployment", "ingotd"), w.name)
            self.assertNotIn("replicas", w.deployment["spec"], f"{w.name}: the HPA owns replicas")
            self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2,
                                    f"{w.name}: with 1 replica the PDB blocks node drains")

    def test_hpa_metric_is_exported_and_served_by_the_adapter_rules(self):
        families = exported_metrics()
        served = {r["name"]["as"]: r for r in adapter_rules()}
        for w in self.each():
            for m in one(w.objects, "HorizontalPodAutoscaler")["spec"]["metrics"]:
                self.assertEqual(m["type"], "Pods", w.name)
                name = m["pods"]["metric"]["name"]
                self.assertIn(name, served, f"no prometheus-adapter rule serves {name}")
                series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", served[name]["seriesQuery"])[0]
                self.assertEqual(families.get(series), "gauge",
                                 f"{series} is not a gauge in server/metrics.cc")

    def test_gpu_overlay_asks_for_a_gpu_and_loads_on_it(self):
        gpu = self.workloads["overlays/gpu"]
        limits = gpu.container["resources"]["limits"]
        self.assertGreaterEqual(int(limits.get("nvidia.com/gpu", 0)), 1)
        self.assertIn("nvidia.com/gpu", [t["key"] for t in gpu.pod.get("tolerations", [])])
        self.assertTrue(gpu.pod.get("nodeSelector") or gpu.pod.get("affinity"))
        for m in gpu.config["models"]:
            self.assertRegex(m["device"], r"^cuda:\d+$", m["name"])
            self.assertIn(m["device"], gpu.config["devices"])
        for name in ("base", "overlays/cpu"):
            w = self.workloads[name]
            self.assertNotIn("nvidia.com/gpu", w.container["resources"].get("limits", {}))
            self.assertEqual({m["device"] for m in w.config["models"]}, {"cpu"})
            self.assertEqual(list(w.config["devices"]), ["cpu"])

    def test_overlays_keep_the_base_config_but_for_device_settings(self):
        base = self.workloads["base"].config
        for name in ("overlays/cpu", "overlays/gpu"):
            config = self.workloads[name].config
            for key in ("listen", "metrics_listen", "drain_seconds", "model_roots", "limits",
                        "tls", "auth", "log"):
                self.assertEqual(config[key], base[key], f"{name}: {key} differs from base")


class ConfigCheckTest(unittest.TestCase):
    def test_ingotd_check_config_accepts_every_config(self):
        ingotd = BUILD_BIN / "ingotd"
        if not ingotd.exists():
            self.skipTest(f"{ingotd} is not built")
        if "--check-config" not in run([str(ingotd), "--help"]).stdout:
            self.skipTest(f"{ingotd} has no --check-config yet")
        for name in WORKLOADS:
            with self.subTest(kustomization=name), tempfile.TemporaryDirectory() as tmp:
                config = Workload(name).config
                # --check-config looks for the roots and the model files on disk.
                moved = lambda p: tmp + p
                for root in config["model_roots"]:
                    Path(moved(root)).mkdir(parents=True, exist_ok=True)
                config["model_roots"] = [moved(r) for r in config["model_roots"]]
                for m in config["models"]:
                    m["source"] = moved(m["source"])
                    Path(m["source"]).parent.mkdir(parents=True, exist_ok=True)
                    Path(m["source"]).touch()
                path = Path(tmp) / "ingotd.yaml"
                path.write_text(yaml.safe_dump(config))
                env = {k: v for k, v in os.environ.items() if not k.startswith("INGOT_")}
                result = run([str(ingotd), "--check-config", str(path)], env=env)
                on_gpu = any(m["device"].startswith("cuda") for m in config["models"])
                if on_gpu and not Path("/dev/nvidia0").exists():
                    # The gpu overlay's models are on cuda:0: a binary without CUDA, or
                    # a machine without a GPU, must fail the check loudly with the
                    # reason (before this, ingotd crash-looped on start).
                    self.assertNotEqual(result.returncode, 0, f"deploy/{name}: --check-config passed "
                                        f"a cuda:0 model on a machine without a GPU")
                    out = result.stdout + result.stderr
                    self.assertIn("device: device cuda:0 is not available", out)
                    self.assertTrue("built without CUDA" in out or "no CUDA device is visible" in out, out)
                    continue
                self.assertEqual(result.returncode, 0,
                                 f"deploy/{name}: ingotd --check-config:\n"
                                 f"{result.stdout}{result.stderr}")


class MonitoringTest(unittest.TestCase):
    def test_service_monitor_scrapes_the_metrics_service(self):
        monitoring = render("monitoring")
        base = render("base")
        sm = one(monitoring, "ServiceMonitor")
        selector = sm["spec"]["selector"]["matchLabels"]
        matching = [s for s in find(base, "Service")
                    if all(s["metadata"].get("labels", {}).get(k) == v
                           for k, v in selector.items())]
        self.assertEqual([s["metadata"]["name"] for s in matching], ["ingotd-metrics"])
        port_names = {p["name"] for p in matching[0]["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            self.assertIn(ep["port"], port_names)
            self.assertEqual(ep.get("path", "/metrics"), "/metrics")
        # Alerts and dashboard select job="<value of the jobLabel label on the Service>".
        job = matching[0]["metadata"]["labels"][sm["spec"]["jobLabel"]]
        prom_rule = one(monitoring, "PrometheusRule")
        exprs = [r["expr"] for g in prom_rule["spec"]["groups"] for r in g["rules"]]
        dash = (DEPLOY / "monitoring" / "ingot-dashboard.json").read_text()
        for text in exprs + [dash]:
            for j in re.findall(r'job\s*=\s*\\?"([^"\\]*)', text):
                self.assertEqual(j, job, f"job={j!r} but the ServiceMonitor sets job={job!r}")

    def test_dashboard_configmap_carries_the_grafana_label(self):
        import json
        cm = one(render("monitoring"), "ConfigMap")
        self.assertEqual(cm["metadata"]["labels"].get("grafana_dashboard"), "1")
        (key, text), = cm["data"].items()
        self.assertTrue(key.endswith(".json"))
        dash = json.loads(text)
        self.assertEqual(text, (DEPLOY / "monitoring" / key).read_text())
        ids = []
        def walk(panels):
            for p in panels:
                ids.append(p["id"])
                self.assertIn("gridPos", p)
                if p["type"] != "row":
                    self.assertTrue(p.get("targets"), f"panel {p['title']} has no query")
                    self.assertEqual(p["datasource"]["uid"], "${datasource}")
                walk(p.get("panels", []))
        walk(dash["panels"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        self.assertTrue(dash.get("uid"))
        names = [v["name"] for v in dash["templating"]["list"]]
        self.assertIn("datasource", names)


if __name__ == "__main__":
    main()
