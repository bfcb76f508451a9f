"""Tests for the health verdicts and the metrics read from a real swept database (the listener
that serves them: tests/test_web_server.py)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import prometheus_client
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.health import Metrics, assess
from monitor.model import DeliveryOutcome
from monitor.pipeline import run_cycle
from monitor.rules.base import KNOWN_STATUSES
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FIXED_NOW, FakeClock, make_settings

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


# --- metrics ------------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
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
    assert set(by_status) <= KNOWN_STATUSES | {"other"}
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


def test_every_sweep_outcome_is_exported_from_the_start(sqlite_store: Store) -> None:
    """The outcome label set is fixed and bounded, "partial" included, each at 0 before any
    sweep, so ``increase()`` and rules see a series from the first scrape."""
    got = samples(Metrics(sqlite_store))
    outcomes = {
        dict(labels)["outcome"]: v
        for (name, labels), v in got.items()
        if name == "did_monitor_sweeps_total"
    }
    assert outcomes == dict.fromkeys(
        ("complete", "partial", "failed", "aborted", "skipped", "error"), 0.0
    )


HOSTILE_STATUS = "\x1b]0;pwned\x07\u202eevil"


def test_statuses_outside_the_documented_set_fold_into_other(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    for index in range(5):  # every distinct status would otherwise be a label value of its own
        sandbox.inventory.update(index, status=f"{HOSTILE_STATUS}{index}")
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=FakeClock()).ok
    metrics = Metrics(sqlite_store)
    text = generate_latest(metrics.registry).decode()
    for char in ("\x1b", "\x07", "\u202e", "pwned"):
        assert char not in text
    stored = sqlite_store.numbers_by_status()
    by_status = {
        labels[0][1]: v
        for (name, labels), v in samples(metrics).items()
        if name == "did_monitor_numbers"
    }
    assert set(by_status) <= KNOWN_STATUSES | {"other"}
    known = sum(v for k, v in stored.items() if k in KNOWN_STATUSES)
    assert by_status["other"] == sum(stored.values()) - known >= 5
    assert sum(by_status.values()) == 150


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition(sandbox: Sandbox, sqlite_store: Store) -> None:
    sandbox.inventory.update(0, status=HOSTILE_STATUS)
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=FakeClock()).ok
    metrics = Metrics(sqlite_store, channels=["ops"])
    metrics.sweep_finished("complete", 1.5)
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=generate_latest(metrics.registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_give_rental_what_falls_due_and_the_last_outcome(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    from monitor import reports

    clock = FakeClock()
    first = sandbox.inventory.item(0)
    sandbox.inventory.update(0, status="active", currency="xof", monthly_fee="7.5")
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    got = samples(Metrics(sqlite_store, channels=["ops"], clock=clock))
    with sqlite_store.engine.connect() as conn:
        _, totals = reports.cost_lines(conn, None)
        rental = {
            dict(labels)["currency"]: v
            for (name, labels), v in got.items()
            if name == "did_monitor_monthly_rental"
        }
        assert rental == {c: float(t.monthly_rental) for c, t in totals.items()}
        assert "XOF" in rental and first["e164"]
        for days in (7, 30):
            window = reports.DueWindow.ahead(clock.now, timedelta(days=days), UTC)
            fc = reports.forecast(conn, None, window)
            due = {
                dict(labels)["currency"]: v
                for (name, labels), v in got.items()
                if name == "did_monitor_rental_due" and dict(labels)["within"] == f"{days}d"
            }
            assert due == {c: float(t.amount_due) for c, t in fc.totals.items()}
            assert sum(due.values()) > 0
            undated = got[("did_monitor_numbers_without_billing_date", ())]
            assert undated == len(fc.undated)
    assert got[("did_monitor_last_sweep_outcome", (("outcome", "complete"),))] == 1
    assert got[("did_monitor_last_sweep_outcome", (("outcome", "failed"),))] == 0
    assert got[("did_monitor_channel_consecutive_failures", (("channel", "ops"),))] == 0


def test_currency_labels_are_bounded() -> None:
    from decimal import Decimal

    from monitor.health import MAX_CURRENCIES, _by_currency

    amounts = {f"C{i:02d}": Decimal(i) for i in range(40)} | {
        "\x1b]0;x": Decimal(1),
        "": Decimal(2),
    }
    out = dict(_by_currency(amounts))
    assert len(out) == MAX_CURRENCIES + 1 and "other" in out
    assert sum(out.values()) == sum(amounts.values())
    assert all(k.isascii() and "\x1b" not in k for k in out)


def test_silenced_findings_are_counted_apart_from_open_ones(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    clock = FakeClock()
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    every = sqlite_store.open_counts()
    (rule, severity), hushed = next(iter(sorted(every.items())))
    of_rule = {k: float(v) for k, v in every.items() if k[0] == rule}
    sqlite_store.add_silence(rule, clock.now + timedelta(days=7), "agreed", clock.now)
    got = samples(Metrics(sqlite_store, clock=clock))

    def family(name: str) -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["rule"], dict(labels)["severity"]): v
            for (metric, labels), v in got.items()
            if metric == name
        }

    opened = family("did_monitor_open_findings")
    assert (rule, severity) not in opened  # every one of them is silenced
    assert family("did_monitor_silenced_findings") == of_rule
    assert sum(opened.values()) == sum(every.values()) - sum(of_rule.values())
    assert opened == {k: float(v) for k, v in sqlite_store.open_counts(clock.now).items()}
    # Once the silence ends, they are open again.
    clock.advance(days=8)
    later = samples(Metrics(sqlite_store, clock=clock))
    assert later[("did_monitor_open_findings", (("rule", rule), ("severity", severity)))] == hushed


def test_metrics_after_a_partial_sweep_are_the_last_complete_sweeps(
    sandbox: Sandbox, sqlite_store: Store
) -> None:
    """A partial sweep is never a state of the inventory: /metrics counts and sums what
    `inventory` and `costs` say (the last complete sweep), not what the partial sweep read."""
    from collections import Counter

    from monitor import reports

    clock = FakeClock()
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    active = [i for i in range(20) if sandbox.inventory.item(i)["status"] == "active"]
    sandbox.inventory.update(active[0], monthly_fee="5000", currency="INR")
    sandbox.inventory.update(active[1], status="released")
    sandbox.inventory.update(active[2], id=None)  # unreadable: the sweep is partial
    clock.advance(days=7)
    outcome = run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock)
    assert outcome.ok and outcome.partial
    got = samples(Metrics(sqlite_store, clock=clock))
    by_status = {
        dict(labels)["status"]: v
        for (name, labels), v in got.items()
        if name == "did_monitor_numbers"
    }
    swept = Counter(row.status for row in reports.inventory(sqlite_store.engine).rows)
    assert sqlite_store.numbers_by_status() == dict(swept)
    labelled = Counter(s if s in KNOWN_STATUSES else "other" for s in swept.elements())
    assert by_status == {s: float(n) for s, n in labelled.items()}
    rental = {
        dict(labels)["currency"]: v
        for (name, labels), v in got.items()
        if name == "did_monitor_monthly_rental"
    }
    costs = reports.costs(sqlite_store.engine)
    assert rental == {t.currency: float(t.monthly_rental) for t in costs.totals}
    window = reports.DueWindow.ahead(clock.now, timedelta(days=30), UTC)
    due = reports.due(sqlite_store.engine, window=window)
    due_30 = {
        dict(labels)["currency"]: v
        for (name, labels), v in got.items()
        if name == "did_monitor_rental_due" and dict(labels)["within"] == "30d"
    }
    assert due_30 == {t.currency: float(t.amount_due) for t in due.totals}
