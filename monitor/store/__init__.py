"""The database door: sweeps, inventory questions, findings, silences.

The store layer is this module with ``writer.py`` (one sweep's writes, in one transaction, so a
sweep is either wholly stored or not at all), ``locks.py`` (one sweep at a time across replicas)
and ``outbox.py`` (alerts); only they run SQL, ``db.py`` holds the schema. A sweep's own row is
committed separately, so a failure or a crash is still on record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import OperationalError

from monitor.errors import DatabaseError
from monitor.findings import FindingView, view
from monitor.model import SweepCounts
from monitor.redact import scrub
from monitor.store.accounts import ACCOUNTS
from monitor.store.db import (
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
    current_count,
    describe_db_error,
    make_engine,
    owner_id,
    sweep_values,
    upgrade,
)
from monitor.store.locks import SweepLock
from monitor.store.writer import SweepWriter
from monitor.vocab import SEVERITY_RANK

# Re-exported for the modules and tests that ask the store for them.
__all__ = [
    "ATTEMPTS",
    "DELIVERIES",
    "FINDINGS",
    "NOTIFICATIONS",
    "SILENCES",
    "SWEEPS",
    "VERSIONS",
    "Store",
    "chunks",
    "silenced",
    "unsilenced",
    "urgency_order",
]


LISTED_FINDING_COLUMNS = (
    "id",
    "rule",
    "subject",
    "severity",
    "e164",
    "number_id",
    "account_id",
    "state",
    "first_seen",
    "last_seen",
    "resolved_at",
    "message",
    "due_at",
    "tier",
    "tags",
    "monthly_fee",
    "currency",
)


class Store:
    """Opens the engine for ``url`` and answers every question the program asks of the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def migrate(self) -> None:
        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def _begin(self) -> Any:
        return _Tx(self.engine)

    # --- sweeps -------------------------------------------------------------------------------

    def start_sweep(self, now: datetime, trigger: str) -> int:
        with self._begin() as conn:
            result = conn.execute(
                sa.insert(SWEEPS).values(
                    started_at=now, status="running", trigger=trigger, owner=owner_id()
                )
            )
            return int(result.inserted_primary_key[0])

    def abort_running_sweeps(self, now: datetime) -> int:
        """Mark sweeps left ``running`` by a dead process as aborted (hold the lock to call)."""
        with self._begin() as conn:
            result = conn.execute(
                sa.update(SWEEPS)
                .where(SWEEPS.c.status == "running")
                .values(
                    status="aborted",
                    finished_at=now,
                    error="interrupted: the process stopped before the sweep finished",
                )
            )
            return int(result.rowcount or 0)

    def fail_sweep(
        self, sweep_id: int, now: datetime, error: str, counts: SweepCounts, status: str = "failed"
    ) -> bool:
        """End the running sweep ``sweep_id`` as ``status``; False when it was not running any
        more (another replica that took the lock meanwhile marked it aborted): left as it is."""
        with self._begin() as conn:
            result = conn.execute(
                sa.update(SWEEPS)
                .where(SWEEPS.c.id == sweep_id, SWEEPS.c.status == "running")
                .values(
                    status=status,
                    finished_at=now,
                    error=scrub(error)[:4000],
                    **sweep_values(counts),
                )
            )
            return bool(result.rowcount)

    def last_sweep(self, status: str | None = None) -> RowMapping | None:
        stmt = sa.select(SWEEPS).order_by(SWEEPS.c.id.desc()).limit(1)
        if status:
            stmt = stmt.where(SWEEPS.c.status == status)
        with self.engine.connect() as conn:
            return conn.execute(stmt).mappings().first()

    def last_finished_sweep(self) -> RowMapping | None:
        """The newest sweep that has ended, whatever its outcome (not one still running)."""
        stmt = (
            sa.select(SWEEPS)
            .where(SWEEPS.c.status.in_(FINISHED_SWEEP_STATES))
            .order_by(SWEEPS.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).mappings().first()

    def inventory_size(self) -> int:
        with self.engine.connect() as conn:
            return current_count(conn)

    def numbers_by_status(self) -> dict[str, int]:
        """How many numbers the current inventory holds in each status."""
        stmt = (
            sa.select(VERSIONS.c.status, sa.func.count())
            .where(VERSIONS.c.valid_to.is_(None))
            .group_by(VERSIONS.c.status)
        )
        with self.engine.connect() as conn:
            return {str(row[0]): int(row[1]) for row in conn.execute(stmt)}

    def writer(self, sweep_id: int, now: datetime, conn: Connection | None = None) -> SweepWriter:
        """The sweep's writer; ``conn``: write through this connection (the sweep lock's, on
        PostgreSQL, so that the lock lasts exactly as long as the sweep's transaction)."""
        return SweepWriter(self.engine, sweep_id, now, conn)

    # --- inventory questions ------------------------------------------------------------------

    def history(self, e164: str) -> list[RowMapping]:
        """Every stored version of the number(s) with this E.164, oldest first, with sweep times."""
        start = SWEEPS.alias("s_from")
        end = SWEEPS.alias("s_to")
        stmt = (
            sa.select(
                VERSIONS,
                start.c.started_at.label("from_time"),
                end.c.started_at.label("to_time"),
            )
            .join(start, start.c.id == VERSIONS.c.valid_from)
            .outerjoin(end, end.c.id == VERSIONS.c.valid_to)
            .where(VERSIONS.c.e164 == e164)
            .order_by(VERSIONS.c.number_id, VERSIONS.c.valid_from, VERSIONS.c.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    # --- findings -----------------------------------------------------------------------------

    def findings(self, now: datetime, *, include_closed: bool = False) -> list[FindingView]:
        """Findings for display, as ``iter_findings`` lists them, with every column, in one
        list."""
        every = tuple(FINDINGS.c.keys())
        batches = self.iter_findings(now, include_closed=include_closed, names=every)
        return [row for batch in batches for row in batch]

    def iter_findings(
        self,
        now: datetime,
        *,
        include_closed: bool = False,
        batch: int = CHUNK,
        names: tuple[str, ...] = LISTED_FINDING_COLUMNS,
    ) -> Iterator[list[FindingView]]:
        """Findings (``finding_query``) in batches straight from the cursor, so memory holds one
        batch however many there are: open ones, then silenced, then with ``include_closed``
        resolved ones; each group in ``urgency_order``."""
        stmt = finding_query(now, self.last_complete_start(), names, tags_as_text=True)
        stmt = stmt.order_by(*display_order(now))
        if not include_closed:
            stmt = stmt.where(FINDINGS.c.state == "open")
        with self.engine.connect() as conn:
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
        stmt = (
            sa.select(FINDINGS.c.rule, FINDINGS.c.severity, sa.func.count())
            .where(where)
            .group_by(FINDINGS.c.rule, FINDINGS.c.severity)
        )
        with self.engine.connect() as conn:
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
        with self._begin() as conn:
            result = conn.execute(
                sa.insert(SILENCES).values(
                    rule=rule,
                    e164=e164,
                    account_id=account_id,
                    until=until,
                    reason=reason,
                    created_at=now,
                    created_by=by,
                )
            )
            return int(result.inserted_primary_key[0])

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
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def remove_silence(self, silence_id: int) -> bool:
        with self._begin() as conn:
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
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    # --- locks --------------------------------------------------------------------------------

    def try_lock(self, name: str, now: datetime, stale_after: timedelta) -> SweepLock:
        """Take the named lock; raises ``LockBusy`` when a live did-monitor lease holds it (naming
        the holder and its lease expiry) and ``DatabaseError`` when anything else keeps it."""
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
        FINDINGS.c.state == "open",
        sa.exists().where(SILENCES.c.until > now, _covers(SILENCES)),
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
    named = sa.and_(ACCOUNTS.c.account_id == FINDINGS.c.account_id, ACCOUNTS.c.valid_to.is_(None))
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
    """ORDER BY terms for findings, most urgent first: ``render.urgency`` in SQL (severity by
    ``config.SEVERITY_RANK``, then what is broken now (no due date), then the nearest due date,
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


class _Tx:
    """``engine.begin()`` whose database failures leave as ``DatabaseError``."""

    def __init__(self, engine: Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> Connection:
        try:
            return self._cm.__enter__()
        except OperationalError as exc:
            raise DatabaseError(f"database error: {describe_db_error(exc)}") from None

    def __exit__(self, *exc: Any) -> None:
        try:
            self._cm.__exit__(*exc)
        except OperationalError as err:
            raise DatabaseError(f"database error: {describe_db_error(err)}") from None
