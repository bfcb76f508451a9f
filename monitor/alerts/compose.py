"""One channel's digest → the message it is sent: title, body, body format and the extra parts.

Email gets the templated document (HTML, or text with ``format = "text"``; never Markdown, so
``"markdown"`` sends the text one, as text) with every finding, plus the CSV of all of them when
the body is capped; Slack gets a Block Kit message (its body, the Markdown digest, is kept as the
readable record and the fallback); other channels get the size-limited Markdown or text digest.
Every kind gets the same title, intro and footer, from the templates ``title.txt``, ``intro.txt``
and ``footer.txt``. Used by the sweep (to store digests) and by ``did-monitor digest --preview``
(to show them), so a preview is exactly what would be sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from monitor.alerts.channels import limit_for
from monitor.alerts.chat import render_body
from monitor.alerts.digest import Digest
from monitor.alerts.email import render_document, render_texts
from monitor.alerts.slack import build as slack_blocks
from monitor.config import AlertsConfig, ChannelConfig
from monitor.vocab import Format


@dataclass(frozen=True)
class Message:
    """What is stored in the outbox and handed to the notifier. ``parts`` is JSON: optional
    ``attachments`` (name, mimetype, content) and ``slack`` (a Block Kit attachment)."""

    title: str
    body: str
    body_format: Format
    parts: dict[str, Any] = field(default_factory=dict)


def compose(
    digest: Digest, channel: ChannelConfig, alerts: AlertsConfig, fmt: Format | None = None
) -> Message:
    """The message ``channel`` is sent for ``digest``; ``fmt`` overrides its body format (for
    previews)."""
    templates_dir = Path(alerts.templates_dir) if alerts.templates_dir else None
    texts = render_texts(digest, alerts.title_prefix, templates_dir, alerts.templates)
    body_format: Format = fmt or channel.body_format()
    parts: dict[str, Any] = {}
    if channel.kind() == "email" or body_format == "html":
        # An email is its HTML or text document, never Markdown: a markdown email is the text one,
        # labelled text, or Apprise would read its unescaped API strings as Markdown (links).
        doc_format: Literal["html", "text"] = "html" if body_format == "html" else "text"
        doc = render_document(
            digest,
            doc_format,
            prefix=alerts.title_prefix,
            texts=texts,
            templates_dir=templates_dir,
            max_rows=alerts.email_max_rows,
            dashboard_url=alerts.dashboard_url,
        )
        if doc.attachments:
            parts["attachments"] = [asdict(a) for a in doc.attachments]
        return Message(texts.title, doc.body, doc_format, parts)
    body = render_body(
        digest,
        body_format,
        limit=limit_for(channel.url, channel.max_length),
        max_items=alerts.max_items,
        intro=texts.intro,
        footer=texts.footer,
    )
    if channel.uses_blocks() and fmt is None:
        parts["slack"] = slack_blocks(digest, texts.title, alerts.dashboard_url)
    return Message(texts.title, body, body_format, parts)
