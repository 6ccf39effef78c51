"""aiohttp on the gRPC server's event loop: one listening site per HTTP port, bounded.

Both HTTP ports (the OpenAI-compatible API and /metrics) are served by aiohttp, on the same asyncio
event loop as grpc.aio: no thread per connection. Every site holds at most ``max_connections``
connections (more are closed as they arrive), closes a connection that sends no complete request
within ``idle_timeout_s`` (aiohttp's keep-alive timer runs from the moment a connection opens, so a
client trickling header bytes is cut off too), and lets a handler cancel when its client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .logs import RateLimitedLog

log = logging.getLogger("atento.http")
CONNECTION_REFUSED = RateLimitedLog(log)  # one line per interval however many connections are refused


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 256
    idle_timeout_s: float = 15.0  # no complete request (first or next) within it: the connection closes
    body_timeout_s: float = 30.0  # a request body must arrive within it (handlers read bodies under it)
    shutdown_timeout_s: float = 1.0  # at stop, how long open keep-alive connections get to finish


class _Refused(asyncio.Protocol):
    """A connection past the limit: closed at once, before it costs a parser or a task."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The server's TLS as the gRPC port has it: its certificate, and client certificates from
    ``client_ca`` required when given (mutual TLS). OSError or ssl.SSLError on unusable files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _LimitedSite(web.TCPSite):
    """aiohttp's TCP site, with a bound on open connections."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, max_connections: int, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(runner, host, port, ssl_context=tls, backlog=128, reuse_address=True, reuse_port=False)
        self._max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= self._max_connections:
                CONNECTION_REFUSED.log(
                    "%s: refused a connection past the limit of %d", self.name, self._max_connections
                )
                return _Refused()
            handler: asyncio.Protocol = server()
            return handler

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


class HttpSite:
    """One aiohttp application listening on one address; ``port`` is the bound port once started."""

    def __init__(self, app: web.Application, host: str, port: int, limits: HttpLimits) -> None:
        self.host, self.port, self.limits = host, port, limits
        self.tls: ssl.SSLContext | None = None  # set before start() to serve HTTPS
        runner_options: dict[str, Any] = {
            "access_log": None,
            "handle_signals": False,  # the server's own SIGTERM handler drains everything
            "keepalive_timeout": limits.idle_timeout_s,
            "handler_cancellation": True,  # a client that goes away cancels its handler, freeing its queued texts
            "shutdown_timeout": limits.shutdown_timeout_s,
        }
        self._runner = web.AppRunner(app, **runner_options)

    async def start(self) -> int:
        """Listen; OSError when the address cannot be bound."""
        await self._runner.setup()
        site = _LimitedSite(self._runner, self.host, self.port, self.limits.max_connections, self.tls)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = site.port
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
