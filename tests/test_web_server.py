"""Tests for the web listener on a real loopback socket: the probes and metrics answer as they
did before the dashboard (status codes, JSON bodies, content types), and the listener binds,
refuses a taken address and stops."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.registry import Collector
from sqlalchemy.exc import OperationalError

from monitor.errors import ConfigError, DatabaseError
from monitor.store.db import database_error
from monitor.web.app import build_app
from monitor.web.server import WebServer, _AcceptErrors
from tests.conftest import FIXED_NOW, free_port, serve_probes


class Probes:
    def __init__(self) -> None:
        self.healthy: bool | BaseException = True
        self.registry = CollectorRegistry()

    def health(self) -> tuple[bool, dict[str, Any]]:
        if isinstance(self.healthy, BaseException):
            raise self.healthy
        return self.healthy, {"status": "ok" if self.healthy else "failing"}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}


@pytest.fixture
def probes() -> Probes:
    return Probes()


@pytest.fixture
def listener(probes: Probes) -> Iterator[httpx.Client]:
    server = serve_probes(probes.health, probes.ready, probes.registry)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
            yield client
    finally:
        server.stop()


def test_healthz_answers_200_or_503_with_json(listener: httpx.Client, probes: Probes) -> None:
    ok = listener.get("/healthz")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert ok.json() == {"status": "ok"}
    probes.healthy = False
    failing = listener.get("/healthz")
    assert failing.status_code == 503
    assert failing.json() == {"status": "failing"}


def test_a_probe_that_raises_is_503_without_secrets(listener: httpx.Client, probes: Probes) -> None:
    # what the store raises when the database refuses (it never lets SQLAlchemy's own out)
    probes.healthy = database_error(
        OperationalError("SELECT 1", {}, Exception("connection refused"))
    )
    response = listener.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "reasons": ["database error: connection refused"],
    }
    probes.healthy = DatabaseError("cannot reach the database")
    assert listener.get("/healthz").json()["reasons"] == ["cannot reach the database"]
    probes.healthy = RuntimeError("postgresql://user:secret@db/x")
    response = listener.get("/healthz")
    assert response.status_code == 503
    assert "secret" not in response.text and "RuntimeError" in response.text


def test_readyz_metrics_and_unknown_paths(listener: httpx.Client, probes: Probes) -> None:
    assert listener.get("/readyz").status_code == 200
    assert listener.get("/readyz/?probe=1").status_code == 200
    Gauge("did_monitor_x", "a test gauge", registry=probes.registry).set(1)
    metrics = listener.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "did_monitor_x 1.0\n" in metrics.text
    missing = listener.get("/")  # no dashboard configured: the probes alone
    assert missing.status_code == 404
    assert missing.json()["paths"] == ["/healthz", "/metrics", "/readyz"]


def test_a_failing_metrics_collector_is_a_500(probes: Probes) -> None:
    class Broken(Collector):
        def collect(self) -> Any:
            raise ValueError("boom")

    probes.registry.register(Broken())
    server = serve_probes(probes.health, probes.ready, probes.registry)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert response.status_code == 500
        assert response.json()["status"] == "error"
        # the listener survives it
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_only_get_and_head_are_served(listener: httpx.Client) -> None:
    assert listener.head("/healthz").status_code == 200
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        response = listener.request(method, "/healthz")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, HEAD"


def test_stop_closes_the_port(probes: Probes) -> None:
    server = serve_probes(probes.health, probes.ready)
    port = server.port
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_an_address_in_use_is_a_config_error(probes: Probes) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        app = build_app(health=probes.health, ready=probes.ready, registry=probes.registry)
        server = WebServer(("127.0.0.1", port), app, key="dashboard.listen")
        with pytest.raises(
            ConfigError, match=r"^dashboard.listen = '127.0.0.1:\d+': cannot listen"
        ):
            server.start()


def test_ipv6_loopback(probes: Probes) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    app = build_app(health=probes.health, ready=probes.ready, registry=probes.registry)
    try:
        server = WebServer(("::1", 0), app).start()
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc.message}")
    try:
        assert httpx.get(f"http://[::1]:{server.port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_the_service_listener_follows_the_config(sqlite_store: Any) -> None:
    from monitor.config import DashboardConfig, DatabaseConfig, ServiceConfig, Settings
    from monitor.web.app import listener

    def make(**sections: Any) -> WebServer | None:
        settings = Settings(database=DatabaseConfig(url=sqlite_store.url), **sections)
        return listener(
            settings,
            sqlite_store,
            health=lambda: (True, {}),
            ready=lambda: (True, {}),
            registry=CollectorRegistry(),
            clock=lambda: FIXED_NOW,
        )

    assert make() is None  # off unless configured
    legacy = make(service=ServiceConfig(health_listen="9108"))
    assert legacy is not None and legacy.address == ("127.0.0.1", 9108)
    assert legacy.key == "service.health_listen" and legacy.serves.startswith("dashboard at /")
    port = free_port()
    off = make(dashboard=DashboardConfig(listen=f"127.0.0.1:{port}", enabled=False))
    assert off is not None and off.key == "dashboard.listen" and "dashboard" not in off.serves
    server = off.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
            assert client.get("/").status_code == 404
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()


# --- bounds: idle and half-open connections ------------------------------------------------------


def open_idle(port: int, count: int, head: bytes = b"") -> list[socket.socket]:
    """``count`` loopback connections that send ``head`` (part of a request, or nothing)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if head:
            sock.sendall(head)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_beyond_the_cap_make_room_and_time_out(
    probes: Probes, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(health=probes.health, ready=probes.ready, registry=probes.registry)
    server = WebServer(("127.0.0.1", 0), app, max_connections=8, header_timeout=1.0).start()
    idle: list[socket.socket] = []
    try:
        idle += open_idle(server.port, 10)
        idle += open_idle(server.port, 10, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=3) as client:
            assert client.get("/healthz").status_code == 200
            # the oldest idle ones made room: at most the cap stayed open
            made_room = sum(closed_by_server(sock, 0.2) for sock in idle)
            assert made_room >= len(idle) - 8
            # and the rest are closed once the header timeout passes
            assert all(closed_by_server(sock, 3) for sock in idle)
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


SERVE_UNDER_A_LOW_LIMIT = """
import logging, resource, sys
from prometheus_client import CollectorRegistry
from monitor.web.app import build_app
from monitor.web.server import WebServer

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
app = build_app(
    health=lambda: (True, {"status": "ok"}),
    ready=lambda: (True, {}),
    registry=CollectorRegistry(),
)
server = WebServer(("127.0.0.1", 0), app).start()
print(server.port, flush=True)
sys.stdin.readline()
server.stop()
"""


def test_idle_connections_cannot_exhaust_the_descriptors() -> None:
    """The issue's case, scaled down: 300 idle connections to a process allowed 128 files."""
    service = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNDER_A_LOW_LIMIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle: list[socket.socket] = []
    try:
        assert service.stdout is not None and service.stdin is not None
        port = int(service.stdout.readline())
        idle = open_idle(port, 300)
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert response.status_code == 200
        service.stdin.write("\n")
        service.stdin.flush()
        _, err = service.communicate(timeout=15)
    finally:
        for sock in idle:
            sock.close()
        service.kill()
        service.wait()
    assert "out of system resource" not in err and "Traceback" not in err, err[:2000]
    assert len(err.splitlines()) < 10, err[:2000]


def test_accept_errors_are_logged_once_a_minute_without_traceback() -> None:
    accept_errors = _AcceptErrors()

    def record(at: float) -> logging.LogRecord:
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            exc_info = sys.exc_info()
        made = logging.makeLogRecord(
            {
                "name": "asyncio",
                "msg": "socket.accept() out of system resource\nsocket: <socket>",
                "levelno": logging.ERROR,
                "exc_info": exc_info,
            }
        )
        made.created = at
        return made

    burst = [record(1000 + i / 100) for i in range(3500)]  # 35 s of a tight loop
    shown = [r for r in burst if accept_errors.filter(r)]
    assert len(shown) == 1 and shown[0].exc_info is None and shown[0].levelno == logging.WARNING
    later = record(1100)
    assert accept_errors.filter(later)
    assert later.getMessage().endswith("(3499 more since)")
    other = logging.makeLogRecord({"name": "asyncio", "msg": "something else"})
    assert accept_errors.filter(other) and other.getMessage() == "something else"
