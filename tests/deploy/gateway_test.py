#!/usr/bin/env python3
"""Renders deploy/overlays/gateway and validates what comes out.

- `kubectl kustomize` renders the overlay; its built-in kinds validate against the
  Kubernetes JSON schemas of kubernetes-validate (strict), as in render_test.py.
- The InferencePool validates against the whole v1 CRD schema vendored in
  tests/deploy/schemas/, the HTTPRoute against the vendored subset of the v1 CRD schema
  (the fields the overlay uses); unknown fields are errors (schemas/README.md).
- The objects agree with each other and with ingotd: the config is the base's plus
  `http`, whose port is the container port, the pool's target port and the HTTP
  Service's target; the pool selects the ingotd pods and names the picker's Service and
  port; the route sends to the pool; the picker watches this pool, scrapes ingotd's
  metrics_listen port, reads gauges server/metrics.cc exports for a model the config
  loads, and its config refers only to plugins it declares.
- When build/bin/ingotd has --check-config, ingotd's own parser accepts the config.
"""

import copy
import os
import re
import tempfile
import unittest
from pathlib import Path

from deploy_util import (BUILD_BIN, ROOT, exported_metrics, main, one, port_of, render,
                         require_module, run, yaml)
from render_test import K8S_VERSIONS, Workload

OVERLAY = "overlays/gateway"
SCHEMAS = ROOT / "tests" / "deploy" / "schemas"
CRD_SCHEMAS = {
    ("inference.networking.k8s.io/v1", "InferencePool"): "inferencepool-v1.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1-subset.yaml",
}
# The picker flags that name an ingotd metric, and the family each must map to.
METRIC_FLAGS = {
    "--total-queued-requests-metric": "ingot_requests_waiting",
    "--total-running-requests-metric": "ingot_requests_running",
    "--kv-cache-usage-percentage-metric": "ingot_kv_cache_usage_ratio",
}
# The served-models flag: vLLM's vllm:lora_requests_info shape (labels
# running_lora_adapters, waiting_lora_adapters, max_lora), one series per pod.
LORA_INFO_FLAG = ("--lora-info-metric", "ingot_lora_requests_info")
# Metrics the picker can read that ingotd does not export: switched off ("").
ABSENT_METRIC_FLAGS = ("--cache-info-metric",)


def closed(schema):
    """The schema with additionalProperties: false on every object that lists its
    properties and says nothing about others (the API server prunes such fields)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


def crd_errors(obj):
    """Messages for every violation of the vendored CRD schema of obj's kind."""
    jsonschema = require_module("jsonschema", "jsonschema")
    name = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    schema = closed(yaml.safe_load((SCHEMAS / name).read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator.iter_errors(obj)]


def flags(container):
    """{'--flag': 'value'} of a container's `--flag=value` args."""
    out = {}
    for arg in container.get("args", []):
        key, sep, value = arg.partition("=")
        if not sep:
            raise AssertionError(f"{container['name']}: arg {arg!r} is not --flag=value")
        out[key] = value
    return out


def metric_spec(spec):
    """'name{a="b",c="d"}' -> ('name', {'a': 'b', 'c': 'd'}), the picker's spec form."""
    m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?", spec)
    if not m:
        raise AssertionError(f"{spec!r} is not a metric spec NAME or NAME{{label=\"value\"}}")
    labels = {}
    for part in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
        lm = re.fullmatch(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', part)
        if not lm:
            raise AssertionError(f"{spec!r}: bad label matcher {part!r}")
        labels[lm.group(1)] = lm.group(2)
    return m.group(1), labels


class GatewayOverlayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects = render(OVERLAY)
        cls.ingotd = Workload(OVERLAY)
        cls.pool = one(cls.objects, "InferencePool")
        cls.route = one(cls.objects, "HTTPRoute")
        cls.epp = one(cls.objects, "Deployment", "ingotd-epp")
        cls.epp_pod = cls.epp["spec"]["template"]["spec"]
        cls.epp_container = one_container(cls.epp_pod, "epp")
        cls.epp_flags = flags(cls.epp_container)

    def test_builtin_objects_validate_against_kubernetes_schemas(self):
        kv = require_module("kubernetes_validate", "kubernetes-validate")
        checked = 0
        for obj in self.objects:
            if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
                continue
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            for version in K8S_VERSIONS:
                try:
                    kv.validate(obj, version, strict=True)
                except kv.SchemaNotFoundError as e:
                    self.fail(f"{where}: no schema ({e.message})")
                except kv.ValidationError as e:
                    self.fail(f"{where} is invalid for Kubernetes {version} at "
                              f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}")
            checked += 1
        self.assertGreaterEqual(checked, 15)

    def test_crd_objects_validate_against_vendored_schemas(self):
        kinds = sorted(o["kind"] for o in self.objects
                       if not o["apiVersion"].startswith(("v1", "apps/", "policy/", "autoscaling/",
                                                          "rbac.authorization.k8s.io/")))
        self.assertEqual(kinds, ["HTTPRoute", "InferencePool"], "a CRD kind without a schema here")
        for obj in (self.pool, self.route):
            self.assertEqual(crd_errors(obj), [], f"{obj['kind']}/{obj['metadata']['name']}")
        # The CRD's CEL rule on backendRefs: a core Service needs a port.
        for rule in self.route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service":
                    self.assertIn("port", ref, "Must have port for Service reference")

    def test_schemas_reject_what_the_crds_reject(self):
        # The check must be able to fail: an unknown field, a bad enum, a missing
        # required field and a port out of range, each in a copy of the real objects.
        pool = copy.deepcopy(self.pool)
        pool["spec"]["targetPortNumber"] = 8080  # the v1alpha2 field, gone in v1
        self.assertTrue(any("targetPortNumber" in e for e in crd_errors(pool)), crd_errors(pool))
        pool = copy.deepcopy(self.pool)
        pool["spec"]["extensionRef"]["failureMode"] = "FailSometimes"
        self.assertTrue(crd_errors(pool))
        pool = copy.deepcopy(self.pool)
        del pool["spec"]["selector"]
        self.assertTrue(any("selector" in e for e in crd_errors(pool)))
        pool = copy.deepcopy(self.pool)
        pool["spec"]["targetPorts"].append({"number": 8081})  # one port at most
        self.assertTrue(crd_errors(pool))
        route = copy.deepcopy(self.route)
        route["spec"]["rules"][0]["timeouts"]["request"] = "10 minutes"
        self.assertTrue(crd_errors(route))
        route = copy.deepcopy(self.route)
        route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
        self.assertTrue(crd_errors(route))

    def test_no_object_sets_a_namespace(self):
        for obj in self.objects:
            self.assertNotIn("namespace", obj["metadata"], f"{obj['kind']}/{obj['metadata']['name']}")

    def test_config_is_the_base_config_plus_the_http_api(self):
        base = Workload("base").config
        config = dict(self.ingotd.config)
        http = config.pop("http")
        self.assertEqual(config, base, "deploy/overlays/gateway/ingotd.yaml drifted from the base's")
        self.assertEqual(list(http), ["listen"])
        host, port = port_of(http["listen"])
        self.assertEqual(host, "0.0.0.0", "the gateway reaches the pods from outside")
        ports = {p["name"]: p["containerPort"] for p in self.ingotd.container["ports"]}
        self.assertEqual(ports.get("http"), port, "container port `http` vs http.listen")
        self.assertEqual(len(set(ports.values())), len(ports), ports)

    def test_pool_selects_the_ingotd_pods_on_the_http_port(self):
        selector = self.pool["spec"]["selector"]["matchLabels"]
        self.assertTrue(self.ingotd.selects_pods(selector), f"{selector} selects no ingotd pod")
        epp_labels = self.epp["spec"]["template"]["metadata"]["labels"]
        self.assertFalse(all(epp_labels.get(k) == v for k, v in selector.items()),
                         "the pool selects the endpoint picker's pods too")
        _, http_port = port_of(self.ingotd.config["http"]["listen"])
        self.assertEqual([p["number"] for p in self.pool["spec"]["targetPorts"]], [http_port])
        service = one(self.objects, "Service", "ingotd-http")
        self.assertTrue(self.ingotd.selects_pods(service["spec"]["selector"]))
        self.assertEqual([p["targetPort"] for p in service["spec"]["ports"]], ["http"])

    def test_pool_names_the_pickers_service_and_port(self):
        ref = self.pool["spec"]["extensionRef"]
        self.assertEqual(ref.get("group", ""), "")
        self.assertEqual(ref.get("kind", "Service"), "Service")
        service = one(self.objects, "Service", ref["name"])
        epp_labels = self.epp["spec"]["template"]["metadata"]["labels"]
        selector = service["spec"]["selector"]
        self.assertTrue(all(epp_labels.get(k) == v for k, v in selector.items()),
                        f"Service {ref['name']} does not select the picker")
        by_port = {p["port"]: p for p in service["spec"]["ports"]}
        self.assertIn(ref.get("portNumber", 9002), by_port)
        target = by_port[ref.get("portNumber", 9002)]["targetPort"]
        container_ports = {p["name"]: p["containerPort"] for p in self.epp_container["ports"]}
        self.assertEqual(container_ports[target], int(self.epp_flags["--grpc-port"]),
                         "the pool's extension port does not reach the picker's --grpc-port")

    def test_route_sends_to_the_pool(self):
        refs = [r for rule in self.route["spec"]["rules"] for r in rule["backendRefs"]]
        self.assertEqual([(r["group"], r["kind"], r["name"]) for r in refs],
                         [("inference.networking.k8s.io", "InferencePool",
                           self.pool["metadata"]["name"])])
        self.assertEqual(self.pool["apiVersion"].split("/")[0], refs[0]["group"])

    def test_picker_watches_this_pool_and_scrapes_ingotd_metrics(self):
        f = self.epp_flags
        self.assertEqual(f["--pool-name"], self.pool["metadata"]["name"])
        # The namespace comes from the downward API, so one render fits any namespace.
        self.assertEqual(f["--pool-namespace"], "$(POD_NAMESPACE)")
        env = {e["name"]: e for e in self.epp_container["env"]}
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.namespace")
        _, metrics_port = port_of(self.ingotd.config["metrics_listen"])
        self.assertEqual(int(f["--model-server-metrics-port"]), metrics_port)
        self.assertEqual(f["--model-server-metrics-path"], "/metrics")
        # /metrics is prometheus-cpp's plain HTTP listener, with or without tls.*.
        self.assertEqual(f["--model-server-metrics-scheme"], "http")

    def test_picker_reads_gauges_ingotd_exports_for_a_loaded_model(self):
        families = exported_metrics()
        pinned = {m["name"] for m in self.ingotd.config["models"] if m.get("pinned")}
        for flag, family in METRIC_FLAGS.items():
            name, labels = metric_spec(self.epp_flags[flag])
            self.assertEqual(name, family, flag)
            self.assertEqual(families.get(name), "gauge", f"{name} is not a gauge in server/metrics.cc")
            # Each family is per model: the matcher names a model every replica keeps.
            self.assertEqual(list(labels), ["model"], f"{flag}: {labels}")
            self.assertIn(labels["model"], pinned, f"{flag}: not a pinned model of the config")
        flag, family = LORA_INFO_FLAG
        name, labels = metric_spec(self.epp_flags[flag])
        self.assertEqual((name, labels), (family, {}), f"{flag}: one series per pod, no matcher")
        self.assertEqual(families.get(name), "gauge", f"{name} is not a gauge in server/metrics.cc")
        source = (ROOT / "server" / "metrics.cc").read_text()
        for label in ("running_lora_adapters", "waiting_lora_adapters", "max_lora"):
            self.assertIn(f'"{label}"', source, f"{name} lacks the label the picker parses")
        for flag in ABSENT_METRIC_FLAGS:
            self.assertEqual(self.epp_flags.get(flag), "",
                             f"{flag}: ingotd has no such metric; it must be switched off")

    def test_picker_config_refers_to_declared_plugins(self):
        cm_name = next(v["configMap"]["name"] for v in self.epp_pod["volumes"] if "configMap" in v)
        cm = one(self.objects, "ConfigMap", cm_name)
        mount = one_mount(self.epp_container, "/config")
        path = self.epp_flags["--config-file"]
        self.assertEqual(path.rsplit("/", 1)[0], mount["mountPath"])
        config = yaml.safe_load(cm["data"][path.rsplit("/", 1)[1]])
        self.assertEqual(config["kind"], "EndpointPickerConfig")
        declared = {p.get("name", p["type"]) for p in config["plugins"]}
        types = {p["type"] for p in config["plugins"]}
        for scorer in ("queue-scorer", "kv-cache-utilization-scorer", "lora-affinity-scorer"):
            self.assertIn(scorer, types, "the scorer that reads the mapped metric")
        self.assertEqual(len(config["schedulingProfiles"]), 1)
        used = {r["pluginRef"] for r in config["schedulingProfiles"][0]["plugins"]}
        self.assertEqual(used, declared)
        self.assertTrue(any(t.endswith("-picker") for t in types), "no picker plugin")

    def test_picker_pod_is_locked_down(self):
        sc = self.epp_pod["securityContext"]
        self.assertTrue(sc.get("runAsNonRoot"))
        self.assertEqual(sc.get("seccompProfile"), {"type": "RuntimeDefault"})
        csc = self.epp_container["securityContext"]
        self.assertIs(csc.get("allowPrivilegeEscalation"), False)
        self.assertIs(csc.get("readOnlyRootFilesystem"), True)
        self.assertEqual(csc.get("capabilities", {}).get("drop"), ["ALL"])
        name, _, tag = self.epp_container["image"].rpartition(":")
        self.assertRegex(tag, r"^v\d+\.\d+\.\d+$", "pin the picker's release")
        health = int(self.epp_flags["--grpc-health-port"])
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(self.epp_container[probe]["grpc"]["port"], health, probe)
        # The Role lets it read the pool and the pods, and nothing else.
        sa = self.epp_pod["serviceAccountName"]
        binding = one(self.objects, "RoleBinding", sa)
        self.assertEqual([s["name"] for s in binding["subjects"]], [sa])
        role = one(self.objects, "Role", binding["roleRef"]["name"])
        verbs = {v for r in role["rules"] for v in r["verbs"]}
        self.assertEqual(verbs, {"get", "list", "watch"})
        resources = {(g, res) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]}
        self.assertIn(("inference.networking.k8s.io", "inferencepools"), resources)
        self.assertIn(("", "pods"), resources)


def one_container(pod, name):
    found = [c for c in pod["containers"] if c["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"expected one container {name}, found {len(found)}")
    return found[0]


def one_mount(container, path):
    found = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    if len(found) != 1:
        raise AssertionError(f"{container['name']}: expected one mount at {path}")
    return found[0]


class GatewayConfigCheckTest(unittest.TestCase):
    def test_ingotd_check_config_accepts_the_gateway_config(self):
        ingotd = BUILD_BIN / "ingotd"
        if not ingotd.exists():
            self.skipTest(f"{ingotd} is not built")
        if "--check-config" not in run([str(ingotd), "--help"]).stdout:
            self.skipTest(f"{ingotd} has no --check-config yet")
        with tempfile.TemporaryDirectory() as tmp:
            config = Workload(OVERLAY).config
            config["model_roots"] = [tmp + r for r in config["model_roots"]]
            for root in config["model_roots"]:
                Path(root).mkdir(parents=True, exist_ok=True)
            for m in config["models"]:
                m["source"] = tmp + m["source"]
                Path(m["source"]).touch()
            path = Path(tmp) / "ingotd.yaml"
            path.write_text(yaml.safe_dump(config))
            env = {k: v for k, v in os.environ.items() if not k.startswith("INGOT_")}
            result = run([str(ingotd), "--check-config", str(path)], env=env)
            self.assertEqual(result.returncode, 0, f"{result.stdout}{result.stderr}")
            # http.listen is a key ingotd knows: a misspelt one is refused.
            config["http"] = {"lisen": config["http"]["listen"]}
            path.write_text(yaml.safe_dump(config))
            result = run([str(ingotd), "--check-config", str(path)], env=env)
            self.assertNotEqual(result.returncode, 0, "--check-config accepted http.lisen")


if __name__ == "__main__":
    main()
