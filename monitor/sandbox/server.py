"""The sandbox's HTTP serving: a threaded loopback server that answers the partner API from
an ``Inventory``, with latency, injected faults, rate limits and request records."""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qs, unquote, urlsplit

from monitor.sandbox.faults import (
    ACCOUNTS_PATH,
    AVAILABILITY_PATH,
    ME_PATH,
    NUMBERS_PATH,
    FaultPlan,
)
from monitor.sandbox.inventory import Inventory, _mix

_ACCOUNT_NUMBERS: Final = re.compile(r"/api/v1/partner/accounts/([^/]+)/numbers")
_INT: Final = re.compile(r"[+-]?\d{1,9}")  # int() would also accept "1_0" and " 5"
PAGE_CACHE_SIZE: Final = 2_000  # encoded pages kept (about 100 MB at 100 numbers a page)
_ERROR_CODES: Final = {
    400: "invalid_parameter",
    401: "unauthorized",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int  # 0 when the connection was closed without a response


def _paging(query: dict[str, str], size_key: str = "per_page") -> tuple[int, int]:
    raw_page, raw_size = query.get("page", "1"), query.get(size_key, "20")
    if not _INT.fullmatch(raw_page) or int(raw_page) < 1:
        raise ValueError("page must be an integer >= 1")
    if not _INT.fullmatch(raw_size):
        raise ValueError(f"{size_key} must be an integer")
    return int(raw_page), min(100, max(1, int(raw_size)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # eight keep-alive clients plus bursts of reconnects

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so every response carries Content-Length
    server_version = "VobizSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 60  # idle keep-alive connections must not pin a thread forever
    _sandbox: Sandbox
    _status = 0  # what was answered, recorded even if the client hung up mid-write

    def setup(self) -> None:
        super().setup()
        self._sandbox = cast(_Server, self.server).sandbox
        self._sandbox._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # per-request stderr lines would drown test and benchmark output

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:  # an unread body would corrupt the next request on this connection
            self.rfile.read(length)
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self._status = 0
        self._record: RequestRecord | None = RequestRecord("GET", path, query, 0)
        try:
            self._route(path, query)
        finally:
            if self._record is not None:  # closed without an answer
                self._log(0)

    def _route(self, path: str, query: dict[str, str]) -> int:
        sb = self._sandbox
        if sb.latency > 0:
            time.sleep(sb.latency)
        headers = self.headers
        if headers.get("X-Auth-ID") != sb.auth_id or headers.get("X-Auth-Token") != sb.auth_token:
            return self._error(401, "invalid X-Auth-ID or X-Auth-Token")
        match = _ACCOUNT_NUMBERS.fullmatch(path)
        numbers = path == NUMBERS_PATH or match is not None
        if not numbers and path not in (ACCOUNTS_PATH, ME_PATH, AVAILABILITY_PATH):
            message = f"no route for GET {path}"
            return self._json(
                404, {"api_id": str(uuid.uuid4()), "error": "not_found", "message": message}
            )
        raw_page = query.get("page", "1")
        fault = sb.faults.take(path, int(raw_page) if _INT.fullmatch(raw_page) else None)
        if fault is not None:
            time.sleep(fault.delay)
            if fault.kind == "close":
                self.close_connection = True
                return 0
            if fault.kind == "garbage":
                return self._send(200, b"<html><body>502 Bad Gateway</body></html>")
            if fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._error(fault.status, "injected fault", extra)
            # "timeout": the delay has passed, now answer as if nothing happened
        if numbers and (sb.error_rate > 0 or sb.rate_limit_rate > 0):
            with sb._lock:
                roll = sb._rng.random()
            if roll < sb.error_rate:
                return self._error(503, "upstream temporarily unavailable")
            if roll < sb.error_rate + sb.rate_limit_rate:
                return self._error(429, "too many requests", {"Retry-After": "1"})
        if path == AVAILABILITY_PATH:
            country = query.get("country", "")
            if not re.fullmatch(r"[A-Za-z]{2}", country):
                return self._error(400, "country must be an ISO-2 code")
            items = sb.inventory.availability(country, query.get("region") or None)
            return self._json(200, {"items": items})
        if path == ME_PATH:
            return self._json(
                200, {"auth_id": sb.auth_id, "name": "Sandbox Partner", "balance": "1234.50"}
            )
        try:
            alias = path == ACCOUNTS_PATH and "size" in query  # size echoes back, so accept it
            page, per_page = _paging(query, "size" if alias else "per_page")
        except ValueError as exc:
            return self._error(400, str(exc))
        if path == ACCOUNTS_PATH:
            accounts = sb.inventory.accounts(query.get("search"))
            chunk = accounts[(page - 1) * per_page : page * per_page]
            body: dict[str, Any] = {
                "accounts": chunk,
                "total": len(accounts),
                "page": page,
                "size": per_page,
            }
            return self._json(200, body)
        if sb.on_request is not None:
            try:
                sb.on_request(path, query)
            except Exception as exc:  # a broken test hook should surface as a 500, not a hang
                return self._error(500, f"on_request hook failed: {exc!r}")
        account = unquote(match.group(1)) if match else None
        search = query.get("search") if match else None
        if account is None:
            return self._send(200, sb.global_page(page, per_page))
        items, total = sb.inventory.page(page, per_page, account, search)
        return self._json(
            200,
            {
                "data" if sb.legacy_envelope else "items": items,
                "page": page,
                "per_page": per_page,
                "total": total,
                "account_auth_id": account,
            },
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> int:
        error = {"code": _ERROR_CODES.get(status, "error"), "message": message, "details": None}
        body = {"status": "error", "error": error, "requestId": str(uuid.uuid4())}
        return self._json(status, body, headers)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(body, separators=(",", ":")).encode(), headers)

    def _log(self, status: int) -> None:
        record, self._record = self._record, None
        if record is not None:
            with self._sandbox._lock:
                self._sandbox.requests.append(
                    RequestRecord(record.method, record.path, record.query, status)
                )

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> int:
        self._status = status
        self._log(status)  # before answering, so a client that has its answer sees the record
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status


class Sandbox:
    """The fake API server; start() runs it on a daemon thread, stop() tears it down."""

    def __init__(
        self,
        numbers: int = 200,
        seed: int = 1,
        *,
        now: datetime,
        auth_id: str = "PA_SANDBOX",
        auth_token: str = "sandbox-token",  # noqa: S107 - a fixed fake credential
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        legacy_envelope: bool = False,
        error_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
    ) -> None:
        self.inventory = Inventory(numbers, seed, now)
        self.faults = FaultPlan()
        self.auth_id, self.auth_token = auth_id, auth_token
        self.host, self.port = host, port
        self.latency = latency
        self.legacy_envelope = legacy_envelope
        self.error_rate, self.rate_limit_rate = error_rate, rate_limit_rate
        self.on_request: Callable[[str, dict[str, str]], None] | None = None
        self.requests: list[RequestRecord] = []
        self.connections = 0  # accepted TCP connections, to check that clients keep them alive
        self._rng = random.Random(_mix(seed, 0, 99))
        self._page_cache: dict[tuple[int, int, int, bool], bytes] = {}
        self._cache_version = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def global_page(self, page: int, per_page: int) -> bytes:
        """The encoded body of one global numbers page, cached until the inventory changes.

        Generating and encoding a page costs milliseconds of CPU; caching keeps the sandbox from
        being the bottleneck of the benchmarks that measure the client.
        """
        key = (self.inventory.version, page, per_page, self.legacy_envelope)
        body = self._page_cache.get(key)
        if body is None:
            items, total = self.inventory.page(page, per_page)
            envelope = {
                "data" if self.legacy_envelope else "items": items,
                "page": page,
                "per_page": per_page,
                "total": total,
                "account_auth_id": self.auth_id,
            }
            body = json.dumps(envelope, separators=(",", ":")).encode()
            with self._lock:
                if len(self._page_cache) >= PAGE_CACHE_SIZE or self._cache_version != key[0]:
                    self._page_cache.clear()
                    self._cache_version = key[0]
                self._page_cache[key] = body
        return body

    def warm(self, per_page: int = 100) -> int:
        """Render every global page of ``per_page`` ahead of time; returns how many."""
        pages = max(1, -(-self.inventory.total // per_page))
        for page in range(1, min(pages, PAGE_CACHE_SIZE) + 1):
            self.global_page(page, per_page)
        return pages

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox is not bound; call start() or bind() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-ID": self.auth_id, "X-Auth-Token": self.auth_token}

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def bind(self) -> Sandbox:
        """Open the listening socket now, so .url is known before serving."""
        self._bound()
        return self

    def start(self) -> Sandbox:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._bound().serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        server = self._bound()
        try:
            server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._close()

    def _bound(self) -> _Server:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            # Keep the port the OS picked, so a stop()/start() "restart" comes back on it.
            self.port = int(self._server.server_address[1])
        return self._server

    def _close(self) -> None:
        server, self._server, self._thread = self._server, None, None
        with self._lock:
            conns = list(self._open)
        for conn in conns:  # wake keep-alive handler threads blocked on reading
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if server is not None:
            server.server_close()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(conn)
                self.connections += 1
            else:
                self._open.discard(conn)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
