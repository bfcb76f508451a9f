"""The Apprise door: sends one rendered message to one channel and reports the outcome.

The only module that imports apprise to send. Apprise owns transports (Slack, email, JSON, ...);
we own what is sent and the record of it. Failures leave as ``DeliveryError`` with secrets
scrubbed, ``permanent`` when sending the same message again cannot help.

What Apprise lets us tell apart, and so what is permanent: a URL it cannot load (``add`` refuses
it: unknown or disabled scheme, arguments its plugin rejects), a call it refuses as improperly
made, and a message it could not prepare for any service (a failed result naming no service). A
service that was called and failed is retryable whatever the cause: Apprise reports a refusal
(HTTP 4xx), a network error, a timeout and a plugin that choked on the content alike, as a failed
service result with a log line, so none of them can be told from a passing outage.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.exception import AppriseImproperlyConfigured
from apprise.plugins import url_to_dict

from monitor.alerts.channels import with_timeouts
from monitor.alerts.slack import header as slack_header
from monitor.config import ChannelConfig
from monitor.errors import DeliveryError
from monitor.redact import scrub

# At DEBUG apprise logs full URLs, tokens included (LIBRARY_NOTES): never let it below INFO.
logging.getLogger("apprise").setLevel(logging.INFO)


@dataclass(frozen=True)
class Outgoing:
    """One message as a notifier is handed it: to which channel, what, in which format, at which
    Apprise level ("info", "success", "warning", "failure"), with which ``parts``."""

    channel: str
    title: str
    body: str
    body_format: str
    level: str = "info"
    parts: dict[str, Any] = field(default_factory=dict)


class Notifier:
    """Sends a message to a channel; raises ``DeliveryError`` when it did not arrive. A notifier
    implements ``deliver``, given the message as one ``Outgoing``."""

    def send(
        self,
        channel: ChannelConfig,
        title: str,
        body: str,
        body_format: str,
        level: str = "info",
        parts: dict[str, Any] | None = None,
    ) -> None:
        self.deliver(channel, Outgoing(channel.name, title, body, body_format, level, parts or {}))

    def deliver(self, channel: ChannelConfig, message: Outgoing) -> None:
        raise NotImplementedError


class AppriseNotifier(Notifier):
    """Delivers through Apprise, one channel per call, with a bound on the whole call.

    ``parts`` travel with the body: ``attachments`` go out as files (email), and a ``slack``
    Block Kit message is handed to Apprise's Slack plugin as its template (blocks mode), so
    Apprise still owns the transport.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def deliver(self, channel: ChannelConfig, message: Outgoing) -> None:
        with tempfile.TemporaryDirectory(prefix="did-monitor-") as scratch:
            app = apprise.Apprise()
            if not app.add(_service(channel, message, Path(scratch), self.timeout)):
                raise DeliveryError(
                    f"channel {channel.name}: Apprise does not understand its URL",
                    permanent=True,
                    hint="check the URL against https://github.com/caronc/apprise/wiki",
                )
            try:
                result = app.notify(
                    body=message.body,
                    title=message.title,
                    body_format=message.body_format,
                    notify_type=_notify_type(message.level),
                    attach=_attachments(message.parts),
                    timeout=self.timeout,
                )
            except Exception as exc:  # apprise plugins may raise anything; it must not kill a sweep
                text = scrub(f"{type(exc).__name__}: {exc}", channel.url)
                permanent = isinstance(exc, AppriseImproperlyConfigured)  # the call, not the wire
                raise DeliveryError(
                    f"channel {channel.name}: {text}", permanent=permanent
                ) from None
        if result:
            return
        problems = [
            e.message for e in result.logs() if getattr(e, "level", "") in ("WARNING", "ERROR")
        ]
        statuses = ", ".join(
            f"{r.name} {getattr(r.status, 'name', r.status)}".strip() for r in result.results
        )
        detail = problems[-1] if problems else (statuses or "not delivered")
        # No service result: Apprise could not prepare this message for any service, and a retry
        # would send the same message (a timeout always names the service it stopped).
        unprepared = result.status == apprise.AppriseResultStatus.FAILURE and not result.results
        raise DeliveryError(
            f"channel {channel.name}: {scrub(detail, channel.url)}", permanent=unprepared
        )


def _service(channel: ChannelConfig, message: Outgoing, scratch: Path, timeout: float) -> Any:
    """The channel's URL, or for a Slack Block Kit message the plugin built from that URL with
    the message as its template (a file, as the plugin reads it), headed by the message's title
    (which says so when the message is a retry)."""
    url = with_timeouts(channel.url, timeout)
    blocks = message.parts.get("slack")
    if not blocks or not channel.uses_blocks():
        return url
    first = blocks["blocks"][0] if blocks.get("blocks") else {}
    if first.get("type") == "header":
        first = first | {"text": {"type": "plain_text", "text": slack_header(message.title)}}
        blocks = blocks | {
            "blocks": [first, *blocks["blocks"][1:]],
            "fallback": slack_header(message.title),
        }
    fields = url_to_dict(url)  # type: ignore[no-untyped-call]
    if not fields:
        return url  # add() reports it
    # The plugin fills in ``{{name}}`` tokens in its template: an API string such as
    # "{{app_id}}" must stay text, so no "{{" is left in the JSON (\u007b is JSON for "{").
    text = json.dumps(blocks, ensure_ascii=False).replace("{{", "{\\u007b")
    template = scratch / "blocks.json"
    template.write_text(text, encoding="utf-8")
    fields["template"] = str(template)
    return apprise.Apprise.instantiate(fields)


def _notify_type(level: str) -> apprise.NotifyType:
    """Apprise's type for a message level; a level Apprise does not know goes out as info."""
    try:
        return apprise.NotifyType(level)
    except ValueError:
        return apprise.NotifyType.INFO


def _attachments(parts: dict[str, Any]) -> apprise.AppriseAttachment | None:
    """``parts``' attachments (name, mimetype, content: ``email.Attachment``) as Apprise's."""
    files = parts.get("attachments")
    if not files:
        return None
    return apprise.AppriseAttachment([AttachMemory(**f) for f in files])  # type: ignore[no-untyped-call]
