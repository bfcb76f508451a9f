"""What ``/healthz`` and ``/readyz`` answer, and the Prometheus metrics behind ``/metrics``.

The web listener (``monitor.web``) only serves; what "healthy" and "ready" mean is decided by
the probes the service hands it (``assess`` below turns the service's facts into a verdict).
Metrics live in a registry of their own, never prometheus-client's global one, so two services in
one process (tests) or a library user's own metrics cannot collide with ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor import reports
from monitor.alerts.outbox import Outbox
from monitor.clock import Clock, system_clock
from monitor.config import Settings
from monitor.errors import MonitorError
from monitor.model import DeliveryOutcome
from monitor.rules.base import KNOWN_STATUSES
from monitor.schedule import build_trigger, fire_at_or_after
from monitor.store import Store
from monitor.store.db import FINISHED_SWEEP_STATES
from monitor.vocab import CONTROL_CHARS, currency_code, iso

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""Answers (ok, JSON-able explanation); it may raise, which the listener reports as 503."""

SWEEP_OUTCOMES = ("complete", "failed", "aborted", "skipped", "error")
OTHER_STATUS = "other"
# --- health verdicts ----------------------------------------------------------------------------


def assess(
    *,
    now: datetime,
    scheduler_running: bool,
    last_complete_at: datetime | None,
    deadline: datetime | None,
) -> tuple[bool, dict[str, Any]]:
    """The ``/healthz`` verdict (pure): healthy when the scheduler runs and ``now`` is not past
    ``deadline``, the time by which the next complete sweep was due (see
    ``schedule.sweep_deadline``). Returns (ok, body) where body says why."""
    reasons: list[str] = []
    if not scheduler_running:
        reasons.append("the scheduler is not running")
    if deadline is not None and now > deadline:
        if last_complete_at is None:
            reasons.append(
                f"no complete sweep since the service started; one was due by {iso(deadline)}"
            )
        else:
            reasons.append(
                f"the last complete sweep (started {iso(last_complete_at)}) is overdue: "
                f"the next one was due by {iso(deadline)}"
            )
    ok = not reasons
    return ok, {
        "status": "ok" if ok else "failing",
        "reasons": reasons,
        "scheduler_running": scheduler_running,
        "last_complete_sweep_at": iso(last_complete_at),
        "next_sweep_due_by": iso(deadline),
        "now": iso(now),
    }


def describe_failure(exc: BaseException) -> str:
    """One line for a probe that raised, without URLs or credentials."""
    if isinstance(exc, MonitorError):
        return exc.message
    return f"probe failed: {type(exc).__name__}"


# --- metrics ------------------------------------------------------------------------------------


def label(value: str) -> str:
    """A label value as the exposition may carry it: no control or bidi characters."""
    return CONTROL_CHARS.sub(" ", value).strip()


def numbers_by_status(store: Store) -> dict[str, int]:
    """How many numbers the current inventory holds in each documented status; every status
    outside that set counts as ``other``, so the API cannot mint label values."""
    counts: dict[str, int] = {}
    for status, count in store.numbers_by_status().items():
        key = label(status).lower()
        key = key if key in KNOWN_STATUSES else OTHER_STATUS
        counts[key] = counts.get(key, 0) + count
    return counts


class _StoreCollector(Collector):
    """Figures read from the database at scrape time, so every replica reports the same truth."""

    def __init__(self, store: Store, channels: Sequence[str], clock: Clock, tz: tzinfo) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.tz = tz  # the forecast counts whole days of the rules' time zone

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "did_monitor_database_up", "1 when this scrape could read the database, else 0"
        )
        try:
            by_status = numbers_by_status(self.store)
            now = self.clock()
            # "open" never counts a silenced finding: the dashboard's and the CLI's figure.
            open_counts = self.store.open_counts(now)
            silenced_counts = self.store.silenced_counts(now)
            last = self.store.last_sweep("complete")
            money = list(self._money(now))
            newest = self.store.last_sweep(FINISHED_SWEEP_STATES)  # the newest that ended
            health = Outbox(self.store).channel_health(self.channels)
        except MonitorError as exc:
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
        for name, help_text, counts in (
            (
                "did_monitor_open_findings",
                "Open findings no silence holds back, by rule and severity",
                open_counts,
            ),
            (
                "did_monitor_silenced_findings",
                "Open findings an active silence holds back, by rule and severity",
                silenced_counts,
            ),
        ):
            findings = GaugeMetricFamily(name, help_text, labels=["rule", "severity"])
            for (rule, severity), count in sorted(counts.items()):
                findings.add_metric([label(rule), label(severity)], count)
            yield findings
        if last is not None:
            at = last["finished_at"] or last["started_at"]
            yield GaugeMetricFamily(
                "did_monitor_last_successful_sweep_timestamp_seconds",
                "When the last complete sweep (of any replica) finished, as a Unix time",
                value=at.timestamp(),
            )
        if newest is not None:
            outcome = GaugeMetricFamily(
                "did_monitor_last_sweep_outcome",
                "1 for the outcome of the newest finished sweep (of any replica), 0 for the others",
                labels=["outcome"],
            )
            for name in FINISHED_SWEEP_STATES:
                outcome.add_metric([name], 1 if newest["status"] == name else 0)
            yield outcome
            yield GaugeMetricFamily(
                "did_monitor_last_sweep_timestamp_seconds",
                "When the newest finished sweep (of any replica) ended, whatever its outcome",
                value=(newest["finished_at"] or newest["started_at"]).timestamp(),
            )
        failures = GaugeMetricFamily(
            "did_monitor_channel_consecutive_failures",
            "Delivery attempts that failed in a row, by channel (0 once one succeeds)",
            labels=["channel"],
        )
        for name, info in sorted(health.items()):
            failures.add_metric([label(name)], info["consecutive_failures"])
        yield failures
        yield from money

    def _money(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        """Monthly rental of the active numbers, and the rental falling due within each of
        ``reports.DUE_WINDOWS``, per currency (``reports.cost_lines`` and ``reports.forecast``:
        what ``costs`` says)."""
        rental = GaugeMetricFamily(
            "did_monitor_monthly_rental",
            "Monthly rental of the active numbers, by currency (never summed across currencies)",
            labels=["currency"],
        )
        due = GaugeMetricFamily(
            "did_monitor_rental_due",
            "Rental of the active numbers falling due within the window, by currency",
            labels=["currency", "within"],
        )
        undated = GaugeMetricFamily(
            "did_monitor_numbers_without_billing_date",
            "Active numbers with no next billing date (in no rental due figure)",
        )
        with self.store.connect() as conn:
            _, totals = reports.cost_lines(conn, None)
            for cur, amount in _by_currency({c: t.monthly_rental for c, t in totals.items()}):
                rental.add_metric([cur], float(amount))
            for fc in reports.forecasts(conn, None, reports.due_windows(now, self.tz)):
                days = (fc.window.end - fc.window.first).days
                sums = {c: t.amount_due for c, t in fc.totals.items()}
                for cur, amount in _by_currency(sums):
                    due.add_metric([cur, f"{days}d"], float(amount))
            undated.add_metric([], len(fc.undated))
        yield rental
        yield due
        yield undated


MAX_CURRENCIES: Final = 16  # currency label values; the rest add up under "other"


def _by_currency(amounts: dict[str, Decimal]) -> list[tuple[str, Decimal]]:
    """Amounts per currency label: the code as ``model.currency_code`` shows it (``none`` when
    the API gave none), the ``MAX_CURRENCIES`` largest kept, the rest summed as ``other``, so the
    API cannot mint label values."""
    merged: dict[str, Decimal] = {}
    for cur, amount in amounts.items():
        key = currency_code(cur) or "none"
        merged[key] = merged.get(key, Decimal(0)) + amount
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:MAX_CURRENCIES])
    if len(ranked) > MAX_CURRENCIES:
        kept["other"] = sum((a for _, a in ranked[MAX_CURRENCIES:]), Decimal(0))
    return sorted(kept.items())


class Metrics:
    """The service's Prometheus metrics, in a ``CollectorRegistry`` of their own.

    Counters and the last duration are this process's; inventory, findings and the last
    successful sweep are read from the database at scrape time (when a store is given).
    """

    def __init__(
        self,
        store: Store | None = None,
        channels: Iterable[str] = (),
        clock: Clock = system_clock,
        tz: tzinfo = UTC,
    ) -> None:
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
        names = list(channels)
        for channel in names:
            self.delivery_failures.labels(channel)
        if store is not None:
            self.registry.register(_StoreCollector(store, names, clock, tz))

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


# --- the status (``did-monitor status``, the dashboard's overview) -------------------------------


def next_run(settings: Settings, now: datetime) -> datetime | None:
    return fire_at_or_after(build_trigger(settings.schedule, jitter=False), now)


SWEEP_KEYS = "id status started_at finished_at numbers_seen findings_opened findings_resolved error"


def collect(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    """What ``did-monitor status`` and the dashboard's overview show: the last sweeps, open
    findings by rule and severity, channel health, the next scheduled sweep."""

    def sweep_info(row: Any) -> dict[str, Any] | None:
        return None if row is None else {k: row[k] for k in SWEEP_KEYS.split()}

    counts = store.open_counts(now)
    quiet = store.silenced_counts(now)
    health = Outbox(store).channel_health(c.name for c in settings.channels)
    for name, info in health.items():
        # Failing from the first failed attempt; alerts.failing_after only decides when the
        # other channels are told (``others_told``).
        info["failing"] = info["consecutive_failures"] > 0
        info["others_told"] = info["consecutive_failures"] >= settings.alerts.failing_after
        info["enabled"] = settings.channel(name).enabled
    return {
        "last_sweep": sweep_info(store.last_sweep()),
        "last_complete_sweep": sweep_info(store.last_sweep("complete")),
        # "open" is what `findings` lists: open and not silenced; silenced ones are counted apart
        "open_findings": [
            {"rule": k[0], "severity": k[1], "count": counts.get(k, 0), "silenced": quiet.get(k, 0)}
            for k in sorted(counts.keys() | quiet.keys())
        ],
        "open_total": sum(counts.values()),
        "silenced_total": sum(quiet.values()),
        "channels": health,
        "next_sweep": next_run(settings, now),
    }
