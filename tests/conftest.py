"""Shared fixtures: the sandbox API, real databases (SQLite file, PostgreSQL), a real SMTP
server, a real HTTP receiver for Apprise ``json://`` deliveries, and a clock passed to the code."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import RowMapping

from monitor.alerts.notify import Outgoing
from monitor.config import ChannelConfig, DatabaseConfig, Settings, VobizConfig
from monitor.sandbox import Sandbox
from monitor.store import SWEEPS, Store
from monitor.testing import RecordingNotifier
from monitor.web.app import build_app
from monitor.web.server import WebServer

FIXED_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PG_ADMIN_URL = os.environ.get(
    "DID_MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class FakeClock:
    """A clock tests move by hand; code under test calls it instead of reading the time."""

    now: datetime = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(numbers=150, seed=7, now=FIXED_NOW).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(autouse=True)
def _scrubber_forgets_between_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets a test's configuration taught the scrubber stay with that test: each test starts
    with none remembered (the product never forgets one)."""
    from monitor import redact

    monkeypatch.setattr(redact, "_values", set())
    monkeypatch.setattr(redact, "_pattern", None)


# --- databases ----------------------------------------------------------------------------------


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


_PG_REASON: list[str | None] = []


def pg_reason() -> str | None:
    if not _PG_REASON:
        _PG_REASON.append(_pg_available())
    return _PG_REASON[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    reason = pg_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(
                f"PostgreSQL is required in CI but not reachable at {PG_ADMIN_URL}: {reason}"
            )
        pytest.skip(
            f"PostgreSQL not reachable at {PG_ADMIN_URL} ({reason}); set DID_MONITOR_TEST_PG"
        )
    import psycopg

    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"didmon_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store(db_url)
    st.migrate()
    try:
        yield st
    finally:
        st.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    st = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    st.migrate()
    try:
        yield st
    finally:
        st.dispose()


def sweep_row(store: Store, sweep_id: int) -> RowMapping:
    """The stored row of one sweep."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(SWEEPS).where(SWEEPS.c.id == sweep_id)).mappings().one()


def sent_to(notifier: RecordingNotifier, channel: str) -> list[Outgoing]:
    """What ``notifier`` recorded for one channel, in order."""
    return [m for m in notifier.sent if m.channel == channel]


def make_settings(
    sandbox: Sandbox | None, db_url: str, channels: tuple[ChannelConfig, ...] = (), **sections: Any
) -> Settings:
    vobiz: dict[str, Any] = {
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_requests_per_second": 0,
    }
    if sandbox is not None:
        vobiz.update(base_url=sandbox.url, auth_id=sandbox.auth_id, auth_token=sandbox.auth_token)
    vobiz.update(sections.pop("vobiz", {}))
    return Settings(
        vobiz=VobizConfig(**vobiz),
        database=DatabaseConfig(url=db_url),
        channels=channels,
        **sections,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a real SMTP server -------------------------------------------------------------------------


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://{self.host}:{self.port}?from=monitor@example.com&to={to}&mode=insecure"


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            sink.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- a real HTTP receiver for json:// ------------------------------------------------------------


@dataclass
class HttpReceiver:
    host: str
    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 500
    reply: bytes = b""  # body of a successful answer (Slack's webhook answers "ok")
    delay: float = 0.0  # seconds to wait before answering (a slow webhook)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "hook") -> str:
        return f"json://{self.host}:{self.port}/{path}"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    rec = HttpReceiver("127.0.0.1", 0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with rec.lock:
                failing = rec.fail_next > 0
                if failing:
                    rec.fail_next -= 1
                else:
                    rec.posts.append({"path": self.path, "body": json.loads(body or b"{}")})
            reply = b"" if failing else rec.reply
            if rec.delay:
                time.sleep(rec.delay)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def serve_probes(
    health: Any, ready: Any, registry: CollectorRegistry | None = None, **app: Any
) -> WebServer:
    """A started web listener on a free loopback port, answering from the given probes."""
    built = build_app(health=health, ready=ready, registry=registry or CollectorRegistry(), **app)
    return WebServer(("127.0.0.1", 0), built).start()


# --- a hostile fake API ------------------------------------------------------------------------


class Hostile:
    """A loopback API whose answer a test chooses: ``respond(handler) -> (status, body)``."""

    def __init__(self) -> None:
        self.respond: Callable[[BaseHTTPRequestHandler], tuple[int, bytes]] = lambda h: (
            200,
            b"{}",
        )
        self.requests = 0
        # Set to write the whole response itself (trickling, compressed bodies).
        self.raw: Callable[[BaseHTTPRequestHandler], Any] | None = None
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hostile.requests += 1
                if hostile.raw is not None:
                    hostile.raw(self)
                    return
                status, body = hostile.respond(self)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    api = Hostile()
    try:
        yield api
    finally:
        api.close()
