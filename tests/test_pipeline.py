"""The alert lifecycle across sweeps: announce once, resolve, remind by tier, silence, route."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from monitor.config import ChannelConfig, RulesConfig
from monitor.pipeline import run_cycle
from monitor.rules.builtin import DateRuleConfig
from monitor.rules.events import ChangedConfig
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, make_settings, sent_to

CHAN = ChannelConfig(name="ops", url="json://127.0.0.1:1/x")


def run(
    sandbox: Sandbox,
    store: Store,
    clock: FakeClock,
    notifier: RecordingNotifier,
    channels: tuple[ChannelConfig, ...] = (CHAN,),
    **kw: Any,
) -> Any:
    return run_cycle(
        make_settings(sandbox, store.url, channels, **kw), store, notifier, clock=clock
    )


def healthy(sandbox: Sandbox) -> None:
    """Make every number clean, so each test controls exactly which findings exist."""
    far = "2027-06-01T00:00:00Z"
    for nid in list(sandbox.inventory.ids()):
        sandbox.inventory.update(
            nid,
            status="active",
            is_blocked=False,
            application_id="app",
            next_billing_date=far,
            expires_at=far,
            voice_enabled=True,
            capabilities={"voice": True, "sms": True, "mms": False, "fax": False},
            is_trial_number=False,
            aadhaar_verification_required=False,
            minimum_commitment_months=0,
        )
    # The sandbox keeps two customer accounts without numbers: give each an active one.
    last = list(sandbox.inventory.ids())[-len(sandbox.inventory.empty_account_ids) :]
    for nid, account in zip(last, sandbox.inventory.empty_account_ids, strict=True):
        sandbox.inventory.update(nid, account_id=account)


def test_announced_once_then_resolved(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, is_blocked=True)
    notifier = RecordingNotifier()
    out = run(sandbox, store, clock, notifier)
    assert out.ok and out.counts.findings_opened == 1 and out.digests == 1
    (msg,) = notifier.sent
    assert "1 new" in msg.title and "blocked" in msg.body

    clock.advance(days=7)  # still blocked: nothing new, nothing sent
    out = run(sandbox, store, clock, notifier)
    assert out.digests == 0 and len(notifier.sent) == 1

    sandbox.inventory.update(nid, is_blocked=False)
    clock.advance(days=7)
    out = run(sandbox, store, clock, notifier)
    assert out.counts.findings_resolved == 1
    assert len(notifier.sent) == 2 and "1 resolved" in notifier.sent[1].title
    rows = store.findings(clock(), include_closed=True)
    (f,) = [r for r in rows if r.rule == "blocked"]
    assert f.state == "resolved" and f.resolved_at == clock()


def test_resolved_notice_can_be_turned_off(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, is_blocked=True)
    notifier = RecordingNotifier()
    quiet = RulesConfig(changed=ChangedConfig(enabled=False))  # "was unblocked" would be news
    run(sandbox, store, clock, notifier, alerts={"resolved": False}, rules=quiet)
    sandbox.inventory.update(nid, is_blocked=False)
    out = run(sandbox, store, clock, notifier, alerts={"resolved": False}, rules=quiet)
    assert out.counts.findings_resolved == 1 and len(notifier.sent) == 1


def test_tiered_reminders_send_only_the_most_urgent(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, next_billing_date="2026-12-20T00:00:00Z")  # 27 days ahead
    rules = RulesConfig(billing_due=DateRuleConfig(within_days=30, reminders=(30, 14, 7, 1)))
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, rules=rules)
    assert "[30d]" in notifier.sent[0].body
    clock.advance(days=7)  # 20 days: still tier 30, quiet
    assert run(sandbox, store, clock, notifier, rules=rules).digests == 0
    clock.advance(days=14)  # 6 days: crossed 14 and 7 in one week → one reminder, tier 7
    run(sandbox, store, clock, notifier, rules=rules)
    last = notifier.sent[-1]
    assert len(notifier.sent) == 2 and last.title == "did-monitor: 1 reminder"
    assert "[7d]" in last.body and "[14d]" not in last.body
    (f,) = store.findings(clock())
    assert f.tier == 7


def test_billing_date_moving_updates_the_same_finding(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, next_billing_date="2026-11-26T00:00:00Z")
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier)
    (before,) = store.findings(clock())
    sandbox.inventory.update(nid, next_billing_date="2026-11-28T00:00:00Z")
    run(sandbox, store, clock, notifier)
    (after,) = store.findings(clock())
    assert after.id == before.id and "2026-11-28" in after.message
    assert len(notifier.sent) == 1  # not re-announced


def test_silence_holds_back_then_releases(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    from datetime import timedelta

    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    item = sandbox.inventory.update(nid, is_blocked=True)
    store.add_silence("blocked", clock() + timedelta(days=3), "known", clock(), e164=item["e164"])
    notifier = RecordingNotifier()
    out = run(sandbox, store, clock, notifier)
    assert out.counts.findings_opened == 1 and notifier.sent == []
    assert store.findings(clock())[0].state == "silenced"
    clock.advance(days=4)  # the silence expired: announced now
    run(sandbox, store, clock, notifier)
    assert len(notifier.sent) == 1 and "1 new" in notifier.sent[0].title


def test_routing_by_severity_rule_account_and_default(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    ids = list(sandbox.inventory.ids())
    a = sandbox.inventory.update(ids[0], is_blocked=True)
    b = sandbox.inventory.update(ids[1], next_billing_date="2026-11-25T00:00:00Z")
    channels = (
        ChannelConfig(name="critical", url="json://h/1", min_severity="critical"),
        ChannelConfig(
            name="customer", url="json://h/2", accounts=(b["account_id"],), rules=("billing_due",)
        ),
        ChannelConfig(name="catchall", url="json://h/3", default=True),
    )
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, channels)
    assert a["e164"] in sent_to(notifier, "critical")[0].body
    assert b["e164"] not in sent_to(notifier, "critical")[0].body
    assert b["e164"] in sent_to(notifier, "customer")[0].body
    assert a["e164"] not in sent_to(notifier, "customer")[0].body
    assert sent_to(notifier, "catchall") == []  # every finding had a specific route


def test_failed_delivery_is_kept_and_retried(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    from monitor.alerts.deliver import deliver_due
    from monitor.store import DELIVERIES

    healthy(sandbox)
    sandbox.inventory.update(next(iter(sandbox.inventory.ids())), is_blocked=True)
    notifier = RecordingNotifier(failing={"ops"})
    settings = make_settings(sandbox, store.url, (CHAN,))
    out = run_cycle(settings, store, notifier, clock=clock)
    assert out.ok and out.delivery_failures == 1
    assert notifier.sent == []
    assert deliver_due(store, settings, notifier, clock) == []  # not due before its backoff
    notifier.failing.clear()
    clock.advance(minutes=10)
    (outcome,) = deliver_due(store, settings, notifier, clock)
    assert outcome.ok
    assert notifier.sent[0].title.startswith("(retry 1) ")
    with store.engine.connect() as conn:
        (row,) = conn.execute(sa.select(DELIVERIES).where(DELIVERIES.c.kind == "digest")).mappings()
    assert row["status"] == "sent" and row["attempts"] == 2


def test_failing_channel_is_reported_through_the_others(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    from monitor.alerts.deliver import deliver_due

    channels = (CHAN, ChannelConfig(name="backup", url="json://h/9"))
    settings = make_settings(
        sandbox, store.url, channels, alerts={"failing_after": 2, "retry_backoff_seconds": 1}
    )
    notifier = RecordingNotifier(failing={"ops"})
    run_cycle(settings, store, notifier, clock=clock)
    clock.advance(minutes=1)
    deliver_due(store, settings, notifier, clock)
    failing = [m for m in sent_to(notifier, "backup") if "channel failing" in m.title]
    assert len(failing) == 1 and "ops" in failing[0].body
    clock.advance(minutes=5)
    deliver_due(store, settings, notifier, clock)  # third failure: not reported again
    assert len([m for m in notifier.sent if "channel failing" in m.title]) == 1


def test_sweep_failure_alerts_every_channel(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sandbox.faults.add(times=-1, status=401)
    notifier = RecordingNotifier()
    out = run(sandbox, store, clock, notifier)
    assert not out.ok and "401" in (out.error or "")
    (msg,) = notifier.sent
    assert msg.title == "did-monitor: sweep failed" and msg.level == "failure"
    assert "No finding was resolved" in msg.body


def test_customer_channels_see_only_their_own(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    ids = list(sandbox.inventory.ids())
    mine = sandbox.inventory.update(ids[0], is_blocked=True)
    other = sandbox.inventory.update(ids[1], is_blocked=True)
    if other["account_id"] == mine["account_id"]:
        other = sandbox.inventory.update(ids[1], account_id="MA_OTHER01")
    own = sum(
        1
        for n in sandbox.inventory.ids()
        if sandbox.inventory.item(sandbox.inventory.index_of(n))["account_id"] == mine["account_id"]
    )
    channels = (
        CHAN,
        ChannelConfig(name="customer", url="json://h/c", accounts=(mine["account_id"],)),
    )
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, channels)
    (msg,) = sent_to(notifier, "customer")
    assert mine["e164"] in msg.body and other["e164"] not in msg.body
    assert f"Numbers swept: {own}" in msg.body and own < 150
    # service messages (sweep failed) are not sent to customers
    sandbox.faults.add(times=-1, status=500)
    run(sandbox, store, clock, notifier, channels, vobiz={"max_retries": 0})
    assert [m.title for m in sent_to(notifier, "customer")] == [msg.title]
    assert any("sweep failed" in m.title for m in sent_to(notifier, "ops"))


def test_missing_credentials_are_a_config_error_before_any_sweep(store: Store) -> None:
    import pytest

    from monitor.errors import ConfigError

    settings = make_settings(None, store.url, (CHAN,))
    with pytest.raises(ConfigError):
        run_cycle(settings, store, RecordingNotifier(), clock=FakeClock())
    assert store.last_sweep() is None  # no sweep row left "running"


def test_an_unexpected_error_is_a_failed_sweep_with_an_alert(
    sandbox: Sandbox, store: Store, clock: FakeClock, monkeypatch: Any
) -> None:
    import monitor.store.writer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the findings step")

    monkeypatch.setattr(monitor.store.writer.SweepWriter, "apply_findings", broken)
    notifier = RecordingNotifier()
    out = run(sandbox, store, clock, notifier)
    assert not out.ok and "RuntimeError" in (out.error or "")
    assert store.last_sweep()["status"] == "failed"  # type: ignore[index]
    assert [m.title for m in notifier.sent] == ["did-monitor: sweep failed"]
    assert store.findings(clock()) == []  # rolled back with the rest


def test_a_number_changing_hands_moves_its_finding(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, is_blocked=True, account_id="MA_OLDOWNER")
    channels = (
        ChannelConfig(name="old", url="json://h/o", accounts=("MA_OLDOWNER",)),
        ChannelConfig(name="new", url="json://h/n", accounts=("MA_NEWOWNER",)),
    )
    notifier = RecordingNotifier()
    quiet = RulesConfig(changed=ChangedConfig(enabled=False))  # the move itself is news too
    run(sandbox, store, clock, notifier, channels, rules=quiet)
    sandbox.inventory.update(nid, account_id="MA_NEWOWNER")
    run(sandbox, store, clock, notifier, channels, rules=quiet)
    assert [m.title for m in sent_to(notifier, "old")] == [
        "did-monitor: 1 new",
        "did-monitor: 1 resolved",
    ]
    assert [m.title for m in sent_to(notifier, "new")] == ["did-monitor: 1 new"]
    (open_finding,) = store.findings(clock())
    assert open_finding.account_id == "MA_NEWOWNER"


def test_a_partial_sweep_leaves_a_number_that_changed_hands_to_the_next_complete_one(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid, unreadable = list(sandbox.inventory.ids())[:2]
    at = sandbox.inventory.index_of(unreadable)
    sandbox.inventory.update(nid, is_blocked=True, account_id="MA_OLDOWNER")
    channels = (
        ChannelConfig(name="old", url="json://h/o", accounts=("MA_OLDOWNER",)),
        ChannelConfig(name="new", url="json://h/n", accounts=("MA_NEWOWNER",)),
    )
    notifier = RecordingNotifier()
    quiet = RulesConfig(changed=ChangedConfig(enabled=False))
    run(sandbox, store, clock, notifier, channels, rules=quiet)
    sandbox.inventory.update(nid, account_id="MA_NEWOWNER")
    sandbox.inventory.update(at, id=None)  # one item unreadable: a partial sweep
    clock.advance(days=1)
    out = run(sandbox, store, clock, notifier, channels, rules=quiet)
    assert out.partial and "nothing was resolved" in out.partial
    assert out.counts.findings_resolved == 0 and out.counts.findings_opened == 0
    (still,) = store.findings(clock())
    assert still.account_id == "MA_OLDOWNER"  # not resolved, not handed over yet
    assert not any("resolved" in m.title for m in notifier.sent)
    sandbox.inventory.update(at, id=unreadable)
    clock.advance(days=1)
    out = run(sandbox, store, clock, notifier, channels, rules=quiet)  # complete: it moves now
    assert out.partial is None and out.counts.findings_resolved == 1
    assert [m.title for m in sent_to(notifier, "old")][-1] == "did-monitor: 1 resolved"
    assert [m.title for m in sent_to(notifier, "new")] == ["did-monitor: 1 new"]
    (moved,) = store.findings(clock())
    assert moved.account_id == "MA_NEWOWNER"


def test_a_due_date_moved_later_rearms_the_reminders(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    rules = RulesConfig(billing_due=DateRuleConfig(within_days=30, reminders=(30, 7)))
    sandbox.inventory.update(nid, next_billing_date="2026-11-27T00:00:00Z")  # 4 days: tier 7
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, rules=rules)
    assert "[7d]" in notifier.sent[-1].body
    sandbox.inventory.update(nid, next_billing_date="2026-12-15T00:00:00Z")  # renewed
    clock.advance(days=1)  # 21 days ahead now
    run(sandbox, store, clock, notifier, rules=rules)
    assert len(notifier.sent) == 2 and "[30d]" in notifier.sent[-1].body  # tiers count again
    clock.advance(days=15)  # 6 days before the new date: tier 7 is announced again
    run(sandbox, store, clock, notifier, rules=rules)
    assert len(notifier.sent) == 3 and "[7d]" in notifier.sent[-1].body


def test_resolved_reaches_every_channel_that_was_told_after_routing_changed(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, next_billing_date="2026-11-27T00:00:00Z")  # 4 days: warning
    channels = (
        ChannelConfig(name="pager", url="json://h/1", min_severity="critical"),
        ChannelConfig(name="ops", url="json://h/2", default=True),
    )
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, channels)
    assert [m.title for m in sent_to(notifier, "ops")] == ["did-monitor: 1 new"]
    clock.advance(days=7)  # past due: critical, the pager's now
    run(sandbox, store, clock, notifier, channels)
    assert [m.title for m in sent_to(notifier, "pager")] == ["did-monitor: 1 new"]
    sandbox.inventory.update(nid, next_billing_date="2027-06-01T00:00:00Z")  # paid
    clock.advance(days=7)
    out = run(sandbox, store, clock, notifier, channels)
    assert out.counts.findings_resolved == 1
    assert sent_to(notifier, "pager")[-1].title == "did-monitor: 1 resolved"
    assert [m.title for m in sent_to(notifier, "ops")] == [
        "did-monitor: 1 new",
        "did-monitor: 1 resolved",
    ]


def test_a_rule_switched_off_is_not_announced_to_a_channel_added_later(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, is_trial_number=True)
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, ())  # no channel yet: the finding opens unannounced
    assert [f.rule for f in store.findings(clock())] == ["trial_number"]
    clock.advance(days=7)
    off = RulesConfig.model_validate({"trial_number": {"enabled": False}})
    out = run(sandbox, store, clock, notifier, rules=off)  # switched off, and a channel added
    assert out.ok and out.digests == 0 and notifier.sent == []


def test_a_due_date_moved_later_within_its_tier_is_not_announced_again(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    healthy(sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    rules = RulesConfig(billing_due=DateRuleConfig(within_days=14, reminders=(14, 7, 1)))
    sandbox.inventory.update(nid, next_billing_date="2026-11-28T00:00:00Z")  # 5 days: tier 7
    notifier = RecordingNotifier()
    run(sandbox, store, clock, notifier, rules=rules)
    assert "[7d]" in notifier.sent[-1].body
    clock.advance(days=1)
    sandbox.inventory.update(nid, next_billing_date="2026-11-28T09:00:00Z")  # same day, later
    assert run(sandbox, store, clock, notifier, rules=rules).digests == 0
    clock.advance(hours=1)
    sandbox.inventory.update(nid, next_billing_date="2026-11-29T09:00:00Z")  # a day later
    assert run(sandbox, store, clock, notifier, rules=rules).digests == 0  # still tier 7
    clock.advance(days=4)  # 1 day before the new date: tier 1 is crossed
    run(sandbox, store, clock, notifier, rules=rules)
    assert len(notifier.sent) == 2 and "[1d]" in notifier.sent[-1].body
    clock.advance(hours=1)
    sandbox.inventory.update(nid, next_billing_date="2026-12-03T09:00:00Z")  # 5 days: tier 7
    run(sandbox, store, clock, notifier, rules=rules)  # back out of tier 1: tier 7 anew
    assert len(notifier.sent) == 3 and "[7d]" in notifier.sent[-1].body
    clock.advance(days=4)  # tier 1 crossed again, for the new date: announced again
    run(sandbox, store, clock, notifier, rules=rules)
    assert len(notifier.sent) == 4 and "[1d]" in notifier.sent[-1].body


def test_a_sweep_stopped_by_ctrl_c_says_so_on_its_row(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """^C mid-sweep: rolled back, and the row names the interruption (KeyboardInterrupt has no
    message of its own)."""
    import pytest

    from tests.conftest import sweep_row

    def interrupt(_progress: object) -> None:
        raise KeyboardInterrupt

    settings = make_settings(sandbox, store.url, (CHAN,))
    with pytest.raises(KeyboardInterrupt):
        run_cycle(settings, store, RecordingNotifier(), clock=clock, progress=interrupt)
    row = sweep_row(store, 1)
    assert row["status"] == "aborted"
    assert row["error"] == "interrupted (KeyboardInterrupt): rolled back"
