"""The condition language of user-defined rules, and user rules end to end through the config."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.conditions import (
    REGEX_TIMEOUT,
    ConditionError,
    RegexTimeout,
    Today,
    compile_condition,
    compile_template,
)
from monitor.config import RulesConfig, load
from monitor.errors import ConfigError
from monitor.model import parse_number
from monitor.rules import Evaluator, RuleContext, evaluate
from monitor.sandbox import Sandbox

TODAY = Today(date(2026, 11, 23))
ITEM: dict[str, Any] = {
    "id": "n1",
    "e164": "+911234567890",
    "status": "active",
    "monthly_fee": "450.50",
    "setup_fee": 0,
    "capabilities": {"voice": True, "sms": False},
    "tags": ["vip", "sales"],
    "region": None,
    "next_billing_date": "2026-11-25T18:30:00Z",
    "purchased_at": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"path": "status", "eq": "active"}, True),
        ({"path": "status", "ne": "active"}, True is False),
        ({"path": "capabilities.sms", "eq": False}, True),
        ({"path": "capabilities.sms", "eq": 0}, False),  # booleans are not numbers
        ({"path": "monthly_fee", "eq": 450.5}, True),  # numeric text compares as a number
        ({"path": "monthly_fee", "gt": 400}, True),
        ({"path": "monthly_fee", "lt": 400}, False),
        ({"path": "setup_fee", "le": 0}, True),
        ({"path": "status", "lt": 3}, False),  # text is not a number: false, not an error
        ({"path": "status", "in": ["active", "pending_purchase"]}, True),
        ({"path": "status", "not_in": ["active"]}, False),
        ({"path": "tags.0", "eq": "vip"}, True),
        ({"path": "tags.5", "missing": True}, True),
        ({"path": "tags", "eq": ["vip", "sales"]}, True),
        ({"path": "region", "missing": True}, True),  # null is missing
        ({"path": "region", "present": True}, False),
        ({"path": "nowhere.deep", "missing": True}, True),
        ({"path": "e164", "regex": "^\\+91"}, True),
        ({"path": "setup_fee", "regex": "0"}, False),  # regex looks at text only
        ({"path": "next_billing_date", "days_until_lt": 3}, True),
        ({"path": "next_billing_date", "days_until_lt": 2}, False),
        ({"path": "purchased_at", "days_since_gt": 300}, True),
        ({"path": "status", "days_since_gt": 1}, False),
        ({"all": [{"path": "status", "eq": "active"}, {"path": "tags.1", "eq": "sales"}]}, True),
        ({"any": [{"path": "status", "eq": "x"}, {"path": "tags.1", "eq": "y"}]}, False),
        ({"not": {"path": "status", "eq": "x"}}, True),
        ([{"path": "status", "eq": "active"}, {"path": "region", "present": False}], True),
    ],
)
def test_operators(spec: Any, expected: bool) -> None:
    assert compile_condition(spec)(ITEM, TODAY) is expected


def test_days_count_in_the_given_time_zone() -> None:
    """2026-11-25T18:30Z is the 26th in Asia/Kolkata: 3 days from the 23rd there, 2 in UTC."""
    cond = compile_condition({"path": "next_billing_date", "days_until_lt": 3})
    assert cond(ITEM, Today(date(2026, 11, 23), UTC))
    assert not cond(ITEM, Today(date(2026, 11, 23), ZoneInfo("Asia/Kolkata")))


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ({"path": "status", "equals": "x"}, "when.equals", "unknown operator"),
        ({"path": "a..b", "eq": 1}, "when.path", "bad path"),
        ({"path": "", "eq": 1}, "when.path", "non-empty"),
        ({"path": "status"}, "when", "exactly one operator"),
        ({"path": "status", "eq": 1, "ne": 2}, "when", "exactly one operator"),
        ({"path": "status", "regex": "("}, "when.regex", "regular expression"),
        ({"path": "status", "in": []}, "when.in", "non-empty list"),
        ({"path": "status", "lt": "ten"}, "when.lt", "number"),
        ({"path": "status", "missing": "yes"}, "when.missing", "true or false"),
        ({"all": []}, "when.all", "non-empty list"),
        ({"all": [{"path": "x", "eq": 1}], "path": "y"}, "when", "cannot be mixed"),
        ({"any": [{"path": "x", "regex": "["}]}, "when.any[0].regex", "regular expression"),
        ({"path": "status", "eq": {"a": 1}}, "when.eq", "text, a number"),
        ("status == active", "when", "must be a table"),
    ],
)
def test_bad_conditions_name_the_key(spec: Any, key: str, words: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(spec)
    assert info.value.key == key and words in info.value.reason


def test_templates() -> None:
    render = compile_template("{e164} is {status}; voice {capabilities.voice}; {{literal}} {nope}")
    assert render(ITEM, str) == "+911234567890 is active; voice True; {literal} —"
    for bad in ("{a..b}", "{unclosed", "closed}", ""):
        with pytest.raises(ConditionError):
            compile_template(bad)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_user_rules_from_toml(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
[rules]
timezone = "Asia/Kolkata"

[[rules.custom]]
id = "vip_without_sms"
severity = "critical"
message = "VIP number {e164} cannot send SMS"
when = { all = [
  { path = "tags.0", eq = "vip" },
  { path = "capabilities.sms", eq = false },
] }
exclude = { countries = ["us"] }

[[rules.custom.override]]
accounts = ["MA_CALM"]
severity = "info"
""",
    )
    settings = load(str(cfg), environ={}).settings
    assert str(settings.rules_zone) == "Asia/Kolkata"
    recs = [
        parse_number(ITEM | {"account_id": "MA_A"}),
        parse_number(ITEM | {"id": "n2", "account_id": "MA_CALM"}),
        parse_number(ITEM | {"id": "n3", "country": "US"}),
        parse_number(ITEM | {"id": "n4", "tags": ["sales"]}),
    ]
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    found = evaluate([r for r in recs if r], RuleContext(now, settings.rules))
    mine = {d.subject: d for d in found if d.rule == "vip_without_sms"}
    assert set(mine) == {"n1", "n2"}
    assert mine["n1"].severity == "critical" and mine["n2"].severity == "info"
    assert mine["n1"].message == "VIP number +911234567890 cannot send SMS"


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (
            '[[rules.custom]]\nid = "r1"\nmessage = "m"\nwhen = { path = "x", equals = 1 }\n',
            "rules.custom.0: rule 'r1': when.equals: unknown operator",
        ),
        (
            '[[rules.custom]]\nid = "r1"\nmessage = "m"\nwhen = { path = "x", regex = "(" }\n',
            "rule 'r1': when.regex: not a valid regular expression",
        ),
        (
            '[[rules.custom]]\nid = "r1"\nmessage = "{a..b}"\nwhen = { path = "x", eq = 1 }\n',
            "rule 'r1': message placeholder {a..b}: bad path",
        ),
        (
            '[[rules.custom]]\nid = "blocked"\nmessage = "m"\nwhen = { path = "x", eq = 1 }\n',
            "custom[0].id: 'blocked' is a built-in rule's id",
        ),
        ("[rules.no_such_rule]\nenabled = true\n", "unknown rule 'no_such_rule'"),
        (
            "[[rules.billing_due.override]]\naccounts = ['MA_1']\nwithin_dayz = 21\n",
            "rules.billing_due: override[0]: unknown key 'within_dayz'",
        ),
        (
            "[[rules.billing_due.override]]\nwithin_days = 21\n",
            "override[0].accounts: must be a non-empty list",
        ),
        (
            "[[rules.billing_due.override]]\naccounts = ['MA_1']\nwithin_days = -1\n",
            "override[0].within_days",
        ),
        ("[rules.blocked.include]\ncountry = ['IN']\n", "rules.blocked.include.country"),
        ('[rules]\ntimezone = "Mars/Olympus"\n', "unknown IANA time zone"),
    ],
)
def test_bad_rule_config_is_a_config_error_naming_it(tmp_path: Path, toml: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(write(tmp_path, toml)), environ={})
    assert words in str(info.value)
    assert info.value.exit_code == 2


def test_bare_rule_tables_keep_their_own_defaults() -> None:
    rules = RulesConfig.model_validate(
        {"expiring": {"enabled": True}, "blocked": {}, "trial_number": {}}
    )
    assert rules.expiring.within_days == 14
    assert rules.blocked.severity == "critical"
    assert rules.trial_number.severity == "info"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
EVERY_OPERATOR = compile_condition(
    {
        "any": [
            {"path": "a", "eq": 1},
            {"path": "a.b", "ne": "x"},
            {"path": "a.0", "in": [1, "x", True]},
            {"path": "b", "not_in": [False]},
            {"path": "b.c.d", "regex": "x+"},
            {"path": "c", "missing": True},
            {"path": "c", "present": True},
            {"path": "a", "lt": 1},
            {"path": "a", "gt": -1.5},
            {"path": "d", "days_until_lt": 10},
            {"path": "d", "days_since_gt": 10},
        ]
    }
)
TEMPLATE = compile_template("{a} {a.b} {a.0} {b.c.d} {d}")


@given(item=JSON)
@settings(max_examples=400, deadline=None)
def test_conditions_never_raise_on_json_shaped_items(item: Any) -> None:
    from monitor.rules.base import show

    EVERY_OPERATOR(item, TODAY)
    assert isinstance(TEMPLATE(item, show), str)


# --- regular expressions that backtrack catastrophically ----------------------------------------

ISSUE_PATTERN = r"^(\w+\s?)*$"  # issue 19: froze the process on "a" * 34 + "!"
SLOW_PATTERN = r"^(\w|\w\w)*$"  # exponential even for the regex package: only the timeout helps
SLOW_TEXT = "a" * 40 + "!"


def test_the_issues_pattern_is_evaluated_at_once() -> None:
    cond = compile_condition({"path": "region", "regex": ISSUE_PATTERN})
    started = time.monotonic()
    assert cond({"region": "a" * 34 + "!"}, TODAY) is False
    assert cond({"region": "north east"}, TODAY) is True
    assert time.monotonic() - started < REGEX_TIMEOUT


def test_a_regex_gives_up_after_its_time_bound_naming_key_and_path() -> None:
    cond = compile_condition({"any": [{"path": "region", "regex": SLOW_PATTERN}]})
    started = time.monotonic()
    with pytest.raises(RegexTimeout) as info:
        cond({"region": SLOW_TEXT}, TODAY)
    assert REGEX_TIMEOUT <= time.monotonic() - started < REGEX_TIMEOUT + 5  # not 2**40 steps
    assert "when.any[0].regex" in str(info.value) and "region" in str(info.value)


def test_other_threads_run_while_a_regex_matches() -> None:
    """The GIL is released while matching: the service's listener and signal handling answer."""
    cond = compile_condition({"path": "region", "regex": SLOW_PATTERN})
    outcome: list[BaseException] = []

    def match() -> None:
        try:
            cond({"region": SLOW_TEXT}, TODAY)
        except RegexTimeout as exc:
            outcome.append(exc)

    worker = threading.Thread(target=match)
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()
    sum(range(100_000))  # Python code, which needs the GIL
    # ~2 ms; were the GIL held, it would wait out the regex's whole second
    assert time.monotonic() - started < 0.8 * REGEX_TIMEOUT and worker.is_alive()
    worker.join()
    assert outcome


def test_a_rule_whose_regex_times_out_is_left_out_of_the_sweep() -> None:
    """One bound per rule and sweep, not one per number: the rule is skipped from the first
    timeout on, so its open findings are neither resolved nor opened; other rules go on."""
    rules = RulesConfig.model_validate(
        {
            "custom": [
                {
                    "id": "odd_region",
                    "message": "{e164}",
                    "when": {"path": "region", "regex": SLOW_PATTERN},
                },
                {
                    "id": "has_region",
                    "message": "{e164}",
                    "when": {"path": "region", "present": True},
                },
            ]
        }
    )
    recs = [parse_number(ITEM | {"id": f"n{i}", "region": SLOW_TEXT}) for i in range(5)]
    ev = Evaluator(RuleContext(datetime(2026, 11, 23, 12, tzinfo=UTC), rules))
    started = time.monotonic()
    ev.feed([r for r in recs if r])
    ev.feed([r for r in recs if r])  # the next page: the rule is not tried again
    assert time.monotonic() - started < 5 * REGEX_TIMEOUT  # tried on all 10 items: 10 s
    assert "odd_region" not in ev.rule_ids and "has_region" in ev.rule_ids
    assert ev.errors["odd_region"].count == 1 and "RegexTimeout" in ev.errors["odd_region"].error
    assert len(ev.by_rule["has_region"]) == 5


def test_a_user_rule_slower_than_its_budget_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern that never times out on one value but is slow on each would still take days
    over a large inventory: past its time over the sweep, the user rule is left out too, while
    built-in rules never pay for the timing."""
    from monitor.rules import engine

    monkeypatch.setattr(engine, "USER_RULE_BUDGET", 0.0)
    rules = RulesConfig.model_validate(
        {
            "custom": [
                {
                    "id": "has_region",
                    "message": "{e164}",
                    "when": {"path": "region", "present": True},
                }
            ]
        }
    )
    recs = [parse_number(ITEM | {"id": f"n{i}", "region": "north"}) for i in range(5)]
    ev = Evaluator(RuleContext(datetime(2026, 11, 23, 12, tzinfo=UTC), rules))
    ev.feed([r for r in recs if r])
    assert "has_region" not in ev.rule_ids and "missing_application" in ev.rule_ids
    assert "took" in ev.errors["has_region"].error and ev.errors["has_region"].count == 1
    assert not ev.by_rule.get("has_region")


def test_run_answers_health_and_sigterm_while_a_regex_backtracks(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Issue 19: with Python's re one item froze ``run``: no /healthz, SIGTERM ignored."""
    from tests.test_service import base_config, free_port, start_run, wait_for

    sandbox.inventory.update(0, region=SLOW_TEXT)
    config = base_config(sandbox, f"sqlite:///{tmp_path / 'm.db'}", free_port(), cron="0 0 1 1 *")
    config["schedule"]["run_on_start"] = True
    rules = "".join(
        f'[[rules.custom]]\nid = "odd_{i}"\nmessage = "{{e164}}"\n'
        f"when = {{ path = \"region\", regex = '{SLOW_PATTERN}' }}\n"
        for i in range(3)
    )
    service = start_run(tmp_path, "run", config, rules)
    try:
        wait_for(lambda: "odd_0 is left out" in service.log, 30, "the first timeout")
        asked = time.monotonic()
        health = service.get("/healthz")  # rules odd_1 and odd_2 are still matching
        assert health is not None and time.monotonic() - asked < REGEX_TIMEOUT, service.log
        assert service.terminate(timeout=15) == 0, service.log
        assert "received SIGTERM" in service.log and "Traceback" not in service.log
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(5)
