"""The database door for alerts: findings to announce, the delivery outbox and its attempts.

Builds its SQL on the store's table handles and predicates (``store.current``,
``store.silenced``) and runs it through ``Store.connect`` and ``Store.begin``; ``plan`` and
``deliver`` decide, this stores.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from monitor.config import DELIVERY_TIMEOUT_MAX, SEND_TIMEOUTS
from monitor.lifecycle import Announced, told
from monitor.redact import scrub, scrub_value
from monitor.store import (
    ATTEMPTS,
    DELIVERIES,
    FINDINGS,
    NOTIFICATIONS,
    Store,
    chunks,
    finding_query,
)
from monitor.store.db import tally

log = logging.getLogger(__name__)
# Longer than the longest send (config: SEND_TIMEOUTS of the largest delivery timeout), with two
# minutes to spare for recording it: a send still running is never claimed by another sender.
CLAIM_LEASE = timedelta(seconds=DELIVERY_TIMEOUT_MAX * SEND_TIMEOUTS + 120)
QUEUED = ("pending", "failed", "sending")  # not sent yet; ``dropped`` rows never will be
# Held for a channel that was removed or disabled (never due): listed, retried or dropped by hand.
# Holding is no attempt: its attempt row says ``held``, which is no failure, and ``attempts``
# (what a retry's title counts) stays as it was.
ORPHANED = "orphaned"
DROPPED = "dropped by `did-monitor outbox drop`: kept, never sent"
CUT_SHORT = "cut short by shutdown: it may or may not have arrived, so it is sent again as a retry"


def held(delivery_id: int) -> str:
    """What a delivery whose failure was permanent says after its error: it is ``failed`` with
    no next attempt, so ``due`` never returns it until ``retry`` makes it due."""
    return f"not retried: fix the cause, then `did-monitor outbox retry --id {delivery_id}`"


# Deliveries this process claimed and has not recorded yet: (database URL, id) -> attempts;
# and the databases whose cut-short sends were handed back (the process is ending: no more claims).
_in_flight: dict[tuple[str, int], int] = {}
_closed: set[str] = set()
_in_flight_guard = threading.Lock()
# What a notification says: which finding, to which channel, what event, tier and when.
TOLD_COLUMNS = [
    NOTIFICATIONS.c[k] for k in ("finding_id", "channel", "event", "tier", "created_at")
]


@dataclass
class AnnounceState:
    """Findings that may need announcing after a sweep, and what each channel already knows."""

    open: list[RowMapping]
    resolved_now: list[RowMapping]
    told: dict[tuple[int, str], Announced] = field(default_factory=dict)


def load_announce_state(conn: Connection, sweep_id: int, now: datetime) -> AnnounceState:
    """The open findings, those resolved by ``sweep_id`` and what each channel was told of them.
    Finding rows carry ``account_name`` for the digest; open ones carry ``silenced`` (a silence
    active at ``now`` holds them back: ``store.silenced``, the one test)."""
    findings = finding_query(now, None)
    resolved_now = sa.and_(FINDINGS.c.state == "resolved", FINDINGS.c.resolved_sweep_id == sweep_id)
    open_rows = list(conn.execute(findings.where(FINDINGS.c.state == "open")).mappings())
    resolved = list(conn.execute(findings.where(resolved_now)).mappings())
    relevant = sa.or_(FINDINGS.c.state == "open", FINDINGS.c.resolved_sweep_id == sweep_id)
    stmt = (
        sa.select(*TOLD_COLUMNS, FINDINGS.c.rearmed_at)
        .join(FINDINGS, FINDINGS.c.id == NOTIFICATIONS.c.finding_id)
        .where(relevant)
    )
    announced = told(tuple(row) for row in conn.execute(stmt))
    return AnnounceState(open=open_rows, resolved_now=resolved, told=announced)


def numbers_per_account(conn: Connection) -> dict[str, int]:
    """How many numbers each customer account holds now (current versions)."""
    return {str(acct): n for (acct,), n in tally(conn, "account_id").items()}


def add_delivery(
    conn: Connection,
    *,
    channel: str,
    kind: str,
    title: str,
    body: str,
    body_format: str,
    now: datetime,
    sweep_id: int | None = None,
    parts: dict[str, Any] | None = None,
) -> int:
    stmt = sa.insert(DELIVERIES).values(
        created_at=now,
        sweep_id=sweep_id,
        channel=channel,
        kind=kind,
        # What leaves for a channel leaves the process: no secret in it, whatever its source.
        title=scrub(title),
        body=scrub(body),
        body_format=body_format,
        parts=scrub_value(parts) if parts else None,  # attachments and Slack blocks too
        status="pending",
        attempts=0,
        next_attempt_at=now,
    )
    return int(conn.execute(stmt.returning(DELIVERIES.c.id)).scalar_one())


def add_notifications(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(NOTIFICATIONS), rows)


class Outbox:
    """Deliveries waiting to be sent, claimed one at a time so two senders never both send one.

    A claimed row is ``sending`` under a lease (``CLAIM_LEASE``): no other sender takes it until
    the lease runs out, so a sender that died mid-send is retried, but only after the lease.
    A delivery the service's shutdown cuts short is handed back instead
    (``release_cut_short``): the process then ends at once, so the abandoned send can no longer
    complete behind the outbox's back, and its row says ``failed`` and is due now, so the next
    start retries it at once (titled as a retry) rather than after the lease. Whether the cut-short
    send arrived cannot be known; a retry that repeats it says it is one.

    A delivery that failed for good (``DeliveryError.permanent``) is ``failed`` with no next
    attempt: kept, shown as queued, never due until ``retry`` (``did-monitor outbox retry``).
    One due for a channel that is off or gone is held instead (``hold``): not claimed, not sent.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def due(self, now: datetime, limit: int = 200) -> list[RowMapping]:
        stmt = (
            sa.select(DELIVERIES)
            .where(DELIVERIES.c.status.in_(QUEUED), DELIVERIES.c.next_attempt_at <= now)
            .order_by(DELIVERIES.c.id)
            .limit(limit)
        )
        with self.store.connect() as conn:
            return list(conn.execute(stmt).mappings())

    def claim(self, row: RowMapping, now: datetime) -> int | None:
        """Mark ``row`` as being sent, unless someone else changed it since we read it. Returns
        the claim (the row's new ``attempts``, which ``record`` must be given), or None; always
        None once ``release_cut_short`` ran (the guard orders the two)."""
        claim = int(row["attempts"]) + 1
        with _in_flight_guard:
            if self.store.url in _closed:
                return None
            with self.store.begin() as conn:
                result = conn.execute(
                    _unchanged(row["id"], row["status"], row["attempts"]).values(
                        status="sending", attempts=claim, next_attempt_at=now + CLAIM_LEASE
                    )
                )
            if not result.rowcount:
                return None
            _in_flight[(self.store.url, row["id"])] = claim
        return claim

    def hold(self, row: RowMapping, now: datetime, reason: str) -> bool:
        """Keep ``row`` as ``orphaned`` (never due; ``retry`` or ``drop`` settle it), unless
        someone else changed it since we read it, with a ``held`` attempt row saying ``reason``.
        Nothing was tried: ``attempts`` stays as it was and no failure is counted. Returns
        whether it was held."""
        stmt = _unchanged(row["id"], row["status"], row["attempts"]).values(
            status=ORPHANED, last_error=scrub(reason), next_attempt_at=None
        )
        with self.store.begin() as conn:
            return _settle(conn, stmt, now, "held", scrub(reason)) is not None

    def release_cut_short(self, now: datetime) -> int:
        """Hand back the deliveries this process claimed and is still sending (the shutdown is
        abandoning them): each is recorded as a ``cut short`` attempt and becomes ``failed``
        and due at ``now``, unless its send finished meanwhile. Returns how many.

        The last thing a stopping process does: from then on this process claims nothing more
        in this database, so no thread left behind can take a row (or this one again)."""
        with _in_flight_guard:
            _closed.add(self.store.url)
            mine = {i: n for (url, i), n in _in_flight.items() if url == self.store.url}
            for delivery_id in mine:
                del _in_flight[(self.store.url, delivery_id)]
        released = 0
        with self.store.begin() as conn:
            for delivery_id, attempts in mine.items():
                stmt = _unchanged(delivery_id, "sending", attempts).values(
                    status="failed", last_error=CUT_SHORT, next_attempt_at=now
                )
                # None for one that finished after all: it is left as it is.
                released += _settle(conn, stmt, now, "cut short", CUT_SHORT) is not None
        return released

    def record(
        self,
        delivery_id: int,
        channel: str,
        now: datetime,
        *,
        claim: int,
        error: str | None,
        duration_ms: int,
        retry_at: datetime | None = None,
    ) -> int | None:
        """Record the outcome of the send made under ``claim`` (what ``claim`` returned), with
        an attempt row. Only while that claim still holds the row: one that was dropped, handed
        back, or claimed again after its lease ran out is left as it is, and nothing is recorded
        (logged instead). Returns the attempt row's id, or None when nothing was recorded."""
        ok = error is None
        outcome = "sent" if ok else "failed"
        error = None if error is None else scrub(error)
        with _in_flight_guard:
            if _in_flight.get((self.store.url, delivery_id)) == claim:
                del _in_flight[(self.store.url, delivery_id)]
        stmt = _unchanged(delivery_id, "sending", claim).values(
            status=outcome,
            last_error=error,
            sent_at=now if ok else None,
            next_attempt_at=None if ok else retry_at,
        )
        with self.store.begin() as conn:
            attempt = _settle(conn, stmt, now, outcome, error, duration_ms)
        if attempt is not None:
            return attempt
        log.warning(
            "delivery %s to %s: its claim (attempt %d) no longer holds it (dropped, "
            "handed back or claimed again); this attempt's outcome (%s) is not recorded",
            delivery_id,
            channel,
            claim,
            "sent" if ok else error,
        )
        return None

    def queued(self, channel: str | None = None) -> list[RowMapping]:
        """Deliveries not sent yet (pending, failed, sending, orphaned), by channel then age; no
        bodies."""
        body = {"title", "body", "body_format", "parts", "sweep_id", "sent_at"}
        shown = [col for col in DELIVERIES.c if col.name not in body]
        stmt = sa.select(*shown).where(DELIVERIES.c.status.in_((*QUEUED, ORPHANED)))
        if channel is not None:
            stmt = stmt.where(DELIVERIES.c.channel == channel)
        with self.store.connect() as conn:
            return list(
                conn.execute(stmt.order_by(DELIVERIES.c.channel, DELIVERIES.c.id)).mappings()
            )

    def drop(self, ids: Iterable[int], now: datetime) -> list[int]:
        """Mark the queued deliveries ``ids`` as ``dropped`` (kept, never sent), each with an
        attempt row saying so; returns those dropped. One being sent right now (its claim's
        lease still running) is left alone, as is one that was sent or dropped meanwhile."""
        dropped: list[int] = []
        droppable = sa.or_(
            DELIVERIES.c.status.in_(("pending", "failed", ORPHANED)),
            sa.and_(DELIVERIES.c.status == "sending", DELIVERIES.c.next_attempt_at <= now),
        )
        with self.store.begin() as conn:
            for delivery_id in ids:
                stmt = (
                    sa.update(DELIVERIES)
                    .where(DELIVERIES.c.id == delivery_id, droppable)
                    .values(status="dropped", next_attempt_at=None)
                )
                if _settle(conn, stmt, now, "dropped", DROPPED) is not None:
                    dropped.append(delivery_id)
        return dropped

    def retry(self, ids: Iterable[int], now: datetime) -> list[int]:
        """Make the queued deliveries ``ids`` that wait (pending; failed: waiting out a backoff
        or held after a permanent failure; orphaned: held while their channel was off) due at
        ``now``; returns those. One being sent is left alone. The delivery loop (``run``, or the
        next ``sweep``) sends them, as a retry if one was tried before (an orphaned one never
        tried is ``pending`` again)."""
        status, attempts = DELIVERIES.c.status, DELIVERIES.c.attempts
        stmt = (
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(list(ids)), status.in_(("pending", "failed", ORPHANED)))
            .values(
                next_attempt_at=now,
                status=sa.case(
                    (sa.and_(status == ORPHANED, attempts == 0), "pending"),
                    (status == ORPHANED, "failed"),
                    else_=status,
                ),
            )
            .returning(DELIVERIES.c.id)
        )
        with self.store.begin() as conn:
            return sorted(conn.execute(stmt).scalars())

    def consecutive_failures(
        self, channel: str, through: int | None = None
    ) -> tuple[int, str | None]:
        """Failed attempts on ``channel`` since its last success, and the latest error; with
        ``through`` (an attempt row's id), those of the run that attempt is in, up to it: its
        place in the run, whatever other senders recorded since. Attempts that were no sends
        (held, dropped, cut short) neither count nor end a run."""
        mine = ATTEMPTS.c.channel == channel
        if through is not None:
            mine = sa.and_(mine, ATTEMPTS.c.id <= through)
        with self.store.connect() as conn:
            last_ok = conn.execute(
                sa.select(sa.func.max(ATTEMPTS.c.id)).where(mine, ATTEMPTS.c.outcome == "sent")
            ).scalar()
            stmt = sa.select(ATTEMPTS.c.error).where(mine, ATTEMPTS.c.outcome == "failed")
            if last_ok is not None:
                stmt = stmt.where(ATTEMPTS.c.id > last_ok)
            errors = [r[0] for r in conn.execute(stmt.order_by(ATTEMPTS.c.id))]
        return len(errors), (errors[-1] if errors else None)

    def channel_health(self, channels: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self.store.connect() as conn:
            for name in channels:
                pending = conn.execute(
                    sa.select(sa.func.count()).where(
                        DELIVERIES.c.channel == name, DELIVERIES.c.status.in_(QUEUED)
                    )
                ).scalar_one()
                last = conn.execute(
                    sa.select(ATTEMPTS.c.at, ATTEMPTS.c.outcome)
                    .where(ATTEMPTS.c.channel == name)
                    .order_by(ATTEMPTS.c.id.desc())
                    .limit(1)
                ).first()
                out[name] = {
                    "pending": int(pending),
                    "last_attempt": last[0] if last else None,
                    "last_outcome": last[1] if last else None,
                }
        for name, info in out.items():
            info["consecutive_failures"], info["last_error"] = self.consecutive_failures(name)
        return out

    def last_digest(self, channel: str) -> RowMapping | None:
        """The most recent digest stored for ``channel``, whatever became of it."""
        stmt = (
            sa.select(DELIVERIES)
            .where(DELIVERIES.c.channel == channel, DELIVERIES.c.kind == "digest")
            .order_by(DELIVERIES.c.id.desc())
            .limit(1)
        )
        with self.store.connect() as conn:
            return conn.execute(stmt).mappings().first()

    def notifications_for(self, finding_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Every announcement of each finding, with the fate of the delivery that carried it."""
        out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        with self.store.connect() as conn:
            for part in chunks(finding_ids):
                stmt = (
                    sa.select(
                        *TOLD_COLUMNS,
                        DELIVERIES.c.id.label("delivery_id"),
                        DELIVERIES.c.status,
                        DELIVERIES.c.sent_at,
                    )
                    .join(DELIVERIES, DELIVERIES.c.id == NOTIFICATIONS.c.delivery_id)
                    .where(NOTIFICATIONS.c.finding_id.in_(part))
                    .order_by(NOTIFICATIONS.c.id)
                )
                for row in conn.execute(stmt).mappings():
                    out[row["finding_id"]].append(dict(row))
        return dict(out)


def _unchanged(delivery_id: int, status: str, attempts: int) -> sa.Update:
    """An update of delivery ``delivery_id`` that applies only while it is still ``status`` after
    ``attempts`` attempts: a claim, or what a claim's holder does with the row."""
    return sa.update(DELIVERIES).where(
        DELIVERIES.c.id == delivery_id,
        DELIVERIES.c.status == status,
        DELIVERIES.c.attempts == attempts,
    )


def _settle(
    conn: Connection,
    update: sa.Update,
    now: datetime,
    outcome: str,
    error: str | None,
    duration_ms: int = 0,
) -> int | None:
    """Run ``update`` (of one delivery) and, if it changed the row, add that delivery's attempt
    history a row: sent, failed, cut short, dropped or held. Returns that row's id, or None if
    ``update`` changed nothing."""
    changed = conn.execute(
        update.returning(DELIVERIES.c.id.label("delivery_id"), DELIVERIES.c.channel)
    ).first()
    if changed is None:
        return None
    attempt = {"at": now, "outcome": outcome, "error": error, "duration_ms": duration_ms}
    insert = sa.insert(ATTEMPTS).values(**changed._mapping, **attempt)
    return int(conn.execute(insert.returning(ATTEMPTS.c.id)).scalar_one())
