"""Delivery through real Apprise to a loopback receiver: a failure that sending again cannot cure
is kept, counted and logged, and waits for a hand; any other failure keeps its backoff."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.alerts.deliver import backoff, deliver_due, send_test
from monitor.alerts.notify import AppriseNotifier
from monitor.alerts.outbox import Outbox, add_delivery
from monitor.config import ChannelConfig, Settings
from monitor.errors import DeliveryError
from monitor.store import ATTEMPTS, DELIVERIES, Store
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, HttpReceiver, make_settings


def enqueue(store: Store, clock: FakeClock, channel: str, title: str = "did-monitor: 1 new") -> int:
    with store.engine.begin() as conn:
        return add_delivery(
            conn,
            channel=channel,
            kind="digest",
            title=title,
            body="b",
            body_format="text",
            now=clock(),
        )


def delivery(store: Store, delivery_id: int) -> Any:
    with store.engine.connect() as conn:
        stmt = sa.select(DELIVERIES).where(DELIVERIES.c.id == delivery_id)
        return conn.execute(stmt).mappings().one()


def settings_for(store: Store, *channels: ChannelConfig, **alerts: Any) -> Settings:
    return make_settings(None, store.url, channels, alerts={"failing_after": 1, **alerts})


def test_what_apprise_can_tell_apart(http_receiver: HttpReceiver) -> None:
    """Permanent: a URL Apprise cannot load, a message it cannot make into a notification (it
    calls no service). Retryable: a service that answered no, or could not be reached."""
    notifier = AppriseNotifier(timeout=5)
    typo = ChannelConfig.model_construct(name="typo", url="nosuchscheme://what")
    hook = ChannelConfig(name="hook", url=http_receiver.url())
    dead = ChannelConfig(name="dead", url="json://127.0.0.1:9/x")

    def failure(channel: ChannelConfig, title: str = "t", body: str = "b") -> DeliveryError:
        with pytest.raises(DeliveryError) as exc:
            notifier.send(channel, title, body, "text")
        return exc.value

    assert failure(typo).permanent
    empty = failure(hook, title="", body="")
    assert empty.permanent and "No message content" in empty.message
    assert http_receiver.posts == []  # Apprise called no service
    http_receiver.fail_next = 1
    refused = failure(hook)
    assert not refused.permanent and "500" in refused.message
    assert not failure(dead).permanent


def test_a_permanent_failure_is_kept_and_not_retried_until_sent_by_hand(
    store: Store,
    clock: FakeClock,
    http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The config refuses a URL Apprise cannot load, so one that got through is put in by hand.
    typo = ChannelConfig(name="typo", url="json://localhost/x").model_copy(
        update={"url": "nosuchscheme://what"}
    )
    ops = ChannelConfig(name="ops", url=http_receiver.url("ops"))
    settings = settings_for(store, ops).model_copy(update={"channels": (typo, ops)})
    notifier = AppriseNotifier(timeout=5)
    held = enqueue(store, clock, "typo")

    with caplog.at_level(logging.WARNING, logger="monitor.alerts.deliver"):
        (outcome, notice) = deliver_due(store, settings, notifier, clock)
    assert (outcome.delivery_id, outcome.ok) == (held, False)
    assert f"`did-monitor outbox retry --id {held}`" in (outcome.error or "")
    (record,) = [r for r in caplog.records if f"delivery {held} " in r.getMessage()]
    assert record.levelname == "ERROR" and "does not understand its URL" in record.getMessage()
    row = delivery(store, held)
    assert (row["status"], row["next_attempt_at"], row["attempts"]) == ("failed", None, 1)
    assert row["body"] == "b"  # kept, body and all
    # It counts toward "channel failing", like any failure (failing_after = 1 here).
    assert notice.ok and notice.kind == "channel_failing"
    (told,) = http_receiver.posts
    assert "typo" in told["body"]["message"] and "outbox retry" in told["body"]["message"]

    outbox = Outbox(store)
    clock.advance(days=60)  # longer than any backoff: no schedule sends it again
    assert deliver_due(store, settings, notifier, clock) == []
    assert [r["id"] for r in outbox.queued("typo")] == [held]  # still queued, for a hand
    assert outbox.channel_health(["typo"])["typo"]["pending"] == 1

    # Fixed by hand: the channel's URL corrected, then `outbox retry` makes it due now.
    fixed = settings_for(store, ChannelConfig(name="typo", url=http_receiver.url("typo")), ops)
    assert outbox.retry([held], clock()) == [held]
    (sent,) = deliver_due(store, fixed, notifier, clock)
    assert sent.ok and sent.delivery_id == held
    assert http_receiver.posts[-1]["body"]["title"] == "(retry 1) did-monitor: 1 new"
    assert delivery(store, held)["status"] == "sent"
    with store.engine.connect() as conn:
        outcomes = conn.execute(
            sa.select(ATTEMPTS.c.outcome).where(ATTEMPTS.c.delivery_id == held)
        ).scalars()
        assert list(outcomes) == ["failed", "sent"]


def test_a_retryable_failure_keeps_its_backoff(
    store: Store, clock: FakeClock, http_receiver: HttpReceiver
) -> None:
    ops = ChannelConfig(name="ops", url=http_receiver.url("ops"))
    settings = settings_for(store, ops, failing_after=5)
    notifier = AppriseNotifier(timeout=5)
    first = enqueue(store, clock, "ops")
    http_receiver.fail_next = 1

    (outcome,) = deliver_due(store, settings, notifier, clock)
    assert not outcome.ok and "outbox retry" not in (outcome.error or "")
    row = delivery(store, first)
    assert row["status"] == "failed"
    assert row["next_attempt_at"] == clock() + backoff(settings, 1)
    clock.advance(seconds=backoff(settings, 1).total_seconds() - 1)
    assert deliver_due(store, settings, notifier, clock) == []  # not due before its backoff
    clock.advance(seconds=1)
    (sent,) = deliver_due(store, settings, notifier, clock)
    assert sent.ok and http_receiver.posts[-1]["body"]["title"].startswith("(retry 1) ")


def test_outbox_retry_leaves_a_delivery_being_sent_alone(store: Store, clock: FakeClock) -> None:
    outbox = Outbox(store)
    waiting, sending = enqueue(store, clock, "c"), enqueue(store, clock, "c")
    (row,) = [r for r in outbox.due(clock()) if r["id"] == sending]
    assert outbox.claim(row, clock())
    clock.advance(minutes=1)
    assert outbox.retry([waiting, sending, 999], clock()) == [waiting]
    assert delivery(store, waiting)["next_attempt_at"] == clock()


def test_a_delivery_for_a_disabled_channel_is_held_then_sent_or_dropped_by_hand(
    store: Store, clock: FakeClock, http_receiver: HttpReceiver
) -> None:
    """A channel switched off (or removed) while alerts wait for it: they are kept as
    ``orphaned``, never due on their own, listed by ``outbox list``, and ``outbox retry`` (once
    the channel is on again) or ``outbox drop`` settles them."""
    on = ChannelConfig(name="ops", url=http_receiver.url("ops"))
    off = settings_for(store, on.model_copy(update={"enabled": False}))
    notifier = AppriseNotifier(timeout=5)
    kept, dropped = enqueue(store, clock, "ops"), enqueue(store, clock, "ops")
    assert deliver_due(store, off, notifier, clock) == []
    row = delivery(store, kept)
    assert (row["status"], row["next_attempt_at"]) == ("orphaned", None)
    assert f"outbox retry --id {kept}" in row["last_error"]
    outbox = Outbox(store)
    assert [r["id"] for r in outbox.queued("ops")] == [kept, dropped]
    clock.advance(days=60)
    assert deliver_due(store, settings_for(store, on), notifier, clock) == []  # not by itself
    assert http_receiver.posts == []

    assert outbox.drop([dropped], clock()) == [dropped]
    assert outbox.retry([kept], clock()) == [kept]
    (sent,) = deliver_due(store, settings_for(store, on), notifier, clock)
    # Held, never sent: its first send is no retry.
    assert sent.ok and http_receiver.posts[-1]["body"]["title"] == "did-monitor: 1 new"
    assert [delivery(store, d)["status"] for d in (kept, dropped)] == ["sent", "dropped"]
    assert outbox.queued() == []


def failing_notices(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        stmt = sa.select(DELIVERIES).where(DELIVERIES.c.kind == "channel_failing")
        return list(conn.execute(stmt).mappings())


def test_deliveries_held_for_a_disabled_channel_are_not_failures(
    store: Store, clock: FakeClock
) -> None:
    """Held while its channel was off, a delivery was not tried: it does not count toward
    ``failing_after`` (so the run of real failures later is told at the right one), and when it
    is sent at last it is no retry."""
    a, b = ChannelConfig(name="a", url="json://h/a"), ChannelConfig(name="b", url="json://h/b")
    off = settings_for(store, a.model_copy(update={"enabled": False}), b, failing_after=3)
    on = settings_for(store, a, b, failing_after=3)
    notifier = RecordingNotifier()
    outbox = Outbox(store)
    held = [enqueue(store, clock, "a", title=f"t{i}") for i in range(3)]
    assert deliver_due(store, off, notifier, clock) == []
    assert outbox.consecutive_failures("a") == (0, None)
    assert [(delivery(store, d)["status"], delivery(store, d)["attempts"]) for d in held] == [
        ("orphaned", 0)
    ] * 3
    with store.engine.connect() as conn:
        outcomes = conn.execute(sa.select(ATTEMPTS.c.outcome)).scalars().all()
    assert outcomes == ["held"] * 3

    notifier.failing = {"a"}  # back on, and now really failing: one new failure each pass
    for failure in range(1, 5):
        clock.advance(hours=7)
        enqueue(store, clock, "a", title="new")
        deliver_due(store, on, notifier, clock)
        assert outbox.consecutive_failures("a")[0] == failure
        told = [m for m in notifier.sent if m.channel == "b"]
        assert len(told) == (failure >= 3), failure  # told once, at the third
    assert "failed 3 times in a row" in told[0].body

    notifier.failing = set()
    assert outbox.retry(held, clock()) == held
    deliver_due(store, on, notifier, clock)
    assert {m.title for m in notifier.sent if m.channel == "a"} >= {"t0", "t1", "t2"}


def test_channel_failing_is_told_once_when_two_senders_fail_together(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two senders fail on one channel at once, so by the time the one whose failure was the
    ``failing_after``-th looks, the run is already past it: it is still told, and once."""
    a, b = ChannelConfig(name="a", url="json://h/a"), ChannelConfig(name="b", url="json://h/b")
    settings = settings_for(store, a, b, failing_after=2)
    notifier = RecordingNotifier(failing={"a"})
    enqueue(store, clock, "a")
    deliver_due(store, settings, notifier, clock)  # the first failure
    clock.advance(seconds=1)
    enqueue(store, clock, "a")
    enqueue(store, clock, "a")
    record = Outbox.record
    others: list[Any] = []

    def then_another_sender(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        recorded = record(self, *args, **kwargs)
        if not others:  # right after this sender's failure, another records the next one
            others.append(None)
            others[0] = deliver_due(store, settings, notifier, clock)
        return recorded

    monkeypatch.setattr(Outbox, "record", then_another_sender)
    deliver_due(store, settings, notifier, clock)
    assert [o.ok for o in others[0]] == [False]
    assert Outbox(store).consecutive_failures("a")[0] == 3
    assert [n["channel"] for n in failing_notices(store)] == ["b"]
    assert "failed 2 times in a row" in failing_notices(store)[0]["body"]


def test_a_test_alert_goes_to_enabled_channels_only() -> None:
    """``enabled = false``: nothing is made or sent for the channel, a test alert neither."""
    on = ChannelConfig(name="on", url="json://h/on")
    off = ChannelConfig(name="off", url="json://h/off", enabled=False)
    notifier = RecordingNotifier()
    assert send_test(Settings(channels=(on, off)), notifier) == [("on", None)]
    assert [m.channel for m in notifier.sent] == ["on"]
