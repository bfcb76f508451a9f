"""Routing and digest planning (pure), and test alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from monitor.alerts.deliver import send_test
from monitor.alerts.outbox import AnnounceState
from monitor.alerts.plan import matches, plan_digests, route
from monitor.config import AlertsConfig, ChannelConfig, RulesConfig, Settings
from monitor.lifecycle import Announced
from monitor.testing import RecordingNotifier

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def finding(fid: int, **kw: Any) -> dict[str, Any]:
    base = {
        "id": fid,
        "rule": "blocked",
        "subject": f"n{fid}",
        "severity": "critical",
        "e164": f"+91{fid:010d}",
        "account_id": "MA_A",
        "message": "number is blocked",
        "tags": [],
        "monthly_fee": Decimal("1.5"),
        "currency": "USD",
        "tier": None,
    }
    return base | kw


def test_matches_each_filter() -> None:
    f = finding(1, severity="warning", rule="billing_due", account_id="MA_B", tags=["vip"])
    assert matches(ChannelConfig(name="a", url="json://x"), f)
    assert not matches(ChannelConfig(name="a", url="json://x", min_severity="critical"), f)
    assert not matches(ChannelConfig(name="a", url="json://x", rules=("blocked",)), f)
    assert not matches(ChannelConfig(name="a", url="json://x", accounts=("MA_A",)), f)
    assert matches(ChannelConfig(name="a", url="json://x", tags=("vip", "x")), f)
    assert not matches(ChannelConfig(name="a", url="json://x", tags=("sales",)), f)


def test_default_route_takes_only_the_unmatched() -> None:
    channels = (
        ChannelConfig(name="vip", url="json://x", tags=("vip",)),
        ChannelConfig(name="rest", url="json://y", default=True),
        ChannelConfig(name="off", url="json://z", enabled=False),
    )
    assert route(channels, finding(1, tags=["vip"])) == ["vip"]
    assert route(channels, finding(2)) == ["rest"]


def state(
    open_rows: list[dict[str, Any]],
    resolved: list[dict[str, Any]] | None = None,
    told: dict[tuple[int, str], Announced] | None = None,
) -> AnnounceState:
    return AnnounceState(open=open_rows, resolved_now=resolved or [], told=told or {})  # type: ignore[arg-type]


def test_quiet_when_nothing_changed() -> None:
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),))
    told = {(1, "c"): Announced(opened=True)}
    assert plan_digests(state([finding(1)], told=told), s, NOW, 10) == []


def test_new_resolved_and_still_open_counts() -> None:
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),))
    told = {(1, "c"): Announced(opened=True), (3, "c"): Announced(opened=True)}
    (plan,) = plan_digests(state([finding(1), finding(2)], [finding(3)], told), s, NOW, 99)
    d = plan.digest
    assert [i.e164 for i in d.new] == [finding(2)["e164"]]
    assert [i.e164 for i in d.resolved] == [finding(3)["e164"]]
    assert d.still_open == 1 and d.numbers_swept == 99
    assert d.at_risk == {"USD": Decimal("3.0")}
    assert sorted(n["event"] for n in plan.notifications) == ["opened", "resolved"]


def test_unreadable_dates_are_a_partner_digests_note_apart_from_the_caveat() -> None:
    s = Settings(
        channels=(
            ChannelConfig(name="ops", url="json://x"),
            ChannelConfig(name="cust", url="json://y", accounts=("MA_A",)),
        )
    )
    note = "1 number has an unreadable expires_at: +919"
    plans = plan_digests(state([finding(1)]), s, NOW, 9, {"MA_A": 1}, "2 item(s)", note)
    by_name = {p.channel.name: p.digest for p in plans}
    assert (by_name["ops"].caveat, by_name["ops"].notes) == ("2 item(s)", note)
    assert (by_name["cust"].caveat, by_name["cust"].notes) == ("2 item(s)", "")


def test_resolved_never_announced_is_not_announced() -> None:
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),))
    assert plan_digests(state([], [finding(3)]), s, NOW, 1) == []


def test_resolved_notices_can_be_disabled() -> None:
    s = Settings(
        channels=(ChannelConfig(name="c", url="json://x"),), alerts=AlertsConfig(resolved=False)
    )
    told = {(3, "c"): Announced(opened=True)}
    assert plan_digests(state([], [finding(3)], told), s, NOW, 1) == []


def test_reminder_only_when_tier_gets_more_urgent() -> None:
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),))
    told = {(1, "c"): Announced(opened=True, tier=14)}
    assert plan_digests(state([finding(1, tier=14)], told=told), s, NOW, 1) == []
    (plan,) = plan_digests(state([finding(1, tier=7)], told=told), s, NOW, 1)
    assert len(plan.digest.reminders) == 1 and plan.notifications[0]["event"] == "reminded"


def test_send_test_reports_each_channel() -> None:
    s = Settings(
        channels=(
            ChannelConfig(name="ok", url="json://x"),
            ChannelConfig(name="bad", url="mailto://user:pw@example.com"),
        )
    )
    notifier = RecordingNotifier(failing={"bad"})
    results = dict(send_test(s, notifier))
    assert results["ok"] is None and "simulated" in (results["bad"] or "")
    assert notifier.sent[0].body_format == "markdown"


def test_backoff_never_overflows_a_date() -> None:
    from datetime import timedelta

    from monitor.alerts.deliver import backoff
    from monitor.config import AlertsConfig

    s = Settings(
        alerts=AlertsConfig(retry_backoff_seconds=7 * 86_400, retry_backoff_max_seconds=30 * 86_400)
    )
    assert backoff(s, 10_000) == timedelta(days=30)
    assert backoff(Settings(), 1) == timedelta(minutes=5)


def test_resolved_goes_to_every_channel_told_of_it_whatever_the_routing_now() -> None:
    # Opened as a warning (ops, the default, was told), then critical (pager was told): once
    # resolved, both hear it, though only pager matches it now. A channel told it resolved
    # already, or never told, or switched off, hears nothing.
    s = Settings(
        channels=(
            ChannelConfig(name="pager", url="json://p", min_severity="critical"),
            ChannelConfig(name="ops", url="json://o", default=True),
            ChannelConfig(name="quiet", url="json://q", rules=("expiring",)),
            ChannelConfig(name="done", url="json://d", rules=("expiring",)),
            ChannelConfig(name="off", url="json://f", enabled=False),
        )
    )
    told = {
        (3, "pager"): Announced(opened=True),
        (3, "ops"): Announced(opened=True),
        (3, "done"): Announced(opened=True, resolved=True),
        (3, "off"): Announced(opened=True),
    }
    row = finding(3, rule="billing_due", severity="critical")
    plans = plan_digests(state([], [row], told), s, NOW, 1)
    by_name = {p.channel.name: p for p in plans}
    assert sorted(by_name) == ["ops", "pager"]
    for plan in plans:
        assert [i.e164 for i in plan.digest.resolved] == [row["e164"]]
        assert [n["event"] for n in plan.notifications] == ["resolved"]


def test_findings_of_a_rule_switched_off_are_not_planned() -> None:
    # Lifecycle leaves a switched-off rule's findings open ("left as they were"): a channel not
    # told of them yet must not hear them as new, nor count them still open or at risk. That
    # holds for a rule switched off for one account, and for a rule no longer in the config.
    rules = RulesConfig.model_validate(
        {
            "trial_number": {"enabled": False},
            "blocked": {"override": [{"accounts": ["MA_B"], "enabled": False}]},
        }
    )
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),), rules=rules)
    told = {(1, "c"): Announced(opened=True)}
    rows = [
        finding(1),  # blocked, announced: still open
        finding(2, rule="trial_number", severity="info"),  # switched off
        finding(3, account_id="MA_B"),  # blocked, switched off for MA_B
        finding(4, rule="gone_custom"),  # a [[rules.custom]] rule since removed
        finding(5),  # blocked: new
    ]
    (plan,) = plan_digests(state(rows, told=told), s, NOW, 9)
    d = plan.digest
    assert [i.e164 for i in d.new] == [finding(5)["e164"]]
    assert d.still_open == 1
    assert d.at_risk == {"USD": Decimal("3.0")}  # findings 1 and 5
    assert [n["finding_id"] for n in plan.notifications] == [5]
    quiet = {**told, (5, "c"): Announced(opened=True)}
    assert plan_digests(state(rows, told=quiet), s, NOW, 9) == []


def test_still_open_counts_only_the_findings_not_listed() -> None:
    # One reminder, one new, one announced and quiet: only the quiet one is "other, still open".
    s = Settings(channels=(ChannelConfig(name="c", url="json://x"),))
    told = {(1, "c"): Announced(opened=True, tier=14), (3, "c"): Announced(opened=True)}
    rows = [finding(1, tier=7), finding(2), finding(3)]
    (plan,) = plan_digests(state(rows, told=told), s, NOW, 3)
    d = plan.digest
    assert (len(d.new), len(d.reminders), d.still_open) == (1, 1, 1)
    (only,) = plan_digests(state([finding(1, tier=7)], told=told), s, NOW, 1)
    assert len(only.digest.reminders) == 1 and only.digest.still_open == 0
