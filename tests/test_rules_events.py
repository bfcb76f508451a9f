"""Change rules (changed, disappeared) on crafted version pairs; account rules on accounts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from monitor.config import RulesConfig
from monitor.model import parse_number
from monitor.rules import Evaluator, RuleContext

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "number_id": "n1",
        "e164": "+911234567890",
        "account_id": "MA_A",
        "status": "active",
        "country": "IN",
        "region": None,
        "application_id": "app-1",
        "is_blocked": False,
        "monthly_fee": Decimal("300.000000"),
        "currency": "INR",
        "tags": [],
    }
    return base | fields


def changes(pairs: list[tuple[Any, Any]], **rules: Any) -> dict[str, Any]:
    ev = Evaluator(RuleContext(NOW, RulesConfig.model_validate(rules), sweep_id=9))
    ev.feed_changes(pairs)
    assert ev.errors == {}
    return {d.subject: d for d in ev.drafts.values()}


def test_each_change_is_its_own_event() -> None:
    found = changes(
        [
            (
                row(),
                row(
                    application_id=None,
                    is_blocked=True,
                    monthly_fee=Decimal("450.5"),
                    account_id="MA_B",
                ),
            )
        ]
    )
    assert set(found) == {
        "n1:application@9",
        "n1:blocked@9",
        "n1:monthly_fee@9",
        "n1:account@9",
    }
    assert "application app-1 was removed" in found["n1:application@9"].message
    assert found["n1:monthly_fee@9"].message == (
        "monthly fee changed from 300.00 INR to 450.50 INR"
    )
    assert found["n1:account@9"].message == "moved from account MA_A to MA_B"
    assert found["n1:account@9"].account_id == "MA_B"  # the new owner hears of it
    assert all(d.severity == "info" and d.rule == "changed" for d in found.values())


def test_equal_amounts_written_differently_are_no_change() -> None:
    assert changes([(row(monthly_fee=Decimal("1.0")), row(monthly_fee=Decimal("1.000000")))]) == {}
    assert changes([(row(), row(region="Delhi", tags=["x"]))]) == {}  # not worth telling


def test_changes_to_tell_are_configurable() -> None:
    pair = (row(), row(is_blocked=True, application_id="app-2"))
    found = changes([pair], changed={"changes": ["blocked"]})
    assert set(found) == {"n1:blocked@9"}
    assert changes([pair], changed={"enabled": False}) == {}


def test_disappeared_and_added() -> None:
    found = changes([(row(), None), (None, row(number_id="n2"))])
    assert set(found) == {"n1"}
    assert found["n1"].rule == "disappeared" and "no longer in the inventory" in found["n1"].message


def test_change_rules_respect_scope() -> None:
    found = changes([(row(), None)], disappeared={"exclude": {"accounts": ["MA_A"]}})
    assert found == {}


def test_odd_rows_do_not_raise() -> None:
    odd = {"number_id": None, "monthly_fee": "abc", "tags": None, "is_blocked": "yes"}
    changes([(odd, odd | {"monthly_fee": None}), (odd, None), (None, odd), (None, None)])


# --- accounts ---------------------------------------------------------------------------------


def num(nid: str, account: str, status: str) -> Any:
    return parse_number({"id": nid, "e164": f"+91{nid}", "account_id": account, "status": status})


def statuses(numbers: list[Any]) -> dict[tuple[str, str], int]:
    """What the store counts after a sweep: (account, status) → numbers."""
    return dict(Counter((n.account_id, n.status) for n in numbers))


def accounts_found(numbers: list[Any], accounts: Any = None, **rules: Any) -> dict[str, Any]:
    ev = Evaluator(RuleContext(NOW, RulesConfig.model_validate(rules)))
    ev.feed(numbers)
    ev.finish(accounts, statuses(numbers))
    return {d.account_id: d for d in ev.drafts.values() if d.rule == "no_active_number"}


def test_no_active_number() -> None:
    numbers = [
        num("1", "MA_OK", "active"),
        num("2", "MA_OK", "released"),
        num("3", "MA_DOWN", "pending_purchase"),
        num("4", "MA_DOWN", "released"),
        num("5", "MA_DOWN", "released"),
    ]
    listed = {
        "MA_OK": {"name": "Fine Ltd", "status": "active"},
        "MA_DOWN": {"name": "Acme <b>Corp</b>", "status": "active"},
        "MA_EMPTY": {"name": "Empty Co", "status": "active"},
        "MA_GONE": {"name": "Closed Co", "status": "suspended"},
        "MA_ODD": {"name": 5, "status": None},
    }
    found = accounts_found(numbers, listed)
    assert set(found) == {"MA_DOWN", "MA_EMPTY", "MA_ODD"}
    down = found["MA_DOWN"]
    assert down.severity == "critical" and down.subject == "account:MA_DOWN"
    assert "1 pending_purchase, 2 released" in down.message and "<b>" not in down.message
    assert "Acme ?b?Corp?/b?" in down.message
    assert "no number at all" in found["MA_EMPTY"].message


def test_no_active_number_without_an_account_list() -> None:
    def run(accounts: Any) -> set[str | None]:
        ev = Evaluator(RuleContext(NOW, RulesConfig()))
        numbers = [num("1", "MA_B", "active"), num("2", "MA_B", "inactive")]
        ev.finish(accounts, statuses(numbers))
        return {d.account_id for d in ev.drafts.values() if d.rule == "no_active_number"}

    assert run(None) == set()  # MA_A is known from its numbers only, and it has none
    assert run({"MA_A": {"name": "A", "status": "active"}}) == {"MA_A"}


def test_no_active_number_scope_and_overrides() -> None:
    numbers = [num("1", "MA_A", "inactive"), num("2", "MA_B", "inactive")]
    assert set(accounts_found(numbers, no_active_number={"include": {"accounts": ["MA_A"]}})) == {
        "MA_A"
    }
    quiet = {"override": [{"accounts": ["MA_B"], "severity": "info"}]}
    assert accounts_found(numbers, no_active_number=quiet)["MA_B"].severity == "info"


def test_a_change_or_account_rule_that_raises_is_recorded_and_the_rest_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from monitor.rules.base import REGISTRY

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(REGISTRY, "changed", replace(REGISTRY["changed"], fn=broken))
    monkeypatch.setitem(
        REGISTRY, "no_active_number", replace(REGISTRY["no_active_number"], fn=broken)
    )
    ev = Evaluator(RuleContext(NOW, RulesConfig(), sweep_id=9))
    ev.feed_changes([(row(), row(is_blocked=True)), (row(number_id="n2", e164=None), None)])
    ev.finish({"MA_A": {"status": "active"}, "MA_B": {"status": "active"}})
    assert set(ev.drafts) == {("disappeared", "n2")}
    assert ev.errors["changed"].count == 2 and ev.errors["changed"].subject == "+911234567890"
    failed = ev.errors["no_active_number"]
    assert (failed.count, failed.subject, failed.error) == (2, "MA_A", "RuntimeError: boom")
