"""deploy/: rendered overlays validated offline with the real tools, and in step with the server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from atento.service.config import Settings
from atento.service.server import LIVENESS_SERVICE, READINESS_SERVICES

from tests.conftest import ROOT

KUBERNETES_VERSION = "1.34.0"
OVERLAYS = ["cpu", "gpu"]
TOOLS = ROOT / ".venv-tools" / "bin"
DOCKERFILES = [ROOT / "deploy" / "docker" / "Dockerfile.cpu", ROOT / "deploy" / "docker" / "Dockerfile.gpu"]


def tool(name: str) -> str:
    """A validator from the tools venv (deploy/tools-requirements.txt pins them, kubectl too), never PATH's."""
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: run `make tools` (make test does)"
    return str(path)


def render(kustomization: str) -> str:
    return subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "deploy" / kustomization)], capture_output=True, text=True, check=True
    ).stdout


def objects(kustomization: str) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(render(kustomization)) if o}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rendered") / f"{request.param}.yaml"
    path.write_text(render(f"k8s/overlays/{request.param}"))
    return path


def test_overlays_pass_kubernetes_validate_strict(rendered: Path) -> None:
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = re.findall(r"passed for resource (\w+)/", result.stdout)
    assert {
        "namespace",
        "deployment",
        "service",
        "horizontalpodautoscaler",
        "poddisruptionbudget",
        "networkpolicy",
    } <= set(kinds)


def test_overlays_pass_checkov(rendered: Path) -> None:
    result = subprocess.run(
        [tool("checkov"), "--skip-download", "--quiet", "--compact", "--framework", "kubernetes", "-f", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "Failed checks: 0" in result.stdout


def test_dockerfiles_pass_hadolint_and_checkov() -> None:
    lint = subprocess.run([tool("hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    args = [arg for path in DOCKERFILES for arg in ("-f", str(path))]
    scan = subprocess.run(
        [tool("checkov"), "--skip-download", "--quiet", "--compact", "--framework", "dockerfile", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert scan.returncode == 0 and "Failed checks: 0" in scan.stdout, scan.stdout


def test_every_skipped_check_is_justified() -> None:
    skips = 0
    for path in (ROOT / "deploy").rglob("*"):
        if not path.is_file() or path.suffix not in ("", ".yaml", ".cpu", ".gpu"):
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "checkov.io/skip" in line:  # the reason after "=", and a comment above
                skips += 1
                assert len(line.split("=", 1)[1].strip()) > 20 and lines[i - 1].strip().startswith("#"), (
                    f"{path}: {line}"
                )
            if "checkov:skip=" in line:  # a Dockerfile's own: the reason after the second ":", a comment above
                skips += 1
                assert len(line.split(":", 2)[2].strip()) > 20 and lines[i - 1].startswith("#"), f"{path}: {line}"
            if "hadolint ignore" in line:
                skips += 1
                assert "skipped:" in " ".join(lines[max(0, i - 3) : i]), f"{path}: {line} has no reason beside it"
    # CKV_K8S_43 (image digest), DL3008 (apt pins), CKV_DOCKER_7 twice (the base image's tag is an
    # argument's default): all explained
    assert skips == 4


def test_gpu_overlay_asks_for_a_gpu_and_cuda() -> None:
    gpu = objects("k8s/overlays/gpu")
    pod = gpu["Deployment/atento"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith("-gpu")
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]) and pod["nodeSelector"]
    assert gpu["ConfigMap/atento-config"]["data"]["ATENTO_PROVIDER"] == "cuda"
    assert objects("k8s/overlays/cpu")["ConfigMap/atento-config"]["data"]["ATENTO_PROVIDER"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_grace_agree_with_the_server(overlay: str) -> None:
    defaults = Settings()
    rendered = objects(f"k8s/overlays/{overlay}")
    config = rendered["ConfigMap/atento-config"]["data"]
    assert int(config["ATENTO_PORT"]) == defaults.port and int(config["ATENTO_METRICS_PORT"]) == defaults.metrics_port
    Settings(**{k.removeprefix("ATENTO_").lower(): v for k, v in config.items()})  # every key is a real setting

    pod = rendered["Deployment/atento"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_host = {e["name"]: e for e in container["env"]}["ATENTO_METRICS_HOST"]
    assert metrics_host["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"  # never 0.0.0.0
    assert "ATENTO_METRICS_HOST" not in config
    assert ports == {"grpc": defaults.port, "metrics": defaults.metrics_port}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": defaults.port, "service": READINESS_SERVICES[0]}
    assert container["livenessProbe"]["grpc"] == {"port": defaults.port, "service": LIVENESS_SERVICE}
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + float(config["ATENTO_DRAIN_SECONDS"])

    for name in ("Service/atento", "Service/atento-headless"):
        service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in rendered[name]["spec"]["ports"]}
        assert service_ports["grpc"] == (defaults.port, "grpc")
    assert rendered["Service/atento"]["spec"]["ports"][1]["targetPort"] == "metrics"
    assert rendered["Service/atento-headless"]["spec"]["clusterIP"] == "None"
    policy_ports = {p["port"] for rule in rendered["NetworkPolicy/atento"]["spec"]["ingress"] for p in rule["ports"]}
    assert policy_ports == {"grpc", "metrics"}


def test_security_context_and_service_account() -> None:
    rendered = objects("k8s/overlays/cpu")
    pod = rendered["Deployment/atento"]["spec"]["template"]["spec"]
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert (
        pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    assert rendered["ServiceAccount/atento"]["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    assert {c["configMapRef"]["name"] for c in pod["containers"][0]["envFrom"]} == {"atento-config"}
    assert "topologySpreadConstraints" in pod


def test_dockerfiles_agree_with_the_server_defaults() -> None:
    defaults = Settings()
    for path in DOCKERFILES:
        text = path.read_text()
        runtime = text.split("AS runtime", 1)[1]
        assert f"EXPOSE {defaults.port} {defaults.metrics_port}" in runtime
        assert f"ATENTO_PORT={defaults.port}" in runtime and f"ATENTO_METRICS_PORT={defaults.metrics_port}" in runtime
        assert "USER 10001" in runtime and "torch" not in runtime


def test_queue_autoscaling_component_renders(tmp_path: Path) -> None:
    k8s = Path(shutil.copytree(ROOT / "deploy" / "k8s", tmp_path / "k8s"))
    overlay = k8s / "overlays" / "queue"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../cpu]\ncomponents: [../../components/queue-autoscaling]\n"
    )
    result = subprocess.run([tool("kubectl"), "kustomize", str(overlay)], capture_output=True, text=True, check=True)
    hpa = next(o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "atento_queue_tokens"  # the queue's own bound
    assert hpa["spec"]["metrics"][1]["pods"]["target"]["averageValue"] == str(Settings().max_batch_tokens)


def test_grafana_dashboard_is_valid_json_with_the_panels() -> None:
    dashboard = json.loads((ROOT / "deploy" / "monitoring" / "grafana-dashboard.json").read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency by method", "throughput", "batch size", "queue", "errors by status code"):
        assert topic in titles, topic


def test_pods_are_sized_from_the_benchmark() -> None:
    """CPU request = planned texts/s per pod / texts/s per core in BENCHMARKS.md; two fit a 2-core node."""
    row = re.search(
        r"\| atento service: 32 clients x 1 text per call \| ([\d.]+) \|", (ROOT / "BENCHMARKS.md").read_text()
    )
    assert row, "BENCHMARKS.md lost the service's 32 x 1 row the pods are sized from"
    texts_per_core = float(row[1]) / 2  # measured on 2 cores, the load generator's share charged to the server
    rendered = objects("k8s/overlays/cpu")
    deployment = rendered["Deployment/atento"]
    planned = float(deployment["metadata"]["annotations"]["atento.dev/planned-texts-per-second"])
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    request = cores(resources["requests"]["cpu"])
    assert abs(request - planned / texts_per_core) <= 0.1, (request, planned / texts_per_core)
    assert 2 * request <= 2 - 0.3, "two replicas must fit a 2-core node beside the kubelet and daemon sets"
    threads = int(rendered["ConfigMap/atento-config"]["data"]["ATENTO_INTRA_OP_THREADS"])
    assert cores(resources["limits"]["cpu"]) >= threads  # a burst reaches every ORT thread
    hpa = rendered["HorizontalPodAutoscaler/atento"]["spec"]["metrics"]
    assert hpa[0]["resource"]["name"] == "cpu"  # the fallback whenever the queue metric is absent


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("kustomization", ["overlays/cpu", "overlays/gpu", "../kserve"])
def test_every_image_comes_from_kustomize_images(kustomization: str, tmp_path: Path) -> None:
    """A user's overlay with `images:` (deploy/README.md, "Your own registry") replaces every image."""
    deploy = Path(shutil.copytree(ROOT / "deploy", tmp_path / "deploy"))
    mine = deploy / "k8s" / "mine"
    mine.mkdir()
    digest = "sha256:" + "0" * 64
    (mine / "kustomization.yaml").write_text(
        f"resources: [../{kustomization}]\n"
        f"images: [{{name: ghcr.io/atento/atento, newName: registry.example.com/team/atento, digest: '{digest}'}}]\n"
    )
    result = subprocess.run([tool("kubectl"), "kustomize", str(mine)], capture_output=True, text=True, check=True)
    images = re.findall(r"^\s*image: (\S+)$", result.stdout, re.MULTILINE)
    assert images and set(images) == {f"registry.example.com/team/atento@{digest}"}
