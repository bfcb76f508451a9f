"""Deliveries through real Apprise transports: a real SMTP server and a real HTTP receiver."""

from __future__ import annotations

import pytest

from monitor.config import ChannelConfig
from monitor.errors import DeliveryError
from monitor.notify import AppriseNotifier, scrub
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


def test_receiver_error_becomes_delivery_error(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_next = 1
    chan = ChannelConfig(name="hook", url=http_receiver.url())
    with pytest.raises(DeliveryError) as exc:
        AppriseNotifier(timeout=5).send(chan, "t", "b", "text")
    assert exc.value.message.startswith("channel hook:")
    assert not exc.value.permanent


def test_unreachable_channel_fails_cleanly() -> None:
    chan = ChannelConfig(name="dead", url="json://127.0.0.1:9/x")
    with pytest.raises(DeliveryError, match="channel dead"):
        AppriseNotifier(timeout=3).send(chan, "t", "b", "text")


def test_bad_url_is_permanent() -> None:
    chan = ChannelConfig(name="typo", url="nosuchscheme://what")
    with pytest.raises(DeliveryError) as exc:
        AppriseNotifier().send(chan, "t", "b", "text")
    assert exc.value.permanent and "does not understand" in exc.value.message


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

    from monitor.render import Digest, Item, render_body

    http_receiver.reply = b"ok"
    monkeypatch.setattr(
        NotifySlack, "webhook_url", f"http://127.0.0.1:{http_receiver.port}/services"
    )
    digest = Digest(
        new=[
            Item(
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
