"""A digest as a Slack Block Kit message, kept within Slack's limits.

Slack refuses a message of more than 50 blocks or a section of more than 3,000 characters, and
Apprise reads a Block Kit message of at most 35,000 bytes. The message is a header with the
counts, then a heading and packed sections per severity (most urgent first, then the resolved),
and, when not everything fits, a last block saying how many more and linking the dashboard.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from monitor.alerts.digest import HEADINGS, Digest, due_soon_text, ordered_items, section, summary
from monitor.findings import FindingView, days_left, due_day, number_text
from monitor.vocab import (
    SEVERITIES,
    dashboard_link,
    due_text,
    escape,
    money_list,
    plain,
    shade,
    slack_text,
)

MAX_BLOCKS = 50
MAX_SECTION = 3_000
MAX_HEADER = 150
MAX_BYTES = 30_000  # under Apprise's 35,000-byte cap for a Block Kit message, with room to spare
_RESERVE_BLOCKS = 2  # the "N more" block and its divider
_RESERVE_BYTES = 800


def _words(text: str) -> str:
    return slack_text(plain(text, "markdown"))


def _line(change: str, item: FindingView, digest: Digest) -> str:
    account = escape(item.account_id, "slack")
    if item.account_name:
        account = f"{escape(item.account_name, 'slack')} {account}"
    subject = escape(number_text(item), "slack")
    parts = [f"• {subject} *{_words(item.rule)}* {account}: {_words(item.message)}"]
    days = days_left(item, digest.swept_at, digest.tz)
    if item.due_at is not None and days is not None:
        parts.append(f"{due_day(item, digest.tz)} ({due_text(days, short=True)})")
    if change == "reminder":
        parts.append(f"reminder{f' {item.tier}d' if item.tier is not None else ''}")
    if item.tags:
        parts.append(" ".join(escape(t, "slack") for t in item.tags[:5]))
    text = " · ".join(parts)
    return text if len(text) <= 900 else text[:899] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _size(block: dict[str, Any]) -> int:
    return len(json.dumps(block, ensure_ascii=False).encode())


def build(digest: Digest, title: str, dashboard_url: str = "") -> dict[str, Any]:
    """The Block Kit attachment (``{"blocks": [...], "color": ..., "fallback": ...}``) for
    ``digest``, headed by ``title`` (our own words: ``email.render_texts``). ``fallback`` is
    the plain text Slack shows where blocks are not drawn: phone and desktop notifications."""
    announced = digest.announced
    by_severity = Counter(i.severity for i in announced)
    counts = " · ".join(f"*{by_severity[s]}* {s}" for s in SEVERITIES if by_severity[s])
    facts = [summary(digest), f"{digest.numbers_swept} numbers swept"]
    if digest.caveat:
        facts.append(f"⚠ {_words(digest.caveat)}")
    if digest.notes:
        facts.append(f"note: {_words(digest.notes)}")
    if digest.at_risk:
        facts.append(f"monthly rental at risk: {slack_text(money_list(digest.at_risk))}")
    if digest.due_soon or digest.due_undated:
        facts.append(slack_text(due_soon_text(digest)))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header(title)}},
        _section(" — ".join(filter(None, [counts, " · ".join(facts)]))),
    ]
    rules = Counter(i.rule for i in announced)
    if rules:
        by_rule = " · ".join(f"{_words(r)} {n}" for r, n in sorted(rules.items()))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": by_rule}]})
    used = sum(_size(b) for b in blocks)
    items = ordered_items(digest)
    shown = 0
    current_key = None
    text = ""

    def room(extra_blocks: int, extra_bytes: int) -> bool:
        return (
            len(blocks) + extra_blocks + _RESERVE_BLOCKS <= MAX_BLOCKS
            and used + extra_bytes + _RESERVE_BYTES <= MAX_BYTES
        )

    def flush() -> None:
        nonlocal text, used
        if text:
            block = _section(text)
            blocks.append(block)
            used += _size(block)
            text = ""

    for change, item in items:
        key = section(change, item)
        line = _line(change, item, digest)
        if key != current_key:
            flush()
            heading = _section(f"*{HEADINGS.get(key, key)}*")
            if not room(3, _size(heading) + len(line.encode()) + 100):
                break
            blocks += [{"type": "divider"}, heading]
            used += _size(heading) + 20
            current_key = key
        if len(text) + len(line) + 1 > MAX_SECTION - 50:
            flush()
        if not room(1 if text else 2, len(text.encode()) + len(line.encode()) + 100):
            break
        text = f"{text}\n{line}" if text else line
        shown += 1
    flush()
    more = len(items) - shown
    if more or dashboard_url:
        left = Counter(section(change, item) for change, item in items[shown:])
        split = ", ".join(f"{n} {k}" for k in (*SEVERITIES, "resolved") if (n := left[k]))
        tail = f"…and *{more} more* ({split})" if more else ""
        if dashboard_url:
            findings = dashboard_link(dashboard_url, "findings")
            link = f"<{_url(findings)}|See all findings on the dashboard>"
            tail = f"{tail}: {link}" if tail else link
        blocks += [{"type": "divider"}, _section(tail)]
    top = max((i.severity for i in announced), key=SEVERITIES[::-1].index, default="info")
    return {"blocks": blocks, "color": shade(top).colour, "fallback": header(title)}


def header(title: str) -> str:
    """Plain text for the header block (at most 150 characters; no template tokens)."""
    return title.replace("{{", "{\u200b{")[:MAX_HEADER]


def _url(url: str) -> str:
    """A configured URL inside Slack's ``<url|text>``: the characters that would end it escaped."""
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
