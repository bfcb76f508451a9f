"""Delivery: what the outbox holds is sent through the notifier, each attempt recorded; a failed
delivery is kept (never dropped) and retried with backoff, unless its failure is permanent
(``DeliveryError.permanent``): that one waits, failed, for ``did-monitor outbox retry``. A channel
that keeps failing, either way, is reported to the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import RowMapping

from monitor.alerts.chat import render_channel_failing
from monitor.alerts.notify import Notifier
from monitor.alerts.outbox import Outbox, held
from monitor.alerts.plan import _broadcast
from monitor.config import Settings
from monitor.errors import DeliveryError
from monitor.model import DeliveryOutcome
from monitor.store import Store

log = logging.getLogger(__name__)

KIND_LEVEL = {
    "digest": "warning",
    "sweep_failed": "failure",
    "sweep_partial": "warning",
    "channel_failing": "failure",
    "test": "info",
}


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Doubling from ``retry_backoff_seconds`` up to ``retry_backoff_max_seconds``; never more
    than 30 days, so the next attempt is always a date the database can hold."""
    base = settings.alerts.retry_backoff_seconds
    doublings = min(max(attempts - 1, 0), 40)
    delay = min(settings.alerts.retry_backoff_max_seconds, base * 2**doublings)
    return timedelta(seconds=min(delay, 30 * 86_400))


def deliver_due(
    store: Store,
    settings: Settings,
    notifier: Notifier,
    clock: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> list[DeliveryOutcome]:
    """Send every delivery that is due; a channel that fails is not tried again in this pass.
    Once ``stop`` is set (the service is shutting down) no further delivery is claimed."""
    outbox = Outbox(store)
    outcomes: list[DeliveryOutcome] = []
    failed_now: set[str] = set()
    for _round in range(2):  # the second round sends "channel failing" notices the first created
        rows = outbox.due(clock())
        if not rows:
            break
        for row in rows:
            if stop is not None and stop.is_set():
                return outcomes
            if row["channel"] in failed_now:
                continue
            outcome = _deliver_one(outbox, settings, notifier, row, clock)
            if outcome is None:
                continue
            outcomes.append(outcome)
            if not outcome.ok:
                failed_now.add(row["channel"])
                _maybe_report_failing(outbox, settings, row["channel"], clock())
    return outcomes


def _deliver_one(
    outbox: Outbox,
    settings: Settings,
    notifier: Notifier,
    row: RowMapping,
    clock: Callable[[], datetime],
) -> DeliveryOutcome | None:
    channels = {c.name: c for c in settings.channels}
    chan = channels.get(row["channel"])
    now = clock()
    if chan is None or not chan.enabled:
        orphan = outbox.claim(row, now)
        if orphan is not None:
            outbox.record(
                row["id"],
                row["channel"],
                now,
                claim=orphan,
                duration_ms=0,
                final_status="orphaned",
                error="channel no longer configured or disabled; message kept, not sent",
            )
        return None
    claim = outbox.claim(row, now)
    if claim is None:
        return None  # another sender took it
    title = row["title"]
    if row["attempts"] > 0:
        title = f"(retry {row['attempts']}) {title}"
    started = time.monotonic()
    try:
        notifier.send(
            chan,
            title,
            row["body"],
            row["body_format"],
            KIND_LEVEL.get(row["kind"], "info"),
            parts=row["parts"],
        )
    except Exception as exc:  # a notifier bug must not leave the row claimed or kill the pass
        error = (
            exc
            if isinstance(exc, DeliveryError)
            else DeliveryError(f"channel {chan.name}: unexpected {type(exc).__name__}")
        )
        ms = int((time.monotonic() - started) * 1000)
        if error.permanent:  # kept as failed with no next attempt: only `outbox retry` sends it
            retry_at, text = None, f"{error.message} ({held(row['id'])})"
            log.error("delivery %s to %s failed: %s", row["id"], chan.name, text)
        else:
            retry_at, text = clock() + backoff(settings, row["attempts"] + 1), error.message
            log.warning(
                "delivery %s to %s failed: %s (retry at %s)",
                row["id"],
                chan.name,
                text,
                retry_at.isoformat(),
            )
        outbox.record(
            row["id"],
            chan.name,
            clock(),
            claim=claim,
            error=text,
            duration_ms=ms,
            retry_at=retry_at,
        )
        return DeliveryOutcome(row["id"], chan.name, row["kind"], False, text)
    ms = int((time.monotonic() - started) * 1000)
    outbox.record(row["id"], chan.name, clock(), claim=claim, error=None, duration_ms=ms)
    log.info("delivered %s %s to %s in %d ms", row["kind"], row["id"], chan.name, ms)
    return DeliveryOutcome(row["id"], chan.name, row["kind"], True)


def _maybe_report_failing(outbox: Outbox, settings: Settings, channel: str, now: datetime) -> None:
    failures, error = outbox.consecutive_failures(channel)
    if failures != settings.alerts.failing_after:
        return  # say it once, when the channel crosses the threshold
    with outbox.store.begin() as conn:
        _broadcast(
            conn,
            settings,
            "channel_failing",
            lambda fmt: render_channel_failing(channel, failures, error or "unknown", fmt),
            now,
            exclude={channel},
        )


def send_test(
    settings: Settings, notifier: Notifier, channel: str | None = None
) -> list[tuple[str, str | None]]:
    """Send a test message to each channel (or one); returns (channel, error or None)."""
    targets = [settings.channel(channel)] if channel else list(settings.channels)
    results: list[tuple[str, str | None]] = []
    for chan in targets:
        fmt = chan.body_format()
        body = {"html": "<p>Test message from did-monitor: this channel works.</p>"}.get(
            fmt, "Test message from did-monitor: this channel works."
        )
        try:
            notifier.send(chan, f"{settings.alerts.title_prefix}: test alert", body, fmt, "info")
        except DeliveryError as exc:
            results.append((chan.name, exc.message))
        else:
            results.append((chan.name, None))
    return results
