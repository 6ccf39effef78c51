"""The Prometheus endpoint: ``GET /metrics`` on its own port, no auth, 404 on every other path.

Served by aiohttp on the server's event loop (``http_site``), with its connection limit and
timeouts, in place of prometheus_client's thread-per-connection server.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .http_site import HttpLimits, HttpSite

# A scraper holds one or two connections; a few more leave room for a person with curl.
METRICS_MAX_CONNECTIONS = 16


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # The text format, or OpenMetrics when the scraper asks for it (as prometheus_client does).
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    app = web.Application(client_max_size=4096)  # a scrape has no body
    app.router.add_get("/metrics", metrics)
    return app


def metrics_site(registry: CollectorRegistry, host: str, port: int, idle_timeout_s: float) -> HttpSite:
    limits = HttpLimits(max_connections=METRICS_MAX_CONNECTIONS, idle_timeout_s=idle_timeout_s)
    return HttpSite(metrics_app(registry), host, port, limits)
