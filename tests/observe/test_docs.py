"""docs/observability.md lists exactly the metrics the endpoint serves:
names and types as a real scrape shows them, labels as declared; the
example Grafana dashboard charts them with queries that parse."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bridgehost.host import Host
from bridgehost.metrics import declared_metrics

DOC = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
ROW = re.compile(r"^\| `(?P<name>[a-z_:]+)` \| (?P<type>gauge|counter|histogram) \|(?P<labels>[^|]*)\|", re.MULTILINE)


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    rows = list(ROW.finditer(DOC))
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)), "a metric is listed twice"
    return {
        row["name"]: (row["type"], frozenset(re.findall(r"`(\w+)`", row["labels"]))) for row in rows
    }


def test_every_served_metric_is_documented_and_no_other(host):
    page = host.scrape()
    served = dict(re.findall(r"^# TYPE (\S+) (\S+)$", page, re.MULTILINE))
    assert served == {name: kind for name, (kind, _) in documented().items()}


def test_the_documented_labels_are_the_served_ones(host):
    docs = documented()
    for family in text_string_to_metric_families(host.scrape()):
        seen = {label for sample in family.samples for label in sample.labels} - {"le"}
        name = family.name + ("_total" if family.type == "counter" else "")
        if seen:
            assert seen == docs[name][1], f"{name}: served labels {sorted(seen)}"


def test_the_documented_labels_are_the_declared_ones(host):
    """Metrics without a series on the test host (a plugin's component not
    configured there) are checked against their declaration."""
    docs = documented()
    for metric in declared_metrics(Host.from_file(host.config)):
        assert docs[metric.name] == (str(metric.type), frozenset(metric.labels)), metric.name


GRAFANA = Path(__file__).parents[2] / "examples" / "grafana"
METRIC = re.compile(r"\b(bridgehost_[a-z_]+|process_[a-z_]+)\b")


def queries() -> list[str]:
    """Every PromQL expression of the example dashboard and of the alert
    rules its README shows, the dashboard's ``$instance`` variable set to all."""
    dashboard = json.loads((GRAFANA / "bridgehost-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    readme = (GRAFANA / "README.md").read_text()
    exprs += re.findall(r"^\s+expr: (.+)$", readme, re.MULTILINE)
    return [e.replace("$instance", ".*") for e in exprs]


def test_the_grafana_queries_name_documented_metrics():
    docs = documented()
    found = {m for expr in queries() for m in METRIC.findall(expr)}
    known = set(docs) | {f"{name}_bucket" for name, (kind, _) in docs.items() if kind == "histogram"}
    assert found and found <= known, f"undocumented: {sorted(found - known)}"
    assert {name for name in docs if name.startswith("bridgehost_")} - {m.removesuffix("_bucket") for m in found} <= {
        "bridgehost_job_events_total"
    }, "a metric the dashboard does not chart"


def test_the_grafana_queries_parse(promtool, tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(queries())]}]}
    path = tmp_path / "rules.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(rules))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
