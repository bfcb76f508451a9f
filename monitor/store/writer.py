"""Everything one sweep writes, in one transaction: number versions, gone numbers, findings.

Part of the store package; tables and helpers come from ``db.py``. Rows go in through SQLAlchemy
Core: ``insert()`` with a list of rows, which SQLAlchemy sends as one ``executemany`` (on SQLite
batched into multi-row statements, "insertmanyvalues"). The one exception is number versions on
PostgreSQL, which go in by binary COPY (``SweepWriter._insert_versions`` says why).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import DatabaseError
from monitor.lifecycle import FindingChanges, OpenFinding, decide
from monitor.model import FindingDraft, NumberRecord, SweepCounts
from monitor.store.db import (
    FINDINGS,
    SWEEPS,
    VERSIONS,
    chunks,
    current,
    current_count,
    database_error,
)

# The columns of an open finding, named and ordered as ``lifecycle.OpenFinding``'s fields.
_OPEN_COLUMNS = tuple(FINDINGS.c[f.name] for f in fields(OpenFinding))


BATCH = 2000  # finding rows per executemany
_TEXT_ARRAY = ARRAY(sa.String)
# PostgreSQL's types of the version columns the writer sets (all but the id), for COPY (see
# SweepWriter._insert_versions): psycopg encodes each value in binary from them; text for those
# not named here (raw is json, whose binary form is its text).
_NOT_TEXT = {
    "is_blocked": "bool",
    "next_billing_date": "timestamptz",
    "expires_at": "timestamptz",
    "monthly_fee": "numeric",
    "tags": "jsonb",
    "valid_from": "int4",
    "valid_to": "int4",
}
_VERSION_COPY_TYPES = {c.name: _NOT_TEXT.get(c.name, "text") for c in VERSIONS.c if c.name != "id"}


def _open_finding(row: Iterable[Any]) -> OpenFinding:
    """An open finding from a row of ``_OPEN_COLUMNS`` (its fields, in the same order)."""
    values = list(row)
    values[_TAGS_AT] = tuple(values[_TAGS_AT] or ())
    return OpenFinding(*values)


_TAGS_AT = [c.name for c in _OPEN_COLUMNS].index("tags")


class SweepWriter:
    """Everything one sweep writes, in one transaction. Use as a context manager; ``commit()``
    makes it durable, leaving the block without it rolls everything back (a failed or
    interrupted sweep stores nothing but its own sweep row). Given ``conn`` (the sweep lock's
    connection on PostgreSQL), it writes in that connection's transaction and leaves closing it
    to its owner. Whatever SQLAlchemy raises in the block leaves it as ``DatabaseError``."""

    def __init__(
        self, engine: Engine, sweep_id: int, now: datetime, conn: Connection | None = None
    ) -> None:
        self.engine = engine
        self.sweep_id = sweep_id
        self.now = now
        self.versions_written = 0
        self._given = conn
        self._conn: Connection | None = None
        self._postgres = engine.dialect.name == "postgresql"
        self._planned_rows = 0  # rows of number_versions the planner's statistics counted
        self._known_at_start = 0  # numbers current (one current version each) at the start

    def __enter__(self) -> SweepWriter:
        self._conn = self._given or self.engine.connect()
        if not self._conn.in_transaction():
            self._conn.begin()
        self._known_at_start = current_count(self.conn)
        if self._postgres:
            self._analyze()
        return self

    def _analyze(self, rows: int | None = None) -> None:
        """PostgreSQL only: fresh planner statistics for ``number_versions`` whenever the table
        holds more than four times the rows they counted, plus 10,000 (``rows``: what it holds
        now; counted when not given). Without them the planner takes a table it has not
        analysed yet (a first sweep, or the next one before autovacuum caught up) for a few
        hundred rows, and answers each batch's hash lookup by reading every current row: a
        first sweep of 100,000 numbers took 105 s instead of 8 s. A statistic off by four times
        still gives the index plan; analysing at every doubling cost 0.7 s of that sweep."""
        if rows is None:
            planned = self.conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'number_versions'::regclass"
            ).scalar()
            self._planned_rows = max(0, int(planned or 0))
            rows = self._known_at_start
        if rows > 4 * self._planned_rows + 10_000:
            self.conn.exec_driver_sql("ANALYZE number_versions")
            self._planned_rows = rows

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        assert self._conn is not None
        if self._conn.in_transaction():
            self._conn.rollback()
        if self._given is None:
            self._conn.close()
        if isinstance(exc, SQLAlchemyError):
            raise database_error(exc) from None

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "SweepWriter used outside its with-block"
        return self._conn

    def commit(self) -> None:
        self.conn.commit()

    def write_page(self, records: Sequence[NumberRecord]) -> int:
        """Store the records that are new or changed since their current version.

        The current hashes are looked up per batch (the partial unique index on ``number_id``
        answers it), not held for the whole inventory: at 1,000,000 numbers that map alone was
        over 100 MB of the sweep's peak memory. A record whose hash is among them is unchanged
        (the hash covers the item's JSON, id included); every other record gets a new version,
        and whatever current version its number had is closed first."""
        if len({rec.id for rec in records}) != len(records):  # one version per number: the last
            records = list({rec.id: rec for rec in records}.values())
        current = self._current_hashes([rec.id for rec in records])
        rows = [self._version_row(rec) for rec in records if rec.content_hash not in current]
        if len(current) > len(records) - len(rows):  # some current version is not unchanged
            self._close([row["number_id"] for row in rows])
        self._insert_versions(rows)
        self.versions_written += len(rows)
        if self._postgres:
            self._analyze(self._known_at_start + self.versions_written)
        return len(rows)

    def _insert_versions(self, rows: list[dict[str, Any]]) -> None:
        """``insert()`` with every row (executemany); on PostgreSQL, one binary COPY instead.

        The one driver-level path, kept because the benchmark misses its target without it:
        measured again on 2026-12-01 (100,000 numbers, first sweep, 6.75 s target), COPY took
        5.8 s and ``insert()`` 8.4-8.5 s (psycopg's pipelined executemany: one INSERT per row
        for the server to run; SQLAlchemy's multi-row "insertmanyvalues" took 21 s). Findings
        go through ``insert()``: COPY saved them 0.3 s, and the target holds without it. COPY
        takes the same Python values, which psycopg encodes from the column types named in
        ``_VERSION_COPY_TYPES``, so nothing is converted by hand.
        """
        if not rows:
            return
        if not self._postgres:
            self.conn.execute(sa.insert(VERSIONS), rows)
            return
        driver: Any = self.conn.connection.dbapi_connection  # a psycopg 3 connection
        columns = ", ".join(_VERSION_COPY_TYPES)
        try:
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY number_versions ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(list(_VERSION_COPY_TYPES.values()))
                for row in rows:
                    copy.write_row([row[c] for c in _VERSION_COPY_TYPES])
        except Exception as exc:  # psycopg's own errors: SQLAlchemy is not in this path
            detail = database_error(exc).detail
            raise DatabaseError(
                f"database error while storing number versions: {detail}", detail=detail
            ) from None

    def close_gone(self, seen: Collection[str], vanished: int) -> int:
        """Close the current version of every number this (complete) sweep did not see;
        ``vanished``: how many there are (``count_current``), so none means nothing to read."""
        if vanished <= 0:
            return 0
        stmt = sa.select(VERSIONS.c.number_id).where(current(VERSIONS))
        with self.conn.execute(stmt.execution_options(yield_per=5000)) as result:
            gone = [nid for nid in result.scalars() if nid not in seen]
        self._close(gone)
        return len(gone)

    def misses_current(self, seen: Collection[str]) -> bool:
        """Whether ``count_current`` finds a current number not in ``seen``."""
        return self.count_current(seen)[1] > 0

    def count_current(self, seen: Collection[str]) -> tuple[int, int]:
        """How many numbers were current when this sweep began, and how many current now
        (from before, or written since) are not in ``seen``, the numbers this sweep has seen:
        counted without reading them, as each number seen has a current version."""
        return self._known_at_start, current_count(self.conn) - len(seen)

    def _current_hashes(self, number_ids: Sequence[str]) -> set[str]:
        """The content hashes of the current versions of ``number_ids`` (one per version: no
        two numbers share an item, so no two versions a hash), as one aggregated row per
        query: the sqlite3 driver lets go of the GIL for each row it steps, and each time the
        sweep's thread then waits for the fetch threads to give it back."""
        found: set[str] = set()
        for part in chunks(number_ids):
            stmt = sa.select(sa.func.aggregate_strings(VERSIONS.c.content_hash, ",")).where(
                current(VERSIONS), self._one_of(part)
            )
            hashes = self.conn.execute(stmt).scalar()
            if hashes:
                found.update(hashes.split(","))
        return found

    def _close(self, number_ids: Sequence[str]) -> None:
        for part in chunks(number_ids):
            self.conn.execute(
                sa.update(VERSIONS)
                .where(current(VERSIONS), self._one_of(part))
                .values(valid_to=self.sweep_id)
            )

    def _one_of(self, number_ids: Sequence[str]) -> sa.ColumnElement[bool]:
        """``number_id IN (...)``; on PostgreSQL ``= ANY(array)``, one parameter instead of
        hundreds: psycopg parses a statement that long anew at every execution (0.3 s of an
        unchanged re-sweep of 100,000 numbers)."""
        if self._postgres:
            return VERSIONS.c.number_id == sa.any_(sa.literal(list(number_ids), _TEXT_ARRAY))
        return VERSIONS.c.number_id.in_(number_ids)

    def _version_row(self, rec: NumberRecord) -> dict[str, Any]:
        return {
            "number_id": rec.id,
            "e164": rec.e164,
            "account_id": rec.account_id,
            "status": rec.status[:32],
            "country": (rec.country or "")[:8] or None,
            "region": (rec.region or "")[:128] or None,
            "application_id": (rec.application_id or "")[:128] or None,
            "is_blocked": rec.is_blocked,
            "next_billing_date": rec.next_billing_date,
            "expires_at": rec.expires_at,
            "monthly_fee": rec.monthly_fee,
            "currency": (rec.currency or "")[:8] or None,
            "tags": list(rec.tags),
            "content_hash": rec.content_hash,
            "raw": rec.raw_json,  # canonical JSON text already (db.JSONText stores it as is)
            "valid_from": self.sweep_id,
            "valid_to": None,
        }

    def apply_findings(
        self,
        by_rule: dict[str, dict[str, FindingDraft]],
        evaluated_rules: Iterable[str],
        previous_sweep_at: datetime | None,
        *,
        resolve: bool = True,
    ) -> tuple[int, int]:
        """Write what ``lifecycle.decide`` makes of the drafts (rule → subject → draft) and the
        open findings; returns (opened, resolved). A resolved finding was last seen at the
        previous complete sweep. With ``resolve=False`` (a partial sweep, which cannot vouch
        that a problem is gone) no finding resolves for want of a draft; new ones still open.

        One rule at a time, smallest first, its open findings streamed and its drafts taken out
        of ``by_rule`` as it is done: a large inventory has 100,000s of drafts and open
        findings, and holding them all at once dominated the sweep's memory."""
        opened = resolved = 0
        rules = sorted(dict.fromkeys(evaluated_rules), key=lambda r: len(by_rule.get(r, ())))
        for rule in rules:
            rows = self.conn.execute(
                sa.select(*_OPEN_COLUMNS)
                .where(FINDINGS.c.state == "open", FINDINGS.c.rule == rule)
                .execution_options(yield_per=BATCH)
            )
            open_findings = [_open_finding(row) for row in rows]
            ours = {(rule, subject): d for subject, d in by_rule.pop(rule, {}).items()}
            changes = decide(ours, open_findings, [rule], self.now, complete=resolve)
            del open_findings, ours
            self._write(changes, previous_sweep_at)
            opened += len(changes.opened)
            resolved += len(changes.resolved)
        return opened, resolved

    def _write(self, changes: FindingChanges, previous_sweep_at: datetime | None) -> None:
        for part in chunks(changes.resolved):
            self.conn.execute(
                sa.update(FINDINGS)
                .where(FINDINGS.c.id.in_(part))
                .values(
                    state="resolved",
                    resolved_at=self.now,
                    resolved_sweep_id=self.sweep_id,
                    last_seen=previous_sweep_at or self.now,
                )
            )
        # In batches: a first sweep of a large inventory opens 100,000s of findings, and their
        # parameter rows all at once would double the sweep's peak memory.
        for part in chunks(changes.opened, BATCH):
            self.conn.execute(sa.insert(FINDINGS), [self._finding_row(d) for d in part])
        for changed in chunks(changes.updated, BATCH):  # each sets the same columns
            update = (
                sa.update(FINDINGS)
                .where(FINDINGS.c.id == sa.bindparam("fid"))
                .values({name: sa.bindparam(name) for name in changed[0][1]})
            )
            self.conn.execute(update, [{"fid": fid, **values} for fid, values in changed])

    def _finding_row(self, d: FindingDraft) -> dict[str, Any]:
        return {
            "rule": d.rule,
            "subject": d.subject,
            "number_id": d.number_id,
            "e164": d.e164,
            "account_id": d.account_id,
            "severity": d.severity,
            "state": "open",
            "message": d.message,
            "due_at": d.due_at,
            "tier": d.tier,
            "monthly_fee": d.monthly_fee,
            "currency": d.currency,
            "tags": list(d.tags),
            "first_seen": self.now,
            "last_seen": self.now,
            "opened_sweep_id": self.sweep_id,
        }  # resolved_at, rearmed_at and resolved_sweep_id start null

    def complete(
        self,
        counts: SweepCounts,
        finished_at: datetime,
        *,
        partial: str | None = None,
        note: str | None = None,
    ) -> None:
        """Record the sweep as ``complete``, or as ``partial`` with the reason in ``error``;
        ``note`` (what it read but could not check, such as unreadable dates) goes into
        ``notes``, whatever the status: it is no error, and the next sweep compares with it."""
        self.conn.execute(
            sa.update(SWEEPS)
            .where(SWEEPS.c.id == self.sweep_id)
            .values(
                status="partial" if partial else "complete",
                finished_at=finished_at,
                error=partial or None,
                notes=note or None,
                **asdict(counts),
            )
        )
