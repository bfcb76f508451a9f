"""The optional availability watch: counting numbers for sale, and the low_availability rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.availability import AVAILABILITY_PATH, count_available, fetch_availability
from monitor.config import RulesConfig
from monitor.errors import ApiError
from monitor.rules import Evaluator, RuleContext
from monitor.rules.events import AvailabilityWatch

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_counting() -> None:
    assert count_available({"items": [{}, {}, {}]}) == 3
    assert count_available({"items": [{}], "total": 40}) == 40  # a paged listing
    assert count_available({"data": []}) == 0
    for bad in ([], {"items": "x"}, None):
        with pytest.raises(ApiError):
            count_available(bad)


def test_only_listing_is_requested() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def get_json(path: str, params: dict[str, Any]) -> Any:
        calls.append((path, params))
        return {"items": [{"e164": "+9180"}] * (2 if params.get("region") else 9)}

    watches = [
        AvailabilityWatch(country="in", region="Maharashtra", min_available=5),
        AvailabilityWatch(country="US"),
    ]
    got = fetch_availability(get_json, watches)
    assert [n for _, n in got] == [2, 9]
    assert calls == [
        (AVAILABILITY_PATH, {"country": "IN", "region": "Maharashtra"}),
        (AVAILABILITY_PATH, {"country": "US"}),
    ]


def test_no_order_code_exists() -> None:
    """Read-only: nothing in the package can order, verify or buy a number."""
    from pathlib import Path

    import monitor

    root = Path(monitor.__file__).parent
    text = " ".join(p.read_text() for p in root.rglob("*.py"))
    for word in ("/numbers/order", "/byon", '"POST"', ".post("):
        assert word not in text
    assert not re.search(r"def (order|buy|purchase|verify|confirm)(_\w*)?\(", text)


def test_low_availability_rule() -> None:
    rules = RulesConfig.model_validate(
        {"low_availability": {"watch": [{"country": "IN", "region": "Delhi", "min_available": 3}]}}
    )
    ev = Evaluator(RuleContext(NOW, rules))
    assert ev.watches == rules.low_availability.watch
    (watch,) = ev.watches
    ev.feed_availability([(watch, 2)])
    (d,) = ev.drafts.values()
    assert (
        d.subject == "availability:IN:delhi" and "only 2" in d.message and "IN/Delhi" in d.message
    )
    ev = Evaluator(RuleContext(NOW, rules))
    ev.feed_availability([(watch, 3)])
    assert ev.drafts == {}
    ev.skip("low_availability")
    assert "low_availability" not in ev.rule_ids
    assert Evaluator(RuleContext(NOW, RulesConfig())).watches == ()  # off unless configured


def test_watch_config_is_checked() -> None:
    from pydantic import ValidationError

    from monitor.config import Settings, _describe

    for bad, words in [
        ({"watch": [{"country": "IND"}]}, "country"),
        ({"watch": [{"country": "IN", "min_available": 0}]}, "min_available"),
        ({"watch": [{"country": "IN"}, {"country": "in"}]}, "listed once"),
        ({"watch": [{"country": "IN", "minimum": 2}]}, "unknown key"),
    ]:
        with pytest.raises(ValidationError) as info:
            Settings.model_validate({"rules": {"low_availability": bad}})
        assert words in _describe(info.value, None, {})


def test_watch_through_a_sweep_of_the_sandbox(
    sandbox: Any, store: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.config import ChannelConfig
    from monitor.pipeline import run_cycle
    from monitor.sandbox import AVAILABILITY_PATH as SERVED
    from monitor.testing import RecordingNotifier
    from tests.conftest import make_settings

    assert SERVED == AVAILABILITY_PATH
    sandbox.inventory.for_sale[("IN", "Delhi")] = 2
    sandbox.inventory.for_sale[("US", None)] = 40
    watch = [
        {"country": "IN", "region": "Delhi", "min_available": 5},
        {"country": "US", "min_available": 5},
    ]
    rules = RulesConfig.model_validate({"low_availability": {"watch": watch}})
    chan = ChannelConfig(name="ops", url="json://127.0.0.1:1/x")

    def sweep() -> Any:
        settings = make_settings(sandbox, store.url, (chan,), rules=rules, vobiz={"max_retries": 0})
        out = run_cycle(settings, store, RecordingNotifier(), clock=clock)
        clock.advance(days=7)
        assert out.ok, out.error
        return [f for f in store.findings(clock.now) if f.rule == "low_availability"]

    (low,) = sweep()
    assert low.e164 == "availability:IN:delhi" and not low.has_number and "only 2" in low.message
    sandbox.faults.add(path=AVAILABILITY_PATH, times=-1, status=403)
    assert [f.e164 for f in sweep()] == [low.e164]  # unreadable: kept, sweep fine
    assert "availability watch skipped" in caplog.text
    sandbox.faults.clear()
    sandbox.inventory.for_sale[("IN", "Delhi")] = 9
    assert sweep() == []
    orders = [r for r in sandbox.requests if "order" in r.path or r.method != "GET"]
    assert orders == []
