"""The outbox: a delivery is claimed by one sender only, and its attempts are on record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from monitor.alerts.outbox import CLAIM_LEASE, Outbox, add_delivery
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


def claim_due(outbox: Outbox, delivery_id: int, clock: FakeClock) -> int:
    (row,) = [r for r in outbox.due(clock()) if r["id"] == delivery_id]
    claim = outbox.claim(row, clock())
    assert claim is not None
    return claim


def test_attempts_and_consecutive_failures(store: Store, clock: FakeClock) -> None:
    outbox = Outbox(store)
    d1 = enqueue(outbox, clock)
    for error in ("boom", "boom again"):
        claim = claim_due(outbox, d1, clock)
        outbox.record(d1, "c", clock(), claim=claim, error=error, duration_ms=5, retry_at=clock())
    assert outbox.consecutive_failures("c") == (2, "boom again")
    claim = claim_due(outbox, d1, clock)
    outbox.record(d1, "c", clock(), claim=claim, error=None, duration_ms=5)
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
    from monitor.alerts.outbox import CLAIM_LEASE, CUT_SHORT

    outbox = Outbox(store)
    cut, finished, theirs = (enqueue(outbox, clock) for _ in range(3))
    rows = {row["id"]: row for row in outbox.due(clock())}
    assert outbox.claim(rows[cut], clock())
    claim = outbox.claim(rows[finished], clock())
    assert claim is not None
    outbox.record(finished, "c", clock(), claim=claim, error=None, duration_ms=5)
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
    # The process is ending: whatever thread is left claims nothing more, not even the row
    # just handed back (it would be sent twice).
    assert outbox.claim(due, clock()) is None
    assert outbox.due(clock())[0]["status"] == "failed"


def test_dropped_deliveries_are_kept_and_never_sent(store: Store, clock: FakeClock) -> None:
    """``drop`` marks queued rows ``dropped`` (with an attempt saying so): they leave the queue
    and ``due``; a row leased by a live sender is left alone, and a sender finishing after a
    drop does not bring the row back."""
    outbox = Outbox(store)
    failed, pending, leased, other = (enqueue(outbox, clock, ch) for ch in ("a", "a", "a", "b"))
    claim = claim_due(outbox, failed, clock)
    outbox.record(failed, "a", clock(), claim=claim, error="boom", duration_ms=1, retry_at=clock())
    pending_claim = claim_due(outbox, pending, clock)
    with store.engine.begin() as conn:  # as if its sender had not claimed it yet
        conn.execute(
            sa.update(DELIVERIES).where(DELIVERIES.c.id == pending).values(status="pending")
        )
    (row,) = [r for r in outbox.due(clock()) if r["id"] == leased]
    assert outbox.claim(row, clock())
    queued = outbox.queued("a")
    assert [r["id"] for r in queued] == [failed, pending, leased]
    assert "body" not in queued[0] and queued[0]["last_error"] == "boom"

    assert outbox.drop([failed, pending, leased], clock()) == [failed, pending]
    assert [r["id"] for r in outbox.queued()] == [leased, other]
    assert {r["id"] for r in outbox.due(clock() + timedelta(days=60))} == {leased, other}
    late = outbox.record(
        pending, "a", clock(), claim=pending_claim, error="late", duration_ms=1, retry_at=clock()
    )
    assert not late  # nor an attempt row on the dropped delivery
    with store.engine.connect() as conn:
        status = dict(conn.execute(sa.select(DELIVERIES.c.id, DELIVERIES.c.status)).all())
        outcomes = list(
            conn.execute(
                sa.select(ATTEMPTS.c.delivery_id, ATTEMPTS.c.outcome).order_by(ATTEMPTS.c.id)
            ).all()
        )
    assert status[failed] == status[pending] == "dropped" and status[leased] == "sending"
    assert (failed, "failed") in outcomes and (failed, "dropped") in outcomes
    assert [o for d, o in outcomes if d == pending] == ["dropped"]
    assert outbox.channel_health(["a"])["a"]["pending"] == 1  # the leased one only
    clock.advance(minutes=11)  # its sender died: the lease ran out, now it can be dropped
    assert outbox.drop([leased, failed], clock()) == [leased]


def test_a_late_sender_records_nothing_over_a_newer_claim(store: Store, clock: FakeClock) -> None:
    """A send that outlived its lease: the row was claimed again by another sender, which is
    sending it now. The late sender's outcome changes neither the row nor its attempts; the
    current claim's outcome is recorded as usual."""
    outbox = Outbox(store)
    delivery = enqueue(outbox, clock)
    late = claim_due(outbox, delivery, clock)
    clock.advance(seconds=CLAIM_LEASE.total_seconds() + 1)
    current = claim_due(outbox, delivery, clock)
    assert current == late + 1

    assert not outbox.record(delivery, "c", clock(), claim=late, error=None, duration_ms=9)
    with store.engine.connect() as conn:
        row = (
            conn.execute(sa.select(DELIVERIES).where(DELIVERIES.c.id == delivery)).mappings().one()
        )
        attempts = conn.execute(sa.select(sa.func.count()).select_from(ATTEMPTS)).scalar_one()
    assert (row["status"], row["attempts"], attempts) == ("sending", current, 0)

    assert outbox.record(delivery, "c", clock(), claim=current, error=None, duration_ms=5)
    with store.engine.connect() as conn:
        status = conn.execute(sa.select(DELIVERIES.c.status)).scalar_one()
        outcomes = conn.execute(sa.select(ATTEMPTS.c.outcome)).scalars().all()
    assert status == "sent" and outcomes == ["sent"]


def test_the_claim_lease_outlasts_the_longest_send() -> None:
    """The longest send allowed (SEND_TIMEOUTS of the largest delivery timeout) ends before its
    claim's lease, and a larger timeout is refused by the config."""
    import pydantic
    import pytest

    from monitor.config import DELIVERY_TIMEOUT_MAX, SEND_TIMEOUTS, AlertsConfig

    assert timedelta(seconds=DELIVERY_TIMEOUT_MAX * SEND_TIMEOUTS) < CLAIM_LEASE
    AlertsConfig(delivery_timeout_seconds=DELIVERY_TIMEOUT_MAX)
    with pytest.raises(pydantic.ValidationError):
        AlertsConfig(delivery_timeout_seconds=DELIVERY_TIMEOUT_MAX + 1)


def test_a_held_delivery_is_no_attempt(store: Store, clock: FakeClock) -> None:
    """``hold`` (its channel is off) keeps a delivery ``orphaned`` without claiming it: a
    ``held`` attempt row, no failure counted, ``attempts`` unchanged; ``retry`` makes one never
    tried ``pending`` again, and a stale read holds nothing."""
    outbox = Outbox(store)
    tried, fresh = enqueue(outbox, clock), enqueue(outbox, clock)
    claim = claim_due(outbox, tried, clock)
    outbox.record(tried, "c", clock(), claim=claim, error="boom", duration_ms=1, retry_at=clock())
    rows = {row["id"]: row for row in outbox.due(clock())}
    assert outbox.hold(rows[tried], clock(), "off") and outbox.hold(rows[fresh], clock(), "off")
    assert not outbox.hold(rows[fresh], clock(), "off")  # held already: the read is stale
    assert outbox.consecutive_failures("c") == (1, "boom")
    assert outbox.due(clock() + timedelta(days=60)) == []
    with store.engine.connect() as conn:
        outcomes = conn.execute(sa.select(ATTEMPTS.c.outcome).order_by(ATTEMPTS.c.id)).scalars()
        assert list(outcomes) == ["failed", "held", "held"]
    states = [(r["status"], r["attempts"]) for r in outbox.queued()]
    assert states == [("orphaned", 1), ("orphaned", 0)]
    assert outbox.retry([tried, fresh], clock()) == [tried, fresh]
    assert [(r["status"], r["attempts"]) for r in outbox.due(clock())] == [
        ("failed", 1),
        ("pending", 0),
    ]


def test_consecutive_failures_through_an_attempt(store: Store, clock: FakeClock) -> None:
    """``through``: the failures of the run an attempt is in, up to it; later ones (another
    sender's) do not move its place, and a success starts a new run."""
    outbox = Outbox(store)
    delivery = enqueue(outbox, clock)
    attempts = []
    for error in ("one", "two", None, "three"):
        claim = claim_due(outbox, delivery, clock)
        attempt = outbox.record(
            delivery, "c", clock(), claim=claim, error=error, duration_ms=1, retry_at=clock()
        )
        assert attempt is not None
        attempts.append(attempt)
        if error is None:  # sent: queue it again to fail once more
            delivery = enqueue(outbox, clock)
    assert [outbox.consecutive_failures("c", through=a)[0] for a in attempts] == [1, 2, 0, 1]
    assert outbox.consecutive_failures("c", through=attempts[1]) == (2, "two")
    assert outbox.consecutive_failures("c") == (1, "three")
