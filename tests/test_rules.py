from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import RulesConfig
from monitor.model import parse_number
from monitor.rules import REGISTRY, Evaluator, RuleContext, evaluate, tier_for
from monitor.rules.base import RuleConfig
from monitor.rules.builtin import DateRuleConfig

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
    # Only not_active says so; billing, routing and the other number rules stay quiet.
    assert [d.rule for d in evaluate([rec], ctx())] == ["not_active"]
    assert evaluate([rec], ctx(not_active=RuleConfig(enabled=False))) == []


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


# --- the rules added for partners ----------------------------------------------------------


def drafts_of(rec: Any, **rules: Any) -> dict[str, Any]:
    return {d.rule: d for d in evaluate([rec], ctx(**rules))}


@pytest.mark.parametrize(
    ("status", "flagged"),
    [
        ("active", False),
        ("blocked", False),  # the blocked rule's business
        ("pending_purchase", True),
        ("pending_release", True),
        ("released", True),
        ("inactive", True),
        ("expired", True),
        ("PORTING", True),  # a status the monitor does not know
        (None, True),  # no status at all
    ],
)
def test_not_active(status: str | None, flagged: bool) -> None:
    found = drafts_of(num(status=status))
    assert ("not_active" in found) is flagged
    if status == "PORTING":
        assert (
            "porting" in found["not_active"].message and "not know" in found["not_active"].message
        )


@pytest.mark.parametrize(
    ("required", "verified", "flagged"),
    [
        (True, False, True),
        (True, True, False),
        (False, False, False),
        ("true", None, True),
        (None, None, False),
        (True, "yes", False),
        ({"odd": 1}, False, False),
    ],
)
def test_kyc_pending(required: Any, verified: Any, flagged: bool) -> None:
    rec = num(aadhaar_verification_required=required, aadhaar_verified=verified)
    assert ("kyc_pending" in drafts_of(rec)) is flagged


@pytest.mark.parametrize(
    ("fields", "flagged"),
    [
        ({"voice_enabled": False}, True),
        ({"capabilities": {"voice": False}}, True),
        ({"voice_enabled": True, "capabilities": {"voice": True}}, False),
        ({"voice_enabled": False, "application_id": None}, False),  # no application: not meant
        ({"voice_enabled": None, "capabilities": None}, False),
        ({"capabilities": ["voice"]}, False),
        ({"voice_enabled": "false"}, True),
    ],
)
def test_voice_disabled(fields: dict[str, Any], flagged: bool) -> None:
    assert ("voice_disabled" in drafts_of(num(**fields))) is flagged


def test_trial_number_is_info() -> None:
    found = drafts_of(num(is_trial_number=True))
    assert found["trial_number"].severity == "info"
    assert "trial_number" not in drafts_of(num(is_trial_number=False))
    assert "trial_number" not in drafts_of(num(is_trial_number="maybe"))


@pytest.mark.parametrize(
    ("purchased", "months", "flagged"),
    [
        ("2026-01-10T00:00:00Z", 11, True),  # ends 2026-12-10: 17 days from NOW
        ("2026-01-10T00:00:00Z", 12, False),  # ends 2027-01-10: 48 days, beyond 30
        ("2025-01-10T00:00:00Z", 3, False),  # long over
        ("2026-01-10T00:00:00Z", 0, False),
        ("2026-01-10T00:00:00Z", "11", True),
        ("2026-01-10T00:00:00Z", 1.5, False),  # not a whole number of months
        ("not a date", 11, False),
        (None, 11, False),
    ],
)
def test_commitment_ends(purchased: Any, months: Any, flagged: bool) -> None:
    rec = num(purchased_at=purchased, minimum_commitment_months=months)
    found = drafts_of(rec)
    assert ("commitment_ends" in found) is flagged
    if flagged:
        assert "ends in 17 day(s), on 2026-12-10" in found["commitment_ends"].message


def test_commitment_end_on_a_short_month_is_its_last_day() -> None:
    from monitor.rules.builtin import add_months

    assert add_months(datetime(2026, 1, 31).date(), 1).isoformat() == "2026-02-28"
    assert add_months(datetime(2024, 1, 31).date(), 1).isoformat() == "2024-02-29"
    assert add_months(datetime(2026, 11, 30).date(), 14).isoformat() == "2028-01-30"


def test_dates_are_days_in_the_rules_time_zone() -> None:
    """18:30 UTC is already the next day in Asia/Kolkata (UTC+5:30)."""
    from zoneinfo import ZoneInfo

    kolkata = ZoneInfo("Asia/Kolkata")
    rec = num(next_billing_date="2026-11-30T18:30:00Z")
    rules = RulesConfig(billing_due=DateRuleConfig(within_days=7))
    utc_noon = datetime(2026, 11, 23, 12, tzinfo=UTC)
    (in_utc,) = evaluate([rec], RuleContext(now=utc_noon, config=rules))
    assert "in 7 day(s), on 2026-11-30" in in_utc.message
    assert evaluate([rec], RuleContext(now=utc_noon, config=rules, tz=kolkata)) == []  # 8 days
    # 18:29 UTC on the 23rd is 23:59 in Kolkata, still 8 days; a minute later it is the 24th.
    late = datetime(2026, 11, 23, 18, 29, tzinfo=UTC)
    assert evaluate([rec], RuleContext(now=late, config=rules, tz=kolkata)) == []
    midnight = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)
    (d,) = evaluate([rec], RuleContext(now=midnight, config=rules, tz=kolkata))
    assert "in 7 day(s), on 2026-12-01" in d.message


def test_include_and_exclude_scope_every_rule() -> None:
    from monitor.rules.base import Scope

    rec = num(is_blocked=True, country="IN", region="Delhi", tags=["vip", "test"])
    only_us = RuleConfig(severity="critical", include=Scope(countries=("us",)))
    assert "blocked" not in drafts_of(rec, blocked=only_us)
    only_in = RuleConfig(severity="critical", include=Scope(countries=("in",), regions=("delhi",)))
    assert "blocked" in drafts_of(rec, blocked=only_in)
    no_test = RuleConfig(exclude=Scope(tags=("test",)))
    assert "blocked" not in drafts_of(rec, blocked=no_test)
    other_account = RuleConfig(include=Scope(accounts=("MA_B",)))
    assert "blocked" not in drafts_of(rec, blocked=other_account)
    not_blocked_status = RuleConfig(exclude=Scope(statuses=("ACTIVE",)))
    assert "blocked" not in drafts_of(rec, blocked=not_blocked_status)


def test_per_account_overrides() -> None:
    rules = RulesConfig.model_validate(
        {
            "billing_due": {
                "within_days": 7,
                "override": [{"accounts": ["MA_BIG"], "within_days": 21, "severity": "info"}],
            },
            "blocked": {"override": [{"accounts": ["MA_QUIET"], "enabled": False}]},
        }
    )
    due = day(15)
    small = num(next_billing_date=due, is_blocked=True)
    big = num(id="n2", account_id="MA_BIG", next_billing_date=due)
    quiet = num(id="n3", account_id="MA_QUIET", is_blocked=True)
    found = {(d.rule, d.subject): d for d in evaluate([small, big, quiet], RuleContext(NOW, rules))}
    assert ("billing_due", "n1") not in found  # 15 days > 7
    assert found[("billing_due", "n2")].severity == "info"  # 15 days <= 21 for MA_BIG
    assert ("blocked", "n1") in found and ("blocked", "n3") not in found


def test_a_rule_enabled_only_by_an_override() -> None:
    rules = RulesConfig.model_validate(
        {"trial_number": {"enabled": False, "override": [{"accounts": ["MA_A"], "enabled": True}]}}
    )
    recs = [num(is_trial_number=True), num(id="n2", account_id="MA_B", is_trial_number=True)]
    assert [d.subject for d in evaluate(recs, RuleContext(NOW, rules))] == ["n1"]


def test_a_failing_rule_is_recorded_and_the_rest_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from monitor.rules.base import REGISTRY as REG

    def broken(s: Any, cfg: Any, c: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(REG, "trial_number", replace(REG["trial_number"], fn=broken))
    ev = Evaluator(ctx())
    ev.feed([num(is_blocked=True), num(id="n2", is_blocked=True)])
    assert {k[0] for k in ev.drafts} == {"blocked"}
    assert ev.errors["trial_number"].count == 2 and "boom" in ev.errors["trial_number"].error


def test_messages_carry_no_markup_from_the_api() -> None:
    rec = num(status="<b>[x](http://e.vil)</b>`@here`")
    (d,) = [d for d in evaluate([rec], ctx()) if d.rule == "not_active"]
    for bad in "<>[]`":
        assert bad not in d.message


# --- no rule raises, whatever the item ------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "id",
        "e164",
        "account_id",
        "status",
        "application_id",
        "voice_enabled",
        "capabilities",
        "is_trial_number",
        "aadhaar_verification_required",
        "aadhaar_verified",
        "minimum_commitment_months",
        "purchased_at",
        "created_at",
        "next_billing_date",
        "expires_at",
        "monthly_fee",
        "tags",
        "region",
        "country",
        "is_blocked",
    ]
)
ITEMS = st.dictionaries(FIELDS, JSON | st.sampled_from(["2026-11-30T18:30:00Z", "2026-12-01"]))
USER_RULES = RulesConfig.model_validate(
    {
        "custom": [
            {
                "id": "everything",
                "message": "{e164} {capabilities.voice} {tags.0} {status}",
                "when": {
                    "any": [
                        {"path": "capabilities.voice", "eq": False},
                        {"path": "tags.0", "regex": "^v"},
                        {"path": "monthly_fee", "gt": 1},
                        {"path": "next_billing_date", "days_until_lt": 3},
                        {"path": "purchased_at", "days_since_gt": 30},
                        {"path": "status", "not_in": ["active", 1, True]},
                        {"not": {"path": "region", "present": True}},
                    ]
                },
            }
        ]
    }
)


@given(item=ITEMS)
@settings(max_examples=300, deadline=None)
def test_no_rule_raises_on_any_json_shaped_item(item: dict[str, Any]) -> None:
    rec = parse_number({"id": "n1"} | item)
    if rec is None:
        return
    ev = Evaluator(RuleContext(now=NOW, config=USER_RULES))
    ev.feed([rec])
    ev.finish()
    assert ev.errors == {}
    for d in ev.drafts.values():
        assert d.message and "\n" not in d.message


# --- the registry is the one list of built-in rules ------------------------------------------


def test_every_registered_rule_has_a_table_and_every_table_a_rule() -> None:
    tables = set(RulesConfig.model_fields) - {"timezone", "custom"}
    assert tables == REGISTRY.keys()
    for rule_id, spec in REGISTRY.items():
        assert RulesConfig.model_fields[rule_id].annotation is type(spec.defaults), rule_id
        assert isinstance(spec.defaults, RuleConfig)


def test_each_rules_defaults_are_those_declared_beside_its_function() -> None:
    """Unset, bare, or with one key set, a table has the defaults the rule registered with."""
    for rule_id, spec in REGISTRY.items():
        assert RulesConfig().rule(rule_id) == spec.defaults, rule_id
        assert RulesConfig.model_validate({rule_id: {}}).rule(rule_id) == spec.defaults, rule_id
        off = RulesConfig.model_validate({rule_id: {"enabled": False}}).rule(rule_id)
        assert off == spec.defaults.model_copy(update={"enabled": False}), rule_id


def test_the_readme_documents_each_registered_rule_with_its_defaults() -> None:
    """The README's table of rules lists the registry in order, with each rule's default
    severity and keys as the rule declares them."""
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Rules\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| .*? \| ([a-z]+)[^|]* \|(.*)\|$", section, re.M)
    assert [rule_id for rule_id, _, _ in rows] == list(REGISTRY)
    for rule_id, severity, keys in rows:
        defaults = REGISTRY[rule_id].defaults
        assert severity == defaults.severity, rule_id
        documented = {
            k: v for key in re.findall(r"`([^`]+)`", keys) for k, v in tomllib.loads(key).items()
        }
        own = defaults.model_dump(mode="json", exclude=set(RuleConfig.model_fields))
        assert documented == own, rule_id
