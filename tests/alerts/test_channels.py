"""Channel kinds: size limits by the Apprise service a URL loads, checked without the network."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.alerts.channels import LIMITS, check_url, limit_for
from monitor.alerts.compose import compose
from monitor.alerts.digest import Digest
from monitor.config import AlertsConfig, ChannelConfig
from monitor.findings import FindingView


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    ("url", "service"),
    [
        ("discord://123456/abcdefABCDEF", "discord"),
        ("https://discord.com/api/webhooks/123456/abcdefABCDEF", "discord"),
        ("https://discordapp.com/api/webhooks/123456/abcdefABCDEF", "discord"),
        ("slack://T000/B000/XXXX", "slack"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "slack"),
        ("tgram://123456789:abcdefg_hijklmnop/987654", "tgram"),
        ("mailtos://user:pw@smtp.example.com?from=m@example.com&to=a@example.com", "mailtos"),
    ],
)
def test_the_limit_is_the_apprise_services_whatever_form_its_url_takes(
    url: str, service: str, no_network: None
) -> None:
    assert check_url(url) is None
    assert limit_for(url) == LIMITS[service]


def test_a_url_naming_several_services_gets_the_smallest_limit(no_network: None) -> None:
    both = "json://localhost/x, https://discord.com/api/webhooks/123456/abcdefABCDEF"
    assert check_url(both) is None and limit_for(both) == LIMITS["discord"]
    assert limit_for("json://localhost/x") == limit_for("https://example.com/x", None) == 30_000


def test_a_discord_webhook_in_discords_own_form_gets_a_body_discord_accepts(
    no_network: None,
) -> None:
    items = [
        FindingView(
            rule="blocked",
            severity="critical",
            e164=f"+9180123456{i:02d}",
            account_id="MA_A",
            message="number is blocked",
        )
        for i in range(40)
    ]
    digest = Digest(new=items, numbers_swept=500, swept_at=datetime(2026, 11, 23, tzinfo=UTC))
    for url in (
        "discord://123456/abcdefABCDEF",
        "https://discord.com/api/webhooks/123456/abcdefABCDEF",
    ):
        msg = compose(digest, ChannelConfig(name="d", url=url), AlertsConfig())
        assert len(msg.title) + len(msg.body) < 2000 and "more" in msg.body
