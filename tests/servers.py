"""Real atento server processes on loopback, for integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
from atento.v1 import encoder_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

LISTENING = re.compile(
    r"listening grpc=(?P<host>\S+):(?P<port>\d+) \(\w+\) metrics=\S+:(?P<metrics>\d+)(?: http=\S+:(?P<http>\d+))?"
)


class ServerProcess:
    """`python -m atento.service` in a subprocess; its log lines are collected as they come."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        command: Sequence[str] = (sys.executable, "-m", "atento.service"),
    ) -> None:
        self.host = host
        command = [*command, "--host", host, "--metrics-host", host, *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self.metrics_port = 0
        self.http_port: int | None = None  # set when the server was started with --http-port

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_listening(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines:
                if match := LISTENING.search(line):
                    self.port, self.metrics_port = int(match["port"]), int(match["metrics"])
                    self.http_port = int(match["http"]) if match["http"] else None
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode} before listening:\n{self.log}")
            time.sleep(0.05)
        raise TimeoutError(f"server did not listen within {timeout} s:\n{self.log}")

    def wait_serving(self, timeout: float = 120, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.wait_listening(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.health(credentials=credentials) == health_pb2.HealthCheckResponse.SERVING:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log}")
            time.sleep(0.1)
        raise TimeoutError(f"server not SERVING within {timeout} s:\n{self.log}")

    def health(self, service: str = "", credentials: grpc.ChannelCredentials | None = None) -> int | None:
        try:
            with self.channel(credentials) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:
            return None

    def channel(self, credentials: grpc.ChannelCredentials | None = None, **options: int) -> grpc.Channel:
        opts = [("grpc.max_receive_message_length", 256 << 20), *options.items()]
        if credentials is not None:
            return grpc.secure_channel(self.target, credentials, options=opts)
        return grpc.insecure_channel(self.target, options=opts)

    def stub(self) -> encoder_pb2_grpc.EncoderStub:
        return encoder_pb2_grpc.EncoderStub(self.channel())

    @property
    def http_url(self) -> str:
        """The OpenAI-compatible door's base URL (the server must run with --http-port)."""
        assert self.http_port is not None, "started without --http-port"
        return f"http://{self.host}:{self.http_port}"

    def metrics(self) -> str:
        url = f"http://{self.host}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            sample_name, _, label_text = sample.partition("{")
            if sample_name != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def terminate(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code


@contextmanager
def running_server(
    bundle: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1", wait: bool = True
) -> Iterator[ServerProcess]:
    server = ServerProcess(["--bundle", str(bundle), "--port", "0", "--metrics-port", "0", *args], env=env, host=host)
    try:
        if wait:
            server.wait_serving()
        yield server
    finally:
        server.terminate()
