"""Digests as data (``Item``, ``Digest``, their urgency order), Markdown and text for chat
(size-limited), and escaping for every format.

Every string that came from the API passes through ``esc()`` for the target format, so a tag like
``<script>`` or a newline in a region cannot inject markup, links or headers. Titles carry only
our own words and counts (they become email subject headers). The email document is
``document.py``; Slack's Block Kit message is ``slack_blocks.py``.
"""

from __future__ import annotations

import html
import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from monitor.config import SEVERITY_RANK
from monitor.model import currency_code, money_text

Format = Literal["markdown", "text", "html"]
SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
# Most urgent first: the order of every digest's sections.
SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True))
# The one filter of control characters for every output (terminal, text, Markdown, HTML, Slack,
# CSV, and the dashboard and /metrics): C0 and C1 controls (an 8-bit CSI drives some terminals),
# bidi marks, embeddings, overrides and isolates that reorder what a reader sees (U+061C, U+200E,
# U+200F, U+202A-U+202E, U+2066-U+2069), line separators, and invisible characters that hide text
# or split a word a reader sees whole (zero-width space, non-joiner and joiner, word joiner,
# invisible operators U+2060-U+2064, the Mongolian vowel separator, the BOM).
CONTROL_CHARS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+"
)
# An "@" in a chat message can ping: Discord reads "@everyone", "@here", "<@123>" and "<@&123>"
# even inside a code span, and Apprise's plugin then allows the mentions it found. Every "@" of
# an API string is shown as the fullwidth at sign U+FF20: it reads the same, no chat service takes
# it for a mention, and unlike "@" + an invisible character it survives any control filter.
MENTION = "\uff20"

# Characters a message may have, by the start of the Apprise URL; beyond it we split items off.
LIMITS = {"slack": 35_000, "discord": 1_900, "tgram": 4_000, "mailto": 90_000, "mailtos": 90_000}
DEFAULT_LIMIT = 30_000


def limit_for(url: str, override: int | None = None) -> int:
    if override:
        return override
    return LIMITS.get(url.split(":", 1)[0].lower(), DEFAULT_LIMIT)


def dashboard_link(base: str, page: str = "", e164: str | None = None) -> str:
    """A page of the dashboard at ``base`` (``alerts.dashboard_url``): its findings list, or a
    number's page; the number is percent-encoded, so no API string can change the link."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{page}" if page else "/")
    if e164 is not None:
        path += "/" + quote(e164, safe="+")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def esc(value: object, fmt: Format) -> str:
    """Make an API string inert for ``fmt``: one line, no markup, bounded length.

    Markdown gets a code span rather than backslash escapes: Slack shows backslashes literally,
    while every Markdown dialect (Slack's included) leaves a code span's content uninterpreted.
    Angle brackets become look-alikes so no dialect can read a ``<!channel>`` or a tag, and in
    every format an "@" becomes ``MENTION``, so no string can ping a channel or a role.
    """
    text = CONTROL_CHARS.sub(" ", str(value)).strip().replace("@", MENTION)
    if len(text) > 120:
        text = text[:119] + "…"
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        text = text.replace("`", "ʹ").replace("<", "‹").replace(">", "›")
        return f"`{text}`" if text else "—"
    return text


def plain(text: str, fmt: Format) -> str:
    """Our own words (rule messages, headings) made safe for ``fmt`` without code spans. A rule's
    message quotes API values, so its "@" become ``MENTION`` too: a channel that should ping
    says so in its Apprise URL (Discord's ``?ping=@here``), not in a message."""
    text = CONTROL_CHARS.sub(" ", text).strip().replace("@", MENTION)
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        return text.replace("<", "‹").replace(">", "›").replace("`", "ʹ")
    return text


def tty(value: object) -> str:
    """Text for the terminal: no control characters (no escape sequences), no Rich markup."""
    from rich.markup import escape

    return escape(CONTROL_CHARS.sub(" ", str(value)))


def one_line(text: str) -> str:
    """Header-safe text: no CR/LF or other control characters."""
    return CONTROL_CHARS.sub(" ", text).strip()


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
    due_at: datetime | None = None
    account_name: str | None = None
    # False for a finding about an account or an availability watch: ``e164`` then holds the
    # finding's subject ("account:<id>", "availability:<country>:<region>").
    has_number: bool = True


def number_text(item: Item) -> str:
    """What a digest shows in the number column (unescaped): the number, or for a finding without
    one what it is about: the account's name (or id), or the watched country and region."""
    if item.has_number:
        return item.e164
    kind, _, rest = item.e164.partition(":")
    if kind == "account":
        return item.account_name or item.account_id or rest
    if kind == "availability":
        country, _, region = rest.partition(":")
        return f"availability {country}" + (f" {region}" if region and region != "*" else "")
    return item.e164


def urgency(item: Item) -> tuple[int, int, datetime, str, str]:
    """Sort key, most urgent first: severity, then what is broken now (no date) before dates,
    then the nearest date; rule and number only make the order stable."""
    return (
        -SEVERITY_RANK.get(item.severity, -1),
        0 if item.due_at is None else 1,
        item.due_at or datetime.min.replace(tzinfo=UTC),
        item.rule,
        item.e164,
    )


def days_left(item: Item, now: datetime | None) -> int | None:
    """Whole days from ``now`` to the item's due date (negative once past); None without one."""
    if item.due_at is None or now is None:
        return None
    return (item.due_at.date() - now.date()).days


@dataclass
class Digest:
    """What one channel is told after one sweep."""

    new: list[Item] = field(default_factory=list)
    reminders: list[Item] = field(default_factory=list)
    resolved: list[Item] = field(default_factory=list)
    still_open: int = 0
    numbers_swept: int = 0
    at_risk: dict[str, Decimal] = field(default_factory=dict)
    # Rental of the channel's active numbers falling due in the next 7 days, per currency
    # (``reports.forecast``); ``due_undated`` counts the numbers with no billing date.
    due_soon: dict[str, Decimal] = field(default_factory=dict)
    due_undated: int = 0
    swept_at: datetime | None = None
    # Set when the sweep was partial: what it could not read, and that nothing was resolved.
    caveat: str = ""
    # What a sweep (complete or not) read but could not check: numbers with an unreadable date
    # (``sweep.UnreadableDates``). A note in the summary, not a warning about the sweep.
    notes: str = ""

    @property
    def is_quiet(self) -> bool:
        return not (self.new or self.reminders or self.resolved)


def rental_at_risk(items: Sequence[Item]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for it in items:
        if it.monthly_fee is not None:
            totals[currency_code(it.currency)] += it.monthly_fee
    return dict(sorted(totals.items()))


DUE_DAYS = 7  # the digest's look ahead at rental falling due


def due_soon_text(digest: Digest) -> str:
    """The digest's line on rental falling due in the next ``DUE_DAYS`` days, one for every
    format (our own words and exact amounts: nothing to escape)."""
    money = ", ".join(money_text(a, c) for c, a in digest.due_soon.items()) or "nothing"
    text = f"Rental due in the next {DUE_DAYS} days: {money}"
    if digest.due_undated:
        text += f" ({digest.due_undated} active number(s) have no billing date)"
    return text


DEFAULT_TEMPLATES = {
    "title": "$prefix: $summary",
    "intro": "",
    "footer": "",
}


def render_title(digest: Digest, prefix: str, templates: Mapping[str, str]) -> str:
    tpl = string.Template(templates.get("title") or DEFAULT_TEMPLATES["title"])
    return one_line(tpl.safe_substitute(template_variables(digest, prefix)))[:200]


def template_variables(digest: Digest, prefix: str) -> dict[str, str]:
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
    fmt: Literal["markdown", "text"],
    *,
    limit: int = DEFAULT_LIMIT,
    max_items: int = 50,
    prefix: str = "did-monitor",
    templates: Mapping[str, str] | None = None,
) -> str:
    """The digest body in ``fmt`` for a chat channel, never longer than ``limit`` characters:
    past ``max_items`` per list, or the limit, a list ends with "…and N more". (HTML is the
    email document, ``document.render_document``: an email has no limit to cut it at.)"""
    tpls = dict(DEFAULT_TEMPLATES, **(templates or {}))
    variables = template_variables(digest, prefix)
    w = _Writer(fmt, limit)
    intro = string.Template(tpls["intro"]).safe_substitute(variables)
    if intro:
        w.paragraph(plain(intro, fmt))
    # Grouped by severity, most urgent first; within each, new before reminders.
    for severity in SEVERITIES:
        new = sorted((i for i in digest.new if i.severity == severity), key=urgency)
        due = sorted((i for i in digest.reminders if i.severity == severity), key=urgency)
        if not (new or due):
            continue
        mark = SEVERITY_MARK.get(severity, "")
        w.heading(f"{mark} {severity.capitalize()} ({len(new) + len(due)})".strip())
        for heading, items in (("New", new), ("Reminders", due)):
            if items:
                w.section(f"{heading} ({len(items)})", [_line(i, fmt) for i in items], max_items)
    if digest.resolved:
        resolved = sorted(digest.resolved, key=urgency)
        w.heading(f"✅ Resolved ({len(resolved)})")
        w.section("", [_line(i, fmt) for i in resolved], max_items)
    summary = [f"Still open: {digest.still_open}", f"Numbers swept: {digest.numbers_swept}"]
    if digest.caveat:
        summary.append(f"⚠ {plain(digest.caveat, fmt)}")
    if digest.notes:
        summary.append(f"Note: {plain(digest.notes, fmt)}")
    if digest.at_risk:
        money = ", ".join(money_text(amt, cur) for cur, amt in digest.at_risk.items())
        summary.append(f"Monthly rental at risk: {money}")
    if digest.due_soon or digest.due_undated:
        summary.append(due_soon_text(digest))
    w.footer(summary)
    footer = string.Template(tpls["footer"]).safe_substitute(variables)
    if footer:
        w.paragraph(plain(footer, fmt))
    return w.text()


def _line(item: Item, fmt: Format) -> str:
    mark = SEVERITY_MARK.get(item.severity, "")
    tier = f" [{item.tier}d]" if item.tier is not None else ""
    tags = f" tags: {', '.join(esc(t, fmt) for t in item.tags)}" if item.tags else ""
    number, account = esc(number_text(item), fmt), esc(item.account_id, fmt)
    if item.account_name and item.has_number:  # otherwise the name is the number column's
        account = f"{esc(item.account_name, fmt)} {account}"
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
        self.parts.append(text + "\n")

    def heading(self, text: str) -> None:
        """A severity group's heading (our own words and counts only)."""
        if self.fmt == "markdown":
            self.parts.append(f"*{text}*")
        else:
            self.parts.append(f"{text}\n" + "=" * len(text))

    def section(self, heading: str, lines: list[str], max_items: int) -> None:
        if not heading:
            pass
        elif self.fmt == "markdown":
            self.parts.append(f"_{heading}_")
        else:
            self.parts.append(f"{heading}\n" + "-" * len(heading))
        shown = 0
        for line in lines:
            entry = f"• {line}"
            if shown >= max_items or self._size() + len(entry) + self.reserve > self.limit:
                break
            self.parts.append(entry)
            shown += 1
        if shown < len(lines):
            more = f"…and {len(lines) - shown} more"
            self.parts.append(f"_{more}_" if self.fmt == "markdown" else more)
        self.parts.append("")

    def footer(self, lines: list[str]) -> None:
        self.parts.extend(lines)

    def text(self) -> str:
        out = "\n".join(self.parts).strip() + "\n"
        return out[: self.limit]


def render_sweep_failed(error: str, fmt: Format, failed_at: datetime) -> tuple[str, str]:
    """Title and body of the alert sent when a sweep could not see the whole inventory."""
    when = failed_at.strftime("%Y-%m-%d %H:%M UTC")
    body_text = (
        f"The sweep started {when} did not complete: {esc(error, fmt)}. "
        "No finding was resolved and no number was reported gone. "
        "The next sweep will try again."
    )
    return "did-monitor: sweep failed", _paragraph(body_text, fmt)


def render_sweep_partial(reason: str, fmt: Format, swept_at: datetime) -> tuple[str, str]:
    """Title and body of the notice a partner channel gets from a partial sweep that had no
    digest for it: the caveat a digest would have carried, on its own (our own words, as in the
    digest: counts, positions and phone numbers reduced to digits; never cut short)."""
    when = swept_at.strftime("%Y-%m-%d %H:%M UTC")
    body_text = (
        f"The sweep started {when} could not read the whole inventory: {plain(reason, fmt)}. "
        "What it read is stored and checked by the rules. The next sweep will try again."
    )
    return "did-monitor: sweep incomplete", _paragraph(body_text, fmt)


def render_unreadable_dates(note: str, fmt: Format, swept_at: datetime) -> tuple[str, str]:
    """Title and body of the notice a partner channel gets when the numbers with an unreadable
    date (``note``: ``sweep.UnreadableDates.describe``, our own words and digits) changed and it
    had no digest to carry the note. Nothing is wrong with the sweep: only those dates."""
    when = swept_at.strftime("%Y-%m-%d %H:%M UTC")
    body_text = (
        f"The sweep started {when} found dates it could not read in the API's data: "
        f"{plain(note, fmt)}. These numbers are stored and checked by the other rules; "
        "the rules that need those dates cannot check them. This notice is sent again only "
        "when the numbers affected change."
    )
    return "did-monitor: numbers with unreadable dates", _paragraph(body_text, fmt)


def render_channel_failing(channel: str, failures: int, error: str, fmt: Format) -> tuple[str, str]:
    text = (
        f"Alerts to channel {esc(channel, fmt)} have failed {failures} times in a row "
        f"(last error: {esc(error, fmt)}). Its messages are kept and retried."
    )
    return "did-monitor: channel failing", _paragraph(text, fmt)


def _paragraph(text: str, fmt: Format) -> str:
    """A service message's body: ``text`` (escaped already) as a paragraph in HTML."""
    return f"<p>{text}</p>" if fmt == "html" else text


def ordered_items(digest: Digest) -> list[tuple[str, Item]]:
    """Every item of the digest with its change ("new", "reminder", "resolved"), in reading
    order: severity groups, most urgent first (new before reminders), then the resolved ones."""
    out: list[tuple[str, Item]] = []
    for severity in SEVERITIES:
        for change, items in (("new", digest.new), ("reminder", digest.reminders)):
            out += [(change, i) for i in sorted(items, key=urgency) if i.severity == severity]
    out += [("resolved", i) for i in sorted(digest.resolved, key=urgency)]
    return out
