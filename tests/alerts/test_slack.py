"""The Slack Block Kit digest: order, escaping, and Slack's limits whatever the digest's size."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from monitor.alerts.digest import Digest
from monitor.alerts.email import render_texts
from monitor.alerts.slack import MAX_BLOCKS, MAX_BYTES, MAX_HEADER, MAX_SECTION, build
from monitor.findings import FindingView

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def items(count: int, **kw: object) -> list[FindingView]:
    sevs = ("warning", "info", "critical")
    return [
        FindingView(
            **(
                {
                    "rule": "billing_due",
                    "severity": sevs[i % 3],
                    "e164": f"+9198{i:08d}",
                    "account_id": f"MA_{i % 5}",
                    "message": "next billing soon",
                    "due_at": NOW + timedelta(days=i % 9),
                    "monthly_fee": Decimal("2.5"),
                    "currency": "INR",
                }
                | kw
            )  # type: ignore[arg-type]
        )
        for i in range(count)
    ]


def texts(payload: dict[str, object]) -> list[str]:
    out = []
    for block in payload["blocks"]:  # type: ignore[attr-defined]
        if "text" in block:
            out.append(block["text"]["text"])
        for el in block.get("elements", []):
            out.append(el["text"])
    return out


@pytest.mark.parametrize("count", [0, 1, 120, 600, 5000])
def test_within_slack_limits_and_says_how_many_more(count: int) -> None:
    gone = [replace(i, e164=f"+1{n}") for n, i in enumerate(items(3, rule="expiring"))]
    d = Digest(new=items(count), resolved=gone, swept_at=NOW)
    payload = build(d, "did-monitor: digest", "https://dash.example.com/monitor/?a=1&b=2")
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(json.dumps(payload, ensure_ascii=False).encode()) <= MAX_BYTES
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= MAX_HEADER
    assert all(len(t) <= MAX_SECTION for t in texts(payload))
    body = "\n".join(texts(payload))
    listed = sum(1 for it in d.new + d.resolved if f"`{it.e164}`" in body)
    more = count + 3 - listed
    last = blocks[-1]["text"]["text"]
    if more:
        assert f"…and *{more} more* (" in last
    assert "<https://dash.example.com/monitor/findings|See all findings on the dashboard>" in last


def test_sections_most_urgent_first_and_counts_in_the_header() -> None:
    d = Digest(new=items(9), reminders=items(1, tier=7), resolved=items(1), swept_at=NOW)
    payload = build(d, render_texts(d, "dm").title)
    headings = [t for t in texts(payload) if t.startswith("*") and t.endswith("*")]
    assert headings == ["*🔴 Critical*", "*🟠 Warning*", "*🔵 Info*", "*✅ Resolved*"]
    assert payload["blocks"][0]["text"]["text"] == "dm: 9 new, 1 reminder, 1 resolved"
    assert "*4* warning" in texts(payload)[1] and "*3* critical" in texts(payload)[1]
    assert "reminder 7d" in "\n".join(texts(payload))
    assert payload["color"] == "#b42318"  # the most urgent severity's colour


def test_api_strings_are_inert_mrkdwn() -> None:
    hostile = FindingView(
        rule="blocked",
        severity="critical",
        e164="<!channel>",
        account_id="<https://evil|click>",
        account_name="*bold* & `tick`",
        message="number is blocked",
        tags=("<@U123>", "a\nb"),
    )
    body = "\n".join(texts(build(Digest(new=[hostile], swept_at=NOW), "dm: 1 new")))
    assert "<!channel>" not in body and "<https://evil" not in body and "<@U123>" not in body
    assert "`‹!channel›`" in body and "`*bold* &amp; ʹtickʹ`" in body
    assert "`a b`" in body
