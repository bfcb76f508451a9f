"""sweep → rules → alerts: the order of one cycle, in one place."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from itertools import takewhile

import httpx

from monitor.accounts import fetch_accounts
from monitor.alerts.deliver import deliver_due
from monitor.alerts.notify import Notifier
from monitor.alerts.plan import enqueue_sweep_failed, store_digests
from monitor.availability import fetch_availability
from monitor.clock import Clock
from monitor.config import Settings
from monitor.errors import ApiError, DatabaseError, LockLost, MonitorError, SweepCancelled
from monitor.model import DeliveryOutcome, NumberRecord, SweepCounts
from monitor.redact import scrub
from monitor.reports import version_changes
from monitor.rules import Evaluator, RuleContext
from monitor.store import Store
from monitor.store.accounts import write_accounts
from monitor.store.db import tally
from monitor.store.locks import SweepLock
from monitor.sweep import ProgressFn, check_identities, check_shrink, fetch_inventory
from monitor.vobiz import VobizClient
from monitor.vocab import one_line

log = logging.getLogger(__name__)
LOCK_STALE_AFTER = timedelta(hours=6)  # or longer: see lock_stale_after
LOST = "the sweep lost its database session"
# Sweeps in a row that lost their session before it is alerted like a failed sweep: once can be
# a restart or a failover; every time means a timeout shorter than a sweep.
LOST_ALERT_AFTER = 3


def lock_stale_after(settings: Settings) -> timedelta:
    """How old another host's sweep lease must be to count as dead: 6 hours, or an hour more
    than ``sweep.max_duration`` (up to 7 days) allows a sweep, so no replica takes over (and
    marks aborted) a sweep still within its time."""
    return max(LOCK_STALE_AFTER, timedelta(seconds=settings.sweep.max_duration, hours=1))


@dataclass
class SweepOutcome:
    """What one cycle did; ``ok`` is False when the sweep failed (the CLI exits 1)."""

    sweep_id: int
    ok: bool
    counts: SweepCounts
    error: str | None = None
    duration: float = 0.0
    digests: int = 0
    deliveries: list[DeliveryOutcome] = field(default_factory=list)
    # Channels a "sweep failed" alert was queued for (None: queuing it failed too).
    failure_alerts: int | None = 0
    # Why the sweep was partial (unreadable items): stored, nothing resolved, nothing gone.
    partial: str | None = None
    # Numbers whose dates could not be read (``sweep.UnreadableDates``): stored, not checked.
    unreadable_dates: str | None = None

    @property
    def delivery_failures(self) -> int:
        return sum(1 for d in self.deliveries if not d.ok)


def run_cycle(
    settings: Settings,
    store: Store,
    notifier: Notifier,
    *,
    trigger: str = "manual",
    clock: Clock,
    client: VobizClient | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    http: httpx.Client | None = None,
) -> SweepOutcome:
    """Sweep, store, evaluate, plan and deliver alerts. API, completeness and database failures
    are recorded, alerted and returned as ``ok=False``, so a daemon carries on; so is a lock that
    cannot be taken (SQLite busy with another program) unless a live lease says another replica
    sweeps: ``LockBusy``. ``cancel`` set aborts the sweep at the next page: ``SweepCancelled``.
    Losing the lock mid-sweep raises ``LockLost`` (not alerted) unless the sweeps before it lost
    theirs too: the ``LOST_ALERT_AFTER``-th in a row is a failed sweep. Aborted sweeps are rolled
    back and recorded as aborted. Without ``client``, the sweep's own client goes through
    ``http`` (the service's shared one) when given."""
    now = clock()
    try:
        lock = store.try_lock("sweep", now, lock_stale_after(settings))
    except DatabaseError as exc:
        outcome = _failed_to_start(settings, store, trigger, exc, clock)
    else:
        with lock:
            if aborted := store.abort_running_sweeps(now):
                log.warning("marked %d interrupted sweep(s) as aborted", aborted)
            # Before the sweep's row exists: missing credentials are a config error, not a
            # failed sweep. A client of our own is closed after the sweep, a given one is not.
            with (
                nullcontext(client)
                if client
                else VobizClient(settings.vobiz, sleep=_pause_until(cancel), http=http)
            ) as api:
                outcome = _sweep(settings, store, trigger, clock, api, progress, cancel, lock)
    try:
        outcome.deliveries = deliver_due(store, settings, notifier, clock, cancel)
    except MonitorError as exc:  # the sweep stands; deliveries are retried
        log.error("could not deliver alerts after sweep %d: %s", outcome.sweep_id, exc)
    return outcome


def _failed_to_start(
    settings: Settings, store: Store, trigger: str, exc: DatabaseError, clock: Clock
) -> SweepOutcome:
    """The sweep lock could not be taken, and not because another sweep holds it: a failed
    sweep, stored and alerted when the database lets us (it waits its usual busy timeout for
    that); when it does not, the lock's error is raised."""
    try:
        sweep_id = store.start_sweep(clock(), trigger)
    except DatabaseError:
        raise exc from None
    log.error("sweep %d failed: %s", sweep_id, one_line(exc.message))
    counts = SweepCounts()
    queued = _record_failure(settings, store, sweep_id, exc.message, counts, clock, alert=True)
    return SweepOutcome(sweep_id, False, counts, exc.message, failure_alerts=queued)


def _sweep(
    settings: Settings,
    store: Store,
    trigger: str,
    clock: Clock,
    api: VobizClient,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    lock: SweepLock,
) -> SweepOutcome:
    now = clock()
    started = time.monotonic()
    stats = api.stats
    before = store.inventory_size()
    previous = store.last_sweep("complete")
    sweep_id = store.start_sweep(now, trigger)
    evaluator = Evaluator(
        RuleContext(now=now, config=settings.rules, tz=settings.rules_zone, sweep_id=sweep_id)
    )
    counts = SweepCounts()
    try:
        with store.writer(sweep_id, now, lock.connection) as writer:

            def consume(records: list[NumberRecord]) -> None:
                if cancel is not None and cancel.is_set():
                    raise SweepCancelled()
                writer.write_page(records)
                evaluator.feed(records)

            deadline = started + settings.sweep.max_duration
            fetched = fetch_inventory(
                api, settings, consume, progress, writer.misses_current, deadline
            )
            counts = SweepCounts(
                numbers_seen=len(fetched.ids),
                total_reported=fetched.total,
                pages=fetched.pages,
                requests=stats.requests,
                retries=stats.retries,
                versions_written=writer.versions_written,
            )
            accounts = (
                fetch_accounts(api, settings.vobiz.per_page, settings.vobiz.concurrency)
                if settings.sweep.accounts
                else None
            )
            check_shrink(settings, before, len(fetched.ids) + fetched.malformed)
            known, vanished = writer.count_current(fetched.ids)
            check_identities(settings, known, vanished, len(fetched.ids), fetched.malformed)
            evaluator.keep_only(fetched.ids)
            # Items it could not read make the sweep partial: what it did read is stored and may
            # open findings, but it cannot vouch that a number is gone or a problem fixed.
            unread = [
                f"{fetched.malformed} item(s) could not be read ({fetched.where_unreadable()})"
                if fetched.malformed
                else None,
                accounts.describe_unreadable() if accounts is not None else None,
            ]
            partial = (
                "; ".join(u for u in unread if u)
                + "; nothing was resolved and no number counted as gone"
                if any(unread)
                else None
            )
            odd_dates = fetched.dates.describe()
            gone = 0 if partial else writer.close_gone(fetched.ids, vanished)
            # Every use of the ids is behind: free them (a set of every number, 100 MB at
            # 1,000,000) before the findings step, the sweep's other large one.
            fetched.ids.clear()
            if partial is None and previous is not None and evaluator.wants_changes:
                # Only on a whole sweep with a complete predecessor: a partial or failed read
                # must never report numbers as gone or changed.
                evaluator.feed_changes(version_changes(writer.conn, previous["id"], sweep_id))
            if accounts is not None:
                # an unreadable account may be a known one: none is closed as gone
                write_accounts(
                    writer.conn, sweep_id, accounts.accounts, close_missing=not accounts.unreadable
                )
            if evaluator.watches:
                _watch_availability(api, evaluator)
            if evaluator.wants_accounts:
                evaluator.finish(
                    {a.account_id: {"name": a.name, "status": a.status} for a in accounts.accounts}
                    if accounts is not None
                    else None,
                    tally(writer.conn, "account_id", "status"),
                )
            opened, resolved = writer.apply_findings(
                evaluator.by_rule,
                evaluator.rule_ids,
                previous["started_at"] if previous else None,
                resolve=partial is None,
            )
            counts = replace(
                counts,
                requests=stats.requests,
                retries=stats.retries,
                numbers_gone=gone,
                findings_opened=opened,
                findings_resolved=resolved,
            )
            digests = store_digests(
                writer.conn,
                settings,
                sweep_id,
                now,
                counts.numbers_seen,
                partial or "",
                odd_dates or "",
            )
            writer.complete(counts, clock(), partial=partial, note=odd_dates)
            writer.commit()
    except SweepCancelled as exc:
        _record_failure(settings, store, sweep_id, exc.message, counts, clock, status="aborted")
        raise
    except Exception as exc:
        status = "failed"
        if lock.lost:
            # The lock's session ended (terminated, timed out) and took the sweep's writes with
            # it; another replica may already be sweeping, so this is no alert.
            reason = (exc.detail if isinstance(exc, DatabaseError) else None) or str(exc)
            error = scrub(f"{LOST} and its lock ({reason}): rolled back")
            in_a_row = _lost_in_a_row(store, sweep_id)
            if in_a_row < LOST_ALERT_AFTER:
                log.warning("sweep %d aborted: %s", sweep_id, one_line(error))
                _record_failure(settings, store, sweep_id, error, counts, clock, status="aborted")
                raise LockLost(error) from None
            # Systematic: alerted like a failed sweep, or every sweep would abort unseen.
            # The cause first: an alert shows the first 120 characters of the error.
            error = scrub(
                f"{LOST} ({in_a_row} in a row): check idle_in_transaction_session_timeout and "
                "the other session and idle timeouts (PostgreSQL's, a pooler's, a proxy's), which "
                f"must outlast a sweep; this time: {reason}; rolled back"
            )
            status = "aborted"
        else:  # every other failure is a failed sweep: recorded, alerted, the daemon carries on
            if isinstance(exc, MonitorError):
                error = exc.message
            else:
                log.exception("sweep %d hit an unexpected error", sweep_id)
                error = f"internal error: {type(exc).__name__}: {exc}"
            error = scrub(error)  # an API body or a library's message may quote a secret
            if counts.requests == 0:
                counts = SweepCounts(requests=stats.requests, retries=stats.retries)
        log.error("sweep %d %s: %s", sweep_id, status, one_line(error))
        queued = _record_failure(
            settings, store, sweep_id, error, counts, clock, status=status, alert=True
        )
        return SweepOutcome(
            sweep_id, False, counts, error, time.monotonic() - started, failure_alerts=queued
        )
    except BaseException as exc:
        # ^C or the interpreter stopping: the writer rolled back; say so on the sweep's row.
        error = f"interrupted ({str(exc) or type(exc).__name__}): rolled back"
        _record_failure(settings, store, sweep_id, error, counts, clock, status="aborted")
        raise
    duration = time.monotonic() - started
    for rule_id, failure in evaluator.errors.items():
        log.warning(
            "rule %s failed on %d item(s) in sweep %d (first: %s: %s); the sweep went on",
            rule_id,
            failure.count,
            sweep_id,
            failure.subject,
            failure.error,
        )
    log.info(
        "sweep %(sweep_id)d complete: %(numbers_seen)d numbers, %(pages)d pages, %(requests)d "
        "requests (%(retries)d retries), %(versions_written)d versions written, %(numbers_gone)d "
        "gone, %(findings_opened)d findings opened, %(findings_resolved)d resolved, %(digests)d "
        "digests, %(duration).1fs",
        asdict(counts) | {"sweep_id": sweep_id, "digests": digests, "duration": duration},
    )
    if partial:
        log.warning("sweep %d was partial: %s", sweep_id, partial)
    if odd_dates:
        log.warning("sweep %d: %s", sweep_id, odd_dates)
    return SweepOutcome(
        sweep_id, True, counts, None, duration, digests, partial=partial, unreadable_dates=odd_dates
    )


def _watch_availability(api: VobizClient, evaluator: Evaluator) -> None:
    """Count the numbers for sale in each watched place. Optional and on another API: when it
    cannot be read, the sweep stands and the watch's findings stay as they were."""
    try:
        evaluator.feed_availability(fetch_availability(api.get_json, evaluator.watches))
    except ApiError as exc:
        evaluator.skip("low_availability")
        log.warning("availability watch skipped: %s", one_line(str(exc)))


def _pause_until(cancel: threading.Event | None) -> Callable[[float], None]:
    """Backoff and rate-cap pauses that end on shutdown with ``SweepCancelled``, so SIGTERM never
    waits out a Retry-After, nor turns a retrying page into a failed (and alerted) sweep."""
    if cancel is None:
        return time.sleep

    def pause(seconds: float) -> None:
        if cancel.wait(seconds):
            raise SweepCancelled()

    return pause


def _lost_in_a_row(store: Store, sweep_id: int) -> int:
    """How many sweeps in a row, ``sweep_id`` included, lost their database session: the
    finished sweeps before it that ended that way, plus one (1 when they cannot be read)."""
    try:
        rows = store.sweeps_before(sweep_id, LOST_ALERT_AFTER - 1)
    except DatabaseError:
        return 1
    lost = (r["status"] == "aborted" and (r["error"] or "").startswith(LOST) for r in rows)
    return 1 + len(list(takewhile(bool, lost)))


def _record_failure(
    settings: Settings,
    store: Store,
    sweep_id: int,
    error: str,
    counts: SweepCounts,
    clock: Clock,
    *,
    status: str = "failed",
    alert: bool = False,
) -> int | None:
    """Record the sweep as failed (or aborted); returns how many channels were alerted (only
    with ``alert``), None when the database refused the record or the alerts.

    Only a sweep still ``running`` is recorded and alerted: on PostgreSQL the lock ended with the
    sweep's transaction, so another replica may have taken it and marked this sweep aborted
    (and may be sweeping, or done): its row stays as that replica left it, and no late "sweep
    failed" alert follows a newer sweep."""
    try:
        if not store.fail_sweep(sweep_id, clock(), error, counts, status=status):
            log.warning(
                "sweep %d was already marked ended by another process; its failure is not "
                "recorded over that, nor alerted: %s",
                sweep_id,
                one_line(error),
            )
            return 0
        return enqueue_sweep_failed(store, settings, sweep_id, error, clock()) if alert else 0
    except Exception as exc:  # the database itself may be what failed
        log.error("could not record the failure of sweep %d: %s", sweep_id, exc)
        return None
