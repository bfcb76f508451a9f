"""One sweep: pages fetched and parsed concurrently → completeness gate → stored as they arrive.

Page 1 gives ``total``; the remaining pages are fetched by a bounded pool of workers (the client
spaces requests to the configured rate) and handed to the caller in arrival order, so memory
holds a window of pages, never the inventory. The sweep is complete only if a whole pass over the
pages agrees with itself: stable ``total``, every page arrived, unique ids (plus unreadable items)
equal to ``total``. A pass that disagrees (numbers added or removed mid-sweep shift pages) is
followed by a re-read; if the inventory keeps moving, or shrank implausibly, the sweep fails.
"""

from __future__ import annotations

import math
import re
import time
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.config import Settings
from monitor.errors import IncompleteSweep
from monitor.model import DATE_FIELDS, NumberRecord
from monitor.vobiz import NUMBERS, VobizClient

ProgressFn = Callable[["SweepProgress"], None]
# New records are handed to ``consume`` in batches of at least this many (the rest at the end of
# a pass): each database statement costs the same whatever its size, and the sweep's thread
# waits for the fetch threads to give back the GIL after each one.
CONSUME_BATCH = 500


@dataclass
class SweepProgress:
    """Running figures of a sweep, passed to the progress callback after every page."""

    pass_no: int = 1
    pages_done: int = 0
    pages_total: int | None = None
    numbers: int = 0


# Unreadable items (by page and position) and numbers with an unreadable date (per field) named
# in a message; the rest are counted. Both may share a digest's summary, so they stay short.
NAMED_ITEMS = 10
NAMED_NUMBERS = 5
_NOT_PHONE = re.compile(r"[^+0-9]")


def _listed(shown: list[str], count: int) -> str:
    """``a, b, c and 7 more``: ``shown``, the first of ``count`` things."""
    more = count - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@dataclass
class UnreadableDates:
    """Numbers whose dates the rules read (``model.DATE_FIELDS``) held a value that is no time,
    by field: all counted, the ``NAMED_NUMBERS`` lowest named. Such a number is stored and checked
    by the other rules, but its date cannot be, so the sweep says so instead of staying silent."""

    counts: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, list[str]] = field(default_factory=dict)

    def add(self, rec: NumberRecord) -> None:
        # Only the digits and "+" of the e164: the text goes into every digest format as is.
        shown = _NOT_PHONE.sub("", rec.e164) or "(a number without an e164)"
        for name in rec.unreadable_dates:
            self.counts[name] = self.counts.get(name, 0) + 1
            named = self.numbers.setdefault(name, [])
            insort(named, shown)  # the same numbers named whatever order the pages came in
            del named[NAMED_NUMBERS:]

    def describe(self) -> str | None:
        """``3 numbers have an unreadable next_billing_date: +91…, +91…, +91…`` per field (one
        sentence each, joined by "; "), or None when every date could be read."""
        parts = []
        for name in DATE_FIELDS:
            if count := self.counts.get(name, 0):
                have = "1 number has" if count == 1 else f"{count} numbers have"
                parts.append(f"{have} an unreadable {name}: {_listed(self.numbers[name], count)}")
        return "; ".join(parts) or None


@dataclass
class PassResult:
    """What one pass over the pages saw; a finished fetch returns the pass it vouches for, its
    ``ids`` the authoritative ones."""

    ids: set[str] = field(default_factory=set)
    totals: set[int] = field(default_factory=set)
    malformed: int = 0
    duplicates: int = 0
    pages: int = 0
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # (page, position)
    dates: UnreadableDates = field(default_factory=UnreadableDates)

    @property
    def total(self) -> int | None:
        return max(self.totals, default=None)

    def consistent(self) -> bool:
        """One stable total, matched by the distinct numbers plus unreadable items."""
        return len(self.totals) == 1 and len(self.ids) + self.malformed == self.total

    def where_unreadable(self) -> str:
        """``page 3 position 17, ...`` for the first ``NAMED_ITEMS`` unreadable items."""
        return where_unreadable(self.unreadable, self.malformed)


def where_unreadable(unreadable: list[tuple[int, int]], count: int) -> str:
    """``page 3 position 17, ...``: the first ``NAMED_ITEMS`` of ``count`` unreadable items of a
    paged list, by (page, position)."""
    shown = [f"page {p} position {i}" for p, i in unreadable[:NAMED_ITEMS]]
    return _listed(shown, count)


def fetch_inventory(
    client: VobizClient,
    settings: Settings,
    consume: Callable[[list[NumberRecord]], None],
    progress: ProgressFn | None = None,
    misses_known: Callable[[set[str]], bool] | None = None,
    deadline: float | None = None,
) -> PassResult:
    """Fetch every page, hand each page's new records to ``consume``, and vouch for completeness.

    ``misses_known(ids)`` tells whether a number current before this sweep is not among ``ids``
    (the writer answers it from the database). When a consistent pass misses one, one more pass
    confirms the absence: a number released while another was bought keeps ``total`` unchanged
    but shifts pages, so a pass can add up and still have missed a number. A number seen in
    either pass counts as present; only one missing from both is gone. An API that gives no
    ``total`` must return the same numbers in two passes. Past ``deadline``
    (``time.monotonic()``, from ``sweep.max_duration``) the sweep fails at its next page.
    """
    attempts = settings.sweep.reread_attempts + 1
    previous: set[str] | None = None
    confirming: PassResult | None = None
    for pass_no in range(1, attempts + 2):
        last = _one_pass(client, settings, consume, progress, pass_no, deadline)
        if confirming is not None:
            confirming.ids |= last.ids
            return confirming
        if not last.totals and last.ids == previous:
            return last
        if last.consistent():
            if misses_known is None or not misses_known(last.ids):
                return last
            confirming = last  # some known numbers are missing: read once more to be sure
            continue
        if pass_no >= attempts:
            break
        previous = last.ids
    if not last.totals:
        raise IncompleteSweep(
            f"the API gave no total and {attempts} pass(es) over the pages did not agree on the "
            "inventory, so the sweep cannot vouch that it saw every number",
            hint="raise sweep.reread_attempts, or check the API's envelope",
        )
    totals = ", ".join(str(t) for t in sorted(last.totals))
    raise IncompleteSweep(
        f"the inventory did not add up after {attempts} pass(es): the API reported total "
        f"{totals} but {len(last.ids)} distinct numbers arrived ({last.malformed} unreadable, "
        f"{last.duplicates} repeated)",
        hint="numbers were probably added or released during the sweep; it will be retried",
    )


def _one_pass(
    client: VobizClient,
    settings: Settings,
    consume: Callable[[list[NumberRecord]], None],
    progress: ProgressFn | None,
    pass_no: int,
    deadline: float | None,
) -> PassResult:
    cfg = settings.vobiz
    result = PassResult()
    prog = SweepProgress(pass_no=pass_no)
    fresh: list[NumberRecord] = []
    for page in client.iter_pages(NUMBERS, cfg.per_page, cfg.concurrency):
        if deadline is not None and time.monotonic() > deadline:
            limit = settings.sweep.max_duration
            raise IncompleteSweep(
                f"the sweep ran longer than sweep.max_duration = {limit}s and was stopped "
                f"at pass {pass_no}, page {page.page}",
                hint="raise sweep.max_duration, or vobiz.max_requests_per_second for a faster "
                "sweep",
            )
        result.pages += 1
        result.malformed += len(page.unreadable)
        if len(result.unreadable) < 1000:
            result.unreadable.extend((page.page, pos) for pos in page.unreadable)
        if page.total is not None:
            result.totals.add(page.total)
            prog.pages_total = max(1, math.ceil(max(result.totals) / cfg.per_page))
        for rec in page.records:
            if rec.id in result.ids:
                result.duplicates += 1
                continue
            result.ids.add(rec.id)
            fresh.append(rec)
            if rec.unreadable_dates:
                result.dates.add(rec)
        # Later passes re-read what the first stored; the writer skips unchanged numbers.
        if len(fresh) >= CONSUME_BATCH:
            consume(fresh)
            fresh = []
        prog.pages_done = result.pages
        prog.numbers = len(result.ids)
        if progress:
            progress(prog)
    if fresh:
        consume(fresh)
    return result


def check_shrink(settings: Settings, before: int, now_seen: int) -> None:
    """Refuse an implausible drop: a sudden large shrink is far likelier an API fault."""
    limit = settings.sweep.max_shrink_fraction
    if before > 0 and limit < 1 and now_seen < before * (1 - limit):
        drop = 1 - now_seen / before
        raise IncompleteSweep(
            f"the inventory shrank from {before} to {now_seen} numbers ({drop:.0%}), more than "
            f"sweep.max_shrink_fraction = {limit:g} allows",
            hint="if the drop is real, raise sweep.max_shrink_fraction for one sweep",
        )


def check_identities(
    settings: Settings, known: int, vanished: int, seen: int, unreadable: int
) -> None:
    """Refuse a sweep in which most numbers changed identity at once (all "gone", as many
    "new"): an API that renamed or re-keyed its ids, not a real turnover. Judged like a shrink,
    by ``sweep.max_shrink_fraction`` of the ``known`` numbers, ``vanished`` of which this sweep
    did not see (it saw ``seen``). ``unreadable`` items may be known numbers: they do not count
    as vanished (the sweep is partial instead). Counts, not ids: the writer counts them in the
    database, so the sweep never holds the known ids."""
    limit = settings.sweep.max_shrink_fraction
    if known and limit < 1 and vanished - unreadable > known * limit:
        raise IncompleteSweep(
            f"{vanished} of the {known} numbers known before are missing from this sweep "
            f"while it saw {seen}: the API's ids seem to have changed (a renamed id field?), "
            f"more than sweep.max_shrink_fraction = {limit:g} allows",
            hint="nothing was resolved; if the change is real, raise sweep.max_shrink_fraction "
            "for one sweep",
        )
