"""Which message each kind of channel gets for the same digest."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.compose import compose
from monitor.alerts.digest import Digest
from monitor.alerts.notify import AppriseNotifier
from monitor.config import AlertsConfig, ChannelConfig
from monitor.findings import FindingView
from tests.conftest import SmtpSink

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
DIGEST = Digest(
    new=[
        FindingView(
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


def test_600_findings_mail_under_gmails_clip_with_every_one_in_the_csv(
    smtp_server: SmtpSink,
) -> None:
    """The defaults, 600 findings, a dashboard: the HTML stays under Gmail's clip (~102 KB),
    says how many more are in the CSV and on the dashboard; the CSV has all 600; the text part
    mail programs read has one line per finding shown."""
    kinds = [
        ("blocked", "critical", "number is blocked", None),
        ("missing_application", "critical", "no application attached: inbound calls hang up", None),
        ("billing_due", "warning", "next billing soon", 4),
        ("expiring", "info", "number expires soon", 9),
    ]
    items = []
    for i in range(600):
        rule, severity, message, days = kinds[i % len(kinds)]
        items.append(
            FindingView(
                rule=rule,
                severity=severity,
                e164=f"+9198{i:08d}",
                account_id=f"MA_{i % 7:04d}K",
                account_name=f"Northwind Logistics {i % 7}",
                message=message,
                due_at=None if days is None else NOW + timedelta(days=days + i % 5),
                tags=("vip", "support") if i % 3 == 0 else (),
            )
        )
    digest = Digest(new=items, numbers_swept=5000, swept_at=NOW)
    chan = ChannelConfig(name="mail", url=smtp_server.url())
    alerts = AlertsConfig(dashboard_url="https://monitor.example.com/")
    msg = compose(digest, chan, alerts)
    AppriseNotifier(timeout=5).send(
        chan, msg.title, msg.body, msg.body_format, "warning", parts=msg.parts
    )
    (mail,) = smtp_server.messages
    html_body = mail.get_body(("html",)).get_content()
    assert len(html_body.encode()) < 100_000
    shown = html_body.count("border-top:1px solid #eaecf0")
    assert 0 < shown <= alerts.email_max_rows
    assert f"<b>{shown}</b> most urgent of <b>600</b>" in html_body
    assert f"findings: {600 - shown} more in the attached CSV" in html_body
    assert "the dashboard</a>" in html_body
    (attachment,) = list(mail.iter_attachments())
    content = attachment.get_content()
    text = content if isinstance(content, str) else content.decode()
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert sorted(r["number"] for r in rows) == sorted(i.e164 for i in items)
    plain = mail.get_body(("plain",)).get_content()
    finding_lines = [line for line in plain.splitlines() if line.startswith("+9198")]
    assert len(finding_lines) == shown
    assert (
        "+919800000000 Northwind Logistics 0 MA_0000K blocked number is blocked vip, support"
        in (finding_lines)
    )


def test_a_byte_budget_stops_the_rows_whatever_the_row_cap() -> None:
    many = Digest(new=DIGEST.new * 60, swept_at=NOW)  # 720 rows
    mail = ChannelConfig(
        name="m", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com"
    )
    msg = compose(many, mail, AlertsConfig(email_max_rows=5000))
    assert len(msg.body.encode()) <= 95_000
    shown = msg.body.count("border-top:1px solid #eaecf0")
    assert 100 < shown < 720 and f"<b>{shown}</b> most urgent of <b>720</b>" in msg.body
    (att,) = msg.parts["attachments"]
    assert att["content"].count("\n") == 721


def test_a_text_email_has_one_line_per_finding() -> None:
    many = Digest(new=DIGEST.new * 60, swept_at=NOW)
    chan = ChannelConfig(
        name="m", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com", format="text"
    )
    msg = compose(many, chan, AlertsConfig())
    lines = [line for line in msg.body.splitlines() if line.startswith("* ")]
    assert len(lines) == 100 and lines[0] == "* +919800000000  MA_A  blocked: number is blocked"
    assert "lists the 100 most urgent of 720 findings: 620 more\nin the attached CSV" in msg.body


def test_a_markdown_email_is_sent_as_the_text_it_is_so_api_strings_stay_inert(
    smtp_server: SmtpSink,
) -> None:
    """An email gets its HTML or text document, never Markdown: with ``format = "markdown"``
    (or a ``--format markdown`` preview) the text document goes out labelled text, so Apprise
    does not convert it and an account name written as a Markdown link stays words."""
    lure = "[Pay now](https://evil.example/pay)"
    one = Digest(
        new=[
            FindingView(
                rule="blocked",
                severity="critical",
                e164="+919800000001",
                account_id="MA_A",
                account_name=lure,
                message="number is blocked",
            )
        ],
        swept_at=NOW,
    )
    chan = ChannelConfig(name="mail", url=smtp_server.url(), format="markdown")
    msg = compose(one, chan, ALERTS)
    assert msg.body_format == "text" and lure in msg.body
    assert compose(one, chan, ALERTS, "markdown").body_format == "text"  # the preview says so
    AppriseNotifier(timeout=5).send(
        chan, msg.title, msg.body, msg.body_format, "warning", parts=msg.parts
    )
    (mail,) = smtp_server.messages
    assert mail.get_body(("html",)) is None
    assert lure in mail.get_body(("plain",)).get_content()
    assert "evil.example" not in "".join(
        part.get_content() for part in mail.walk() if part.get_content_type() == "text/html"
    )
