"""Tests for the dead-man's switch pings, against a real loopback HTTP server."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitor.heartbeat import Heartbeat

TOKEN = "0f3c9a52-5b8e-4d7e-9a77-2c1d3b4e5f60"  # healthchecks.io puts the secret in the path


@dataclass
class PingServer:
    port: int = 0
    paths: list[str] = field(default_factory=list)
    status: int = 200
    hold: threading.Event | None = None  # when set, requests wait on it (a hung server)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def pings() -> Iterator[PingServer]:
    rec = PingServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if rec.hold is not None:
                rec.hold.wait(5)
            rec.paths.append(self.path)
            self.send_response(rec.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield rec
    finally:
        if rec.hold is not None:
            rec.hold.set()
        server.shutdown()
        server.server_close()


def test_success_pings_the_heartbeat_url(pings: PingServer) -> None:
    beat = Heartbeat(pings.url(f"/ping/{TOKEN}"), pings.url(f"/ping/{TOKEN}/fail"))
    assert beat.success()
    assert pings.paths == [f"/ping/{TOKEN}"]


def test_failure_pings_the_fail_url(pings: PingServer) -> None:
    beat = Heartbeat(pings.url(f"/ping/{TOKEN}"), pings.url(f"/ping/{TOKEN}/fail"))
    assert beat.failure()
    assert pings.paths == [f"/ping/{TOKEN}/fail"]


def test_unset_urls_send_nothing(pings: PingServer) -> None:
    beat = Heartbeat()
    assert not beat.success()
    assert not beat.failure()
    only_fail = Heartbeat("", pings.url("/fail"))
    assert not only_fail.success()
    assert pings.paths == []


def test_an_error_status_is_a_warning_with_the_url_redacted(
    pings: PingServer, caplog: pytest.LogCaptureFixture
) -> None:
    pings.status = 500
    with caplog.at_level(logging.WARNING, logger="monitor.heartbeat"):
        assert not Heartbeat(pings.url(f"/ping/{TOKEN}")).success()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    message = caplog.records[0].getMessage()
    assert "HTTP 500" in message
    assert f"http://127.0.0.1:{pings.port}/…" in message
    assert TOKEN not in caplog.text


def test_an_unreachable_server_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://user:pa55word@127.0.0.1:{port}/ping/{TOKEN}?key=s3cr3t-value"
    with caplog.at_level(logging.WARNING, logger="monitor.heartbeat"):
        assert not Heartbeat("", url).failure()
    assert "ConnectError" in caplog.text
    for secret in (TOKEN, "pa55word", "s3cr3t-value"):
        assert secret not in caplog.text


def test_a_hung_server_times_out_quickly(
    pings: PingServer, caplog: pytest.LogCaptureFixture
) -> None:
    pings.hold = threading.Event()
    with caplog.at_level(logging.WARNING, logger="monitor.heartbeat"):
        assert not Heartbeat(pings.url(f"/ping/{TOKEN}"), timeout=0.2).success()
    assert "ReadTimeout" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/ping", "http://[::1"])
def test_a_malformed_url_never_raises(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="monitor.heartbeat"):
        assert not Heartbeat(url).success()
    assert "heartbeat to" in caplog.text
