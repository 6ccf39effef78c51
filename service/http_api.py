"""The OpenAI-compatible HTTP door (``--http-port``): /v1/embeddings, /v1/models, /healthz, /readyz.

Thin, like the gRPC servicer: JSON -> texts and ``EmbedOptions`` -> ``Engine.embed`` (the same
tokenizer, batcher and limits) -> JSON. Every refusal goes through ``errors.http_error_for`` and
leaves in OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``. Calls count in
the same metrics as gRPC calls, under ``method="http:/v1/embeddings"`` (``http:/v1/models``) with
``code`` the gRPC status name of the same outcome, so one set of alert rules covers both doors;
they are refused while draining and waited for by the drain, through the servicer's ``CallTracker``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from . import openai_requests
from .calls import CallTracker
from .config import Settings
from .engine import Engine
from .errors import HttpError, InvalidArgument, NotFound, NotReady, TooLarge, Unauthenticated, http_error_for
from .http_site import HttpLimits, HttpSite
from .identity import identity
from .metrics import HTTP_EMBEDDINGS, HTTP_MODELS, Metrics

# Bodies and responses this large are parsed and serialised in a thread, not on the event loop.
LARGE_JSON_BYTES = 1 << 16
LARGE_RESPONSE_VALUES = 1 << 15


def error_response(error: HttpError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


@web.middleware
async def routing_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
    """aiohttp's own refusals (unknown path, wrong method) in OpenAI's error shape too."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        if error.status == 404:
            return error_response(http_error_for(NotFound(f"unknown path {request.path}", "unknown_url")))
        body = HttpError(
            error.status,
            "invalid_request_error",
            f"{request.method} {request.path}: {error.reason}",
            grpc.StatusCode.UNIMPLEMENTED,
        )
        return error_response(body)


class OpenAIDoor:
    """The routes, over the servicer's engine (None while loading) and call tracker."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        calls: CallTracker,
        ready: Callable[[], Engine],
        limits: HttpLimits | None = None,
    ) -> None:
        self.settings, self.metrics, self.calls, self.ready = settings, metrics, calls, ready
        self.limits = limits or HttpLimits()
        token = settings.auth_token
        self._expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    def app(self) -> web.Application:
        # Larger bodies are refused by aiohttp itself (413); the JSON of a request at the gRPC message
        # limit is a little larger than its protobuf, so the same number of bytes is a fair bound.
        app = web.Application(client_max_size=self.settings.max_receive_message_bytes, middlewares=[routing_errors])
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model}", self.models)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    def site(self) -> HttpSite:
        assert self.settings.http_port is not None
        return HttpSite(self.app(), self.settings.http_host, self.settings.http_port, self.limits)

    def _authenticate(self, request: web.Request) -> None:
        if self._expected is None:
            return
        sent = request.headers.get("Authorization", "")
        if hmac.compare_digest(sent.encode(), self._expected):
            return
        reason = "missing" if not sent else "wrong"
        self.metrics.rejected.labels(f"unauthenticated_{reason}").inc()
        raise Unauthenticated(f"{reason} bearer token: send the header 'Authorization: Bearer <token>'")

    async def _observe(self, method: str, request: web.Request, work: Callable[[], Awaitable[Any]]) -> web.Response:
        """Authenticate, refuse while draining, time and count the call, and turn errors into answers."""
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        self.metrics.in_flight.labels(method).inc()
        try:
            self._authenticate(request)
            with self.calls.counted():
                body = await work()
            return web.Response(text=body if isinstance(body, str) else _dumps(body), content_type="application/json")
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            answer = http_error_for(error)
            code = answer.grpc_code
            return error_response(answer)
        finally:
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.request_duration.labels(method, code.name).observe(time.perf_counter() - start)
            self.metrics.in_flight.labels(method).dec()

    async def _json_body(self, request: web.Request, engine: Engine) -> Any:
        limit = self.settings.max_receive_message_bytes
        too_large = TooLarge("request", f"the body exceeds the limit of {limit} bytes (--max-receive-message-mib)")
        if request.content_length is not None and request.content_length > limit:
            raise too_large  # before reading it (aiohttp reads and discards the rest, so the client sees 413)
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        except TimeoutError:
            raise InvalidArgument("request", "the body did not arrive in time") from None
        try:
            return json.loads(raw) if len(raw) <= LARGE_JSON_BYTES else await engine.in_thread(json.loads, raw)
        except ValueError as error:  # UnicodeDecodeError included
            raise InvalidArgument("request", f"not valid JSON: {error}") from None

    async def embeddings(self, request: web.Request) -> web.Response:
        async def embed() -> str:
            engine = self.ready()  # 503 while loading, before reading the body
            model = engine.bundle.model
            parsed = openai_requests.parse_embeddings(await self._json_body(request, engine), model, self.settings)
            options = openai_requests.embed_options(model, parsed.dimensions)
            done = await engine.embed(parsed.texts, options, deadline=None)
            start = time.perf_counter()

            def build() -> str:
                matrix = openai_requests.vectors(done.embeddings)
                vectors = identity(engine.bundle, options)
                body = openai_requests.embeddings_response(model.name, done.encoded, matrix, parsed.base64, vectors)
                return _dumps(body)

            large = len(parsed.texts) * (parsed.dimensions or model.output_size) > LARGE_RESPONSE_VALUES
            text = await engine.in_thread(build) if large else build()
            self.metrics.serialize_duration.observe(time.perf_counter() - start)
            return text

        return await self._observe(HTTP_EMBEDDINGS, request, embed)

    async def models(self, request: web.Request) -> web.Response:
        async def listing() -> dict[str, Any]:
            name = self.ready().bundle.model.name
            card = {"id": name, "object": "model", "created": 0, "owned_by": "atento"}
            asked = request.match_info.get("model")
            if asked is None:
                return {"object": "list", "data": [card]}
            if asked != name:
                raise NotFound(f"the model '{asked}' does not exist: this server serves '{name}'", "model_not_found")
            return card

        return await self._observe(HTTP_MODELS, request, listing)

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: 200 while the process answers at all, draining included."""
        return await self._health(request, lambda: True)

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: 200 only once the model is loaded and warm, 503 while loading or draining."""
        return await self._health(request, lambda: not self.calls.draining and _is_ready(self.ready))

    async def _health(self, request: web.Request, healthy: Callable[[], bool]) -> web.Response:
        try:
            if not self.settings.auth_exempt_health:
                self._authenticate(request)
        except Unauthenticated as error:
            return error_response(http_error_for(error))
        ok = healthy()
        return web.json_response({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)


def _is_ready(ready: Callable[[], Engine]) -> bool:
    try:
        ready()
    except NotReady:
        return False
    return True


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
