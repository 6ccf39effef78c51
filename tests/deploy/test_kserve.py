"""deploy/kserve: the InferenceService example, validated offline and in step with the server.

kubernetes-validate knows no KServe CRD, so the example is checked in two parts: the predictor's pod
fields (KServe's PredictorSpec inlines a core PodSpec) are cut out into a Pod that
`kubernetes-validate --strict` checks against Kubernetes itself; what is left must be fields of
KServe's ComponentExtensionSpec (listed below from the v1beta1 CRD), with the types it gives them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from atento.service.config import Settings
from atento.service.server import LIVENESS_SERVICE, READINESS_SERVICES

from tests.conftest import ROOT
from tests.deploy.test_manifests import KUBERNETES_VERSION, tool

EXAMPLE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
# serving.kserve.io/v1beta1 ComponentExtensionSpec: the predictor's fields beside the PodSpec, with their types.
EXTENSION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "minReplicas": int,
    "maxReplicas": int,
    "scaleTarget": int,
    "scaleMetric": str,
    "containerConcurrency": int,
    "timeout": int,
    "canaryTrafficPercent": int,
    "logger": dict,
    "batcher": dict,
    "labels": dict,
    "annotations": dict,
    "deploymentStrategy": dict,
}
SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}
DEPLOYMENT_MODES = {"RawDeployment", "Serverless"}


def example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def test_the_predictor_is_a_valid_pod_spec_plus_kserve_fields(tmp_path: Path) -> None:
    service = example()
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    assert set(service) == {"apiVersion", "kind", "metadata", "spec"} and set(service["spec"]) == {"predictor"}
    predictor = service["spec"]["predictor"]
    for name, value in predictor.items():
        if name in EXTENSION_FIELDS:
            assert isinstance(value, EXTENSION_FIELDS[name]), f"predictor.{name}: {value!r}"
    assert predictor["scaleMetric"] in SCALE_METRICS and predictor["minReplicas"] <= predictor["maxReplicas"]
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in DEPLOYMENT_MODES

    pod_spec = {name: value for name, value in predictor.items() if name not in EXTENSION_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "atento-predictor"}, "spec": pod_spec}
    path = tmp_path / "predictor-pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr  # an unknown or mistyped field fails here
    assert "passed for resource pod/" in result.stdout.lower()


def test_the_predictor_agrees_with_the_server() -> None:
    defaults = Settings()
    service = example()
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # the name KServe gives a predictor's model server
    assert container["ports"] == [{"name": "h2c", "containerPort": defaults.port, "protocol": "TCP"}]
    env = {item["name"]: item["value"] for item in container["env"]}
    Settings(**{k.removeprefix("ATENTO_").lower(): v for k, v in env.items()})  # every variable is a real setting
    assert int(env["ATENTO_PORT"]) == defaults.port and env["ATENTO_HOST"] == "0.0.0.0"
    annotations = service["metadata"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == int(env["ATENTO_METRICS_PORT"]) == defaults.metrics_port
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": defaults.port, "service": READINESS_SERVICES[0]}
    assert container["livenessProbe"]["grpc"] == {"port": defaults.port, "service": LIVENESS_SERVICE}
    assert predictor["terminationGracePeriodSeconds"] > float(env["ATENTO_DRAIN_SECONDS"])
    assert container["securityContext"]["readOnlyRootFilesystem"] and predictor["securityContext"]["runAsNonRoot"]
