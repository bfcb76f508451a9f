"""A channel's digest as data: the findings it announces, its summary and its money lines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal

from monitor.findings import FindingView, urgency
from monitor.vocab import SEVERITIES, SEVERITY_MARK, currency_code, money_list


@dataclass
class Digest:
    """What one channel is told after one sweep."""

    new: list[FindingView] = field(default_factory=list)
    reminders: list[FindingView] = field(default_factory=list)
    resolved: list[FindingView] = field(default_factory=list)
    still_open: int = 0  # the channel's other open findings: not listed as new or reminders
    numbers_swept: int = 0
    at_risk: dict[str, Decimal] = field(default_factory=dict)
    # Rental of the channel's active numbers falling due in the next 7 days, per currency
    # (``reports.forecast``); ``due_undated`` counts the numbers with no billing date.
    due_soon: dict[str, Decimal] = field(default_factory=dict)
    due_undated: int = 0
    swept_at: datetime | None = None
    # The time zone days are counted in (``settings.rules_zone``): each finding's due day and
    # days left, counted from ``swept_at``, read as its rule's message counts them.
    tz: tzinfo = UTC
    # Set when the sweep was partial: what it could not read, and that nothing was resolved.
    caveat: str = ""
    # What a sweep (complete or not) read but could not check: numbers with an unreadable date
    # (``sweep.UnreadableDates``). A note in the summary, not a warning about the sweep.
    notes: str = ""

    @property
    def is_quiet(self) -> bool:
        return not (self.new or self.reminders or self.resolved)

    @property
    def announced(self) -> list[FindingView]:
        """The findings it tells of as open: new ones and reminders."""
        return [*self.new, *self.reminders]


def rental_at_risk(items: Sequence[FindingView]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for it in items:
        if it.monthly_fee is not None:
            totals[currency_code(it.currency)] += it.monthly_fee
    return dict(sorted(totals.items()))


DUE_DAYS = 7  # the digest's look ahead at rental falling due


def due_soon_text(digest: Digest) -> str:
    """The digest's line on rental falling due in the next ``DUE_DAYS`` days, one for every
    format (our own words and exact amounts: nothing to escape)."""
    text = f"Rental due in the next {DUE_DAYS} days: {money_list(digest.due_soon)}"
    if digest.due_undated:
        text += f" ({digest.due_undated} active number(s) have no billing date)"
    return text


def summary(digest: Digest) -> str:
    """ "2 new, 1 reminder, 3 resolved", naming only what is there."""
    parts = [
        (len(digest.new), "new", "new"),
        (len(digest.reminders), "reminder", "reminders"),
        (len(digest.resolved), "resolved", "resolved"),
    ]
    text = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n)
    return text or "nothing new"


def section(change: str, item: FindingView) -> str:
    """The part of a digest an item of ``ordered_items`` is listed in: its severity's, or
    "resolved"."""
    return "resolved" if change == "resolved" else item.severity


# The heading of each part of a digest (``section``): a severity's, with its mark, or resolved.
HEADINGS = {"resolved": "✅ Resolved"} | {
    s: f"{SEVERITY_MARK.get(s, '')} {s.capitalize()}".strip() for s in SEVERITIES
}


def ordered_items(digest: Digest) -> list[tuple[str, FindingView]]:
    """Every item of the digest with its change ("new", "reminder", "resolved"), in reading
    order: severity groups, most urgent first (new before reminders), then the resolved ones."""
    out: list[tuple[str, FindingView]] = []
    for severity in SEVERITIES:
        for change, items in (("new", digest.new), ("reminder", digest.reminders)):
            out += [(change, i) for i in sorted(items, key=urgency) if i.severity == severity]
    out += [("resolved", i) for i in sorted(digest.resolved, key=urgency)]
    return out
