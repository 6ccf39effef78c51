"""Server lifecycle: bind, load and warm up, serve, drain on SIGTERM/SIGINT, exit 0.

Health (grpc.health.v1): "" and "atento.v1.Encoder" say SERVING only once the model is loaded and
warm, and NOT_SERVING from the first SIGTERM on. "liveness" says SERVING while the process can
answer at all, draining included, so a liveness probe never kills a pod that is finishing its work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from .auth import BearerTokenInterceptor
from .batcher import Batcher, BatchLimits
from .bundle import Bundle, BundleError, read_bundle
from .config import Settings
from .engine import Engine
from .metrics import Metrics
from .runtime import ProviderError, Runtime
from .servicer import ENCODER_SERVICE, EncoderServicer, atento_version, rpc_handlers
from .tokenizer import TextTokenizer

log = logging.getLogger("atento.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
READINESS_SERVICES = ("", ENCODER_SERVICE.full_name)
LIVENESS_SERVICE = "liveness"


class StartupError(RuntimeError):
    """The server cannot start; the message says what and where, in one line."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read {what} {path}: {error.strerror or error}") from error


def _grpc_options(settings: Settings) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ]
    if settings.max_connection_age_s > 0:  # clients re-resolve DNS and find new replicas
        options.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)))
        options.append(("grpc.max_connection_age_grace_ms", int(settings.drain_seconds * 1000)))
    return options


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (_read(settings.tls_key, "TLS key"), _read(settings.tls_cert, "TLS certificate"))
    client_ca = _read(settings.tls_client_ca, "TLS client CA") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    address = f"{settings.host}:{settings.port}"
    credentials = _credentials(settings)  # unreadable files fail here, naming the file
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError as error:
        raise StartupError(
            f"cannot listen on {address}: the port is in use or the address is not local ({error})"
        ) from error


class AtentoServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.servicer = EncoderServicer(settings, self.metrics)
        self.health = HealthServicer()
        self.stopping = asyncio.Event()
        self.port = self.metrics_port = 0
        self.server: grpc.aio.Server | None = None
        self._batcher: Batcher | None = None

    async def _set_health(self, status: int) -> None:
        for service in READINESS_SERVICES:
            await self.health.set(service, status)

    async def start(self) -> None:
        settings = self.settings
        try:
            bundle = read_bundle(settings.bundle, verify=settings.verify_bundle)
        except BundleError as error:
            raise StartupError(f"bundle {settings.bundle}: {error}") from error
        tokenizer = TextTokenizer(bundle.tokenizer_file, bundle.model.max_positions)
        interceptors = []
        if settings.auth_token is not None:
            token = settings.auth_token.get_secret_value()
            interceptors.append(BearerTokenInterceptor(token, self.metrics, settings.auth_exempt_health))
        self.server = server = grpc.aio.server(
            interceptors=interceptors,
            options=_grpc_options(settings),  # no maximum_concurrent_rpcs: calls.py limits Encoder calls only
        )
        server.add_generic_rpc_handlers((rpc_handlers(self.servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (ENCODER_SERVICE.full_name, HEALTH_SERVICE.full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.port = _bind(server, settings)
        try:
            self.metrics_port = self.metrics.serve(settings.metrics_host, settings.metrics_port)
        except OSError as error:
            address = f"{settings.metrics_host}:{settings.metrics_port}"
            raise StartupError(f"cannot serve metrics on {address}: {error.strerror or error}") from error
        await server.start()
        scheme = "tls" if settings.tls_cert else "plaintext"
        log.info(
            "listening grpc=%s:%d (%s) metrics=%s:%d",
            settings.host,
            self.port,
            scheme,
            settings.metrics_host,
            self.metrics_port,
        )
        await self._load(bundle, tokenizer)

    async def _load(self, bundle: Bundle, tokenizer: TextTokenizer) -> None:
        settings, loop = self.settings, asyncio.get_running_loop()
        try:
            runtime = await loop.run_in_executor(None, Runtime, bundle, settings)
            await loop.run_in_executor(None, runtime.warm_up)
        except ProviderError as error:
            raise StartupError(str(error)) from error
        except Exception as error:  # onnxruntime refusing a graph: say which, in one line
            raise StartupError(
                f"bundle {settings.bundle}: onnxruntime cannot run it: {str(error).splitlines()[0]}"
            ) from error
        limits = BatchLimits(
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            row_tokens=settings.row_tokens,
            max_queued_texts=settings.max_queued_texts,
            max_attention_batch_bytes=settings.max_attention_batch_mib << 20,
            max_wait_s=settings.max_wait_ms / 1000,
            retry_after_min_s=settings.retry_after_min_ms / 1000,
            workers=settings.inference_workers,
        )
        self._batcher = Batcher(runtime, limits, self.metrics)
        self._batcher.start()
        self.servicer.engine = Engine(bundle, runtime, tokenizer, self._batcher, settings, self.metrics)
        self.metrics.model.info(
            {
                "model": bundle.model.name,
                "provider": runtime.provider,
                "bundle_sha256": bundle.sha256,
                "precision": bundle.precision,
                "version": atento_version(),
            }
        )
        self.metrics.ready.set(1)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s (bundle %s)", bundle.model.name, runtime.provider, bundle.sha256[:12])

    async def drain(self) -> None:
        """Refuse new work, let in-flight calls finish within drain_seconds, then stop."""
        settings, loop = self.settings, asyncio.get_running_loop()
        deadline = loop.time() + settings.drain_seconds
        log.info("draining: in-flight calls have %.0f s to finish", settings.drain_seconds)
        self.servicer.calls.draining = True
        self.metrics.ready.set(0)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # The server keeps its connections open meanwhile, so probes still get answers (liveness
        # SERVING, readiness NOT_SERVING) and new calls a retryable UNAVAILABLE. Closing them at once
        # would cancel the calls already on the wire: the notice lets clients that watch health (the
        # SDK does) stop sending here first, and calls already picked arrive while we still refuse.
        await asyncio.sleep(min(settings.drain_notice_seconds, settings.drain_seconds))
        try:
            await asyncio.wait_for(self.servicer.calls.drained(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("drain: calls still in flight after %.0f s are cancelled", settings.drain_seconds)
        log.info("drained: %d calls refused while draining", self.servicer.calls.refused_while_draining)
        if self.server is not None:
            await self.server.stop(1.0)  # health watches and reflection streams end here
        if self._batcher is not None:
            await self._batcher.close()
        log.info("stopped")


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean drain, 1 when start-up fails."""
    log.info("atento %s starting with %s", atento_version(), json.dumps(settings.redacted(), sort_keys=True))
    server = AtentoServer(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stopping.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(server.stopping.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and (error := starting.exception()) is not None:
        stopping.cancel()
        if isinstance(error, StartupError):
            log.error("cannot start: %s", error)
        else:
            log.error("cannot start", exc_info=error)
        if server.server is not None:
            await server.server.stop(0)
        return 1
    await stopping
    if not starting.done():  # asked to stop while still loading
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    await server.drain()
    return 0
