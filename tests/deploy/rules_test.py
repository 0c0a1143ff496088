#!/usr/bin/env python3
"""promtool on everything PromQL that deploy/ ships.

- The PrometheusRule's spec.groups, written out as a rules file: `promtool check rules`
  and `promtool test rules` with tests/deploy/alerts_test.yaml (each alert fires on
  series shaped like ingotd's, and stays quiet on the near misses).
- The Grafana dashboard's queries and the prometheus-adapter metricsQuery, as the
  expressions of recording rules (Grafana's variables replaced): `promtool check
  rules` parses each, so a typo in a panel fails here rather than on a screen.
"""

import shutil
import tempfile
import unittest
from pathlib import Path

from deploy_util import (adapter_query, adapter_rules, dashboard, dashboard_queries, main,
                         one, render, run, tool, yaml)

HERE = Path(__file__).resolve().parent


class RulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = tool("promtool")
        cls.tmp = Path(tempfile.mkdtemp(prefix="ingot-rules-"))
        rule = one(render("monitoring"), "PrometheusRule")
        (cls.tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        cls.rule = rule

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def promtool_ok(self, *args):
        result = run([self.promtool, *args], cwd=self.tmp)
        self.assertEqual(result.returncode, 0,
                         f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def test_check_rules(self):
        out = self.promtool_ok("check", "rules", "rules.yaml")
        self.assertIn("SUCCESS", out)

    def test_alert_unit_tests(self):
        shutil.copy(HERE / "alerts_test.yaml", self.tmp / "alerts_test.yaml")
        out = self.promtool_ok("test", "rules", "alerts_test.yaml")
        self.assertIn("SUCCESS", out)
        # Every alert in the PrometheusRule has at least one unit test.
        tested = {t["alertname"] for case in yaml.safe_load(
            (HERE / "alerts_test.yaml").read_text())["tests"]
            for t in case.get("alert_rule_test", [])}
        alerts = {r["alert"] for g in self.rule["spec"]["groups"] for r in g["rules"]
                  if "alert" in r}
        self.assertEqual(sorted(alerts - tested), [], "alerts without a promtool unit test")

    def test_alerts_carry_severity_and_summary(self):
        for group in self.rule["spec"]["groups"]:
            for r in group["rules"]:
                if "alert" not in r:
                    continue
                self.assertIn(r["labels"].get("severity"), ("warning", "critical"), r["alert"])
                self.assertTrue(r["annotations"].get("summary"), r["alert"])
                self.assertTrue(r["annotations"].get("description"), r["alert"])

    def test_dashboard_and_adapter_queries_parse(self):
        queries = dashboard_queries(dashboard())
        queries += [(f"prometheus-adapter rule {r['name']['as']}", adapter_query(r))
                    for r in adapter_rules()]
        self.assertGreater(len(queries), 15)
        rules = [{"record": f"ingot:query_{i}", "expr": expr}
                 for i, (_, expr) in enumerate(queries)]
        path = self.tmp / "queries.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
        result = run([self.promtool, "check", "rules", str(path)])
        if result.returncode != 0:
            # Name the query promtool rejected: check them one by one.
            bad = []
            for where, expr in queries:
                path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [
                    {"record": "ingot:query", "expr": expr}]}]}))
                r = run([self.promtool, "check", "rules", str(path)])
                if r.returncode != 0:
                    bad.append(f"{where}: {expr}\n  {r.stderr.strip() or r.stdout.strip()}")
            self.fail("queries promtool cannot parse:\n" + "\n".join(bad or [result.stderr]))


if __name__ == "__main__":
    main()
