"""What ``/healthz`` answers (``assess``), and the Prometheus metrics behind ``/metrics``.

Metrics live in a registry of their own, never prometheus-client's global one, so two services in
one process (tests) or a library user's own metrics cannot collide with ours.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from functools import partial
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
from monitor.store import Store, inventory_sweep
from monitor.store.db import FINISHED_SWEEP_STATES
from monitor.vocab import currency_code, iso, one_line

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""Answers (ok, JSON-able explanation); it may raise, which the listener reports as 503."""

# did_monitor_sweeps_total's outcome label, a fixed set: the finished sweeps' statuses
# (``store.db.FINISHED_SWEEP_STATES``), plus a sweep skipped for another's lock and a job error.
SWEEP_OUTCOMES = (*FINISHED_SWEEP_STATES, "skipped", "error")
OTHER_STATUS = "other"
DB_UP = "did_monitor_database_up"
DB_UP_HELP = "1 when this scrape could read the database, else 0"
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


def _gauge(
    name: str, doc: str, labels: Sequence[str], samples: Iterable[tuple[Sequence[str], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


class _StoreCollector(Collector):
    """Figures read from the database at scrape time, so every replica reports the same truth.
    Label values from the API or the config go through ``one_line``: no control characters."""

    def __init__(self, store: Store, channels: Sequence[str], clock: Clock, tz: tzinfo) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.tz = tz  # the forecast counts whole days of the rules' time zone

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            # Statuses outside the documented set count as "other": the API cannot mint labels.
            by_status: defaultdict[str, int] = defaultdict(int)
            for status, count in self.store.numbers_by_status().items():
                key = one_line(status).lower()
                by_status[key if key in KNOWN_STATUSES else OTHER_STATUS] += count
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
            yield GaugeMetricFamily(DB_UP, DB_UP_HELP, value=0)
            return
        yield GaugeMetricFamily(DB_UP, DB_UP_HELP, value=1)
        yield _gauge(
            "did_monitor_numbers",
            "Numbers in the inventory of the last complete sweep, by status",
            ["status"],
            (([status], count) for status, count in sorted(by_status.items())),
        )
        for name, held, counts in (
            ("did_monitor_open_findings", "no silence holds back", open_counts),
            ("did_monitor_silenced_findings", "an active silence holds back", silenced_counts),
        ):
            yield _gauge(
                name,
                f"Open findings {held}, by rule and severity",
                ["rule", "severity"],
                (([one_line(r), one_line(s)], n) for (r, s), n in sorted(counts.items())),
            )
        if last is not None:
            yield GaugeMetricFamily(
                "did_monitor_last_successful_sweep_timestamp_seconds",
                "When the last complete sweep (of any replica) finished, as a Unix time",
                value=(last["finished_at"] or last["started_at"]).timestamp(),
            )
        if newest is not None:
            yield _gauge(
                "did_monitor_last_sweep_outcome",
                "1 for the outcome of the newest finished sweep (of any replica), 0 for the others",
                ["outcome"],
                (([name], int(newest["status"] == name)) for name in FINISHED_SWEEP_STATES),
            )
            yield GaugeMetricFamily(
                "did_monitor_last_sweep_timestamp_seconds",
                "When the newest finished sweep (of any replica) ended, whatever its outcome",
                value=(newest["finished_at"] or newest["started_at"]).timestamp(),
            )
        yield _gauge(
            "did_monitor_channel_consecutive_failures",
            "Delivery attempts that failed in a row, by channel (0 once one succeeds)",
            ["channel"],
            (([one_line(n)], i["consecutive_failures"]) for n, i in sorted(health.items())),
        )
        yield from money

    def _money(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        """Monthly rental of the active numbers, and the rental falling due within each of
        ``reports.DUE_WINDOWS``, per currency: what ``costs`` says (the last complete sweep's)."""
        due: list[tuple[list[str], float]] = []
        with self.store.connect() as conn:
            at = inventory_sweep(conn)
            _, totals = reports.cost_lines(conn, at)
            rental = _by_currency({c: t.monthly_rental for c, t in totals.items()})
            for fc in reports.forecasts(conn, at, reports.due_windows(now, self.tz)):
                days = (fc.window.end - fc.window.first).days
                sums = _by_currency({c: t.amount_due for c, t in fc.totals.items()})
                due += [([cur, f"{days}d"], float(amount)) for cur, amount in sums]
        yield _gauge(
            "did_monitor_monthly_rental",
            "Monthly rental of the active numbers, by currency (never summed across currencies)",
            ["currency"],
            (([cur], float(amount)) for cur, amount in rental),
        )
        yield _gauge(
            "did_monitor_rental_due",
            "Rental of the active numbers falling due within the window, by currency",
            ["currency", "within"],
            due,
        )
        yield GaugeMetricFamily(
            "did_monitor_numbers_without_billing_date",
            "Active numbers with no next billing date (in no rental due figure)",
            value=len(fc.undated),
        )


MAX_CURRENCIES: Final = 16  # currency label values; the rest add up under "other"


def _by_currency(amounts: dict[str, Decimal]) -> list[tuple[str, Decimal]]:
    """Amounts per currency label: the code as ``vocab.currency_code`` shows it (``none`` when
    the API gave none), the ``MAX_CURRENCIES`` largest kept, the rest summed as ``other``, so the
    API cannot mint label values."""
    merged: defaultdict[str, Decimal] = defaultdict(Decimal)
    for cur, amount in amounts.items():
        merged[currency_code(cur) or "none"] += amount
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
        self.registry = reg = CollectorRegistry()
        counter = partial(Counter, registry=reg)
        self.sweep_duration = Gauge(
            "did_monitor_sweep_duration_seconds",
            "How long the last sweep this process ran took",
            registry=reg,
        )
        self.sweeps = counter(
            "did_monitor_sweeps", "Sweeps this process attempted, by outcome", ["outcome"]
        )
        self.deliveries = counter(
            "did_monitor_deliveries",
            "Alert delivery attempts made by this process",
            ["channel", "outcome"],
        )
        self.delivery_failures = counter(
            "did_monitor_delivery_failures",
            "Failed alert delivery attempts, by channel",
            ["channel"],
        )
        self.job_errors = counter(
            "did_monitor_job_errors", "Scheduled jobs that ended in an unexpected error", ["job"]
        )
        for outcome in SWEEP_OUTCOMES:  # present at 0 from the start, so rates work
            self.sweeps.labels(outcome)
        names = list(channels)
        for channel in names:
            self.delivery_failures.labels(channel)
        if store is not None:
            reg.register(_StoreCollector(store, names, clock, tz))

    def sweep_finished(self, outcome: str, duration: float | None = None) -> None:
        self.sweeps.labels(outcome).inc()
        if duration is not None:
            self.sweep_duration.set(duration)

    def delivered(self, outcomes: Iterable[DeliveryOutcome]) -> None:
        for outcome in outcomes:
            self.deliveries.labels(outcome.channel, "sent" if outcome.ok else "failed").inc()
            if not outcome.ok:
                self.delivery_failures.labels(outcome.channel).inc()


# --- the status (``did-monitor status``, the dashboard's overview) -------------------------------


def next_run(settings: Settings, now: datetime) -> datetime | None:
    return fire_at_or_after(build_trigger(settings.schedule), now)


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
