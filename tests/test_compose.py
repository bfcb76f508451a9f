"""Which message each kind of channel gets for the same digest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.compose import compose
from monitor.config import AlertsConfig, ChannelConfig
from monitor.render import Digest, Item

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
DIGEST = Digest(
    new=[
        Item(
            rule="blocked",
            severity="critical",
            e164=f"+9198{i:08d}",
            account_id="MA_A",
            message="number is blocked",
        )
        for i in range(12)
    ],
    swept_at=NOW,
)
ALERTS = AlertsConfig(email_max_rows=10)


def test_email_gets_the_html_document_and_the_csv_past_the_cap() -> None:
    msg = compose(
        DIGEST,
        ChannelConfig(
            name="m", url="mailtos://smtp.example.com?from=m@example.com&to=a@example.com"
        ),
        ALERTS,
    )
    assert msg.body_format == "html" and msg.body.startswith("<!DOCTYPE html>")
    (att,) = msg.parts["attachments"]
    assert att["name"] == "did-monitor-findings.csv" and att["content"].count("\n") == 13
    assert msg.title == "did-monitor: 12 new"


def test_text_email_gets_the_text_template() -> None:
    chan = ChannelConfig(
        name="m", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com", format="text"
    )
    msg = compose(DIGEST, chan, ALERTS)
    assert msg.body_format == "text" and "CRITICAL (12)" in msg.body
    assert "attachments" in msg.parts


@pytest.mark.parametrize(
    "url", ["slack://T1/B1/abc123", "https://hooks.slack.com/services/T1/B1/abc123"]
)
def test_slack_gets_block_kit_with_the_markdown_kept_as_its_body(url: str) -> None:
    msg = compose(DIGEST, ChannelConfig(name="s", url=url), ALERTS)
    assert msg.parts["slack"]["blocks"][0]["type"] == "header"
    assert msg.body_format == "markdown" and "*🔴 Critical (12)*" in msg.body


def test_slack_with_an_explicit_format_and_other_chat_get_plain_markdown() -> None:
    plain_slack = ChannelConfig(name="s", url="slack://T1/B1/abc123", format="markdown")
    assert compose(DIGEST, plain_slack, ALERTS).parts == {}
    hook = compose(DIGEST, ChannelConfig(name="j", url="json://localhost/x"), ALERTS)
    assert hook.parts == {} and hook.body_format == "markdown"
    assert (
        "…and 2 more"
        in compose(DIGEST, ChannelConfig(name="j", url="json://x"), AlertsConfig(max_items=10)).body
    )


def test_preview_format_overrides_the_channels() -> None:
    mail = ChannelConfig(
        name="m", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com"
    )
    assert compose(DIGEST, mail, ALERTS, "text").body_format == "text"
    slack = ChannelConfig(name="s", url="slack://T1/B1/abc123")
    as_html = compose(DIGEST, slack, ALERTS, "html")
    assert as_html.body.startswith("<!DOCTYPE html>") and "slack" not in as_html.parts
