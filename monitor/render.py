"""Digest rendering for Markdown (chat), HTML (email) and plain text, with escaping and size limits.

Every string that came from the API passes through ``esc()`` for the target format, so a tag like
``<script>`` or a newline in a region cannot inject markup, links or headers. Titles carry only
our own words and counts (they become email subject headers).
"""

from __future__ import annotations

import html
import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

Format = Literal["markdown", "text", "html"]
SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
# C0 and C1 controls (an 8-bit CSI drives some terminals), bidi overrides that reorder what a
# reader sees, and line separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]+")

# Characters a message may have, by the start of the Apprise URL; beyond it we split items off.
LIMITS = {"slack": 35_000, "discord": 1_900, "tgram": 4_000, "mailto": 90_000, "mailtos": 90_000}
DEFAULT_LIMIT = 30_000


def limit_for(url: str, override: int | None = None) -> int:
    if override:
        return override
    return LIMITS.get(url.split(":", 1)[0].lower(), DEFAULT_LIMIT)


def esc(value: object, fmt: Format) -> str:
    """Make an API string inert for ``fmt``: one line, no markup, bounded length.

    Markdown gets a code span rather than backslash escapes: Slack shows backslashes literally,
    while every Markdown dialect (Slack's included) leaves a code span's content uninterpreted.
    Angle brackets become look-alikes so no dialect can read a ``<!channel>`` or a tag.
    """
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > 120:
        text = text[:119] + "…"
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        text = text.replace("`", "ʹ").replace("<", "‹").replace(">", "›")
        return f"`{text}`" if text else "—"
    return text


def plain(text: str, fmt: Format) -> str:
    """Our own words (rule messages, headings) made safe for ``fmt`` without code spans."""
    text = _CONTROL.sub(" ", text).strip()
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        return text.replace("<", "‹").replace(">", "›").replace("`", "ʹ")
    return text


def tty(value: object) -> str:
    """Text for the terminal: no control characters (no escape sequences), no Rich markup."""
    from rich.markup import escape

    return escape(_CONTROL.sub(" ", str(value)))


def one_line(text: str) -> str:
    """Header-safe text: no CR/LF or other control characters."""
    return _CONTROL.sub(" ", text).strip()


@dataclass(frozen=True)
class Item:
    """A finding as a digest shows it."""

    rule: str
    severity: str
    e164: str
    account_id: str
    message: str
    tags: tuple[str, ...] = ()
    monthly_fee: Decimal | None = None
    currency: str | None = None
    tier: int | None = None


@dataclass
class Digest:
    """What one channel is told after one sweep."""

    new: list[Item] = field(default_factory=list)
    reminders: list[Item] = field(default_factory=list)
    resolved: list[Item] = field(default_factory=list)
    still_open: int = 0
    numbers_swept: int = 0
    at_risk: dict[str, Decimal] = field(default_factory=dict)
    swept_at: datetime | None = None

    @property
    def is_quiet(self) -> bool:
        return not (self.new or self.reminders or self.resolved)


def rental_at_risk(items: Sequence[Item]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for it in items:
        if it.monthly_fee is not None:
            totals[it.currency or "?"] += it.monthly_fee
    return dict(sorted(totals.items()))


DEFAULT_TEMPLATES = {
    "title": "$prefix: $summary",
    "intro": "",
    "footer": "",
}


def render_title(digest: Digest, prefix: str, templates: Mapping[str, str]) -> str:
    tpl = string.Template(templates.get("title") or DEFAULT_TEMPLATES["title"])
    return one_line(tpl.safe_substitute(_variables(digest, prefix)))[:200]


def _variables(digest: Digest, prefix: str) -> dict[str, str]:
    return {
        "prefix": one_line(prefix),
        "new": str(len(digest.new)),
        "reminders": str(len(digest.reminders)),
        "resolved": str(len(digest.resolved)),
        "open": str(digest.still_open),
        "swept": str(digest.numbers_swept),
        "summary": summary(digest),
    }


def summary(digest: Digest) -> str:
    """ "2 new, 1 reminder, 3 resolved", naming only what is there."""
    parts = [
        (len(digest.new), "new", "new"),
        (len(digest.reminders), "reminder", "reminders"),
        (len(digest.resolved), "resolved", "resolved"),
    ]
    text = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n)
    return text or "nothing new"


def render_body(
    digest: Digest,
    fmt: Format,
    *,
    limit: int = DEFAULT_LIMIT,
    max_items: int = 50,
    prefix: str = "did-monitor",
    templates: Mapping[str, str] | None = None,
) -> str:
    """The digest body in ``fmt``, never longer than ``limit`` characters."""
    tpls = dict(DEFAULT_TEMPLATES, **(templates or {}))
    variables = _variables(digest, prefix)
    w = _Writer(fmt, limit)
    intro = string.Template(tpls["intro"]).safe_substitute(variables)
    if intro:
        w.paragraph(plain(intro, fmt))
    for heading, items in (
        ("New", digest.new),
        ("Reminders", digest.reminders),
        ("Resolved", digest.resolved),
    ):
        if items:
            w.section(f"{heading} ({len(items)})", [_line(i, fmt) for i in items], max_items)
    summary = [f"Still open: {digest.still_open}", f"Numbers swept: {digest.numbers_swept}"]
    if digest.at_risk:
        money = ", ".join(
            f"{amt.normalize():f} {_currency(cur)}" for cur, amt in digest.at_risk.items()
        )
        summary.append(f"Monthly rental at risk: {money}")
    w.footer(summary)
    footer = string.Template(tpls["footer"]).safe_substitute(variables)
    if footer:
        w.paragraph(plain(footer, fmt))
    return w.text()


def _currency(code: str) -> str:
    """Currency codes are short letters; anything else from the API is shown as '?'."""
    return code if code.isalpha() and len(code) <= 4 else "?"


def _line(item: Item, fmt: Format) -> str:
    mark = SEVERITY_MARK.get(item.severity, "")
    tier = f" [{item.tier}d]" if item.tier is not None else ""
    tags = f" tags: {', '.join(esc(t, fmt) for t in item.tags)}" if item.tags else ""
    number, account = esc(item.e164, fmt), esc(item.account_id, fmt)
    rule, message = plain(item.rule, fmt), plain(item.message, fmt)
    if fmt == "markdown":
        return f"{mark} *{rule}*{tier} {number} ({account}): {message}{tags}"
    if fmt == "html":
        return f"{mark} <b>{rule}</b>{tier} {number} ({account}): {message}{tags}"
    return f"[{item.severity}] {rule}{tier} {number} ({account}): {message}{tags}"


class _Writer:
    """Accumulates blocks in one format, stopping items before the size limit with "and N more"."""

    def __init__(self, fmt: Format, limit: int) -> None:
        self.fmt = fmt
        self.limit = limit
        self.parts: list[str] = []
        self.reserve = 400  # room kept for the summary footer

    def _size(self) -> int:
        return sum(len(p) + 1 for p in self.parts)

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{text}</p>" if self.fmt == "html" else text + "\n")

    def section(self, heading: str, lines: list[str], max_items: int) -> None:
        if self.fmt == "markdown":
            self.parts.append(f"*{heading}*")
        elif self.fmt == "html":
            self.parts.append(f"<h3>{heading}</h3><ul>")
        else:
            self.parts.append(f"{heading}\n" + "-" * len(heading))
        shown = 0
        for line in lines:
            entry = f"<li>{line}</li>" if self.fmt == "html" else f"• {line}"
            if shown >= max_items or self._size() + len(entry) + self.reserve > self.limit:
                break
            self.parts.append(entry)
            shown += 1
        if shown < len(lines):
            more = f"…and {len(lines) - shown} more"
            self.parts.append(
                f"<li><i>{more}</i></li>"
                if self.fmt == "html"
                else f"_{more}_"
                if self.fmt == "markdown"
                else more
            )
        if self.fmt == "html":
            self.parts.append("</ul>")
        else:
            self.parts.append("")

    def footer(self, lines: list[str]) -> None:
        if self.fmt == "html":
            self.parts.append("<p>" + "<br>".join(lines) + "</p>")
        else:
            self.parts.extend(lines)

    def text(self) -> str:
        out = "\n".join(self.parts).strip() + "\n"
        return out[: self.limit]


def render_sweep_failed(error: str, fmt: Format, swept_at: datetime) -> tuple[str, str]:
    """Title and body of the alert sent when a sweep could not see the whole inventory."""
    when = swept_at.strftime("%Y-%m-%d %H:%M UTC")
    body_text = (
        f"The sweep started {when} did not complete: {esc(error, fmt)}. "
        "No finding was resolved and no number was reported gone. "
        "The next sweep will try again."
    )
    body = f"<p>{body_text}</p>" if fmt == "html" else body_text
    return "did-monitor: sweep failed", body


def render_channel_failing(channel: str, failures: int, error: str, fmt: Format) -> tuple[str, str]:
    text = (
        f"Alerts to channel {esc(channel, fmt)} have failed {failures} times in a row "
        f"(last error: {esc(error, fmt)}). Its messages are kept and retried."
    )
    return "did-monitor: channel failing", f"<p>{text}</p>" if fmt == "html" else text
