"""Tests for the health listener and the metrics: address parsing, verdicts, a real loopback
listener, and metrics read from a real swept database."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from monitor.alerts import DeliveryOutcome
from monitor.errors import ConfigError, DatabaseError
from monitor.health import HealthServer, Metrics, assess, numbers_by_status, parse_listen
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FIXED_NOW, FakeClock, make_settings

# --- parse_listen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("  ", None),
        ("9108", ("127.0.0.1", 9108)),
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:9108", ("0.0.0.0", 9108)),
        ("localhost:80", ("localhost", 80)),
        ("monitor.internal:65535", ("monitor.internal", 65535)),
        ("[::]:9108", ("::", 9108)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_parse_listen_accepts(value: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("here", "expected host:port"),
        (":9108", "host is missing"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:0", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:http", "port must be a number"),
        ("::1:9108", "IPv6 address in brackets"),
        ("[::1]9108", "followed by :port"),
        ("[nope]:9108", "not an IPv6 address"),
        ("bad_host!:9108", "not a host name"),
        ("http://0.0.0.0:9108", "not a URL"),
        ("0.0.0.0:9108/healthz", "not a URL"),
    ],
)
def test_parse_listen_refuses_with_the_key_named(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listen(value)
    assert info.value.message.startswith(f"service.health_listen = {value!r}: ")
    assert why in info.value.message
    assert info.value.hint and "host:port" in info.value.hint
    assert info.value.exit_code == 2


# --- assess -------------------------------------------------------------------------------------


def test_assess_ok_before_the_deadline() -> None:
    deadline = FIXED_NOW + timedelta(hours=1)
    ok, body = assess(
        now=FIXED_NOW, scheduler_running=True, last_complete_at=FIXED_NOW, deadline=deadline
    )
    assert ok
    assert body["status"] == "ok" and body["reasons"] == []
    assert body["next_sweep_due_by"] == "2026-11-23T13:00:00Z"
    assert body["last_complete_sweep_at"] == "2026-11-23T12:00:00Z"


def test_assess_fails_when_the_scheduler_is_down() -> None:
    ok, body = assess(
        now=FIXED_NOW,
        scheduler_running=False,
        last_complete_at=None,
        deadline=FIXED_NOW + timedelta(hours=1),
    )
    assert not ok
    assert body["reasons"] == ["the scheduler is not running"]


def test_assess_fails_when_overdue() -> None:
    last = FIXED_NOW - timedelta(days=8)
    ok, body = assess(
        now=FIXED_NOW,
        scheduler_running=True,
        last_complete_at=last,
        deadline=FIXED_NOW - timedelta(seconds=1),
    )
    assert not ok
    assert "overdue" in body["reasons"][0] and "2026-11-15T12:00:00Z" in body["reasons"][0]
    ok, body = assess(
        now=FIXED_NOW,
        scheduler_running=True,
        last_complete_at=None,
        deadline=FIXED_NOW - timedelta(seconds=1),
    )
    assert not ok and "no complete sweep since the service started" in body["reasons"][0]


def test_assess_with_no_deadline_is_never_overdue() -> None:
    ok, _ = assess(now=FIXED_NOW, scheduler_running=True, last_complete_at=None, deadline=None)
    assert ok


# --- the listener -------------------------------------------------------------------------------


class Probes:
    def __init__(self) -> None:
        self.healthy: bool | BaseException = True
        self.metrics_text = b"# nothing\n"

    def health(self) -> tuple[bool, dict[str, Any]]:
        if isinstance(self.healthy, BaseException):
            raise self.healthy
        return self.healthy, {"status": "ok" if self.healthy else "failing"}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}

    def metrics(self) -> bytes:
        return self.metrics_text


@pytest.fixture
def probes() -> Probes:
    return Probes()


def serve(probes: Probes, **overrides: Any) -> HealthServer:
    """A started listener on a free loopback port, answering from ``probes``."""
    handlers: dict[str, Any] = {
        "health": probes.health,
        "ready": probes.ready,
        "metrics": probes.metrics,
    }
    return HealthServer(("127.0.0.1", 0), poll_interval=0.05, **(handlers | overrides)).start()


@pytest.fixture
def listener(probes: Probes) -> Iterator[httpx.Client]:
    server = serve(probes)
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
    probes.healthy = OperationalError("SELECT 1", {}, Exception("connection refused"))
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
    probes.metrics_text = b"did_monitor_x 1.0\n"
    metrics = listener.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert metrics.text == "did_monitor_x 1.0\n"
    missing = listener.get("/")
    assert missing.status_code == 404
    assert missing.json()["paths"] == ["/healthz", "/metrics", "/readyz"]


def test_a_failing_metrics_callback_is_a_500(probes: Probes) -> None:
    def broken() -> bytes:
        raise ValueError("boom")

    server = serve(probes, metrics=broken)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert response.status_code == 500
        assert response.json()["status"] == "error"
    finally:
        server.stop()


def test_stop_closes_the_port(probes: Probes) -> None:
    server = serve(probes)
    port = server.port
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_an_address_in_use_is_a_config_error(probes: Probes) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        server = HealthServer(
            ("127.0.0.1", port), health=probes.health, ready=probes.ready, metrics=probes.metrics
        )
        with pytest.raises(ConfigError, match="cannot listen there"):
            server.start()


# --- metrics ------------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_read_the_inventory_and_findings(sandbox: Sandbox, sqlite_store: Store) -> None:
    settings = make_settings(sandbox, sqlite_store.url)
    outcome = run_cycle(settings, sqlite_store, RecordingNotifier(), clock=FakeClock())
    assert outcome.ok
    metrics = Metrics(sqlite_store, channels=["ops", "mail"])
    metrics.sweep_finished("complete", outcome.duration)
    metrics.delivered(
        [
            DeliveryOutcome(1, "ops", "digest", ok=False, error="HTTP 500"),
            DeliveryOutcome(2, "ops", "digest", ok=False, error="HTTP 500"),
            DeliveryOutcome(3, "mail", "digest", ok=True),
        ]
    )
    got = samples(metrics)

    by_status = {
        labels[0][1]: v for (name, labels), v in got.items() if name == "did_monitor_numbers"
    }
    assert sum(by_status.values()) == 150
    assert by_status == {k: float(v) for k, v in numbers_by_status(sqlite_store).items()}
    assert by_status["active"] > 0
    findings = {
        (dict(labels)["rule"], dict(labels)["severity"]): v
        for (name, labels), v in got.items()
        if name == "did_monitor_open_findings"
    }
    assert findings == {k: float(v) for k, v in sqlite_store.open_counts().items()}
    assert findings
    assert got[("did_monitor_database_up", ())] == 1
    assert got[("did_monitor_sweeps_total", (("outcome", "complete"),))] == 1
    assert got[("did_monitor_sweeps_total", (("outcome", "skipped"),))] == 0
    assert got[("did_monitor_sweep_duration_seconds", ())] == pytest.approx(outcome.duration)
    assert got[("did_monitor_delivery_failures_total", (("channel", "ops"),))] == 2
    assert got[("did_monitor_delivery_failures_total", (("channel", "mail"),))] == 0
    assert got[("did_monitor_deliveries_total", (("channel", "mail"), ("outcome", "sent")))] == 1
    last = sqlite_store.last_sweep("complete")
    assert last is not None
    stamp = got[("did_monitor_last_successful_sweep_timestamp_seconds", ())]
    assert datetime.fromtimestamp(stamp, UTC) == last["finished_at"]


def test_metrics_before_any_sweep(sqlite_store: Store) -> None:
    got = samples(Metrics(sqlite_store))
    assert got[("did_monitor_database_up", ())] == 1
    assert not any(name == "did_monitor_last_successful_sweep_timestamp_seconds" for name, _ in got)


def test_an_unreadable_database_is_reported_not_raised(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")  # never migrated: no tables
    try:
        got = samples(Metrics(store))
    finally:
        store.dispose()
    assert got[("did_monitor_database_up", ())] == 0
    assert not any(name == "did_monitor_numbers" for name, _ in got)


def test_metrics_use_their_own_registry(sqlite_store: Store) -> None:
    first, second = Metrics(sqlite_store), Metrics(sqlite_store)  # no duplicate-name clash
    first.sweep_finished("failed")
    assert second.registry.get_sample_value("did_monitor_sweeps_total", {"outcome": "failed"}) == 0
    assert (
        prometheus_client.REGISTRY.get_sample_value(
            "did_monitor_sweeps_total", {"outcome": "failed"}
        )
        is None
    )
