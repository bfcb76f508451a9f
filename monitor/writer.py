"""Everything one sweep writes, in one transaction: number versions, gone numbers, findings.

Part of the store layer (with ``store.py``, the only modules that run SQL).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from monitor.db import describe_db_error, json_text
from monitor.errors import DatabaseError
from monitor.model import FindingDraft, NumberRecord
from monitor.store import FINDINGS, SWEEPS, VERSIONS, Store, SweepCounts, chunks, sweep_values

log = logging.getLogger(__name__)

_VERSION_COLUMNS = (
    "number_id",
    "e164",
    "account_id",
    "status",
    "country",
    "region",
    "application_id",
    "is_blocked",
    "next_billing_date",
    "expires_at",
    "monthly_fee",
    "currency",
    "tags",
    "content_hash",
    "raw",
    "valid_from",
    "valid_to",
)


_FINDING_COLUMNS = (
    "rule",
    "subject",
    "number_id",
    "e164",
    "account_id",
    "severity",
    "state",
    "message",
    "due_at",
    "tier",
    "monthly_fee",
    "currency",
    "tags",
    "first_seen",
    "last_seen",
    "resolved_at",
    "rearmed_at",
    "opened_sweep_id",
    "resolved_sweep_id",
)


# PostgreSQL types of _VERSION_COLUMNS for binary COPY; ``raw`` goes as text (a json column's
# binary form), ``tags`` as a list for psycopg's jsonb dumper.
_VERSION_TYPES = (
    *["text"] * 7,
    "bool",
    "timestamptz",
    "timestamptz",
    "numeric",
    "text",
    "jsonb",
    "text",
    "text",
    "int4",
    "int4",
)


def _storing_failed(exc: Exception, what: str = "numbers") -> DatabaseError:
    """A psycopg error (SQLAlchemy is not in the COPY path) as a one-line DatabaseError."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseError(f"database error while storing {what}: {first}")


def _short(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest[:32])


# Values for driver-level inserts, converted as the columns' SQLAlchemy types would (tests hold
# them to that), without the per-value cost of SQLAlchemy's generic processors.


def _sqlite_time(value: datetime | None) -> str | None:
    """``UTCDateTime`` on SQLite: naive UTC text, in SQLAlchemy's storage format."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without its "+00:00"


def _sqlite_money(value: Decimal | None) -> float | None:
    """``Numeric`` on SQLite, which SQLAlchemy binds as a float."""
    return None if value is None else float(value)


def _postgres_time(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value


_JSON_LISTS: dict[tuple[str, ...], str] = {}  # tag sets repeat across an inventory


def _json_list(values: tuple[str, ...]) -> str:
    text = _JSON_LISTS.get(values)
    if text is None:
        text = json_text(values)
        if len(_JSON_LISTS) < 10_000:
            _JSON_LISTS[values] = text
    return text


def _checkpoint_soon(engine: Any) -> None:
    """Copy the WAL into the database file from a background thread (SQLite does that work
    without the GIL), so the sweep goes on to its alerts; a checkpoint cut short by the process
    ending is finished by SQLite the next time the database is opened."""

    def run() -> None:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # the next sweep's checkpoint will do
            log.debug("background WAL checkpoint failed: %s", exc)

    threading.Thread(target=run, name="sqlite-checkpoint", daemon=True).start()


class SweepWriter:
    """Everything one sweep writes, in one transaction: versions, gone numbers, findings.

    Use as a context manager; ``commit()`` makes it durable, leaving the block without it rolls
    everything back (a failed or interrupted sweep stores nothing but its own sweep row).
    """

    def __init__(self, store: Store, sweep_id: int, now: datetime) -> None:
        self.store = store
        self.sweep_id = sweep_id
        self.now = now
        self.versions_written = 0
        self._conn: Connection | None = None
        self._current: dict[str, bytes] | None = None
        self._sqlite = store.dialect == "sqlite"
        self._copy: tuple[Any, Any, Any] | None = None  # PostgreSQL: (cursor, context, copy)
        self._time: Callable[[datetime | None], Any] = (
            _sqlite_time if self._sqlite else _postgres_time
        )
        self._money: Callable[[Decimal | None], Any] = _sqlite_money if self._sqlite else _same

    def __enter__(self) -> SweepWriter:
        try:
            self._conn = self.store.engine.connect()
            if self._sqlite:
                # The commit would otherwise copy the whole sweep from the WAL into the database
                # file before returning (0.3-0.5 s for a first sweep of 100,000 numbers); a
                # background checkpoint does it after the commit instead (see ``commit``).
                self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")  # begins, too
            else:
                self._conn.begin()
        except OperationalError as exc:
            raise DatabaseError(f"database error: {describe_db_error(exc)}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._conn is not None
        if self._copy is not None:  # leaving on an error: abandon the COPY, then roll back
            copy, self._copy = self._copy, None
            with contextlib.suppress(Exception):
                copy[1].__exit__(RuntimeError, RuntimeError("sweep abandoned"), None)
                copy[0].close()
        if self._conn.in_transaction():
            self._conn.rollback()
        if self._sqlite:  # the pooled connection goes back with SQLite's default
            with contextlib.suppress(Exception):
                self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 1000")
                self._conn.commit()
        self._conn.close()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "SweepWriter used outside its with-block"
        return self._conn

    def commit(self) -> None:
        self._finish_copy()
        self.conn.commit()
        if self._sqlite:
            _checkpoint_soon(self.store.engine)

    def write_page(self, records: Sequence[NumberRecord]) -> int:
        """Store the records that are new or changed since their current version (set-based)."""
        current = self._current_hashes()
        changed: list[str] = []
        rows: list[tuple[Any, ...]] = []
        for rec in records:
            digest = _short(rec.content_hash)
            old = current.get(rec.id)
            if old == digest:
                continue
            if old is not None:
                changed.append(rec.id)
            current[rec.id] = digest
            rows.append(self._version_row(rec))
        self._close(changed)
        self._insert_versions(rows)
        self.versions_written += len(rows)
        return len(rows)

    def close_gone(self, seen: set[str]) -> int:
        self._finish_copy()
        """Close the current version of every number this (complete) sweep did not see."""
        gone = [nid for nid in self._current_hashes() if nid not in seen]
        self._close(gone)
        return len(gone)

    def current_ids(self) -> Collection[str]:
        """The numbers that were current before this sweep (and any it has written since)."""
        return self._current_hashes().keys()

    def _current_hashes(self) -> dict[str, bytes]:
        """Every current number's content hash (first 16 bytes), read once per sweep.

        One scan beats a look-up per page by several times, and it also tells which numbers are
        gone at the end. 100,000 numbers take about 20 MB.
        """
        if self._current is None:
            stmt = sa.select(VERSIONS.c.number_id, VERSIONS.c.content_hash).where(
                VERSIONS.c.valid_to.is_(None)
            )
            result = self.conn.execute(stmt.execution_options(yield_per=5000))
            self._current = {nid: _short(h) for nid, h in result}
        return self._current

    def _close(self, number_ids: Sequence[str]) -> None:
        if number_ids:
            self._finish_copy()
        for part in chunks(number_ids):
            self.conn.execute(
                sa.update(VERSIONS)
                .where(VERSIONS.c.valid_to.is_(None), VERSIONS.c.number_id.in_(part))
                .values(valid_to=self.sweep_id)
            )

    def _version_row(self, rec: NumberRecord) -> tuple[Any, ...]:
        time = self._time
        return (
            rec.id,
            rec.e164,
            rec.account_id,
            rec.status[:32],
            (rec.country or "")[:8] or None,
            (rec.region or "")[:128] or None,
            (rec.application_id or "")[:128] or None,
            rec.is_blocked,
            time(rec.next_billing_date),
            time(rec.expires_at),
            self._money(rec.monthly_fee),
            (rec.currency or "")[:8] or None,
            _json_list(rec.tags) if self._sqlite else list(rec.tags),
            rec.content_hash,
            rec.raw_json,  # already JSON text: stored as the API sent it
            self.sweep_id,
            None,
        )

    def _insert_versions(self, rows: list[tuple[Any, ...]]) -> None:
        """SQLite: ``executemany``. PostgreSQL: one binary COPY that stays open across pages
        (a COPY per page cost three round trips each), finished before any other statement."""
        if self._sqlite:
            self._bulk_insert("number_versions", _VERSION_COLUMNS, rows)
            return
        try:
            if self._copy is None:
                driver: Any = self.conn.connection.dbapi_connection  # a psycopg 3 connection
                cursor = driver.cursor()
                names = ", ".join(_VERSION_COLUMNS)
                context = cursor.copy(f"COPY number_versions ({names}) FROM STDIN (FORMAT BINARY)")
                self._copy = (cursor, context, context.__enter__())
                self._copy[2].set_types(_VERSION_TYPES)
            write = self._copy[2].write_row
            for row in rows:
                write(row)
        except Exception as exc:  # psycopg's own errors: SQLAlchemy is not in this path
            raise _storing_failed(exc) from None

    def _finish_copy(self) -> None:
        if self._copy is None:
            return
        (cursor, context, _), self._copy = self._copy, None
        try:
            context.__exit__(None, None, None)
        except Exception as exc:  # psycopg's own errors: SQLAlchemy is not in this path
            raise _storing_failed(exc) from None
        finally:
            cursor.close()

    def _bulk_insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert rows through the driver: COPY on PostgreSQL, executemany on SQLite.

        Values were converted as the columns' SQLAlchemy types convert them (UTC datetimes,
        decimals, JSON text), so what is stored is what ``insert()`` would store, without its
        per-row parameter bookkeeping, which costs more than the database's own work here.
        """
        if not rows:
            return
        names = ", ".join(columns)
        if not self._sqlite:
            # COPY: one stream instead of a statement per row in the pipeline.
            driver: Any = self.conn.connection.dbapi_connection  # a psycopg 3 connection
            try:
                with driver.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            except Exception as exc:  # psycopg's own errors: SQLAlchemy is not in this path
                raise _storing_failed(exc, table) from None
        else:
            marks = ", ".join("?" * len(columns))
            self.conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def apply_findings(
        self,
        drafts: dict[tuple[str, str], FindingDraft],
        evaluated_rules: Iterable[str],
        previous_sweep_at: datetime | None,
    ) -> tuple[int, int]:
        """Open new findings, update changed ones, resolve cleared ones; returns (opened, resolved).

        Only findings of ``evaluated_rules`` can be resolved: a rule switched off in config leaves
        its findings as they were rather than announcing them all as fixed.
        """
        self._finish_copy()
        conn = self.conn
        rules = list(evaluated_rules)
        open_rows = {
            (r.rule, r.subject): r
            for r in conn.execute(
                sa.select(
                    FINDINGS.c.id,
                    FINDINGS.c.rule,
                    FINDINGS.c.subject,
                    FINDINGS.c.severity,
                    FINDINGS.c.message,
                    FINDINGS.c.due_at,
                    FINDINGS.c.tier,
                    FINDINGS.c.e164,
                    FINDINGS.c.account_id,
                    FINDINGS.c.tags,
                    FINDINGS.c.monthly_fee,
                    FINDINGS.c.currency,
                    FINDINGS.c.rearmed_at,
                ).where(FINDINGS.c.state == "open", FINDINGS.c.rule.in_(rules))
            )
        }
        new_rows: list[tuple[Any, ...]] = []
        updates: list[dict[str, Any]] = []
        cleared = [row.id for key, row in open_rows.items() if key not in drafts]
        for key, d in drafts.items():
            row = open_rows.get(key)
            if row is not None and row.account_id != d.account_id:
                # The number changed hands: the old customer's finding ends, the new one's opens,
                # so each customer's channel hears about its own numbers only.
                cleared.append(row.id)
                row = None
            if row is None:
                new_rows.append(self._finding_row(d))
                continue
            current = (
                d.severity,
                d.message,
                d.due_at,
                d.tier,
                d.e164,
                list(d.tags),
                d.monthly_fee,
                d.currency,
            )
            stored = (
                row.severity,
                row.message,
                row.due_at,
                row.tier,
                row.e164,
                list(row.tags or ()),
                row.monthly_fee,
                row.currency,
            )
            if current != stored:
                moved_out = (
                    d.due_at is not None and row.due_at is not None and d.due_at > row.due_at
                )
                updates.append(
                    {
                        "fid": row.id,
                        "severity": d.severity,
                        "message": d.message,
                        "due_at": d.due_at,
                        "tier": d.tier,
                        "e164": d.e164,
                        "tags": list(d.tags),
                        "monthly_fee": d.monthly_fee,
                        "currency": d.currency,
                        # a later date re-arms the reminder tiers already announced
                        "rearmed_at": self.now if moved_out else row.rearmed_at,
                    }
                )
        for part in chunks(cleared):
            conn.execute(
                sa.update(FINDINGS)
                .where(FINDINGS.c.id.in_(part))
                .values(
                    state="resolved",
                    resolved_at=self.now,
                    resolved_sweep_id=self.sweep_id,
                    last_seen=previous_sweep_at or self.now,
                )
            )
        self._bulk_insert("findings", _FINDING_COLUMNS, new_rows)
        if updates:
            conn.execute(
                sa.update(FINDINGS)
                .where(FINDINGS.c.id == sa.bindparam("fid"))
                .values(
                    {
                        name: sa.bindparam(name)
                        for name in (
                            "severity",
                            "message",
                            "due_at",
                            "tier",
                            "e164",
                            "tags",
                            "monthly_fee",
                            "currency",
                            "rearmed_at",
                        )
                    }
                ),
                updates,
            )
        return len(new_rows), len(cleared)

    def _finding_row(self, d: FindingDraft) -> tuple[Any, ...]:
        time, now = self._time, self._time(self.now)
        return (
            d.rule,
            d.subject,
            d.number_id,
            d.e164,
            d.account_id,
            d.severity,
            "open",
            d.message,
            time(d.due_at),
            d.tier,
            self._money(d.monthly_fee),
            d.currency,
            _json_list(d.tags),
            now,
            now,
            None,
            None,
            self.sweep_id,
            None,
        )

    def complete(self, counts: SweepCounts, finished_at: datetime) -> None:
        self._finish_copy()
        self.conn.execute(
            sa.update(SWEEPS)
            .where(SWEEPS.c.id == self.sweep_id)
            .values(status="complete", finished_at=finished_at, error=None, **sweep_values(counts))
        )
