"""The service's one listener: the probes (verdicts from ``monitor.health``), ``/metrics``
(prometheus-client's ASGI app) and, when enabled, the dashboard, all behind ``security.Guard``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.clock import Clock
from monitor.config import Settings
from monitor.health import Probe, describe_failure
from monitor.store import Store
from monitor.web.security import Access, Guard, json_response, plain_error
from monitor.web.server import WebServer
from monitor.web.views import Dashboard

PROBE_PATHS = ("/healthz", "/readyz", "/metrics")


def probe_endpoint(probe: Probe) -> Any:
    """200 or 503 with the probe's JSON; a probe that raises is a 503 saying why, safely."""

    def endpoint(request: Request) -> Response:
        try:
            ok, body = probe()
        except Exception as exc:  # e.g. the database is down: that is an answer, 503
            return json_response(503, {"status": "failing", "reasons": [describe_failure(exc)]})
        return json_response(200 if ok else 503, body)

    return endpoint


@dataclass(frozen=True)
class _Mounted:
    """An ASGI app as a route's endpoint (a plain function would be taken for a view)."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def build_app(
    *,
    health: Probe,
    ready: Probe,
    registry: CollectorRegistry,
    dashboard: Dashboard | None = None,
    access: Access | None = None,
) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/healthz", probe_endpoint(health), methods=["GET"]),
        Route("/readyz", probe_endpoint(ready), methods=["GET"]),
        Route("/metrics", _Mounted(make_asgi_app(registry)), methods=["GET"]),
    ]
    if dashboard is not None:
        routes += dashboard.routes()

    async def http_error(request: Request, exc: Exception) -> Response:
        """A view's 400 or 404 (or the router's 404) as a page; without the dashboard, the
        JSON 404 that lists the known paths."""
        if dashboard is None:
            return json_response(404, {"error": "not found", "paths": sorted(PROBE_PATHS)})
        http = cast(HTTPException, exc)  # the handler of HTTPException only
        return dashboard.error_page(request.scope, http.status_code, str(http.detail))

    def error_page(scope: Scope, status: int, message: str) -> Response:
        if dashboard is not None and scope["path"] not in PROBE_PATHS:
            return dashboard.error_page(scope, status, message)
        return plain_error(scope, status, message)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(Guard, access=access or Access(), error_page=error_page)],
    )
    # Guard drops a trailing slash; the router adding one back ("/static" to "/static/", the
    # mount's own path) redirected in a loop.
    app.router.redirect_slashes = False
    return app


def listener(
    settings: Settings,
    store: Store,
    *,
    health: Probe,
    ready: Probe,
    registry: CollectorRegistry,
    clock: Clock,
    next_sweep: Callable[[], datetime | None] | None = None,
) -> WebServer | None:
    """The service's listener as configured (not started); None when no listen key is set."""
    key, address = settings.listen_address()
    if address is None:
        return None
    config = settings.dashboard
    dashboard = config.enabled and Dashboard(store, settings, clock=clock, next_sweep=next_sweep)
    access = Access(config.username, config.password, config.token)
    app = build_app(
        health=health, ready=ready, registry=registry, dashboard=dashboard or None, access=access
    )
    return WebServer(
        address,
        app,
        key=key,
        serves=("dashboard at /, " if dashboard else "") + ", ".join(PROBE_PATHS),
    )
