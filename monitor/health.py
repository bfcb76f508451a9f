"""The service's optional HTTP listener: ``/healthz``, ``/readyz`` and Prometheus ``/metrics``.

The listener only serves; what "healthy" and "ready" mean is decided by the probes the service
hands it (``assess`` below turns the service's facts into a verdict). Metrics live in a registry
of their own, never prometheus-client's global one, so two services in one process (tests) or a
library user's own metrics cannot collide with ours.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import parse_listen as parse_listen  # its home is config; kept importable here
from monitor.db import describe_db_error
from monitor.errors import ConfigError, MonitorError
from monitor.model import DeliveryOutcome
from monitor.store import Store

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""Answers (ok, JSON-able explanation); it may raise, which the listener reports as 503."""

SWEEP_OUTCOMES = ("complete", "failed", "aborted", "skipped", "error")
# --- health verdicts ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def assess(
    *,
    now: datetime,
    scheduler_running: bool,
    last_complete_at: datetime | None,
    deadline: datetime | None,
) -> tuple[bool, dict[str, Any]]:
    """The ``/healthz`` verdict (pure): healthy when the scheduler runs and ``now`` is not past
    ``deadline``, the time by which the next complete sweep was due (see
    ``service.sweep_deadline``). Returns (ok, body) where body says why."""
    reasons: list[str] = []
    if not scheduler_running:
        reasons.append("the scheduler is not running")
    if deadline is not None and now > deadline:
        if last_complete_at is None:
            reasons.append(
                f"no complete sweep since the service started; one was due by {_iso(deadline)}"
            )
        else:
            reasons.append(
                f"the last complete sweep (started {_iso(last_complete_at)}) is overdue: "
                f"the next one was due by {_iso(deadline)}"
            )
    ok = not reasons
    return ok, {
        "status": "ok" if ok else "failing",
        "reasons": reasons,
        "scheduler_running": scheduler_running,
        "last_complete_sweep_at": _iso(last_complete_at),
        "next_sweep_due_by": _iso(deadline),
        "now": _iso(now),
    }


def describe_failure(exc: BaseException) -> str:
    """One line for a probe that raised, without URLs or credentials."""
    if isinstance(exc, MonitorError):
        return exc.message
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {describe_db_error(exc)}"
    return f"probe failed: {type(exc).__name__}"


# --- metrics ------------------------------------------------------------------------------------


def numbers_by_status(store: Store) -> dict[str, int]:
    """How many numbers the current inventory holds in each status (the store's answer)."""
    return store.numbers_by_status()


class _StoreCollector(Collector):
    """Figures read from the database at scrape time, so every replica reports the same truth."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "did_monitor_database_up", "1 when this scrape could read the database, else 0"
        )
        try:
            by_status = numbers_by_status(self.store)
            open_counts = self.store.open_counts()
            last = self.store.last_sweep("complete")
        except (SQLAlchemyError, MonitorError) as exc:
            log.warning("metrics: cannot read the database: %s", describe_failure(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        numbers = GaugeMetricFamily(
            "did_monitor_numbers", "Numbers in the current inventory, by status", labels=["status"]
        )
        for status, count in sorted(by_status.items()):
            numbers.add_metric([status], count)
        yield numbers
        findings = GaugeMetricFamily(
            "did_monitor_open_findings",
            "Open findings, by rule and severity",
            labels=["rule", "severity"],
        )
        for (rule, severity), count in sorted(open_counts.items()):
            findings.add_metric([rule, severity], count)
        yield findings
        if last is not None:
            at = last["finished_at"] or last["started_at"]
            yield GaugeMetricFamily(
                "did_monitor_last_successful_sweep_timestamp_seconds",
                "When the last complete sweep (of any replica) finished, as a Unix time",
                value=at.timestamp(),
            )


class Metrics:
    """The service's Prometheus metrics, in a ``CollectorRegistry`` of their own.

    Counters and the last duration are this process's; inventory, findings and the last
    successful sweep are read from the database at scrape time (when a store is given).
    """

    def __init__(self, store: Store | None = None, channels: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.sweep_duration = Gauge(
            "did_monitor_sweep_duration_seconds",
            "How long the last sweep this process ran took",
            registry=self.registry,
        )
        self.sweeps = Counter(
            "did_monitor_sweeps",
            "Sweeps this process attempted, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "did_monitor_deliveries",
            "Alert delivery attempts made by this process",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "did_monitor_delivery_failures",
            "Failed alert delivery attempts, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.job_errors = Counter(
            "did_monitor_job_errors",
            "Scheduled jobs that ended in an unexpected error",
            ["job"],
            registry=self.registry,
        )
        for outcome in SWEEP_OUTCOMES:  # present at 0 from the start, so rates work
            self.sweeps.labels(outcome)
        for channel in channels:
            self.delivery_failures.labels(channel)
        if store is not None:
            self.registry.register(_StoreCollector(store))

    def sweep_finished(self, outcome: str, duration: float | None = None) -> None:
        self.sweeps.labels(outcome).inc()
        if duration is not None:
            self.sweep_duration.set(duration)

    def delivered(self, outcomes: Iterable[DeliveryOutcome]) -> None:
        for outcome in outcomes:
            self.deliveries.labels(outcome.channel, "sent" if outcome.ok else "failed").inc()
            if not outcome.ok:
                self.delivery_failures.labels(outcome.channel).inc()

    def job_failed(self, job: str) -> None:
        self.job_errors.labels(job).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --- the listener -------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """Serves the probes and metrics on a daemon thread; ``start()`` binds, ``stop()`` closes."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        health: Probe,
        ready: Probe,
        metrics: Callable[[], bytes],
        poll_interval: float = 0.5,
    ) -> None:
        self.address = address
        self.poll_interval = poll_interval  # how soon stop() is noticed
        self._routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/healthz": lambda: _probe_response(health),
            "/readyz": lambda: _probe_response(ready),
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics()),
        }
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the health listener is not started")
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        host, port = self.address
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), self._handler_class())
        except OSError as exc:
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ConfigError(
                f"service.health_listen = {shown!r}: cannot listen there: {exc.strerror or exc}",
                hint="pick a free port and an address of this machine (0.0.0.0 in a container)",
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name="did-monitor-health",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "health listener on http://%s:%d (/healthz, /readyz, /metrics)",
            f"[{host}]" if ":" in host else host,
            self.port,
        )
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()
        self._server = self._thread = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        routes = self._routes

        class Handler(BaseHTTPRequestHandler):
            server_version = "did-monitor"

            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0].rstrip("/") or "/")
                if route is None:
                    status, ctype, body = _json(
                        404, {"error": "not found", "paths": sorted(routes)}
                    )
                else:
                    try:
                        status, ctype, body = route()
                    except Exception as exc:  # a broken probe must answer, not kill the listener
                        log.warning(
                            "health listener: %s failed: %s", self.path, describe_failure(exc)
                        )
                        status, ctype, body = _json(
                            500, {"status": "error", "reasons": [describe_failure(exc)]}
                        )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health listener: " + format, *args)

        return Handler


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, indent=1).encode() + b"\n"


def _probe_response(probe: Probe) -> tuple[int, str, bytes]:
    try:
        ok, body = probe()
    except Exception as exc:  # e.g. the database is down: that is an answer, 503, not a crash
        return _json(503, {"status": "failing", "reasons": [describe_failure(exc)]})
    return _json(200 if ok else 503, body)
