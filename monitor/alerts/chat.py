"""Chat messages: a digest as size-limited Markdown or text, and the service notices.

Every string that came from the API passes through ``vocab.esc`` for the target format, so a
tag like ``<script>`` or a newline in a region cannot inject markup, links or headers.
"""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Literal

from monitor.alerts.channels import DEFAULT_LIMIT
from monitor.alerts.digest import HEADINGS, Digest, due_soon_text, ordered_items, section
from monitor.findings import FindingView, number_text
from monitor.vocab import SEVERITY_MARK, Format, esc, money_list, plain, when_text


def render_body(
    digest: Digest,
    fmt: Literal["markdown", "text"],
    *,
    limit: int = DEFAULT_LIMIT,
    max_items: int = 50,
    intro: str = "",
    footer: str = "",
) -> str:
    """The digest body in ``fmt`` for a chat channel, never longer than ``limit`` characters:
    past ``max_items`` per list, or the limit, a list ends with "…and N more". ``intro`` and
    ``footer`` are the digest's own (``email.render_texts``). (HTML is the email document,
    ``email.render_document``: an email has no limit to cut it at.)"""
    w = _Writer(fmt, limit)
    if intro:
        w.paragraph(plain(intro, fmt))
    # Grouped by severity, most urgent first (new before reminders), then the resolved ones.
    for key, group in groupby(ordered_items(digest), key=lambda pair: section(*pair)):
        pairs = list(group)
        w.heading(f"{HEADINGS[key]} ({len(pairs)})")
        for change, run in groupby(pairs, key=itemgetter(0)):
            lines = [_line(item, fmt) for _, item in run]
            label = {"new": "New", "reminder": "Reminders"}.get(change)
            w.section(f"{label} ({len(lines)})" if label else "", lines, max_items)
    w.parts += [
        f"Other findings still open: {digest.still_open}",
        f"Numbers swept: {digest.numbers_swept}",
    ]
    if digest.caveat:
        w.parts.append(f"⚠ {plain(digest.caveat, fmt)}")
    if digest.notes:
        w.parts.append(f"Note: {plain(digest.notes, fmt)}")
    if digest.at_risk:
        w.parts.append(f"Monthly rental at risk: {money_list(digest.at_risk)}")
    if digest.due_soon or digest.due_undated:
        w.parts.append(due_soon_text(digest))
    if footer:
        w.paragraph(plain(footer, fmt))
    return w.text()


def _line(item: FindingView, fmt: Literal["markdown", "text"]) -> str:
    mark = SEVERITY_MARK.get(item.severity, "")
    tier = f" [{item.tier}d]" if item.tier is not None else ""
    tags = f" tags: {', '.join(esc(t, fmt) for t in item.tags)}" if item.tags else ""
    number, account = esc(number_text(item), fmt), esc(item.account_id, fmt)
    if item.account_name and item.has_number:  # otherwise the name is the number column's
        account = f"{esc(item.account_name, fmt)} {account}"
    rule, message = plain(item.rule, fmt), plain(item.message, fmt)
    if fmt == "markdown":
        return f"{mark} *{rule}*{tier} {number} ({account}): {message}{tags}"
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

    def heading(self, text: str, emphasis: str = "*", underline: str = "=") -> None:
        """A heading of our own words and counts only: a severity group's, or with ``_`` and
        ``-`` a list's."""
        if self.fmt == "markdown":
            self.parts.append(f"{emphasis}{text}{emphasis}")
        else:
            self.parts.append(f"{text}\n" + underline * len(text))

    def section(self, heading: str, lines: list[str], max_items: int) -> None:
        if heading:
            self.heading(heading, "_", "-")
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

    def text(self) -> str:
        out = "\n".join(self.parts).strip() + "\n"
        return out[: self.limit]


def render_sweep_failed(error: str, fmt: Format, failed_at: datetime) -> tuple[str, str]:
    """Title and body of the alert sent when a sweep could not see the whole inventory."""
    body_text = (
        f"The sweep started {when_text(failed_at)} did not complete: {esc(error, fmt)}. "
        "No finding was resolved and no number was reported gone. "
        "The next sweep will try again."
    )
    return "did-monitor: sweep failed", paragraph(body_text, fmt)


def render_sweep_partial(reason: str, fmt: Format, swept_at: datetime) -> tuple[str, str]:
    """Title and body of the notice a partner channel gets from a partial sweep that had no
    digest for it: the caveat a digest would have carried, on its own (our own words, as in the
    digest: counts, positions and phone numbers reduced to digits; never cut short)."""
    when = when_text(swept_at)
    body_text = (
        f"The sweep started {when} could not read the whole inventory: {plain(reason, fmt)}. "
        "What it read is stored and checked by the rules. The next sweep will try again."
    )
    return "did-monitor: sweep incomplete", paragraph(body_text, fmt)


def render_unreadable_dates(note: str, fmt: Format, swept_at: datetime) -> tuple[str, str]:
    """Title and body of the notice a partner channel gets when the numbers with an unreadable
    date (``note``: ``sweep.UnreadableDates.describe``, our own words and digits) changed and it
    had no digest to carry the note. Nothing is wrong with the sweep: only those dates."""
    body_text = (
        f"The sweep started {when_text(swept_at)} found dates it could not read in the API's data: "
        f"{plain(note, fmt)}. These numbers are stored and checked by the other rules; "
        "the rules that need those dates cannot check them. This notice is sent again only "
        "when the numbers affected change."
    )
    return "did-monitor: numbers with unreadable dates", paragraph(body_text, fmt)


def render_channel_failing(channel: str, failures: int, error: str, fmt: Format) -> tuple[str, str]:
    text = (
        f"Alerts to channel {esc(channel, fmt)} have failed {failures} times in a row "
        f"(last error: {esc(error, fmt)}). Its messages are kept in the outbox until sent."
    )
    return "did-monitor: channel failing", paragraph(text, fmt)


def paragraph(text: str, fmt: Format) -> str:
    """A service message's body: ``text`` (escaped already), a paragraph in HTML."""
    return f"<p>{text}</p>" if fmt == "html" else text
