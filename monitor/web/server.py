"""The listener: uvicorn serving the web app on a thread of the service's process.

The socket is bound in ``start()``, on the caller's thread, so an address in use is a config
error at start-up rather than a log line from a thread. uvicorn installs signal handlers only
on the main thread; on its own thread it installs none, so the service keeps owning
SIGTERM/SIGINT and stops the listener itself, after the scheduler.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT: Final = 10.0
GRACEFUL_SECONDS: Final = 3  # open connections get this long to finish at stop()


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WebServer:
    """Serves ``app`` at ``address`` on a daemon thread; ``start()`` binds, ``stop()`` closes.

    ``key`` names the config key the address came from, for the error when it cannot be bound;
    ``serves`` says what is served there, for the log line.
    """

    def __init__(
        self,
        address: tuple[str, int],
        app: ASGIApp,
        *,
        key: str = "service.health_listen",
        serves: str = "/healthz, /readyz, /metrics",
    ) -> None:
        self.address = address
        self.app = app
        self.key = key
        self.serves = serves
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

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
            sock.listen(128)
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
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the service's logging stays as configured
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        self._socket, self._server = sock, uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="did-monitor-web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise ConfigError(f"{self.key}: the web listener did not start")
        log.info("web listener on http://%s (%s)", format_address(host, self.port), self.serves)
        return self

    def stop(self) -> None:
        """Stop accepting, let open requests finish (bounded), close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_SECONDS + 5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
