from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.config import DateRuleConfig, RuleConfig, RulesConfig
from monitor.model import parse_number
from monitor.rules import REGISTRY, Evaluator, RuleContext, evaluate, tier_for

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def num(**fields: Any) -> Any:
    base = {
        "id": "n1",
        "e164": "+911234567890",
        "account_id": "MA_A",
        "status": "active",
        "application_id": "app-1",
        "is_blocked": False,
    }
    rec = parse_number(base | fields)
    assert rec is not None
    return rec


def ctx(**rules: Any) -> RuleContext:
    return RuleContext(now=NOW, config=RulesConfig(**rules))


def day(n: int) -> str:
    return (NOW + timedelta(days=n)).isoformat()


def test_contract_rule_ids_exist() -> None:
    assert {"billing_due", "expiring", "missing_application", "blocked"} <= REGISTRY.keys()


def test_healthy_number_has_no_findings() -> None:
    assert evaluate([num(next_billing_date=day(30))], ctx()) == []


@pytest.mark.parametrize(("offset", "flagged"), [(-3, True), (0, True), (7, True), (8, False)])
def test_billing_due_window(offset: int, flagged: bool) -> None:
    drafts = evaluate([num(next_billing_date=day(offset))], ctx())
    assert [d.rule for d in drafts] == (["billing_due"] if flagged else [])


def test_billing_due_message_and_severity() -> None:
    (soon,) = evaluate([num(next_billing_date=day(3))], ctx())
    assert soon.severity == "warning" and "in 3 day(s)" in soon.message
    (past,) = evaluate([num(next_billing_date=day(-2))], ctx())
    assert past.severity == "critical" and "passed 2 day(s) ago" in past.message


def test_expiring_only_when_present() -> None:
    assert evaluate([num()], ctx()) == []
    (d,) = evaluate([num(expires_at=day(10))], ctx())
    assert d.rule == "expiring" and d.due_at is not None
    assert evaluate([num(expires_at=day(15))], ctx()) == []


@pytest.mark.parametrize("app", [None, ""])
def test_missing_application(app: object) -> None:
    (d,) = evaluate([num(application_id=app)], ctx())
    assert d.rule == "missing_application" and d.severity == "critical"


def test_missing_key_counts_as_missing_application() -> None:
    rec = parse_number({"id": "x", "e164": "+1", "status": "active"})
    assert rec is not None
    assert [d.rule for d in evaluate([rec], ctx())] == ["missing_application"]


def test_blocked_by_flag_or_status() -> None:
    assert [d.rule for d in evaluate([num(is_blocked=True)], ctx())] == ["blocked"]
    assert [d.rule for d in evaluate([num(status="blocked")], ctx())] == ["blocked"]


def test_released_numbers_are_not_nagged_about() -> None:
    rec = num(status="released", application_id=None, next_billing_date=day(1))
    assert evaluate([rec], ctx()) == []


def test_thresholds_severity_and_enabled_come_from_config() -> None:
    rec = num(next_billing_date=day(10), is_blocked=True)
    cfg = ctx(
        billing_due=DateRuleConfig(within_days=10, severity="info"),
        blocked=RuleConfig(enabled=False),
    )
    (d,) = evaluate([rec], cfg)
    assert d.rule == "billing_due" and d.severity == "info"


def test_tiers_pick_the_most_urgent_crossed() -> None:
    cfg = DateRuleConfig(within_days=30, reminders=(30, 14, 7, 1))
    assert cfg.reminders == (30, 14, 7, 1)
    assert tier_for(20, cfg) == 30
    assert tier_for(5, cfg) == 7
    assert tier_for(0, cfg) == 1
    assert tier_for(31, cfg) is None
    (d,) = evaluate(
        [num(next_billing_date=day(1))],
        ctx(billing_due=DateRuleConfig(within_days=30, reminders=(30, 14, 7, 1))),
    )
    assert d.tier == 1 and d.severity == "critical"


def test_identity_is_rule_and_number() -> None:
    ev = Evaluator(ctx())
    ev.feed([num(is_blocked=True, application_id=None)])
    assert set(ev.drafts) == {("blocked", "n1"), ("missing_application", "n1")}
    ev.feed([num(is_blocked=False, application_id=None)])  # re-read: replaces, never duplicates
    assert set(ev.drafts) == {("missing_application", "n1")}
    ev.keep_only(set())
    assert ev.drafts == {}


def test_rules_are_pure() -> None:
    rec = num(next_billing_date=day(2))
    assert evaluate([rec], ctx()) == evaluate([rec], ctx())
