"""The database door: sweeps, inventory questions, findings, silences.

Beside it: ``db.py`` (schema, engine, migrations, the shared predicate ``current``),
``writer.py`` (one sweep's writes in one transaction: wholly stored or not at all), ``locks.py``
(one sweep at a time across replicas) and ``accounts.py`` (account versions and names). A
sweep's own row is committed separately, so a failure or a crash is still on record. Every
failure of the database leaves the store as ``DatabaseError`` (``db.database_error``), also
from ``Store.connect`` and ``Store.begin``, which the query modules run their SQL through.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from monitor.findings import FindingView, view
from monitor.model import SweepCounts
from monitor.redact import scrub
from monitor.store.accounts import account_names
from monitor.store.db import (
    ACCOUNTS,
    ATTEMPTS,
    CHUNK,
    DELIVERIES,
    FINDINGS,
    FINISHED_SWEEP_STATES,
    NOTIFICATIONS,
    SILENCES,
    SWEEPS,
    VERSIONS,
    chunks,
    current,
    current_count,
    current_revision,
    insert_row,
    inventory_sweep,
    latest_sweeps,
    make_engine,
    owner_id,
    tally,
    translated,
    upgrade,
)
from monitor.store.locks import SweepLock
from monitor.store.writer import SweepWriter
from monitor.vocab import SEVERITY_RANK

# Re-exported for the modules and tests that ask the store for them.
__all__ = [
    "ACCOUNTS",
    "ATTEMPTS",
    "DELIVERIES",
    "FINDINGS",
    "NOTIFICATIONS",
    "SWEEPS",
    "VERSIONS",
    "chunks",
    "current",
    "inventory_sweep",
]


# The findings table's columns that ``findings.view`` reads: what every list of findings selects.
VIEW_COLUMNS = tuple(c.name for c in FINDINGS.c if c.name in FindingView.__dataclass_fields__)


class Store:
    """Opens the engine for ``url`` and answers every question the program asks of the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def migrate(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def revision(self) -> str | None:
        """The Alembic revision the database's schema is at (None: not migrated at all)."""
        return current_revision(self.engine)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for the block; any failure of the database leaves as ``DatabaseError``."""
        with translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """``connect`` in one transaction, committed when the block ends without an error."""
        with translated(), self.engine.begin() as conn:
            yield conn

    # --- sweeps -------------------------------------------------------------------------------

    def start_sweep(self, now: datetime, trigger: str) -> int:
        with self.begin() as conn:
            return insert_row(
                conn, SWEEPS, started_at=now, status="running", trigger=trigger, owner=owner_id()
            )

    def abort_running_sweeps(self, now: datetime) -> int:
        """Mark sweeps left ``running`` by a dead process as aborted (hold the lock to call)."""
        error = "interrupted: the process stopped before the sweep finished"
        return self._end_running(now, "aborted", error)

    def fail_sweep(
        self, sweep_id: int, now: datetime, error: str, counts: SweepCounts, status: str = "failed"
    ) -> bool:
        """End the running sweep ``sweep_id`` as ``status``; False when it was not running any
        more (another replica that took the lock meanwhile marked it aborted): left as it is."""
        error = scrub(error)[:4000]
        return bool(
            self._end_running(now, status, error, SWEEPS.c.id == sweep_id, **asdict(counts))
        )

    def _end_running(
        self, now: datetime, status: str, error: str, *where: Any, **values: Any
    ) -> int:
        """End the sweeps still running (those of them ``where`` says) as ``status``; how many."""
        stmt = sa.update(SWEEPS).where(SWEEPS.c.status == "running", *where)
        with self.begin() as conn:
            stmt = stmt.values(status=status, finished_at=now, error=error, **values)
            return int(conn.execute(stmt).rowcount or 0)

    def last_sweep(self, status: str | Collection[str] | None = None) -> RowMapping | None:
        """The newest sweep, or the newest of ``status`` (one, or any of several)."""
        with self.connect() as conn:
            return next(iter(latest_sweeps(conn, status)), None)

    def sweeps_before(self, sweep_id: int, limit: int) -> list[RowMapping]:
        """Up to ``limit`` sweeps that ended before ``sweep_id``, newest first."""
        with self.connect() as conn:
            return latest_sweeps(conn, FINISHED_SWEEP_STATES, before=sweep_id, limit=limit)

    def inventory_size(self) -> int:
        with self.connect() as conn:
            return current_count(conn)

    def numbers_by_status(self) -> dict[str, int]:
        """How many numbers of each status the inventory holds: as of the last complete sweep
        (``inventory_sweep``), what ``did-monitor inventory`` lists."""
        with self.connect() as conn:
            by = tally(conn, "status", at=inventory_sweep(conn))
            return {str(status): n for (status,), n in by.items()}

    def account_names(
        self, ids: Iterable[str | None] | None = None, *, at: int | None = None
    ) -> dict[str, str | None]:
        """Customer names, of every account or those in ``ids``: as the current account list has
        them, or as sweep ``at`` read them (``accounts.account_names``)."""
        with self.connect() as conn:
            return account_names(conn, at, ids)

    def writer(self, sweep_id: int, now: datetime, conn: Connection | None = None) -> SweepWriter:
        """The sweep's writer; ``conn``: write through this connection (the sweep lock's, on
        PostgreSQL, so that the lock lasts exactly as long as the sweep's transaction)."""
        return SweepWriter(self.engine, sweep_id, now, conn)

    # --- inventory questions ------------------------------------------------------------------

    def history(self, e164: str) -> list[RowMapping]:
        """Every stored version of the number(s) with this E.164, oldest first (by the sweep it
        is valid from, whatever its number id), with sweep times."""
        start = SWEEPS.alias("s_from")
        end = SWEEPS.alias("s_to")
        stmt = (
            sa.select(
                VERSIONS, start.c.started_at.label("from_time"), end.c.started_at.label("to_time")
            )
            .join(start, start.c.id == VERSIONS.c.valid_from)
            .outerjoin(end, end.c.id == VERSIONS.c.valid_to)
            .where(VERSIONS.c.e164 == e164)
            .order_by(VERSIONS.c.valid_from, VERSIONS.c.id)
        )
        with self.connect() as conn:
            return list(conn.execute(stmt).mappings())

    # --- findings -----------------------------------------------------------------------------

    def findings(self, now: datetime, *, include_closed: bool = False) -> list[FindingView]:
        batches = self.iter_findings(now, include_closed=include_closed)
        return [row for batch in batches for row in batch]

    def iter_findings(
        self, now: datetime, *, include_closed: bool = False, batch: int = CHUNK
    ) -> Iterator[list[FindingView]]:
        """Findings (``finding_query``) in batches straight from the cursor, so memory holds one
        batch however many there are: open ones, then silenced, then with ``include_closed``
        resolved ones; each group in ``urgency_order``."""
        stmt = finding_query(now, self.last_complete_start(), VIEW_COLUMNS, tags_as_text=True)
        stmt = stmt.order_by(*display_order(now))
        if not include_closed:
            stmt = stmt.where(FINDINGS.c.state == "open")
        with self.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(stmt)
            for part in result.mappings().partitions(batch):
                yield [view(row) for row in part]

    def last_complete_start(self) -> datetime | None:
        """When the last complete sweep started: it saw every finding still open."""
        last = self.last_sweep("complete")
        return last["started_at"] if last is not None else None

    def open_counts(self, now: datetime | None = None) -> dict[tuple[str, str], int]:
        """Open findings by (rule, severity): with ``now``, only those no silence active at
        ``now`` holds back (the open findings ``findings`` lists); without it, every open one."""
        return self._counts(FINDINGS.c.state == "open" if now is None else unsilenced(now))

    def silenced_counts(self, now: datetime) -> dict[tuple[str, str], int]:
        """Open findings a silence active at ``now`` holds back, by (rule, severity)."""
        return self._counts(silenced(now))

    def _counts(self, where: sa.ColumnElement[bool]) -> dict[tuple[str, str], int]:
        by = (FINDINGS.c.rule, FINDINGS.c.severity)
        stmt = sa.select(*by, sa.func.count()).where(where).group_by(*by)
        with self.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(stmt)}

    # --- silences -----------------------------------------------------------------------------

    def add_silence(
        self,
        rule: str,
        until: datetime,
        reason: str,
        now: datetime,
        e164: str | None = None,
        account_id: str | None = None,
        by: str | None = None,
    ) -> int:
        """Store a silence; ``by``: who added it."""
        with self.begin() as conn:
            scope = {"rule": rule, "e164": e164, "account_id": account_id}
            return insert_row(
                conn, SILENCES, **scope, until=until, reason=reason, created_at=now, created_by=by
            )

    def open_matching(self, rule: str, e164: str | None, account_id: str | None) -> int:
        """How many open findings a silence of ``rule`` (``*``: any), ``e164`` and ``account_id``
        (None: any) would hold back, by the one test of ``silenced``."""
        new = sa.select(
            sa.cast(sa.literal(rule), SILENCES.c.rule.type).label("rule"),
            sa.cast(sa.literal(e164), SILENCES.c.e164.type).label("e164"),
            sa.cast(sa.literal(account_id), SILENCES.c.account_id.type).label("account_id"),
        ).subquery()
        stmt = (
            sa.select(sa.func.count())
            .select_from(FINDINGS)
            .where(FINDINGS.c.state == "open", sa.exists().where(_covers(new)))
        )
        with self.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def remove_silence(self, silence_id: int) -> bool:
        with self.begin() as conn:
            result = conn.execute(sa.delete(SILENCES).where(SILENCES.c.id == silence_id))
            return bool(result.rowcount)

    def silences(self) -> list[dict[str, Any]]:
        """Every silence, oldest first: its row (``created_by``: who added it, None before
        that was recorded) and ``matches``, how many open findings it covers now."""
        matches = (
            sa.select(sa.func.count())
            .select_from(FINDINGS)
            .where(FINDINGS.c.state == "open", _covers(SILENCES))
            .scalar_subquery()
        )
        stmt = sa.select(SILENCES, matches.label("matches")).order_by(SILENCES.c.id)
        with self.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    # --- locks --------------------------------------------------------------------------------

    def try_lock(self, name: str, now: datetime, stale_after: timedelta) -> SweepLock:
        """Take the named lock; raises as ``SweepLock.acquire`` does."""
        lock = SweepLock(self.engine, name)
        lock.acquire(now, stale_after)
        return lock


def _covers(silence: Any) -> sa.ColumnElement[bool]:
    """Whether ``silence`` (the silences table, or a row of the same columns) covers the
    finding of ``FINDINGS``: its rule or ``*``, and its number and account where it names one."""

    def loose(column: Any, target: sa.Column[Any]) -> sa.ColumnElement[bool]:
        return sa.or_(column.is_(None), column == "", column == target)

    return sa.and_(
        sa.or_(silence.c.rule == "*", silence.c.rule == FINDINGS.c.rule),
        loose(silence.c.e164, FINDINGS.c.e164),
        loose(silence.c.account_id, FINDINGS.c.account_id),
    )


def silenced(now: datetime) -> sa.ColumnElement[bool]:
    """The one test of "silenced", as SQL over ``FINDINGS``: the finding is open and a silence
    active at ``now`` covers it. Open and not silenced is ``unsilenced``: what "open" means in
    every count and list."""
    return sa.and_(
        FINDINGS.c.state == "open", sa.exists().where(SILENCES.c.until > now, _covers(SILENCES))
    )


def unsilenced(now: datetime) -> sa.ColumnElement[bool]:
    """Open findings that no silence active at ``now`` holds back."""
    return sa.and_(FINDINGS.c.state == "open", sa.not_(silenced(now)))


def finding_query(
    now: datetime,
    seen: datetime | None,
    names: Sequence[str] | None = None,
    *,
    tags_as_text: bool = False,
) -> sa.Select[Any]:
    """The one query of findings for every output (``findings.view`` reads its rows): the
    findings table's columns (``names``, or all), ``account_name`` (the account's current name,
    none if the account list does not know it), ``silenced`` (``silenced(now)``), and
    ``last_seen`` of an open finding at least ``seen``: the start of the last complete sweep,
    which saw every open finding (a re-sweep does not rewrite them). With ``tags_as_text`` the
    tags come as stored (JSON text on SQLite, which ``view`` parses once per distinct list).
    Callers add their filters, order and paging."""
    columns = [
        sa.type_coerce(FINDINGS.c.tags, sa.Text).label("tags")
        if name == "tags" and tags_as_text
        else FINDINGS.c[name]
        for name in names or FINDINGS.c.keys()
        if name != "last_seen"
    ]
    last_seen: sa.ColumnElement[Any] = FINDINGS.c.last_seen
    if seen is not None:
        stale = sa.and_(FINDINGS.c.state == "open", FINDINGS.c.last_seen < seen)
        last_seen = sa.case((stale, sa.literal(seen, FINDINGS.c.last_seen.type)), else_=last_seen)
    named = sa.and_(ACCOUNTS.c.account_id == FINDINGS.c.account_id, current(ACCOUNTS))
    return sa.select(
        *columns,
        last_seen.label("last_seen"),
        ACCOUNTS.c.name.label("account_name"),
        silenced(now).label("silenced"),
    ).select_from(FINDINGS.outerjoin(ACCOUNTS, named))


def display_order(now: datetime) -> tuple[sa.ColumnElement[Any], ...]:
    """Open findings, then silenced, then resolved; each in ``urgency_order``: the order of
    every list of findings (the CLI, the dashboard)."""
    state = sa.case((silenced(now), 1), (FINDINGS.c.state == "open", 0), else_=2)
    return (state, *urgency_order())


def urgency_order() -> tuple[sa.ColumnElement[Any], ...]:
    """ORDER BY terms for findings, most urgent first: ``findings.urgency`` in SQL (severity by
    ``vocab.SEVERITY_RANK``, then what is broken now (no due date), then the nearest due date,
    then rule and number; the id makes it total)."""
    severity = sa.case(SEVERITY_RANK, value=FINDINGS.c.severity, else_=-1)
    dated = sa.case((FINDINGS.c.due_at.is_(None), 0), else_=1)
    return (
        severity.desc(),
        dated,
        FINDINGS.c.due_at,
        FINDINGS.c.rule,
        FINDINGS.c.e164,
        FINDINGS.c.id,
    )
