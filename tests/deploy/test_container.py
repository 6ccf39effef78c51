"""deploy/docker/Dockerfile.cpu built by podman/buildah and run: the image users get, served for real.

The Dockerfile is built unchanged but for two build arguments: BASE_IMAGE (a debootstrap image,
tests/deploy/base_image.py, since no registry is reachable) and TORCH_INDEX_URL (the folder of the
torch wheel this machine's pip installs from, mounted as an index, since PyTorch's index is not
reachable; the other packages come from PyPI, as for users).
No bridge network or iptables here: builds and the container share the host's network, and the
container is given free ports through its ATENTO_* settings. `make container-tools` installs podman.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import grpc
import numpy as np
import pytest
from atento.client import Client
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT
from tests.deploy import base_image
from tests.golden import TEXTS, TOLERANCE, golden_file

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile.cpu"
IMAGE = "localhost/atento:test-cpu"
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-*.whl"
MAX_IMAGE_BYTES = 700 * 2**20  # 544 MiB measured (deploy/README.md); torch alone would add ~800 MiB
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
# A cold build (base image, torch, the MiniLM export) takes ~7 minutes on 2 cores, past the
# suite's 600 s per test; whichever test comes first builds.
pytestmark = pytest.mark.timeout(2400)


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert not check or result.returncode == 0, f"podman {' '.join(args)}:\n{output}"
    return result


def pip_find_links() -> list[Path]:
    """The local wheel folders this machine's pip installs from (`pip config`, PIP_FIND_LINKS)."""
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    values = [line.split("=", 1)[1].strip("'\"") for line in config.splitlines() if "find-links=" in line]
    values.append(os.environ.get("PIP_FIND_LINKS", ""))
    return [Path(v.removeprefix("file://")) for value in values for v in value.split() if v]


@pytest.fixture(scope="module")
def torch_source(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """podman build options giving the builder the torch wheel this machine's pip installs from.

    The wheel's folder and a PEP 503 page linking to the wheel are mounted into the build's RUN
    steps, so the build argument, a file:// index, stays the same from run to run and podman's
    layer cache holds.
    """
    wheel = next((w for folder in pip_find_links() for w in sorted(folder.glob(TORCH_WHEEL))), None)
    if wheel is None:
        url = os.environ.get("PIP_INDEX_URL")  # pip here reaches an index itself: so can the build
        return [f"--build-arg=TORCH_INDEX_URL={url}"] if url else []
    index = tmp_path_factory.mktemp("torch-index")
    (index / "torch").mkdir()
    link = f"file:///torch-wheels/{quote(wheel.name)}"
    (index / "torch" / "index.html").write_text(f'<!DOCTYPE html><a href="{link}">{wheel.name}</a>\n')
    return [
        f"--volume={wheel.parent}:/torch-wheels:ro",
        f"--volume={index}:/torch-index:ro",
        "--build-arg=TORCH_INDEX_URL=file:///torch-index",
    ]


@pytest.fixture(scope="module")
def image(torch_source: list[str]) -> str:
    """The CPU image, built with podman's layer cache (a clean machine builds every layer)."""
    assert shutil.which("podman"), "podman is missing: run `make container-tools` (make test does)"
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    base = f"--build-arg=BASE_IMAGE={base_image.ensure()}"
    started = time.monotonic()
    build = ["build", "--network=host", "--format=docker", "-f", str(DOCKERFILE), base, *torch_source]
    podman(*build, "-t", IMAGE, str(ROOT), timeout=1800)
    print(f"\nimage built in {time.monotonic() - started:.0f} s")
    return IMAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, int]]:
    """The image run as its own user, read-only root like the Deployment, on free loopback ports."""
    port, metrics = free_port(), free_port()
    settings = {"ATENTO_HOST": "127.0.0.1", "ATENTO_PORT": port, "ATENTO_METRICS_HOST": "127.0.0.1"}
    settings["ATENTO_METRICS_PORT"] = metrics
    env = [f"--env={k}={v}" for k, v in settings.items()]
    # --no-healthcheck: podman runs HEALTHCHECK through systemd timers, and no systemd runs here;
    # the test runs the same command itself.
    flags = ["--detach", "--network=host", "--read-only", "--tmpfs=/tmp", "--no-healthcheck"]
    name = podman("run", *flags, *env, image).stdout.strip()
    try:
        yield name, port
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


def test_image_serves_the_default_model_and_stops_cleanly(container: tuple[str, int]) -> None:
    name, port = container
    deadline = time.monotonic() + 180
    while health(port) != "SERVING":
        running = podman("inspect", "--format={{.State.Running}}", name).stdout.strip() == "true"
        assert running and time.monotonic() < deadline, podman("logs", name, check=False).stderr[-4000:]
        time.sleep(1)
    # The image's own HEALTHCHECK command, run inside it, against the port it was given.
    checked = podman("exec", name, "atento", "health", "--target", f"127.0.0.1:{port}", "--timeout", "2")
    assert "SERVING" in checked.stdout

    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    torch = podman("exec", name, "python", "-c", "import torch", check=False)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr

    with Client(f"127.0.0.1:{port}") as client:
        result = client.embed(TEXTS, truncate=True)
    golden = np.load(golden_file("fp32"), allow_pickle=False)
    assert result.embeddings.shape == golden.shape
    assert float(np.abs(result.embeddings - golden).max()) <= 10 * TOLERANCE["fp32"]  # the vectors users indexed

    podman("kill", "--signal=TERM", name)
    assert podman("wait", name, timeout=90).stdout.strip() == "0", podman("logs", name, check=False).stderr[-4000:]


def test_image_is_small_and_torch_free(image: str) -> None:
    size = int(podman("image", "inspect", "--format={{.Size}}", image).stdout)
    print(f"\nimage size: {size / 2**20:.0f} MiB")
    assert size < MAX_IMAGE_BYTES, f"{size / 2**20:.0f} MiB"
    files = podman(
        "run", "--rm", "--network=none", "--no-healthcheck", "--entrypoint=python", image, "-m", "pip", "list"
    ).stdout
    assert "onnxruntime" in files and "torch" not in files.lower().split()
    config = podman("image", "inspect", "--format={{.Config.User}} {{json .Config.Healthcheck}}", image).stdout
    assert config.startswith("10001:10001") and "atento" in config


def health(port: int) -> str | None:
    """grpc.health.v1 status of service "" (None while the port does not answer)."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = health_pb2.HealthCheckRequest(service="")
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=2)  # type: ignore[no-untyped-call]
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
    except grpc.RpcError:
        return None
