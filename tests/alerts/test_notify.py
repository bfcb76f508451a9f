"""Deliveries through real Apprise transports: a real SMTP server and a real HTTP receiver."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from monitor.alerts.chat import render_sweep_failed
from monitor.alerts.compose import compose
from monitor.alerts.digest import Digest
from monitor.alerts.notify import AppriseNotifier
from monitor.config import AlertsConfig, ChannelConfig
from monitor.errors import DeliveryError
from monitor.findings import FindingView
from monitor.redact import scrub
from tests.conftest import HttpReceiver, SmtpSink


def test_json_receiver_gets_title_and_body(http_receiver: HttpReceiver) -> None:
    chan = ChannelConfig(name="hook", url=http_receiver.url("alerts"))
    AppriseNotifier(timeout=5).send(
        chan, "did-monitor: 1 new", "*New (1)*\n• blocked", "markdown", "warning"
    )
    (post,) = http_receiver.posts
    assert post["path"] == "/alerts"
    assert post["body"]["title"] == "did-monitor: 1 new"
    assert "blocked" in post["body"]["message"]
    assert post["body"]["type"] == "warning"


def test_a_level_apprise_does_not_know_goes_out_as_info(http_receiver: HttpReceiver) -> None:
    chan = ChannelConfig(name="hook", url=http_receiver.url("alerts"))
    AppriseNotifier(timeout=5).send(chan, "t", "b", "text", "critical")
    (post,) = http_receiver.posts
    assert post["body"]["type"] == "info"


def test_receiver_error_becomes_delivery_error(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_next = 1
    chan = ChannelConfig(name="hook", url=http_receiver.url())
    with pytest.raises(DeliveryError) as exc:
        AppriseNotifier(timeout=5).send(chan, "t", "b", "text")
    assert exc.value.message.startswith("channel hook:")


def test_unreachable_channel_fails_cleanly() -> None:
    chan = ChannelConfig(name="dead", url="json://127.0.0.1:9/x")
    with pytest.raises(DeliveryError, match="channel dead"):
        AppriseNotifier(timeout=3).send(chan, "t", "b", "text")


def test_bad_url_is_a_delivery_error_with_a_hint() -> None:
    # The config refuses such a URL at load; the notifier still says so if one gets through.
    chan = ChannelConfig.model_construct(name="typo", url="nosuchscheme://what")
    with pytest.raises(DeliveryError) as exc:
        AppriseNotifier().send(chan, "t", "b", "text")
    assert "does not understand" in exc.value.message and exc.value.hint


def test_email_arrives_as_html_with_safe_headers(smtp_server: SmtpSink) -> None:
    chan = ChannelConfig(name="mail", url=smtp_server.url("ops@example.com"))
    assert chan.body_format() == "html"
    AppriseNotifier(timeout=5).send(
        chan, "did-monitor: 2 new", "<h3>New (2)</h3><ul><li>&lt;script&gt;</li></ul>", "html"
    )
    (msg,) = smtp_server.messages
    assert msg["Subject"] == "did-monitor: 2 new"
    assert "ops@example.com" in msg["To"]
    html_part = msg.get_body(("html",))
    assert html_part is not None
    content = html_part.get_content()
    assert "&lt;script&gt;" in content and "<script>" not in content


def test_scrub_removes_url_secrets() -> None:
    url = "mailtos://user:hunter22pass@smtp.example.com?to=a@b.c"
    assert "hunter22pass" not in scrub("auth failed for user:hunter22pass", url)
    slack = "slack://TAAAAA/BBBBBB/CCCCCCsecret"
    assert "CCCCCCsecret" not in scrub("error posting to slack://TAAAAA/BBBBBB/CCCCCCsecret", slack)


def test_slack_payload_through_apprise_with_a_stand_in_host(
    monkeypatch: pytest.MonkeyPatch, http_receiver: HttpReceiver
) -> None:
    """The real Apprise Slack plugin, posting to a local receiver instead of hooks.slack.com."""
    from apprise.plugins.slack import NotifySlack

    from monitor.alerts.chat import render_body
    from monitor.alerts.digest import Digest
    from monitor.findings import FindingView

    http_receiver.reply = b"ok"
    monkeypatch.setattr(
        NotifySlack, "webhook_url", f"http://127.0.0.1:{http_receiver.port}/services"
    )
    digest = Digest(
        new=[
            FindingView(
                rule="blocked",
                severity="critical",
                e164="+911234",
                account_id="MA_A",
                message="number is blocked",
                tags=("<!channel>", "<script>x</script>", "a\nb"),
            )
        ]
    )
    body = render_body(digest, "markdown")
    chan = ChannelConfig(name="slack", url="slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7")
    AppriseNotifier(timeout=5).send(chan, "did-monitor: 1 new", body, "markdown", "warning")
    (post,) = http_receiver.posts
    assert post["path"] == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    text = str(post["body"])
    assert "+911234" in text and "blocked" in text
    assert "<!channel>" not in text and "<script>" not in text


def _digest(count: int) -> object:
    from datetime import UTC, datetime, timedelta

    from monitor.alerts.digest import Digest
    from monitor.findings import FindingView

    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    new = [
        FindingView(
            rule="blocked" if i % 2 else "billing_due",
            severity=("critical", "warning")[i % 2],
            e164=f"+9198{i:08d}",
            account_id="MA_A",
            account_name="Acme <Corp>",
            message="number is blocked" if i % 2 else "next billing soon",
            due_at=None if i % 2 else now + timedelta(days=i % 6),
            tags=("<script>x</script>",),
        )
        for i in range(count)
    ]
    return Digest(new=new, numbers_swept=600, swept_at=now)


def test_email_digest_arrives_with_html_text_and_the_csv_of_every_finding(
    smtp_server: SmtpSink,
) -> None:
    """120 flagged numbers, a body capped at 100 rows: the SMTP server gets the HTML, Apprise's
    text alternative and the CSV, and between them every number is named."""
    import csv
    import io

    from monitor.alerts.compose import compose
    from monitor.config import AlertsConfig

    digest = _digest(120)
    chan = ChannelConfig(name="mail", url=smtp_server.url("ops@example.com"))
    msg = compose(digest, chan, AlertsConfig(email_max_rows=100))  # type: ignore[arg-type]
    AppriseNotifier(timeout=5).send(
        chan, msg.title, msg.body, msg.body_format, "warning", parts=msg.parts
    )
    (mail,) = smtp_server.messages
    assert mail["Subject"] == "did-monitor: 120 new"
    html_part = mail.get_body(("html",))
    text_part = mail.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html_body = html_part.get_content()
    assert "<script>" not in html_body and "&lt;script&gt;" in html_body
    assert "100</b> most urgent of <b>120</b>" in html_body
    assert "most urgent of 120" in text_part.get_content()
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "did-monitor-findings.csv"
    assert attachment.get_content_type() == "text/csv"
    content = attachment.get_content()
    rows = list(
        csv.DictReader(io.StringIO(content if isinstance(content, str) else content.decode()))
    )
    numbers = sorted(i.e164 for i in digest.new)  # type: ignore[attr-defined]
    assert sorted(r["number"] for r in rows) == numbers
    assert all(r["account_name"] == "Acme <Corp>" for r in rows)


def test_slack_block_kit_digest_through_apprise_blocks_mode(
    monkeypatch: pytest.MonkeyPatch, http_receiver: HttpReceiver
) -> None:
    """The Block Kit message goes out through Apprise's own Slack plugin, to a stand-in host."""
    import json

    from apprise.plugins.slack import NotifySlack

    from monitor.alerts.compose import compose
    from monitor.config import AlertsConfig

    http_receiver.reply = b"ok"
    monkeypatch.setattr(
        NotifySlack, "webhook_url", f"http://127.0.0.1:{http_receiver.port}/services"
    )
    chan = ChannelConfig(name="slack", url="slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7")
    digest = _digest(600)
    digest.new[0] = digest.new[0].__class__(  # type: ignore[attr-defined]
        rule="blocked",
        severity="critical",
        e164="{{app_id}}",
        account_id="<!channel>",
        message="number is blocked",
    )
    alerts = AlertsConfig(dashboard_url="https://monitor.example.com/")
    msg = compose(digest, chan, alerts)  # type: ignore[arg-type]
    assert "slack" in msg.parts
    AppriseNotifier(timeout=5).send(
        chan, msg.title, msg.body, msg.body_format, "warning", parts=msg.parts
    )
    AppriseNotifier(timeout=5).send(
        chan, f"(retry 1) {msg.title}", msg.body, msg.body_format, "warning", parts=msg.parts
    )
    post, retry = http_receiver.posts
    assert retry["body"]["attachments"][0]["blocks"][0]["text"]["text"] == f"(retry 1) {msg.title}"
    # what a phone or desktop notification shows, where Slack draws no blocks
    assert retry["body"]["attachments"][0]["fallback"] == f"(retry 1) {msg.title}"
    assert post["body"]["attachments"][0]["fallback"] == msg.title
    assert post["path"] == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    (attachment,) = post["body"]["attachments"]
    blocks = attachment["blocks"]
    assert blocks == msg.parts["slack"]["blocks"]  # exactly what we built, nothing added
    assert len(blocks) <= 50
    assert len(json.dumps(post["body"], ensure_ascii=False).encode()) <= 35_000
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": msg.title}}
    text = json.dumps(blocks, ensure_ascii=False)
    # an API string is never filled in as a template token (a zero-width space breaks it up)
    assert "`{\u200b{app_id}}`" in text
    assert "<!channel>" not in text and "<script>" not in text
    assert (
        "more*" in text
        and "<https://monitor.example.com/findings|See all findings on the dashboard>" in text
    )


def test_delivery_timeout_reaches_apprise_as_cto_and_rto() -> None:
    from monitor.alerts.channels import with_timeouts

    assert with_timeouts("json://h/x", 12.5) == "json://h/x?cto=12.5&rto=12.5"
    assert with_timeouts("json://h/x?rto=3", 20) == "json://h/x?rto=3&cto=20"
    assert with_timeouts("slack://T/B/C?cto=1&rto=2", 9) == "slack://T/B/C?cto=1&rto=2"


def test_a_slow_webhook_within_the_delivery_timeout_is_delivered(
    http_receiver: HttpReceiver,
) -> None:
    # Apprise's own read timeout is 4 s; delivery_timeout_seconds (here 10) is what counts.
    http_receiver.delay = 5.0
    chan = ChannelConfig(name="slow", url=http_receiver.url())
    AppriseNotifier(timeout=10).send(chan, "t", "b", "text")
    assert len(http_receiver.posts) == 1


MENTIONS = ("@everyone", "@here", "<@&123456>", "<@987654>")


@pytest.fixture
def discord_stand_in(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> ChannelConfig:
    """A Markdown Discord channel whose webhook host is the loopback receiver (the plugin's
    endpoint is a class attribute; everything else is Apprise's own Discord plugin)."""
    from apprise.plugins.discord import NotifyDiscord

    base = f"http://127.0.0.1:{http_receiver.port}/api/webhooks"
    monkeypatch.setattr(NotifyDiscord, "notify_url", base)
    return ChannelConfig(name="discord", url="discord://123/abc?format=markdown")


def _posted(http_receiver: HttpReceiver) -> str:
    assert http_receiver.posts
    return json.dumps([p["body"] for p in http_receiver.posts], ensure_ascii=False)


def test_api_strings_ping_nobody_on_discord(
    discord_stand_in: ChannelConfig, http_receiver: HttpReceiver
) -> None:
    hostile = FindingView(
        rule="blocked",
        severity="critical",
        e164="+911",
        account_id="MA_@here",
        account_name="@everyone party",
        message="region @everyone is blocked",  # a rule's message quoting an API value
        tags=MENTIONS,
    )
    msg = compose(Digest(new=[hostile]), discord_stand_in, AlertsConfig())
    assert msg.body_format == "markdown"
    AppriseNotifier(timeout=5).send(discord_stand_in, msg.title, msg.body, msg.body_format)
    sent = _posted(http_receiver)
    assert "allow_mentions" not in sent and "👉" not in sent
    assert "@" not in sent and "＠everyone" in sent


def test_api_error_text_in_a_sweep_failed_alert_pings_nobody(
    discord_stand_in: ChannelConfig, http_receiver: HttpReceiver
) -> None:
    error = "HTTP 500 from the API: " + " ".join(MENTIONS)
    title, body = render_sweep_failed(error, "markdown", datetime(2026, 11, 23, tzinfo=UTC))
    AppriseNotifier(timeout=5).send(discord_stand_in, title, body, "markdown", "failure")
    sent = _posted(http_receiver)
    assert "allow_mentions" not in sent and "@" not in sent and "HTTP 500" in sent


def test_csv_attachment_is_utf8_with_a_bom_for_excel(smtp_server: SmtpSink) -> None:
    digest = _digest(12)
    name = "Société Générale ☎"
    digest.new[0] = replace(digest.new[0], account_name=name)  # type: ignore[attr-defined]
    chan = ChannelConfig(name="mail", url=smtp_server.url("ops@example.com"))
    msg = compose(digest, chan, AlertsConfig(email_max_rows=10))  # type: ignore[arg-type]
    AppriseNotifier(timeout=5).send(chan, msg.title, msg.body, "html", parts=msg.parts)
    (attachment,) = list(smtp_server.messages[0].iter_attachments())
    data = attachment.get_payload(decode=True)
    assert data.startswith(b"\xef\xbb\xbfchange,severity,")
    assert name.encode("utf-8") in data
