"""The alert rules pass promtool, and every metric they and the dashboard name exists on a live server."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from atento.v1 import encoder_pb2 as pb

from tests.conftest import ROOT
from tests.deploy.test_manifests import tool as tools_venv
from tests.servers import ServerProcess
from tests.service.test_metrics import tool

MONITORING = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\b(atento_[a-z0-9_]+)")


def rules() -> dict[str, object]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    spec: dict[str, object] = rule["spec"]
    return spec


def adapter_rules() -> list[dict[str, Any]]:
    values = yaml.safe_load((MONITORING / "prometheus-adapter.yaml").read_text())
    rules: list[dict[str, Any]] = values["rules"]["custom"]
    return rules


def named_metrics() -> set[str]:
    expressions = [r["expr"] for group in rules()["groups"] for r in group["rules"]]  # type: ignore[attr-defined]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), str)]
    expressions += [r["seriesQuery"] for r in adapter_rules()]
    return {m for e in expressions for m in METRIC.findall(e)}


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules()))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r.get("alert") for group in rules()["groups"] for r in group["rules"]}  # type: ignore[attr-defined]
    assert {"AtentoHighLatencyP99", "AtentoHighErrorRatio", "AtentoQueueSaturated", "AtentoNoReadyReplicas"} <= alerts


def test_every_metric_named_exists_on_a_live_server(minilm_server: ServerProcess) -> None:
    minilm_server.stub().Embed(pb.EmbedRequest(texts=["fill every histogram"]), timeout=30)
    exposed = {
        line.split("{")[0].split(" ")[0] for line in minilm_server.metrics().splitlines() if line.startswith("atento_")
    }
    names = named_metrics()
    recorded = {r["record"] for group in rules()["groups"] for r in group["rules"] if "record" in r}  # type: ignore[attr-defined]
    assert len(names) >= 12
    missing = {n for n in names if n not in exposed and not any(n.startswith(r.replace(":", "_")) for r in recorded)}
    assert not missing, f"named in deploy/monitoring but not on /metrics: {sorted(missing)}"


def test_service_monitor_scrapes_the_services_metrics_port() -> None:
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "service.yaml").read_text())
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    rendered = subprocess.run(
        [tools_venv("kubectl"), "kustomize", str(MONITORING)], capture_output=True, text=True, check=True
    ).stdout
    kinds = {o["kind"] for o in yaml.safe_load_all(rendered) if o}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_prometheus_adapter_serves_the_metric_the_hpa_reads(tmp_path: Path) -> None:
    """The adapter's rule names the queue-autoscaling HPA's metric, and its query is PromQL promtool accepts."""
    component = yaml.safe_load((ROOT / "deploy/k8s/components/queue-autoscaling/kustomization.yaml").read_text())
    hpa_metric = yaml.safe_load(component["patches"][0]["patch"])[0]["value"]["pods"]["metric"]["name"]
    (rule,) = adapter_rules()
    assert rule["name"]["as"] == hpa_metric and set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    # The adapter's template, filled in as it fills it for one pod's request.
    query = rule["metricsQuery"].replace("<<.Series>>", METRIC.findall(rule["seriesQuery"])[0])
    query = query.replace("<<.LabelMatchers>>", 'namespace="atento",pod="atento-0"').replace("<<.GroupBy>>", "pod")
    path = tmp_path / "adapter.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": "q:x", "expr": query}]}]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
