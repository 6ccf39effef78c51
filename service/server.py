"""Server lifecycle: bind, load and warm up, serve, drain on SIGTERM/SIGINT, exit 0.

Health (grpc.health.v1): "" and "atento.v1.Encoder" say SERVING only once the model is loaded and
warm, and NOT_SERVING from the first SIGTERM on. "liveness" says SERVING while the process can
answer at all, draining included, so a liveness probe never kills a pod that is finishing its work.

/metrics (http_metrics.py) and, with --http-port, the OpenAI-compatible door (http_api.py, whose
/readyz and /healthz say the same as the health above) run on aiohttp on this same event loop.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import socket
import ssl
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .auth import BearerTokenInterceptor
from .batcher import Batcher, BatchLimits
from .bundle import Bundle, BundleError, read_bundle
from .config import Settings
from .engine import Engine
from .gpu_metrics import gpu_metrics
from .http_api import OpenAIDoor
from .http_metrics import metrics_site
from .http_site import HttpLimits, HttpSite, tls_context
from .kserve import INFERENCE_SERVICE, KServeServicer, kserve_handlers
from .logs import TRACE_FILTER
from .metrics import Metrics
from .pooling import SentenceHead
from .provider_defaults import batch_ceiling, for_provider
from .runtime import CUDA, ProviderError, Runtime
from .servicer import ENCODER_SERVICE, EncoderServicer, atento_version, rpc_handlers
from .standard import Health, add_reflection
from .tokenizer import TextTokenizer
from .tracing import Tracing, tracing_wanted

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
    _check_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _check_tls(cert: Path, key: Path, client_ca: Path | None) -> None:
    """gRPC reports a bad certificate or key only as a failure to bind: say what is wrong instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in str(error):
            raise StartupError(f"TLS key {key} does not match the certificate {cert}") from error
        raise StartupError(f"TLS certificate {cert} or key {key} is not valid PEM: {error.reason}") from error
    if client_ca is not None:
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as error:
            raise StartupError(f"TLS client CA {client_ca} is not a valid PEM bundle: {error.reason}") from error


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it: an IPv6 literal goes in brackets (``[::1]:50051``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _why_not_bound(host: str, port: int) -> str:
    """gRPC says only that binding failed: try the address ourselves to learn why."""
    host = host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        return f"the host does not resolve ({error.strerror})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "the port is in use"
            if error.errno == errno.EADDRNOTAVAIL:
                return "the address is not one of this machine's"
            return error.strerror or str(error)
    return "gRPC refused the address"


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    address = grpc_address(settings.host, settings.port)
    credentials = _credentials(settings)  # unreadable or mismatched files fail here, naming the file
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError as error:
        raise StartupError(f"cannot listen on {address}: {_why_not_bound(settings.host, settings.port)}") from error


def _http_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except (OSError, ssl.SSLError) as error:
        raise StartupError(f"cannot use TLS certificate {settings.tls_cert} for the HTTP API: {error}") from error


async def _listen(site: HttpSite, what: str) -> int:
    try:
        return await site.start()
    except OSError as error:
        raise StartupError(f"cannot serve {what} on {site.host}:{site.port}: {error.strerror or error}") from error


def start_tracing(settings: Settings) -> Tracing | None:
    """OpenTelemetry with an OTLP exporter when an endpoint is configured; else None, and never imported."""
    if not tracing_wanted(settings):
        return None
    try:
        from .otel import OtelTracing
    except ImportError as error:
        raise StartupError(f"tracing needs its extra: pip install 'atento[tracing]' ({error})") from error
    return OtelTracing.with_otlp(settings.otlp_endpoint)


class AtentoServer:
    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        """``tracing``: OpenTelemetry set up by the caller (tests); None: as the settings say."""
        self.settings = settings
        self.tracing = tracing or start_tracing(settings)  # None, and opentelemetry never imported, when off
        if self.tracing is not None:
            TRACE_FILTER.current = self.tracing.current_ids  # trace ids in log lines
        self.metrics = Metrics(*batch_ceiling(settings))  # buckets up to the largest batch any provider may run
        self.servicer = EncoderServicer(settings, self.metrics)
        # The Open Inference Protocol door shares the Encoder's engine and call tracker (drain included).
        self.kserve = KServeServicer(
            settings, self.metrics, self.servicer.calls, self.servicer.ready, self.servicer.budget
        )
        self.health = Health()
        self.stopping = asyncio.Event()
        self.port = self.metrics_port = 0
        self.http_port: int | None = None
        self.server: grpc.aio.Server | None = None
        idle = settings.http_idle_timeout_s
        self.metrics_site = metrics_site(self.metrics.registry, settings.metrics_host, settings.metrics_port, idle)
        self.http_site: HttpSite | None = None
        if settings.http_port is not None:  # the OpenAI-compatible door, on the same event loop
            limits = HttpLimits(idle_timeout_s=idle)
            door = OpenAIDoor(settings, self.metrics, self.servicer.calls, self.servicer.ready, limits)
            self.http_site = door.site()
        self._batcher: Batcher | None = None

    async def _set_health(self, status: int) -> None:
        for service in READINESS_SERVICES:
            await self.health.set(service, status)

    async def start(self) -> None:
        settings = self.settings
        try:
            bundle = read_bundle(settings.bundle, verify=settings.verify_bundle)
            head = SentenceHead.from_bundle(bundle)  # the Dense weights: refused here, in one line, if unreadable
        except BundleError as error:
            raise StartupError(f"bundle {settings.bundle}: {error}") from error
        try:
            tokenizer = TextTokenizer(bundle.tokenizer_file, bundle.model.max_tokens)
        except Exception as error:  # the tokenizers library raises plain Exceptions for bad JSON
            raise StartupError(
                f"bundle {settings.bundle}: {bundle.tokenizer_file.name} is not a tokenizer the tokenizers "
                f"library can read: {str(error).splitlines()[0]}"
            ) from error
        interceptors = [] if self.tracing is None else [self.tracing.interceptor]  # first: its span covers all
        if settings.auth_token is not None:
            token = settings.auth_token.get_secret_value()
            interceptors.append(BearerTokenInterceptor(token, self.metrics, settings.auth_exempt_health))
        self.server = server = grpc.aio.server(
            interceptors=interceptors,
            options=_grpc_options(settings),  # no maximum_concurrent_rpcs: calls.py limits Encoder calls only
        )
        server.add_generic_rpc_handlers((rpc_handlers(self.servicer), *kserve_handlers(self.kserve)))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        add_reflection(server, (ENCODER_SERVICE.full_name, INFERENCE_SERVICE.full_name, HEALTH_SERVICE.full_name))
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.port = _bind(server, settings)
        self.metrics_port = await _listen(self.metrics_site, "metrics")
        if self.http_site is not None:
            self.http_site.tls = _http_tls(settings)  # HTTPS with the gRPC port's certificate, when it has one
            self.http_port = await _listen(self.http_site, "the HTTP API")
        await server.start()
        scheme = "tls" if settings.tls_cert else "plaintext"
        http = f" http={settings.http_host}:{self.http_port}" if self.http_site is not None else ""
        log.info(
            "listening grpc=%s:%d (%s) metrics=%s:%d%s",
            settings.host,
            self.port,
            scheme,
            settings.metrics_host,
            self.metrics_port,
            http,
        )
        await self._load(bundle, tokenizer, head)

    async def _load(self, bundle: Bundle, tokenizer: TextTokenizer, head: SentenceHead) -> None:
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
        await self._check_positions(bundle, runtime)
        # A GPU wants larger batches than the CPU defaults: what the user did not set follows the provider.
        settings = self.settings = self.servicer.settings = for_provider(settings, runtime.provider)
        if runtime.provider == CUDA:
            runtime.on_run = gpu_metrics(self.metrics.registry)
        limits = BatchLimits(
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            row_tokens=settings.row_tokens,
            max_queued_texts=settings.max_queued_texts,
            max_queued_tokens=settings.queued_tokens_bound(tokenizer.max_tokens),
            bulk_queue_share=settings.bulk_queue_share,
            max_attention_batch_bytes=settings.max_attention_batch_mib << 20,
            max_wait_s=settings.max_wait_ms / 1000,
            retry_after_min_s=settings.retry_after_min_ms / 1000,
            workers=settings.inference_workers,
        )
        self._batcher = Batcher(runtime, limits, self.metrics)
        self._batcher.start()
        engine = Engine(bundle, runtime, tokenizer, self._batcher, settings, self.metrics, head)
        if self.tracing is not None:
            engine.tracer = self.tracing.tracer
        self.servicer.engine = engine
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

    async def _check_positions(self, bundle: Bundle, runtime: Runtime) -> None:
        """One text of ``max_positions`` tokens through the fast graph: a manifest that promises more
        positions than the graph's position table holds fails here, not on a user's long text."""
        longest = bundle.model.max_positions
        try:
            await asyncio.get_running_loop().run_in_executor(None, runtime.run, runtime.filler_inputs(1, longest))
        except Exception as error:
            raise StartupError(
                f"bundle {self.settings.bundle}: the manifest's model.max_positions ({longest}) is more than the "
                f"graph can run ({str(error).splitlines()[0]})"
            ) from error

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
        if self.http_site is not None:
            await self.http_site.stop()
        if self._batcher is not None:
            await self._batcher.close()
        await self.metrics_site.stop()  # last: a scrape during the drain still sees it
        if self.tracing is not None:
            self.tracing.shutdown()  # the spans still buffered go out
        log.info("stopped")

    async def close_listeners(self) -> None:
        """After a failed start: free every port this server bound."""
        if self.server is not None:
            await self.server.stop(0)
        for site in (self.http_site, self.metrics_site):
            if site is not None:
                await site.stop()


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean drain, 2 when start-up fails for a reason it names
    (the configuration, the bundle, the address), 1 for anything else."""
    log.info("atento %s starting with %s", atento_version(), json.dumps(settings.redacted(), sort_keys=True))
    try:
        server = AtentoServer(settings)
    except StartupError as refused:
        log.error("cannot start: %s", refused)
        return 2
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stopping.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(server.stopping.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and (error := starting.exception()) is not None:
        stopping.cancel()
        await server.close_listeners()
        if isinstance(error, StartupError):
            log.error("cannot start: %s", error)
            return 2
        log.error("cannot start", exc_info=error)
        return 1
    await stopping
    if not starting.done():  # asked to stop while still loading
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    await server.drain()
    return 0
