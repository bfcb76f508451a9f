"""The dashboard's read-only questions to the database, each bounded: a page of rows, or one
aggregate per sweep. Every filter is an equality an index serves; the per-sweep series read the
``sweeps`` row counters or the versions' opening and closing sweeps, never the inventory as it
stood at each sweep.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from monitor import reports
from monitor.findings import FindingView, view
from monitor.store import (
    ACCOUNTS,
    FINDINGS,
    SWEEPS,
    VERSIONS,
    Store,
    current,
    display_order,
    finding_query,
    inventory_sweep,
    silenced,
    unsilenced,
    urgency_order,
)
from monitor.store.db import latest_sweeps
from monitor.vocab import currency_code

T = TypeVar("T")


STATES: Final = ("open", "silenced", "resolved", "all")
HISTORY_SWEEPS: Final = 52  # a year of weekly sweeps in the charts
NUMBER_FINDINGS_LIMIT: Final = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: ``items`` are rows ``offset + 1`` to ``offset + len(items)``."""

    items: list[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def _window(stmt: sa.Select[Any], page: int, per_page: int) -> sa.Select[Any]:
    return stmt.limit(per_page).offset((max(page, 1) - 1) * per_page)


def _count(conn: Connection, rows: sa.FromClause, *where: Any) -> int:
    count = sa.select(sa.func.count()).select_from(rows).where(*where)
    return int(conn.execute(count).scalar_one())


def _rows_page(store: Store, stmt: sa.Select[Any], page: int, per_page: int) -> Page[RowMapping]:
    with store.connect() as conn:
        rows = list(conn.execute(_window(stmt, page, per_page)).mappings())
        return Page(rows, max(page, 1), per_page, _count(conn, stmt.order_by(None).subquery()))


def sweeps_page(store: Store, page: int, per_page: int) -> Page[RowMapping]:
    """Every sweep, newest first."""
    return _rows_page(store, sa.select(SWEEPS).order_by(SWEEPS.c.id.desc()), page, per_page)


def data_version(store: Store) -> tuple[Any, ...]:
    """Changes whenever a sweep starts or ends: what the charts' cache is keyed on."""
    last = store.last_sweep()
    return (last["id"], last["status"], last["finished_at"]) if last is not None else ()


def complete_sweeps(store: Store, limit: int = HISTORY_SWEEPS) -> list[RowMapping]:
    """The last ``limit`` complete sweeps, oldest first (the x axis of every history chart)."""
    with store.connect() as conn:
        return latest_sweeps(conn, "complete", limit=limit)[::-1]


def rental_by_sweep(store: Store, sweep_ids: Sequence[int]) -> dict[str, list[float]]:
    """Monthly rental of the active numbers per currency at each of ``sweep_ids`` (ascending).

    A version counts at sweep s when ``valid_from <= s`` and it was not closed by s, so the
    total at s is what opened up to s minus what closed up to s: two grouped sums over the
    versions instead of one inventory per sweep. Floats: this feeds a chart, not an invoice.
    """
    if not sweep_ids:
        return {}
    fee = sa.func.sum(VERSIONS.c.monthly_fee)
    deltas: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    with store.connect() as conn:
        for column, sign in ((VERSIONS.c.valid_from, 1.0), (VERSIONS.c.valid_to, -1.0)):
            stmt = (
                sa.select(column, VERSIONS.c.currency, fee)
                .where(VERSIONS.c.status == "active", column.is_not(None), column <= sweep_ids[-1])
                .group_by(column, VERSIONS.c.currency)
            )
            for sweep_id, currency, amount in conn.execute(stmt):
                deltas[currency_code(currency)][int(sweep_id)] += sign * float(amount or 0)
    out: dict[str, list[float]] = {}
    for currency, changes in sorted(deltas.items()):
        ids, amounts = zip(*sorted(changes.items()), strict=True)
        totals = [0.0, *accumulate(amounts)]
        out[currency] = [round(totals[bisect_right(ids, s)], 2) for s in sweep_ids]
    return out


@dataclass(frozen=True)
class FindingFilter:
    """The findings page's filters; "" is "any". ``number`` is a prefix of the E.164."""

    rule: str = ""
    severity: str = ""
    account: str = ""
    number: str = ""
    state: str = "open"

    def query(self, **changes: Any) -> dict[str, str]:
        """The non-default filters as query parameters (with ``changes`` applied)."""
        values = asdict(self) | changes
        return {k: str(v) for k, v in values.items() if v and not (k == "state" and v == "open")}


@dataclass(frozen=True)
class FindingsPage(Page[FindingView]):
    """A page of findings, and how many that the filters match (the state aside) are open and
    silenced ("open" never counts a silenced one)."""

    open: int = 0
    silenced: int = 0


def findings_page(
    store: Store, filters: FindingFilter, page: int, per_page: int, now: datetime
) -> FindingsPage:
    """Findings matching ``filters``, most urgent first."""
    hushed = silenced(now)
    equal = {"rule": filters.rule, "severity": filters.severity, "account_id": filters.account}
    where = [FINDINGS.c[column] == value for column, value in equal.items() if value]
    if filters.number:
        where.append(FINDINGS.c.e164.startswith(filters.number, autoescape=True))
    by_state = {
        "open": [unsilenced(now)],
        "silenced": [hushed],
        "resolved": [FINDINGS.c.state == "resolved"],
    }.get(filters.state, [])
    # One pass counts the open and silenced ones (each open finding's silence test once), and
    # answers the total too unless the list is of resolved or all findings.
    tally = sa.select(sa.func.count(), sa.func.sum(sa.case((hushed, 1), else_=0)))
    tally = tally.where(*where, FINDINGS.c.state == "open")
    # One state listed: its order within is the urgency alone (no per-row state test to sort on).
    order = urgency_order() if by_state else display_order(now)
    listed = finding_query(now, store.last_complete_start()).where(*where, *by_state)
    with store.connect() as conn:
        open_total, hushed_count = conn.execute(tally).one()
        hushed_count = int(hushed_count or 0)
        opened = int(open_total) - hushed_count
        total = {"open": opened, "silenced": hushed_count}.get(filters.state)
        if total is None:
            total = _count(conn, FINDINGS, *where, *by_state)
        rows = conn.execute(_window(listed.order_by(*order), page, per_page)).mappings()
        items = [view(row) for row in rows]
    return FindingsPage(items, max(page, 1), per_page, total, opened, hushed_count)


def findings_of_number(store: Store, e164: str, now: datetime) -> list[FindingView]:
    """Every finding about the number(s) with this E.164 (bounded), in display order."""
    stmt = (
        finding_query(now, store.last_complete_start())
        .where(FINDINGS.c.e164 == e164)
        .order_by(*display_order(now))
        .limit(NUMBER_FINDINGS_LIMIT)
    )
    with store.connect() as conn:
        return [view(row) for row in conn.execute(stmt).mappings()]


@dataclass
class AccountRow:
    """One customer as the accounts page shows it; amounts per currency, summed as
    ``did-monitor costs`` sums them."""

    account_id: str
    numbers: int
    active: int
    name: str | None = None
    rental: dict[str, Decimal] = field(default_factory=dict)
    unpriced: int = 0
    open_findings: int = 0
    silenced_findings: int = 0
    # rental falling due in the next reports.DUE_WINDOWS days, per currency (``reports.forecast``)
    due: dict[int, dict[str, Decimal]] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountsPage(Page[AccountRow]):
    """The accounts page, with every account's rental falling due in each of
    ``reports.DUE_WINDOWS`` and the active numbers no billing date counts."""

    due: dict[int, dict[str, Decimal]] = field(default_factory=dict)
    undated: int = 0


def _accounts(at: int | None) -> tuple[sa.Select[Any], sa.Subquery]:
    """Customers in the inventory or account list as of sweep ``at`` (``inventory_sweep``) with
    their numbers, active numbers and name, those with no active number first; and the subquery
    of their ids."""
    active = sa.func.sum(sa.case((VERSIONS.c.status == "active", 1), else_=0))
    numbers = (
        sa.select(VERSIONS.c.account_id, sa.func.count().label("numbers"), active.label("active"))
        .where(current(VERSIONS, at))
        .group_by(VERSIONS.c.account_id)
        .subquery()
    )
    named = (
        sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.name).where(current(ACCOUNTS, at)).subquery()
    )
    ids = sa.union(
        sa.select(VERSIONS.c.account_id).where(current(VERSIONS, at)),
        sa.select(named.c.account_id),
    ).subquery()
    idle = sa.func.coalesce(numbers.c.active, 0) == 0
    ordered = (
        sa.select(ids.c.account_id, numbers.c.numbers, numbers.c.active, named.c.name)
        .select_from(
            ids.outerjoin(numbers, numbers.c.account_id == ids.c.account_id).outerjoin(
                named, named.c.account_id == ids.c.account_id
            )
        )
        .order_by(sa.case((idle, 0), else_=1), ids.c.account_id)
    )
    return ordered, ids


def _account_rows(
    conn: Connection, stmt: sa.Select[Any], now: datetime, tz: tzinfo, at: int | None
) -> list[AccountRow]:
    rows = [
        AccountRow(str(r.account_id), int(r.numbers or 0), int(r.active or 0), r.name)
        for r in conn.execute(stmt)
    ]
    by_id = {r.account_id: r for r in rows}
    if not by_id:
        return rows
    lines, _ = reports.cost_lines(conn, at, by_id)
    for (account_id, currency), line in lines.items():
        row = by_id[account_id]
        row.unpriced += line.unpriced
        if line.active_numbers > line.unpriced:
            row.rental[currency] = line.monthly_rental
    counts = (
        sa.select(
            FINDINGS.c.account_id,
            sa.func.sum(sa.case((unsilenced(now), 1), else_=0)),
            sa.func.sum(sa.case((silenced(now), 1), else_=0)),
        )
        .where(FINDINGS.c.state == "open", FINDINGS.c.account_id.in_(by_id))
        .group_by(FINDINGS.c.account_id)
    )
    for account_id, opened, hushed in conn.execute(counts):
        by_id[account_id].open_findings = int(opened or 0)
        by_id[account_id].silenced_findings = int(hushed or 0)
    for shown in reports.forecasts(conn, at, reports.due_windows(now, tz), by_id):
        days = (shown.window.end - shown.window.first).days
        for (account_id, currency), due_line in shown.lines.items():
            by_id[account_id].due.setdefault(days, {})[currency] = due_line.amount_due
    return rows


def accounts_page(
    store: Store, page: int, per_page: int, now: datetime, tz: tzinfo
) -> AccountsPage:
    with store.connect() as conn:
        at = inventory_sweep(conn)
        ordered, ids = _accounts(at)
        total = _count(conn, ids)
        rows = _account_rows(conn, _window(ordered, page, per_page), now, tz, at)
        due: dict[int, dict[str, Decimal]] = {}
        undated = 0
        for everyone in reports.forecasts(conn, at, reports.due_windows(now, tz)):
            days = (everyone.window.end - everyone.window.first).days
            due[days] = {c: everyone.totals[c].amount_due for c in sorted(everyone.totals)}
            undated = len(everyone.undated)
    return AccountsPage(rows, max(page, 1), per_page, total, due, undated)


def account(store: Store, account_id: str, now: datetime, tz: tzinfo) -> AccountRow | None:
    """One customer as the accounts page shows it; None if unknown."""
    with store.connect() as conn:
        at = inventory_sweep(conn)
        ordered, ids = _accounts(at)
        rows = _account_rows(conn, ordered.where(ids.c.account_id == account_id), now, tz, at)
    return rows[0] if rows else None


def account_numbers(store: Store, account_id: str, page: int, per_page: int) -> Page[RowMapping]:
    """The customer's numbers in the inventory (as of the last complete sweep), by E.164."""
    with store.connect() as conn:
        at = inventory_sweep(conn)
    columns = ("e164", "status", "application_id", "is_blocked", "next_billing_date")
    stmt = (
        sa.select(*(VERSIONS.c[name] for name in (*columns, "monthly_fee", "currency")))
        .where(current(VERSIONS, at), VERSIONS.c.account_id == account_id)
        .order_by(VERSIONS.c.e164, VERSIONS.c.number_id)
    )
    return _rows_page(store, stmt, page, per_page)
