"""Tests for the scheduler daemon: the time decisions with fixed datetimes, the jobs in-process
against the sandbox, and ``did-monitor run`` as a real subprocess (SQLite; two replicas on
PostgreSQL)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from monitor.alerts.deliver import deliver_due
from monitor.config import ChannelConfig, ScheduleConfig, ServiceConfig, Settings
from monitor.errors import ConfigError
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.schedule import (
    build_trigger,
)
from monitor.service import Service
from monitor.store import SWEEPS, Store
from monitor.store.db import ATTEMPTS, DELIVERIES, LOCKS
from monitor.testing import RecordingNotifier, row_counts
from tests.conftest import FIXED_NOW, FakeClock, make_settings, sent_to, sweep_row

WEEKLY = "0 6 * * mon"  # FIXED_NOW, 2026-11-23 12:00 UTC, is a Monday
DAY = timedelta(days=1)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def trigger(cron: str = WEEKLY, tz: str = "UTC", jitter: int = 0) -> Any:
    return build_trigger(ScheduleConfig(cron=cron, timezone=tz, jitter_seconds=jitter))


# --- the service in-process -------------------------------------------------------------------


@dataclass
class FakeHeartbeat:
    pings: list[str] = field(default_factory=list)

    def success(self) -> bool:
        self.pings.append("success")
        return True

    def failure(self) -> bool:
        self.pings.append("failure")
        return True


class ExplodingNotifier:
    """A notifier with a bug: it raises something that is not a DeliveryError."""

    def send(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in a notifier")


def sample(service: Service, name: str, **labels: str) -> float | None:
    value: float | None = service.metrics.registry.get_sample_value(name, labels)
    return value


_MADE: list[Service] = []


@pytest.fixture(autouse=True)
def _close_services_http() -> Iterator[None]:
    """Services a test made but never shut down still close their HTTP client's connections."""
    yield
    while _MADE:
        _MADE.pop().http.close()


def make_service(
    settings: Settings, store: Store, notifier: Any = None, clock: Any = None, **kwargs: Any
) -> tuple[Service, FakeHeartbeat]:
    service = Service(
        settings,
        store,
        notifier=notifier or RecordingNotifier(),
        clock=clock or FakeClock(),
        **kwargs,
    )
    _MADE.append(service)
    beat = FakeHeartbeat()
    service.heartbeat = beat  # type: ignore[assignment]
    return service, beat


def test_first_sweep_reason(sandbox: Sandbox, sqlite_store: Store) -> None:
    settings = make_settings(sandbox, sqlite_store.url, schedule=ScheduleConfig(cron=WEEKLY))
    service, _ = make_service(settings, sqlite_store)
    assert service.first_sweep_reason(FIXED_NOW) == "catch-up"  # never swept
    run_cycle(settings, sqlite_store, RecordingNotifier(), clock=FakeClock(FIXED_NOW))
    assert service.first_sweep_reason(FIXED_NOW + timedelta(hours=1)) is None
    next_window = FIXED_NOW + timedelta(days=7) - timedelta(hours=5)  # next Monday 07:00
    assert service.first_sweep_reason(next_window) == "catch-up"
    # down past the grace (a day) over the next window: the data is overdue, so sweep anyway
    assert service.first_sweep_reason(next_window + timedelta(days=2)) == "catch-up"
    # but not while the last sweep is merely older than the grace with no window missed
    assert service.first_sweep_reason(FIXED_NOW + timedelta(days=3)) is None
    now_flag, _ = make_service(settings, sqlite_store, run_now=True)
    assert now_flag.first_sweep_reason(FIXED_NOW) == "start"
    on_start = make_settings(
        sandbox, sqlite_store.url, schedule=ScheduleConfig(cron=WEEKLY, run_on_start=True)
    )
    assert make_service(on_start, sqlite_store)[0].first_sweep_reason(FIXED_NOW) == "start"


def test_an_unreadable_sweep_history_sweeps_at_start_to_be_safe(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database without the sweeps table (never migrated here): the history cannot be read,
    so the service sweeps now rather than trusting a schedule it cannot check."""
    store = Store(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    settings = make_settings(sandbox, store.url, schedule=ScheduleConfig(cron=WEEKLY))
    service, _ = make_service(settings, store)
    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        assert service.first_sweep_reason(FIXED_NOW) == "catch-up"
    assert [r.getMessage() for r in caplog.records if "sweeping now to be safe" in r.getMessage()]
    store.dispose()


def test_sweep_job_sweeps_counts_and_pings(sandbox: Sandbox, sqlite_store: Store) -> None:
    settings = make_settings(sandbox, sqlite_store.url)
    service, beat = make_service(settings, sqlite_store)
    outcome = service.sweep_job()
    assert outcome is not None and outcome.ok
    assert sample(service, "did_monitor_sweeps_total", outcome="complete") == 1
    assert sample(service, "did_monitor_sweep_duration_seconds") == pytest.approx(outcome.duration)
    assert beat.pings == ["success"]
    last = sqlite_store.last_sweep("complete")
    assert last is not None and last["trigger"] == "schedule"


def test_a_failed_sweep_pings_the_fail_url(sandbox: Sandbox, sqlite_store: Store) -> None:
    settings = make_settings(sandbox, sqlite_store.url, vobiz={"auth_token": "wrong"})
    service, beat = make_service(settings, sqlite_store)
    outcome = service.sweep_job()
    assert outcome is not None and not outcome.ok
    assert sample(service, "did_monitor_sweeps_total", outcome="failed") == 1
    assert beat.pings == ["failure"]


def test_a_partial_sweep_is_counted_partial_and_pings_no_heartbeat(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    """A partial sweep is not complete: the dead-man's switch is not reset by it (nor tripped:
    it did not fail), it counts as "partial", and the service retries it."""
    from monitor.service import RETRY_JOB

    sandbox.inventory.update(0, id=None)  # one item unreadable: a partial sweep
    settings = make_settings(sandbox, sqlite_store.url)
    service, beat = make_service(settings, sqlite_store)
    service.scheduler.start(paused=True)
    try:
        outcome = service.sweep_job()
        assert outcome is not None and outcome.ok and outcome.partial
        assert sample(service, "did_monitor_sweeps_total", outcome="partial") == 1
        assert sample(service, "did_monitor_sweeps_total", outcome="complete") == 0
        assert sample(service, "did_monitor_sweeps_total", outcome="failed") == 0
        assert beat.pings == []
        assert service.scheduler.get_job(RETRY_JOB) is not None
    finally:
        service.scheduler.shutdown(wait=False)


def test_a_skip_names_the_holder_and_retries_when_its_lease_expires(
    sandbox: Sandbox, sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.service import RETRY_JOB

    settings = make_settings(sandbox, sqlite_store.url)
    clock = FakeClock()
    service, beat = make_service(settings, sqlite_store, clock=clock)
    held_since = FIXED_NOW - timedelta(hours=1)
    with sqlite_store.engine.begin() as conn:
        owner = "otherhost:7:abc"
        conn.execute(sa.insert(LOCKS).values(name="sweep", owner=owner, acquired_at=held_since))
    service.scheduler.start(paused=True)
    try:
        with caplog.at_level(logging.INFO, logger="monitor.service"):
            assert service.sweep_job() is None
        (skip,) = [r for r in caplog.records if "sweep skipped" in r.getMessage()]
        assert skip.levelno == logging.WARNING
        assert owner in skip.getMessage() and "2026-11-23T17:00:00" in skip.getMessage()
        assert sample(service, "did_monitor_sweeps_total", outcome="skipped") == 1
        assert sqlite_store.last_sweep() is None
        assert beat.pings == []
        job = service.scheduler.get_job(RETRY_JOB)  # at the lease's expiry, not next Monday
        assert job is not None and job.next_run_time == held_since + timedelta(hours=6)
        # The holder never finished: once its lease expired, the retry sweeps.
        clock.advance(hours=5, seconds=1)
        job.func(*job.args)
        last = sqlite_store.last_sweep()
        assert last is not None and (last["status"], last["trigger"]) == ("complete", "retry")
        # A retry after a holder that did complete has nothing to do.
        service._after_skip_job(last["started_at"])
        assert row_counts(sqlite_store.engine)["sweeps"] == 1
    finally:
        service.scheduler.shutdown(wait=False)


def test_a_database_busy_with_another_program_is_a_failed_sweep(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    """Another program's write transaction is no did-monitor lease: the sweep fails, is stored
    once the database lets it, is alerted, and is retried on the failed-sweep schedule."""
    from monitor.service import RETRY_JOB

    path = str(sqlite_store.engine.url.database)
    chan = ChannelConfig(name="ops", url="json://127.0.0.1:9/hook")
    settings = make_settings(sandbox, sqlite_store.url, channels=(chan,))
    notifier = RecordingNotifier()
    service, beat = make_service(settings, sqlite_store, notifier=notifier)
    hold = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('held', flush=True)\n"
        "time.sleep(3)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, path], stdout=subprocess.PIPE, text=True)
    service.scheduler.start(paused=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        outcome = service.sweep_job()
        job = service.scheduler.get_job(RETRY_JOB)
    finally:
        service.scheduler.shutdown(wait=False)
        holder.wait(10)
        holder.stdout.close()
    assert outcome is not None and not outcome.ok
    assert path in (outcome.error or "") and "another program" in (outcome.error or "")
    row = sweep_row(sqlite_store, outcome.sweep_id)
    assert row["status"] == "failed" and path in row["error"]
    assert [m.level for m in sent_to(notifier, "ops")] == ["failure"]  # the "sweep failed" alert
    assert beat.pings == ["failure"]
    assert sample(service, "did_monitor_sweeps_total", outcome="failed") == 1
    assert job is not None and job.next_run_time == FIXED_NOW + timedelta(minutes=5)


def test_cancel_aborts_the_running_sweep(sandbox: Sandbox, sqlite_store: Store) -> None:
    settings = make_settings(sandbox, sqlite_store.url)
    service, beat = make_service(settings, sqlite_store)
    sandbox.on_request = lambda path, query: service.cancel.set()
    assert service.sweep_job() is None
    assert sample(service, "did_monitor_sweeps_total", outcome="aborted") == 1
    last = sqlite_store.last_sweep()
    assert last is not None and last["status"] == "aborted"
    assert sqlite_store.inventory_size() == 0  # rolled back
    assert beat.pings == []


def test_a_notifier_bug_is_a_failed_delivery_not_a_failed_sweep(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    chan = ChannelConfig(name="ops", url="json://127.0.0.1:9/hook")
    settings = make_settings(sandbox, sqlite_store.url, channels=(chan,))
    clock = FakeClock()
    service, beat = make_service(settings, sqlite_store, notifier=ExplodingNotifier(), clock=clock)
    assert service.sweep_job() is not None
    assert sample(service, "did_monitor_sweeps_total", outcome="complete") == 1
    assert sample(service, "did_monitor_delivery_failures_total", channel="ops") == 1
    assert beat.pings == ["success"]
    clock.advance(hours=1)
    (outcome,) = service.delivery_job()
    assert not outcome.ok and "unexpected RuntimeError" in (outcome.error or "")
    assert sample(service, "did_monitor_job_errors_total", job="sweep") in (None, 0)


def test_an_unexpected_error_does_not_escape_a_job(
    sandbox: Sandbox,
    sqlite_store: Store,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import monitor.service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the pipeline")

    monkeypatch.setattr(monitor.service, "run_cycle", broken)
    monkeypatch.setattr(monitor.service, "deliver_due", broken)
    settings = make_settings(sandbox, sqlite_store.url)
    service, beat = make_service(settings, sqlite_store, notifier=RecordingNotifier())
    with caplog.at_level(logging.ERROR, logger="monitor.service"):
        assert service.sweep_job() is None
        assert service.delivery_job() == []
    assert sample(service, "did_monitor_sweeps_total", outcome="error") == 1
    assert sample(service, "did_monitor_job_errors_total", job="sweep") == 1
    assert sample(service, "did_monitor_job_errors_total", job="deliver") == 1
    assert beat.pings == ["failure"]
    assert [r.getMessage() for r in caplog.records] == [
        "sweep job failed unexpectedly",
        "delivery job failed unexpectedly",
    ]


def test_delivery_job_retries_without_waiting_for_a_sweep(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    chan = ChannelConfig(name="ops", url="json://127.0.0.1:9/hook")
    settings = make_settings(sandbox, sqlite_store.url, channels=(chan,))
    notifier = RecordingNotifier(failing={"ops"})
    clock = FakeClock()
    service, _ = make_service(settings, sqlite_store, notifier=notifier, clock=clock)
    outcome = service.sweep_job()
    assert outcome is not None and outcome.delivery_failures == 1
    assert sample(service, "did_monitor_delivery_failures_total", channel="ops") == 1
    notifier.failing.clear()
    assert service.delivery_job() == []  # not due yet: backoff
    clock.advance(seconds=settings.alerts.retry_backoff_seconds + 1)
    delivered = service.delivery_job()
    assert [(d.channel, d.ok) for d in delivered] == [("ops", True)]
    assert len(sent_to(notifier, "ops")) == 1
    assert sample(service, "did_monitor_deliveries_total", channel="ops", outcome="sent") == 1


def test_a_malformed_health_listen_is_refused_when_the_config_loads() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="health_listen"):
        ServiceConfig(health_listen="here")


def test_a_busy_health_port_is_a_config_error(sqlite_store: Store) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        listen = ServiceConfig(health_listen=f"127.0.0.1:{port}")
        settings = make_settings(None, sqlite_store.url, service=listen)
        service, _ = make_service(settings, sqlite_store)
        with pytest.raises(ConfigError, match="cannot listen"):
            service.run_forever()
    assert not service.scheduler.running


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll every 0.1 s until ``predicate`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_run_forever_in_a_thread_sweeps_now_and_stops(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    settings = make_settings(sandbox, sqlite_store.url, schedule=ScheduleConfig(cron=WEEKLY))
    service, _ = make_service(settings, sqlite_store, clock=lambda: datetime.now(UTC), run_now=True)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run_forever()))
    thread.start()
    try:
        wait_for(
            lambda: sample(service, "did_monitor_sweeps_total", outcome="complete"),
            what="the start-up sweep",
        )
        ok, body = service.health()
        assert ok, body
        assert service.readiness()[0]
        nxt = service.next_sweep_at()
        assert nxt is not None and nxt.astimezone(UTC).weekday() == 0  # a Monday
        last = sqlite_store.last_sweep("complete")
        assert last is not None and last["trigger"] == "start"
    finally:
        service.stop()
        thread.join(10)
    assert result == [0]
    assert not service.scheduler.running
    assert row_counts(sqlite_store.engine)["sweeps"] == 1


def test_shutdown_is_bounded_by_a_stuck_job(
    sandbox: Sandbox, sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = threading.Event(), threading.Event()

    class StuckNotifier:
        def send(self, *args: Any, **kwargs: Any) -> None:
            entered.set()
            release.wait(10)

    chan = ChannelConfig(name="ops", url="json://127.0.0.1:9/hook")
    settings = make_settings(
        sandbox,
        sqlite_store.url,
        channels=(chan,),
        schedule=ScheduleConfig(cron=WEEKLY),
        service=ServiceConfig(shutdown_timeout_seconds=1),
    )
    service, _ = make_service(settings, sqlite_store, notifier=StuckNotifier(), run_now=True)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run_forever()))
    thread.start()
    try:
        assert entered.wait(8), "the sweep never reached delivery"
        with caplog.at_level(logging.WARNING, logger="monitor.service"):
            started = time.monotonic()
            service.stop()
            thread.join(5)
            elapsed = time.monotonic() - started
        assert result == [0]
        assert elapsed < 3
        assert any("still running" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
        service._executor.join(5)


def test_a_send_left_behind_by_shutdown_claims_nothing_more(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    """Shutdown gives up on a stuck send and hands it back. When that send ends after all, its
    thread neither records over the handed-back row nor claims the next one (which would stay
    ``sending`` after the process ends, or be sent while the process is stopping)."""
    entered, release = threading.Event(), threading.Event()
    notifier = RecordingNotifier()

    class StuckOnce:
        def send(self, channel: Any, *args: Any, **kwargs: Any) -> None:
            if not entered.is_set():
                entered.set()
                release.wait(10)
            notifier.send(channel, *args, **kwargs)

    channels = tuple(ChannelConfig(name=n, url="json://127.0.0.1:9/hook") for n in ("a", "b"))
    settings = make_settings(
        sandbox,
        sqlite_store.url,
        channels=channels,
        schedule=ScheduleConfig(cron=WEEKLY),
        service=ServiceConfig(shutdown_timeout_seconds=1),
    )
    service, _ = make_service(settings, sqlite_store, notifier=StuckOnce(), run_now=True)
    thread = threading.Thread(target=service.run_forever)
    thread.start()
    try:
        assert entered.wait(8), "the sweep never reached delivery"
        service.stop()
        thread.join(5)
        assert service.left_behind
    finally:
        release.set()
        assert service._executor.join(5)
    with sqlite_store.engine.connect() as conn:
        rows = conn.execute(sa.select(DELIVERIES).order_by(DELIVERIES.c.id)).mappings().all()
        outcomes = conn.execute(sa.select(ATTEMPTS.c.delivery_id, ATTEMPTS.c.outcome)).all()
    assert [(r["channel"], r["status"]) for r in rows] == [("a", "failed"), ("b", "pending")]
    assert [tuple(o) for o in outcomes] == [(rows[0]["id"], "cut short")]
    assert [m.channel for m in notifier.sent] == ["a"]  # the stuck send ended; nothing after


# --- the real service, as a subprocess --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, Any]) -> Path:
    lines = []
    for name, values in sections.items():
        for table in values if isinstance(values, list) else [values]:  # a list: [[name]] tables
            lines.append(f"[[{name}]]" if isinstance(values, list) else f"[{name}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o600)
    return path


def base_config(sandbox: Sandbox, db_url: str, port: int, **schedule: Any) -> dict[str, Any]:
    return {
        "vobiz": {
            "base_url": sandbox.url,
            "auth_id": sandbox.auth_id,
            "auth_token": sandbox.auth_token,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.05,
        },
        "database": {"url": db_url},
        "schedule": {"cron": "* * * * *", **schedule},
        "service": {"health_listen": f"127.0.0.1:{port}", "shutdown_timeout_seconds": 5},
        "logging": {"format": "json"},
    }


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.TransportError:
            return None

    def metric(self, sample: str) -> float | None:
        """The value of one sample of /metrics, e.g. 'x_total{outcome="complete"}'."""
        response = self.get("/metrics")
        for line in response.text.splitlines() if response is not None else ():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def terminate(self, timeout: float = 10) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[str, dict[str, Any]], Running]]:
    started: list[Running] = []

    def start(name: str, config: dict[str, Any]) -> Running:
        running = start_run(tmp_path, name, config)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(5)


COMPLETE = 'did_monitor_sweeps_total{outcome="complete"}'
METRIC_NAMES = (
    "did_monitor_sweep_duration_seconds",
    "did_monitor_sweeps_total",
    "did_monitor_numbers",
    "did_monitor_open_findings",
    "did_monitor_delivery_failures_total",
    "did_monitor_last_successful_sweep_timestamp_seconds",
)


def test_run_sweeps_serves_health_and_stops_on_sigterm(
    sandbox: Sandbox, tmp_path: Path, launch: Callable[[str, dict[str, Any]], Running]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    port = free_port()
    service = launch("monitor", base_config(sandbox, db_url, port, run_on_start=True))
    # ">= 1": with this cron a minute boundary may add a scheduled sweep at any moment
    wait_for(
        lambda: (service.metric(COMPLETE) or 0) >= 1, what=f"a complete sweep; log:\n{service.log}"
    )
    health = service.get("/healthz")
    assert health is not None and health.status_code == 200, health and health.text
    assert health.json()["status"] == "ok"
    ready = service.get("/readyz")
    assert ready is not None and ready.status_code == 200
    metrics = service.get("/metrics")
    assert metrics is not None
    for name in METRIC_NAMES:
        assert name in metrics.text
    assert 'did_monitor_numbers{status="active"}' in metrics.text

    started = time.monotonic()
    assert service.terminate() == 0, service.log
    assert time.monotonic() - started < 5 + 2
    log = service.log
    assert "did-monitor service started" in log
    assert "received SIGTERM" in log
    assert "did-monitor service stopped" in log
    assert "sandbox-token" not in log
    store = Store(db_url)
    try:
        first = sweep_row(store, 1)
        assert (first["status"], first["trigger"], first["numbers_seen"]) == (
            "complete",
            "start",
            150,
        )
    finally:
        store.dispose()


def test_a_restart_after_a_missed_window_sweeps_exactly_once(
    sandbox: Sandbox, tmp_path: Path, launch: Callable[[str, dict[str, Any]], Running]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    now = datetime.now(UTC)
    seed_settings = make_settings(sandbox, db_url)
    store = Store(db_url)
    store.migrate()
    try:
        seeded = run_cycle(
            seed_settings, store, RecordingNotifier(), clock=FakeClock(now - timedelta(hours=2))
        )
        assert seeded.ok
        missed = now - timedelta(hours=1)  # a daily window that fell while the service was down
        cron = f"{missed.minute} {missed.hour} * * *"
        service = launch("monitor", base_config(sandbox, db_url, free_port(), cron=cron))

        def complete_sweeps() -> int:
            with store.engine.connect() as conn:
                stmt = sa.select(sa.func.count()).where(SWEEPS.c.status == "complete")
                return int(conn.execute(stmt).scalar_one())

        wait_for(
            lambda: service.metric(COMPLETE) == 1,
            what=f"the catch-up sweep; log:\n{service.log}",
        )
        assert complete_sweeps() == 2
        assert service.terminate() == 0, service.log
        assert complete_sweeps() == 2
        assert row_counts(store.engine)["sweeps"] == 2
        last = store.last_sweep()
        assert last is not None and last["trigger"] == "catch-up" and last["status"] == "complete"
        assert "catch-up: the sweep due at" in service.log
    finally:
        store.dispose()


@pytest.mark.postgres
def test_two_replicas_on_postgresql_sweep_once(
    pg_url: str, sandbox: Sandbox, launch: Callable[[str, dict[str, Any]], Running]
) -> None:
    # Whichever replica takes the lock is held at page 2 until the other has logged its skip,
    # so the two sweeps overlap whatever the start-up timing.
    release = threading.Event()

    def hold_page_2(path: str, query: dict[str, str]) -> None:
        if query.get("page") == "2":
            release.wait(60)  # set as soon as the other replica skips; a slow start may take long

    sandbox.on_request = hold_page_2
    far_future = "0 0 1 1 *"  # 1 January: no scheduled sweep during the test
    replicas = [
        launch(name, base_config(sandbox, pg_url, free_port(), cron=far_future, run_on_start=True))
        for name in ("a", "b")
    ]
    try:
        wait_for(
            lambda: any("sweep skipped" in r.log for r in replicas),
            what="one replica to skip; logs:\n" + "\n".join(r.log for r in replicas),
            timeout=60,
        )
    finally:
        release.set()
    skipper = next(r for r in replicas if "sweep skipped" in r.log)
    sweeper = next(r for r in replicas if r is not skipper)
    wait_for(
        lambda: sweeper.metric(COMPLETE) == 1,
        what=f"the sweep to finish; log:\n{sweeper.log}",
    )
    assert skipper.metric('did_monitor_sweeps_total{outcome="skipped"}') == 1
    assert [r.terminate() for r in replicas] == [0, 0]
    store = Store(pg_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(SWEEPS.c.status, SWEEPS.c.trigger)).all()
        assert [tuple(r) for r in rows] == [("complete", "start")]
    finally:
        store.dispose()


def test_a_bad_health_listen_exits_2(
    tmp_path: Path, sandbox: Sandbox, launch: Callable[[str, dict[str, Any]], Running]
) -> None:
    config = base_config(sandbox, f"sqlite:///{tmp_path / 'monitor.db'}", 1)
    config["service"]["health_listen"] = "127.0.0.1:99999"
    service = launch("bad", config)
    assert service.proc.wait(timeout=60) == 2  # start-up alone, on a loaded machine
    assert "service.health_listen" in service.log


def test_a_failed_sweep_is_retried_until_one_completes(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    from monitor.service import RETRY_JOB

    clock = FakeClock()
    wrong = make_settings(sandbox, sqlite_store.url, vobiz={"auth_token": "wrong"})
    service, _beat = make_service(wrong, sqlite_store, clock=clock)
    service.scheduler.start(paused=True)
    try:
        for minutes in (5, 15, 30):
            outcome = service.sweep_job()
            assert outcome is not None and not outcome.ok
            job = service.scheduler.get_job(RETRY_JOB)
            assert job is not None
            assert job.next_run_time == FIXED_NOW + timedelta(minutes=minutes)
        service.settings = make_settings(sandbox, sqlite_store.url)
        service._retry_job()
        last = sqlite_store.last_sweep()
        assert last is not None and last["status"] == "complete" and last["trigger"] == "retry"
        assert service._failed_sweeps == 0
    finally:
        service.scheduler.shutdown(wait=False)


def start_run(tmp_path: Path, name: str, config: dict[str, Any], extra: str = "") -> Running:
    """``did-monitor run`` as a subprocess, its config written from ``config`` plus ``extra``."""
    cfg = write_config(tmp_path / f"{name}.toml", config)
    with cfg.open("a", encoding="utf-8") as f:
        f.write(extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "run"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    return Running(proc, int(config["service"]["health_listen"].rsplit(":", 1)[1]), log_path)


def test_sighup_stops_run_gracefully(sandbox: Sandbox, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    service = start_run(
        tmp_path, "hup", base_config(sandbox, db_url, free_port(), cron="0 0 1 1 *")
    )
    try:
        wait_for(lambda: "did-monitor service started" in service.log, what="the start")
        service.proc.send_signal(signal.SIGHUP)
        assert service.proc.wait(timeout=10) == 0, service.log
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(5)
    assert "received SIGHUP" in service.log
    assert "did-monitor service stopped" in service.log


def test_shutdown_cuts_a_slow_delivery_short_and_hands_it_back(
    sandbox: Sandbox, tmp_path: Path, http_receiver: Any
) -> None:
    """A channel that takes 10 s to answer: SIGTERM ends the process at its 2 s bound, not when
    the send finishes, and the digest is left ``failed`` and due (not ``sending``), so the
    next start retries it at once, once, titled as a retry."""
    http_receiver.delay = 10
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = base_config(sandbox, db_url, free_port(), cron="0 0 1 1 *", run_on_start=True)
    config["service"]["shutdown_timeout_seconds"] = 2
    config["alerts"] = {"delivery_timeout_seconds": 30}
    url = http_receiver.url()
    channel = f'\n[[channels]]\nname = "slow"\nurl = "{url}"\n'
    service = start_run(tmp_path, "slow", config, channel)
    try:
        wait_for(lambda: http_receiver.posts, what=f"the digest's send; log:\n{service.log}")
        started = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(timeout=15) == 0, service.log
        elapsed = time.monotonic() - started
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(5)
    assert elapsed < 2 + 2, service.log
    assert "cut short by the shutdown" in service.log
    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            (row,) = conn.execute(sa.select(DELIVERIES)).mappings().all()
            outcomes = conn.execute(sa.select(ATTEMPTS.c.outcome)).scalars().all()
        assert (row["kind"], row["status"], row["attempts"]) == ("digest", "failed", 1)
        assert "cut short" in row["last_error"] and outcomes == ["cut short"]
        # The next start: due now, sent once, and it says it is a retry.
        settings = make_settings(sandbox, db_url, channels=(ChannelConfig(name="slow", url=url),))
        notifier = RecordingNotifier()
        later = row["next_attempt_at"] + timedelta(seconds=1)
        deliver_due(store, settings, notifier, lambda: later)
        assert [m.title.startswith("(retry 1)") for m in notifier.sent] == [True]
    finally:
        store.dispose()
