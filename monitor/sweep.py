"""One sweep: pages fetched concurrently → completeness gate → stored as they arrive.

Page 1 gives ``total``; the remaining pages are fetched by a bounded pool of workers (the client
spaces requests to the configured rate) and handed to the caller in arrival order, so memory
holds a window of pages, never the inventory. The sweep is complete only if a whole pass over the
pages agrees with itself: stable ``total``, every page arrived, unique ids (plus unreadable items)
equal to ``total``. A pass that disagrees (numbers added or removed mid-sweep shift pages) is
followed by a re-read; if the inventory keeps moving, or shrank implausibly, the sweep fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from monitor.config import Settings
from monitor.errors import IncompleteSweep
from monitor.model import NumberRecord
from monitor.vobiz import Page, VobizClient, parse_page

ProgressFn = Callable[["SweepProgress"], None]


@dataclass
class SweepProgress:
    """Running figures of a sweep, passed to the progress callback after every page."""

    pass_no: int = 1
    pages_done: int = 0
    pages_total: int | None = None
    numbers: int = 0


@dataclass
class PassResult:
    ids: set[str] = field(default_factory=set)
    totals: set[int] = field(default_factory=set)
    items: int = 0
    malformed: int = 0
    duplicates: int = 0
    pages: int = 0

    @property
    def last_total(self) -> int | None:
        return max(self.totals) if self.totals else None

    def consistent(self) -> bool:
        """One stable total, matched by the distinct numbers plus unreadable items."""
        if len(self.totals) != 1:
            return False
        return len(self.ids) + self.malformed == next(iter(self.totals))


@dataclass
class FetchResult:
    """What a finished fetch vouches for: the authoritative ids and the figures."""

    ids: set[str]
    total: int | None
    pages: int
    passes: int
    malformed: int
    duplicates: int


def iter_pages(
    client: VobizClient,
    per_page: int,
    concurrency: int,
) -> Iterator[Page]:
    """Every page of the numbers list: page 1 first, the rest as they complete.

    Worker threads only fetch and decode (I/O and C); the records are parsed here, in the
    caller's thread, since threads that all run Python just take turns holding the GIL."""
    first = client.numbers_page(1, per_page)
    yield first
    if first.total is None:
        yield from _pages_without_total(client, first, per_page)
        return
    last_page = max(1, math.ceil(first.total / per_page))
    if last_page == 1:
        return
    bodies = client.numbers_bodies(range(2, last_page + 1), per_page, concurrency)
    with closing(bodies):
        for body in bodies:
            yield parse_page(*body)


def _pages_without_total(client: VobizClient, first: Page, per_page: int) -> Iterator[Page]:
    page = first
    while page.item_count >= per_page:
        page = client.numbers_page(page.page + 1, per_page)
        yield page


def fetch_inventory(
    client: VobizClient,
    settings: Settings,
    consume: Callable[[list[NumberRecord]], None],
    progress: ProgressFn | None = None,
    known: Collection[str] = (),
) -> FetchResult:
    """Fetch every page, hand each page's new records to ``consume``, and vouch for completeness.

    ``known`` are the numbers current before this sweep. When a consistent pass misses some of
    them, one more pass confirms the absence: a number released while another was bought keeps
    ``total`` unchanged but shifts pages, so a pass can add up and still have missed a number.
    A number seen in either pass counts as present; only one missing from both is gone. An API
    that gives no ``total`` must return the same numbers in two passes.
    """
    attempts = settings.sweep.reread_attempts + 1
    last: PassResult | None = None
    previous: set[str] | None = None
    confirming: PassResult | None = None
    for pass_no in range(1, attempts + 2):
        result = _one_pass(client, settings, consume, progress, pass_no)
        if confirming is not None:
            return _fetched(confirming, pass_no, confirming.ids | result.ids)
        last = result
        if not result.totals:
            if previous is not None and result.ids == previous:
                return _fetched(result, pass_no, result.ids)
        elif result.consistent():
            if not any(nid not in result.ids for nid in known):
                return _fetched(result, pass_no, result.ids)
            confirming = result  # some known numbers are missing: read once more to be sure
            continue
        if pass_no >= attempts:
            break
        previous = result.ids
    assert last is not None
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
) -> PassResult:
    cfg = settings.vobiz
    result = PassResult()
    prog = SweepProgress(pass_no=pass_no)
    for page in iter_pages(client, cfg.per_page, cfg.concurrency):
        result.pages += 1
        result.items += page.item_count
        result.malformed += page.malformed
        if page.total is not None:
            result.totals.add(page.total)
            prog.pages_total = max(1, math.ceil(max(result.totals) / cfg.per_page))
        fresh = []
        for rec in page.records:
            if rec.id in result.ids:
                result.duplicates += 1
                continue
            result.ids.add(rec.id)
            fresh.append(rec)
        # Later passes re-read what the first stored; the writer skips unchanged numbers.
        consume(fresh)
        prog.pages_done = result.pages
        prog.numbers = len(result.ids)
        if progress:
            progress(prog)
    return result


def _fetched(result: PassResult, passes: int, ids: set[str]) -> FetchResult:
    return FetchResult(
        ids=ids,
        total=result.last_total,
        pages=result.pages,
        passes=passes,
        malformed=result.malformed,
        duplicates=result.duplicates,
    )


def check_shrink(settings: Settings, before: int, now_seen: int) -> None:
    """Refuse an implausible drop: a sudden large shrink is far likelier an API fault."""
    limit = settings.sweep.max_shrink_fraction
    if before <= 0 or limit >= 1:
        return
    if now_seen < before * (1 - limit):
        drop = 1 - now_seen / before
        raise IncompleteSweep(
            f"the inventory shrank from {before} to {now_seen} numbers ({drop:.0%}), more than "
            f"sweep.max_shrink_fraction = {limit:g} allows",
            hint="if the drop is real, raise sweep.max_shrink_fraction for one sweep",
        )
