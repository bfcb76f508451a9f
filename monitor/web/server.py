"""The listener: uvicorn serving the web app on a thread of the service's process.

The socket is bound in ``start()``, on the caller's thread, so an address in use is a config
error at start-up rather than a log line from a thread. uvicorn installs signal handlers only
on the main thread; on its own thread it installs none, so the service keeps owning
SIGTERM/SIGINT and stops the listener itself, after the scheduler.

The listener bounds itself, so idle or half-open connections cannot take it down: at most
``max_connections`` are open (capped by the process's descriptor limit; beyond it the longest
idle one is closed to make room), a connection has ``header_timeout`` seconds to send a whole
request (uvicorn itself waits for the first one forever), an idle keep-alive one is closed after
``KEEP_ALIVE_SECONDS``, and request heads are limited to ``MAX_HEAD_BYTES``. If accept() still
runs out of descriptors, asyncio's error line (with a traceback, repeated in a loop by Python
3.11) is let through once a minute, without the traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import socket
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT: Final = 10.0
GRACEFUL_SECONDS: Final = 3  # open connections get this long to finish at stop()
MAX_CONNECTIONS: Final = 256
HEADER_TIMEOUT: Final = 10.0
KEEP_ALIVE_SECONDS: Final = 5
MAX_HEAD_BYTES: Final = 16 * 1024
ACCEPT_BATCH: Final = 128  # the listen backlog, and how many accept() asyncio makes in one go
ACCEPT_ERROR: Final = "socket.accept() out of system resource"
ACCEPT_ERROR_EVERY: Final = 60.0  # seconds


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to a quarter of the descriptor limit: the connections open, those
    accepted in one batch and those being closed must all fit beside the service's own files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 4))


class _AcceptErrors(logging.Filter):
    """On the ``asyncio`` logger: one "out of system resource" line a minute, no traceback,
    saying how many were held back. The record's own time is used, so no clock is read."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR):
            return True
        with self._lock:
            if self._last is not None and record.created - self._last < ACCEPT_ERROR_EVERY:
                self._held += 1
                return False
            self._last, held, self._held = record.created, self._held, 0
        record.msg = "web listener: out of file descriptors, connections wait (%d more since)"
        record.args = (held,)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


ACCEPT_ERRORS: Final = _AcceptErrors()
_turns = itertools.count()  # orders connections by when they last became idle


class _BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the connection cap and the header timeout."""

    cap = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()
        live = [c for c in self.connections if isinstance(c, _BoundedH11) and c.is_open()]
        if len(live) > self.cap:
            idle = [c for c in live if c.is_idle()]
            oldest = min(idle, key=lambda c: c._idle_since) if idle else self
            oldest.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def is_open(self) -> bool:
        return not self.transport.is_closing()

    def is_idle(self) -> bool:  # waiting for a request, or for the rest of its head
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:  # idle from now: the next request's head has header_timeout seconds
        self._idle_since = next(_turns)
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _expire(self) -> None:
        if self.is_idle() and self.is_open():
            self.transport.close()


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False, repr=False)
class WebServer:
    """Serves ``app`` at ``address`` (from config ``key``, named when it cannot be bound) on a
    daemon thread; ``serves`` is what the log line says is served there."""

    address: tuple[str, int]
    app: ASGIApp
    _: KW_ONLY
    key: str = "service.health_listen"
    serves: str = "/healthz, /readyz, /metrics"
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    _socket: socket.socket | None = field(default=None, init=False)
    _server: uvicorn.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the web listener is not started")
        return int(self._socket.getsockname()[1])

    def start(self) -> WebServer:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
        # whose protocol says TCP, and with it on every keep-alive response waits 40 ms for the
        # client's delayed ACK between its headers and its body.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(ACCEPT_BATCH)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"{self.key} = {format_address(host, port)!r}: cannot listen there: "
                f"{exc.strerror or exc}",
                hint="pick a free port and an address of this machine (0.0.0.0 in a container)",
            ) from None
        # uvicorn's own start/stop lines repeat ours (with terminal colour codes attached);
        # its warnings and errors still come through.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        logging.getLogger("asyncio").addFilter(ACCEPT_ERRORS)  # once: addFilter skips a repeat
        cap = connection_cap(self.max_connections)
        bounds = {"cap": cap, "header_timeout": self.header_timeout}
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the service's logging stays as configured
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            http=type("BoundedH11", (_BoundedH11,), bounds),
            # Requests in progress (a client that went away leaves its request running); one
            # more than the cap, as a connection being closed is still counted for a moment.
            limit_concurrency=cap + 1,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            backlog=min(ACCEPT_BATCH, cap),
        )
        self._socket, self._server = sock, uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="did-monitor-web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise ConfigError(f"{self.key}: the web listener did not start")
        log.info("web listener on http://%s (%s)", format_address(host, self.port), self.serves)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_SECONDS + 5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
