"""The Apprise door: sends one rendered message to one channel and reports the outcome.

The only module that imports apprise. Apprise owns transports (Slack, email, JSON, ...); we own
what is sent and the record of it. Failures leave as ``DeliveryError`` with secrets scrubbed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.plugins import url_to_dict

from monitor import redact
from monitor.errors import DeliveryError
from monitor.redact import url_secrets
from monitor.slack_blocks import header as slack_header

# At DEBUG apprise logs full URLs, tokens included (LIBRARY_NOTES): never let it below INFO.
logging.getLogger("apprise").setLevel(logging.INFO)

NOTIFY_TYPES = {
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


class Channel(Protocol):
    """What sending needs to know of a channel (``config.ChannelConfig`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    def uses_blocks(self) -> bool: ...


class Notifier(Protocol):
    """Sends a message to a channel; raises ``DeliveryError`` when it did not arrive."""

    def send(
        self,
        channel: Channel,
        title: str,
        body: str,
        body_format: str,
        level: str = "info",
        parts: dict[str, Any] | None = None,
    ) -> None: ...


def secrets_in(url: str) -> list[str]:
    """Parts of an Apprise URL that may be credentials (password, path tokens, query values)."""
    found = url_secrets(url)
    # both spellings, longest first, so a secret inside another is masked whole
    spellings = {form for s in found for form in (s, unquote(s)) if len(form) >= 4}
    return sorted(spellings, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` without ``url``'s secrets nor any other known secret."""
    for secret in secrets_in(url):
        text = text.replace(secret, "***")
    return redact.scrub(text)


def check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (its own parser's words, scrubbed), or None if it can.

    Apprise's log lines about the URL (which quote it whole) are captured, not logged.
    """
    logger = logging.getLogger("apprise")
    propagate, logger.propagate = logger.propagate, False
    try:
        capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
        with capture as captured:
            try:
                usable = bool(apprise.Apprise().add(url))
            except Exception as exc:  # a plugin's parser may raise on a hostile URL
                usable = False
                captured.write(type(exc).__name__)
            text = captured.getvalue()
    finally:
        logger.propagate = propagate
    if usable:
        return None
    reasons = [line.strip().rstrip(".") for line in str(text).splitlines() if line.strip()]
    return scrub("; ".join(reasons) or "unsupported or incomplete URL", url)


def with_timeouts(url: str, timeout: float) -> str:
    """``url`` with Apprise's connect/read timeouts (``cto``/``rto``) set to ``timeout`` unless
    the URL sets them itself: Apprise's plugins otherwise give up reading after 4 s."""
    parts = urlsplit(url)
    args = parse_qs(parts.query, keep_blank_values=True)
    extra = {k: f"{timeout:g}" for k in ("cto", "rto") if k not in args}
    if not extra:
        return url
    query = "&".join(filter(None, [parts.query, urlencode(extra)]))
    return urlunsplit(parts._replace(query=query))


class AppriseNotifier:
    """Delivers through Apprise, one channel per call, with a bound on the whole call.

    ``parts`` travel with the body: ``attachments`` go out as files (email), and a ``slack``
    Block Kit message is handed to Apprise's Slack plugin as its template (blocks mode), so
    Apprise still owns the transport.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def send(
        self,
        channel: Channel,
        title: str,
        body: str,
        body_format: str,
        level: str = "info",
        parts: dict[str, Any] | None = None,
    ) -> None:
        parts = parts or {}
        with tempfile.TemporaryDirectory(prefix="did-monitor-") as scratch:
            app = apprise.Apprise()
            if not app.add(_service(channel, title, parts, Path(scratch), self.timeout)):
                raise DeliveryError(
                    f"channel {channel.name}: Apprise does not understand its URL",
                    hint="check the URL against https://github.com/caronc/apprise/wiki",
                )
            attach = _attachments(parts)
            try:
                result = app.notify(
                    body=body,
                    title=title,
                    body_format=body_format,
                    notify_type=NOTIFY_TYPES.get(level, apprise.NotifyType.INFO),
                    attach=attach,
                    timeout=self.timeout,
                )
            except Exception as exc:  # apprise plugins may raise anything; it must not kill a sweep
                raise DeliveryError(
                    f"channel {channel.name}: {scrub(f'{type(exc).__name__}: {exc}', channel.url)}"
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
        raise DeliveryError(f"channel {channel.name}: {scrub(detail, channel.url)}")


def _service(
    channel: Channel, title: str, parts: dict[str, Any], scratch: Path, timeout: float
) -> Any:
    """The channel's URL, or for a Slack Block Kit message the plugin built from that URL with
    the message as its template (a file, as the plugin reads it), headed by ``title`` (which
    says so when the message is a retry)."""
    url = with_timeouts(channel.url, timeout)
    blocks = parts.get("slack")
    if not blocks or not channel.uses_blocks():
        return url
    first = blocks["blocks"][0] if blocks.get("blocks") else {}
    if first.get("type") == "header":
        first = first | {"text": {"type": "plain_text", "text": slack_header(title)}}
        blocks = blocks | {"blocks": [first, *blocks["blocks"][1:]]}
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


def _attachments(parts: dict[str, Any]) -> apprise.AppriseAttachment | None:
    files = parts.get("attachments") or []
    if not files:
        return None
    attach = apprise.AppriseAttachment()
    for item in files:
        attach.add(
            AttachMemory(  # type: ignore[no-untyped-call]
                content=item["content"], name=item["name"], mimetype=item["mimetype"]
            )
        )
    return attach
