"""Delivery: what the outbox holds is sent through the notifier, each attempt recorded; a failed
delivery is kept (never dropped) and retried with backoff, unless its failure is permanent
(``DeliveryError.permanent``): that one waits, failed, for ``did-monitor outbox retry``. A channel
that keeps failing, either way, is reported to the others. A delivery for a channel that is off
or gone is held (orphaned), not tried: no attempt, no failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.engine import RowMapping

from monitor.alerts.chat import paragraph, render_channel_failing
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
    return outcomes


def _deliver_one(
    outbox: Outbox,
    settings: Settings,
    notifier: Notifier,
    row: RowMapping,
    clock: Callable[[], datetime],
) -> DeliveryOutcome | None:
    chan = next((c for c in settings.channels if c.name == row["channel"] and c.enabled), None)
    if chan is None:  # nothing is sent to it: held, no attempt made
        reason = f"channel no longer configured or disabled; kept ({held(row['id'])})"
        outbox.hold(row, clock(), reason)
        return None
    claim = outbox.claim(row, clock())
    if claim is None:
        return None  # another sender took it
    title = f"(retry {row['attempts']}) {row['title']}" if row["attempts"] else row["title"]
    started = time.monotonic()
    error: DeliveryError | None = None
    try:
        level = KIND_LEVEL.get(row["kind"], "info")
        notifier.send(chan, title, row["body"], row["body_format"], level, parts=row["parts"])
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a notifier bug must not leave the row claimed or kill the pass
        error = DeliveryError(f"channel {chan.name}: unexpected {type(exc).__name__}")
    ms = int((time.monotonic() - started) * 1000)
    retry_at, text = None, None
    if error is None:
        log.info("delivered %s %s to %s in %d ms", row["kind"], row["id"], chan.name, ms)
    elif error.permanent:  # kept as failed with no next attempt: only `outbox retry` sends it
        text = f"{error.message} ({held(row['id'])})"
        log.error("delivery %s to %s failed: %s", row["id"], chan.name, text)
    else:
        retry_at, text = clock() + backoff(settings, row["attempts"] + 1), error.message
        when = retry_at.isoformat()
        log.warning("delivery %s to %s failed: %s (retry at %s)", row["id"], chan.name, text, when)
    attempt = outbox.record(
        row["id"], chan.name, clock(), claim=claim, error=text, duration_ms=ms, retry_at=retry_at
    )
    if text is not None and attempt is not None:
        _maybe_report_failing(outbox, settings, chan.name, attempt, clock())
    return DeliveryOutcome(row["id"], chan.name, row["kind"], error is None, text)


def _maybe_report_failing(
    outbox: Outbox, settings: Settings, channel: str, attempt: int, now: datetime
) -> None:
    """Tell the other channels that ``channel`` is failing if its failed ``attempt`` is the one
    that brought its run of failures to ``failing_after``: said once per run, by whichever
    sender recorded that failure, even when other senders' failures came in before it looked."""
    failures, error = outbox.consecutive_failures(channel, through=attempt)
    if failures != settings.alerts.failing_after:
        return  # not the failure that reached it: before it, or after (said already)
    render = partial(render_channel_failing, channel, failures, error or "unknown")
    with outbox.store.begin() as conn:
        _broadcast(conn, settings, "channel_failing", render, now, exclude={channel})


def send_test(
    settings: Settings, notifier: Notifier, channel: str | None = None
) -> list[tuple[str, str | None]]:
    """Send a test message to each enabled channel (or the one named, if enabled); returns
    (channel, error or None). Nothing is sent to a disabled channel."""
    chosen = [settings.channel(channel)] if channel else settings.channels
    targets = [chan for chan in chosen if chan.enabled]
    results: list[tuple[str, str | None]] = []
    for chan in targets:
        fmt = chan.body_format()
        body = paragraph("Test message from did-monitor: this channel works.", fmt)
        try:
            notifier.send(chan, f"{settings.alerts.title_prefix}: test alert", body, fmt, "info")
        except DeliveryError as exc:
            results.append((chan.name, exc.message))
        else:
            results.append((chan.name, None))
    return results
