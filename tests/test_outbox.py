"""The outbox: a delivery is claimed by one sender only, and its attempts are on record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from monitor.outbox import Outbox, add_delivery
from monitor.store import ATTEMPTS, DELIVERIES, Store
from tests.conftest import FakeClock


def add(outbox: Outbox, **values: Any) -> int:
    with outbox.store.engine.begin() as conn:
        return add_delivery(conn, **values)


def enqueue(outbox: Outbox, clock: FakeClock, channel: str = "c") -> int:
    return add(
        outbox, channel=channel, kind="digest", title="t", body="b", body_format="text", now=clock()
    )


def test_claim_is_exclusive(store: Store, clock: FakeClock) -> None:
    outbox = Outbox(store)
    enqueue(outbox, clock)
    (row,) = outbox.due(clock())
    assert outbox.claim(row, clock())
    assert not outbox.claim(row, clock())  # a second sender with the same stale read loses
    assert outbox.due(clock()) == []  # leased while being sent
    clock.advance(minutes=11)  # a sender that died mid-send: the lease runs out, it is due again
    (again,) = outbox.due(clock())
    assert again["status"] == "sending" and again["attempts"] == 1


def test_attempts_and_consecutive_failures(store: Store, clock: FakeClock) -> None:
    outbox = Outbox(store)
    d1 = enqueue(outbox, clock)
    outbox.record(d1, "c", clock(), error="boom", duration_ms=5, retry_at=clock())
    outbox.record(d1, "c", clock(), error="boom again", duration_ms=5, retry_at=clock())
    assert outbox.consecutive_failures("c") == (2, "boom again")
    outbox.record(d1, "c", clock(), error=None, duration_ms=5)
    assert outbox.consecutive_failures("c") == (0, None)
    health = outbox.channel_health(["c", "never"])
    assert health["c"]["last_outcome"] == "sent" and health["c"]["pending"] == 0
    assert health["never"]["last_attempt"] is None


def test_attachments_and_slack_blocks_are_scrubbed_like_the_body(
    store: Store, clock: FakeClock
) -> None:
    from monitor import redact

    secret = "s3cr3t-Token-Value-1234"
    redact.remember([secret])  # forgotten after the test (conftest)
    parts = {
        "attachments": [{"name": "f.csv", "mimetype": "text/csv", "content": f"a,{secret}"}],
        "slack": {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": secret}}]},
    }
    outbox = Outbox(store)
    add(
        outbox,
        channel="c",
        kind="digest",
        title="t",
        body=secret,
        body_format="text",
        now=clock(),
        parts=parts,
    )
    (row,) = outbox.due(clock())
    assert secret not in str(row["parts"]) and secret not in row["body"]
    assert row["parts"]["attachments"][0]["content"] == "a,***"


def test_a_send_cut_short_is_handed_back_for_a_retry(store: Store, clock: FakeClock) -> None:
    """What shutdown leaves behind: the rows this process claimed and has not recorded become
    ``failed`` and due now, with a "cut short" attempt; a row whose send finished, or that
    another sender holds, is left alone."""
    from monitor.outbox import CLAIM_LEASE, CUT_SHORT

    outbox = Outbox(store)
    cut, finished, theirs = (enqueue(outbox, clock) for _ in range(3))
    rows = {row["id"]: row for row in outbox.due(clock())}
    assert outbox.claim(rows[cut], clock()) and outbox.claim(rows[finished], clock())
    outbox.record(finished, "c", clock(), error=None, duration_ms=5)
    with store.engine.begin() as conn:  # another process's claim
        conn.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id == theirs)
            .values(status="sending", next_attempt_at=clock() + CLAIM_LEASE)
        )
    clock.advance(seconds=3)
    assert outbox.release_cut_short(clock()) == 1
    with store.engine.connect() as conn:
        states = dict(conn.execute(sa.select(DELIVERIES.c.id, DELIVERIES.c.status)).all())
        attempts = conn.execute(sa.select(ATTEMPTS.c.delivery_id, ATTEMPTS.c.outcome)).all()
    assert states == {cut: "failed", finished: "sent", theirs: "sending"}
    assert sorted(tuple(a) for a in attempts) == [(cut, "cut short"), (finished, "sent")]
    (due,) = outbox.due(clock())
    assert (due["id"], due["attempts"], due["last_error"]) == (cut, 1, CUT_SHORT)
    assert outbox.release_cut_short(clock()) == 0  # handed back once


def test_dropped_deliveries_are_kept_and_never_sent(store: Store, clock: FakeClock) -> None:
    """``drop`` marks queued rows ``dropped`` (with an attempt saying so): they leave the queue
    and ``due``; a row leased by a live sender is left alone, and a sender finishing after a
    drop does not bring the row back."""
    outbox = Outbox(store)
    failed, pending, leased, other = (enqueue(outbox, clock, ch) for ch in ("a", "a", "a", "b"))
    outbox.record(failed, "a", clock(), error="boom", duration_ms=1, retry_at=clock())
    (row,) = [r for r in outbox.due(clock()) if r["id"] == leased]
    assert outbox.claim(row, clock())
    queued = outbox.queued("a")
    assert [r["id"] for r in queued] == [failed, pending, leased]
    assert "body" not in queued[0] and queued[0]["last_error"] == "boom"

    assert outbox.drop([failed, pending, leased], clock()) == [failed, pending]
    assert [r["id"] for r in outbox.queued()] == [leased, other]
    assert {r["id"] for r in outbox.due(clock() + timedelta(days=60))} == {leased, other}
    outbox.record(pending, "a", clock(), error="late", duration_ms=1, retry_at=clock())
    with store.engine.connect() as conn:
        status = dict(conn.execute(sa.select(DELIVERIES.c.id, DELIVERIES.c.status)).all())
        outcomes = list(
            conn.execute(
                sa.select(ATTEMPTS.c.delivery_id, ATTEMPTS.c.outcome).order_by(ATTEMPTS.c.id)
            ).all()
        )
    assert status[failed] == status[pending] == "dropped" and status[leased] == "sending"
    assert (failed, "failed") in outcomes and (failed, "dropped") in outcomes
    assert outbox.channel_health(["a"])["a"]["pending"] == 1  # the leased one only
    clock.advance(minutes=11)  # its sender died: the lease ran out, now it can be dropped
    assert outbox.drop([leased, failed], clock()) == [leased]
