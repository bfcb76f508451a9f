"""Reports over stored sweeps: inventory, costs, diff. Plain queries returning rows.

Shared by the CLI and the web dashboard; nothing here prints. Every report reads complete
sweeps only (a failed or partial sweep is never a state of the inventory). Money is summed as
``Decimal``, never as a float, and a sum is only ever taken within one currency.

One module because the three reports share the sweep-selection helpers (which sweep was in
force when, the current rows as of a sweep) that would otherwise be imported back from a split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import takewhile
from typing import Any

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from sqlalchemy.engine import Connection, Engine, RowMapping

from monitor.errors import ConfigError
from monitor.model import parse_day, parse_time
from monitor.store.accounts import account_names
from monitor.store.db import MAX_ROW_ID, SWEEPS, VERSIONS, current, latest_sweeps
from monitor.vocab import ascii_digits, currency_code, iso, money_text

Row = Mapping[Any, Any]  # RowMapping or dict


def _json_ready(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_text(value)
    if isinstance(value, datetime):
        return iso(value)
    return list(value) if isinstance(value, tuple) else value


class _Fields:
    def as_dict(self) -> dict[str, Any]:
        """Stable keys (the fields, in order) and JSON-ready values (money as exact text, times
        RFC 3339 UTC)."""
        return {f.name: _json_ready(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class SweepRef(_Fields):
    """The complete sweep a report describes."""

    id: int
    started_at: datetime


# --- which sweep ------------------------------------------------------------------------------


def _ref(row: Row) -> SweepRef:
    return SweepRef(row["id"], row["started_at"])


def complete_sweeps(conn: Connection, limit: int = 2) -> list[SweepRef]:
    """The latest complete sweeps, newest first; ``ConfigError`` before the first."""
    latest = [_ref(r) for r in latest_sweeps(conn, "complete", limit=limit)]
    if not latest:
        raise ConfigError("no complete sweep yet", hint="run `did-monitor sweep` first")
    return latest


def sweep_in_force(conn: Connection, when: datetime) -> SweepRef | None:
    """The last complete sweep that started at or before ``when``."""
    stmt = (
        sa.select(SWEEPS.c.id, SWEEPS.c.started_at)
        .where(SWEEPS.c.status == "complete", SWEEPS.c.started_at <= when)
        .order_by(SWEEPS.c.started_at.desc(), SWEEPS.c.id.desc())
        .limit(1)
    )
    row = conn.execute(stmt).mappings().first()
    return None if row is None else _ref(row)


def parse_when(text: str, tz: tzinfo, option: str) -> datetime:
    """A date (the end of that day in ``tz``) or an RFC 3339 time; ``ConfigError`` otherwise,
    and for a moment outside years 1 to 9999 in UTC (the end of 9999-12-31 west of UTC), which
    no database compares."""
    day = parse_day(text)
    if day is not None:
        end = datetime.combine(day, time.max, tz)
        try:
            end.astimezone(UTC)
        except OverflowError:
            raise ConfigError(
                f"{option}: {day} is out of range (the end of that day in {tz} is after the"
                " year 9999 in UTC)"
            ) from None
        return end
    when = parse_time(text)
    if when is None:
        raise ConfigError(
            f"{option}: cannot read {text!r}", hint="use a date (2026-11-30) or an RFC 3339 time"
        )
    return when


def _sweep_at(conn: Connection, at: datetime | None = None) -> SweepRef:
    if at is None:
        return complete_sweeps(conn, 1)[0]
    found = sweep_in_force(conn, at)
    if found is None:
        raise ConfigError(f"--at: no complete sweep on or before {iso(at)}")
    return found


# --- inventory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryRow(_Fields):
    e164: str
    number_id: str
    account_id: str
    status: str
    country: str | None
    region: str | None
    application_id: str | None
    monthly_fee: Decimal | None
    currency: str | None
    next_billing_date: datetime | None
    expires_at: datetime | None
    tags: tuple[str, ...]


INVENTORY_FIELDS = tuple(InventoryRow.__dataclass_fields__)


@dataclass
class Report:
    """A report's rows and the sweep(s) they describe."""

    name: str
    sweep: SweepRef
    rows: list[Any]
    since: SweepRef | None = None
    totals: list[Any] = field(default_factory=list)
    forecast: Forecast | None = None  # the ``due`` report's window and undated numbers


def inventory(
    engine: Engine,
    *,
    account: str | None = None,
    status: str | None = None,
    country: str | None = None,
) -> Report:
    """The numbers of the latest complete sweep, one row each, by account then number.
    ``status`` and ``country`` match case-insensitively."""
    with engine.connect() as conn:
        ref = _sweep_at(conn)
        stmt = sa.select(VERSIONS).where(current(VERSIONS, ref.id))
        if account:
            stmt = stmt.where(VERSIONS.c.account_id == account)
        if status:
            stmt = stmt.where(VERSIONS.c.status == status.strip().lower())
        if country:
            stmt = stmt.where(sa.func.upper(VERSIONS.c.country) == country.strip().upper())
        stmt = stmt.order_by(VERSIONS.c.account_id, VERSIONS.c.e164, VERSIONS.c.number_id)
        stored = [f for f in INVENTORY_FIELDS if f != "tags"]  # columns of the same names
        rows = [
            InventoryRow(**{f: r[f] for f in stored}, tags=tuple(str(t) for t in r["tags"] or ()))
            for r in conn.execute(stmt).mappings()
        ]
    return Report("inventory", ref, rows)


# --- costs ------------------------------------------------------------------------------------


@dataclass
class CostRow(_Fields):
    """One invoice line: an account's active numbers in one currency and their monthly rental.
    ``account_name`` is the name the accounts endpoint gave (none if unknown; keyword-only, so
    that it may stand beside the id in the columns); ``unpriced`` counts active numbers the API
    gave no monthly fee for (not in the sum)."""

    account_id: str
    account_name: str | None = field(default=None, kw_only=True)
    currency: str
    active_numbers: int = 0
    monthly_rental: Decimal = Decimal(0)
    unpriced: int = 0


COST_FIELDS = tuple(CostRow.__dataclass_fields__)


def cost_lines(
    conn: Connection, sweep_id: int | None, accounts: Collection[str] | None = None
) -> tuple[dict[tuple[str, str], CostRow], dict[str, CostRow]]:
    """The invoice lines ((account, currency) → row) and per-currency totals of the active
    numbers in force at complete sweep ``sweep_id``, or of the current rows when it is ``None``
    (the dashboard's view, served by the partial index on current rows). ``accounts`` limits
    the accounts read. Currencies as ``model.currency_code`` shows them (``""`` for none)."""
    lines: dict[tuple[str, str], CostRow] = {}
    totals: dict[str, CostRow] = {}
    columns = ("account_id", "currency", "monthly_fee")
    for acct, currency, fee in conn.execute(_active(sweep_id, accounts, columns)):
        cur = currency_code(currency)
        for line in (
            lines.setdefault((acct, cur), CostRow(acct, cur)),
            totals.setdefault(cur, CostRow("*", cur)),
        ):
            line.active_numbers += 1
            if fee is None:
                line.unpriced += 1
            else:
                line.monthly_rental += Decimal(fee)
    return lines, totals


def _active(
    sweep_id: int | None, accounts: Collection[str] | None, columns: Sequence[str]
) -> sa.Select[Any]:
    """``columns`` of the active numbers in force at ``sweep_id`` (as ``current`` reads it), of
    ``accounts`` only if given, read in batches."""
    stmt = sa.select(*(VERSIONS.c[name] for name in columns))
    stmt = stmt.where(current(VERSIONS, sweep_id), VERSIONS.c.status == "active")
    if accounts is not None:
        stmt = stmt.where(VERSIONS.c.account_id.in_(list(accounts)))
    return stmt.execution_options(yield_per=5000)


def costs(engine: Engine, *, account: str | None = None, at: datetime | None = None) -> Report:
    """Per account and currency, the active numbers and the sum of their monthly rental, as of
    the latest complete sweep (or the one in force at ``at``). ``totals`` has one row per
    currency over every account shown (``account_id`` is ``"*"``)."""
    with engine.connect() as conn:
        ref = _sweep_at(conn, at)
        lines, totals = cost_lines(conn, ref.id, [account] if account else None)
        return _by_account(conn, Report("costs", ref, []), lines, totals)


def _by_account(
    conn: Connection, report: Report, lines: Mapping[Any, Any], totals: Mapping[str, Any]
) -> Report:
    """``report`` with the ``lines`` (each named after its account) and ``totals`` in order."""
    names = account_names(conn, report.sweep.id)
    report.rows = [lines[k] for k in sorted(lines)]
    for row in report.rows:
        row.account_name = names.get(row.account_id)
    report.totals = [totals[k] for k in sorted(totals)]
    return report


# --- rental due -------------------------------------------------------------------------------

DUE_WINDOWS = (7, 30)  # days ahead the dashboard and /metrics show the rental falling due
MAX_RENEWAL_MONTHS = 1200  # a billing date this far behind the window is not rolled forward


@dataclass(frozen=True)
class DueWindow:
    """Whole days of the rules' time zone, today included: billing dates on ``first`` up to
    (not including) ``end``. A number billed today is due today, whatever the hour of the sweep
    or of the API's timestamp (a bare date reads as midnight UTC)."""

    first: date
    end: date
    tz: tzinfo

    @classmethod
    def ahead(cls, now: datetime, within: timedelta, tz: tzinfo) -> DueWindow:
        """From today for ``within``, rounded up to whole days (``12h`` is today)."""
        today = now.astimezone(tz).date()
        days = max(1, math.ceil(within / timedelta(days=1)))
        return cls(today, today + timedelta(days=days), tz)

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    def as_dict(self) -> dict[str, str]:
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "timezone": str(self.tz),
        }


def due_windows(now: datetime, tz: tzinfo) -> list[DueWindow]:
    """The windows the dashboard and ``/metrics`` show: each of ``DUE_WINDOWS`` days from today."""
    return [DueWindow.ahead(now, timedelta(days=d), tz) for d in DUE_WINDOWS]


def renewals(first: date, start: date, end: date) -> int:
    """How many monthly billing dates fall in ``[start, end)`` for a number whose next billing
    date is ``first``: ``first`` itself, then the same day of each following month, clamped to
    the month's last day (a 31st renews on 30 April and 28 or 29 February; a leap day on 28
    February three years in four). Each date is counted from ``first``, so the 31st returns in
    March. A billing date before ``start`` is stale (that renewal has passed): it is rolled
    forward a month at a time, and only the dates inside the window count."""
    if first >= end:
        return 0
    if start <= first and (end - first).days <= 28:  # no month is shorter: one renewal only
        return 1
    skip = max(0, (start.year - first.year) * 12 + start.month - first.month - 1)
    if skip > MAX_RENEWAL_MONTHS:
        return 0
    # Up to the first date in the month after the window's end, always past it: every renewal
    # in the window is counted, however long the window (the CLI bounds it at 100 years).
    months = (end.year - first.year) * 12 + end.month - first.month + 1
    dates = (first + relativedelta(months=m) for m in range(skip, months + 1))
    return sum(when >= start for when in takewhile(lambda when: when < end, dates))


@dataclass
class DueRow(_Fields):
    """Rental falling due in a window: an account's active numbers in one currency whose billing
    dates fall in it. ``renewals`` counts billing dates (a monthly cycle may renew twice in a long
    window); ``unpriced`` counts renewals of numbers the API gave no monthly fee for (not in the
    sum)."""

    account_id: str
    currency: str
    account_name: str | None = None
    numbers: int = 0
    renewals: int = 0
    amount_due: Decimal = Decimal(0)
    unpriced: int = 0


DUE_FIELDS = tuple(DueRow.__dataclass_fields__)


@dataclass
class Forecast:
    """What falls due in ``window``: lines per (account, currency), totals per currency
    (``account_id`` ``"*"``), and the active numbers with no billing date (their e164, sorted),
    which no sum can include and every view names."""

    window: DueWindow
    lines: dict[tuple[str, str], DueRow] = field(default_factory=dict)
    totals: dict[str, DueRow] = field(default_factory=dict)
    undated: list[str] = field(default_factory=list)

    def undated_note(self, limit: int = 20) -> str | None:
        """The footer every view of the forecast prints: the numbers it could not count."""
        if not self.undated:
            return None
        shown = ", ".join(self.undated[:limit])
        more = len(self.undated) - limit
        if more > 0:
            shown += f" and {more} more (--format json lists all)"
        return (
            f"{len(self.undated)} active number(s) have no next billing date and are not in "
            f"these sums: {shown}"
        )

    def add(self, acct: str, currency: str, fee: Decimal | None, times: int) -> None:
        for line in (
            self.lines.setdefault((acct, currency), DueRow(acct, currency)),
            self.totals.setdefault(currency, DueRow("*", currency)),
        ):
            line.numbers += 1
            line.renewals += times
            if fee is None:
                line.unpriced += times
            else:
                line.amount_due += Decimal(fee) * times


def forecasts(
    conn: Connection,
    sweep_id: int | None,
    windows: Sequence[DueWindow],
    accounts: Collection[str] | None = None,
) -> list[Forecast]:
    """The rental of active numbers that falls due in each of ``windows`` (one read of the
    rows for all of them), as of complete sweep ``sweep_id`` (or the current rows when it is
    ``None``, as ``cost_lines`` reads them). The one forecast: ``costs --due-within``, the
    accounts page, the digest and ``/metrics`` all use it. Currencies as ``cost_lines`` has them."""
    out = [Forecast(w) for w in windows]
    undated: list[str] = []
    columns = ("e164", "account_id", "currency", "monthly_fee", "next_billing_date")
    for e164, acct, currency, fee, billing in conn.execute(_active(sweep_id, accounts, columns)):
        if billing is None:
            undated.append(e164)
            continue
        for fc in out:
            day = billing.astimezone(fc.window.tz).date()
            times = renewals(day, fc.window.first, fc.window.end)
            if times:
                fc.add(acct, currency_code(currency), fee, times)
    undated.sort()
    for fc in out:
        fc.undated = undated
    return out


def forecast(
    conn: Connection,
    sweep_id: int | None,
    window: DueWindow,
    accounts: Collection[str] | None = None,
) -> Forecast:
    """One window's ``forecasts``."""
    return forecasts(conn, sweep_id, [window], accounts)[0]


def due(engine: Engine, *, window: DueWindow, account: str | None = None) -> Report:
    """``costs --due-within``: per account and currency, the rental of the latest complete
    sweep's active numbers that falls due in ``window``."""
    with engine.connect() as conn:
        ref = _sweep_at(conn)
        fc = forecast(conn, ref.id, window, [account] if account else None)
        return _by_account(conn, Report("due", ref, [], forecast=fc), fc.lines, fc.totals)


# --- diff -------------------------------------------------------------------------------------


def version_changes(
    conn: Connection, before: int, after: int
) -> Iterator[tuple[RowMapping | None, RowMapping | None]]:
    """(version at ``before``, version at ``after``) for each number that differs between the
    two sweeps; None on the side where the number did not exist. Reads only the versions that
    closed or opened in between, so an unchanged inventory costs one scan and no rows.

    Works inside a sweep's own transaction too (``after`` being that sweep).
    """
    old_stmt = sa.select(VERSIONS).where(current(VERSIONS, before), VERSIONS.c.valid_to <= after)
    new_stmt = sa.select(VERSIONS).where(current(VERSIONS, after), VERSIONS.c.valid_from > before)
    old = {r["number_id"]: r for r in conn.execute(old_stmt).mappings()}
    new = {r["number_id"]: r for r in conn.execute(new_stmt).mappings()}
    for number_id in sorted(old.keys() | new.keys()):
        a, b = old.get(number_id), new.get(number_id)
        if a is not None and b is not None and a["content_hash"] == b["content_hash"]:
            continue  # changed and changed back
        yield a, b


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON object as {dotted path: leaf value}; lists are leaves."""
    if isinstance(value, dict) and (value or not prefix):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


_MISSING = object()


def _value_text(value: Any) -> str | None:
    """A field's value as a diff shows it: None only where the key is missing (an empty CSV
    cell), text as it is, anything else (JSON null among it: ``"null"``) as its JSON text."""
    if value is _MISSING:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True)
class DiffRow(_Fields):
    """One difference: ``change`` is added, removed or changed; a changed number has one row
    per field (a dotted path into the item's JSON) with its value before and after (None where
    the key is missing; all three None for a number added or removed)."""

    change: str
    e164: str
    number_id: str
    account_id: str
    field: str | None
    before: str | None
    after: str | None


DIFF_FIELDS = tuple(DiffRow.__dataclass_fields__)


def _raw(row: Row) -> dict[str, Any]:
    raw = row["raw"]
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def diff_rows(before: Row | None, after: Row | None) -> list[DiffRow]:
    """What ``version_changes`` yields for one number, as report rows."""
    either = after if after is not None else before
    assert either is not None
    ids = (either["e164"], either["number_id"], either["account_id"])
    if before is None or after is None:
        return [DiffRow("added" if before is None else "removed", *ids, None, None, None)]
    old, new = flatten(_raw(before)), flatten(_raw(after))
    rows = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if a != b or type(a) is not type(b):
            rows.append(DiffRow("changed", *ids, path, _value_text(a), _value_text(b)))
    return rows


def changed_fields(before: Row, after: Row) -> list[str]:
    """The fields (dotted paths into the item's JSON) that differ between two versions of one
    number: what ``history``, the dashboard's number page and ``diff`` all name."""
    return [row.field for row in diff_rows(before, after) if row.field]


def number_history(versions: Iterable[Row]) -> list[dict[str, Any]]:
    """``Store.history``'s versions, each with ``changed``: ``changed_fields`` against the version
    before it of the same number id, or None for that id's first version."""
    out: list[dict[str, Any]] = []
    previous: dict[str, Row] = {}
    for row in versions:
        before = previous.get(row["number_id"])
        out.append({**row, "changed": None if before is None else changed_fields(before, row)})
        previous[row["number_id"]] = row
    return out


def diff(engine: Engine, *, since: str | None = None, tz: tzinfo | None = None) -> Report:
    """Numbers added, removed and changed between two complete sweeps: by default the last two;
    with ``since`` (a sweep id, a date or an RFC 3339 time), that sweep (or the one in force
    then) against the latest. Ordered by change, then number."""
    with engine.connect() as conn:
        latest = complete_sweeps(conn, 2)
        if since is None:
            if len(latest) < 2:
                raise ConfigError(
                    "only one complete sweep so far: nothing to compare it with",
                    hint="sweep again later, or compare with --since",
                )
            base = latest[1]
        elif ascii_digits(since.strip()):
            sweep_id = int(since)
            row = None
            if sweep_id <= MAX_ROW_ID:  # a larger id is no sweep (and no query parameter)
                stmt = sa.select(SWEEPS).where(SWEEPS.c.id == sweep_id)
                row = conn.execute(stmt).mappings().first()
            if row is None or row["status"] != "complete":
                raise ConfigError(
                    f"--since: sweep {since.strip()} is not a complete sweep",
                    hint="see `did-monitor status` for recent sweeps",
                )
            base = _ref(row)
        else:
            found = sweep_in_force(conn, parse_when(since, tz or UTC, "--since"))
            if found is None:
                raise ConfigError(f"--since: no complete sweep on or before {since.strip()}")
            base = found
        rows: list[DiffRow] = []
        for before, after in version_changes(conn, base.id, latest[0].id):
            rows.extend(diff_rows(before, after))
    order = {"added": 0, "removed": 1, "changed": 2}
    rows.sort(key=lambda r: (order[r.change], r.account_id, r.e164, r.number_id, r.field or ""))
    return Report("diff", latest[0], rows, since=base)
