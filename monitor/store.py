"""The database door: sweeps, number versions, findings, silences and the alert outbox.

Only this module (and ``db.py`` for the schema) runs SQL. Writes for one sweep happen inside one
transaction (``SweepWriter``), so a sweep is either wholly stored or not at all; the sweep's own
row is committed separately so a failure or a crash is still on record.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.db import (
    Delivery,
    DeliveryAttempt,
    Finding,
    Notification,
    NumberVersion,
    ServiceLock,
    Silence,
    Sweep,
    describe_db_error,
    make_engine,
    upgrade,
)
from monitor.errors import DatabaseError
from monitor.model import FindingDraft, NumberRecord

SWEEPS = cast(sa.Table, Sweep.__table__)
VERSIONS = cast(sa.Table, NumberVersion.__table__)
FINDINGS = cast(sa.Table, Finding.__table__)
SILENCES = cast(sa.Table, Silence.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)
NOTIFICATIONS = cast(sa.Table, Notification.__table__)
LOCKS = cast(sa.Table, ServiceLock.__table__)
CHUNK = 500  # parameters per IN (...) list: well under SQLite's and PostgreSQL's limits


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class SweepCounts:
    numbers_seen: int
    total_reported: int | None
    pages: int
    requests: int
    retries: int
    versions_written: int = 0
    numbers_gone: int = 0
    findings_opened: int = 0
    findings_resolved: int = 0


class Store:
    """Opens the engine for ``url`` and answers every question the program asks of the database."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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

    def abort_running_sweeps(self, now: datetime, exclude: int | None = None) -> int:
        """Mark sweeps left ``running`` by a dead process as aborted (hold the lock to call)."""
        with self._begin() as conn:
            stmt = sa.update(SWEEPS).where(SWEEPS.c.status == "running")
            if exclude is not None:
                stmt = stmt.where(SWEEPS.c.id != exclude)
            result = conn.execute(
                stmt.values(
                    status="aborted",
                    finished_at=now,
                    error="interrupted: the process stopped before the sweep finished",
                )
            )
            return int(result.rowcount or 0)

    def fail_sweep(
        self, sweep_id: int, now: datetime, error: str, counts: SweepCounts, status: str = "failed"
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                sa.update(SWEEPS)
                .where(SWEEPS.c.id == sweep_id)
                .values(status=status, finished_at=now, error=error[:4000], **_counts(counts))
            )

    def sweep(self, sweep_id: int) -> RowMapping | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(SWEEPS).where(SWEEPS.c.id == sweep_id)).mappings().first()

    def last_sweep(self, status: str | None = None) -> RowMapping | None:
        stmt = sa.select(SWEEPS).order_by(SWEEPS.c.id.desc()).limit(1)
        if status:
            stmt = stmt.where(SWEEPS.c.status == status)
        with self.engine.connect() as conn:
            return conn.execute(stmt).mappings().first()

    def recent_sweeps(self, limit: int = 10) -> list[RowMapping]:
        with self.engine.connect() as conn:
            stmt = sa.select(SWEEPS).order_by(SWEEPS.c.id.desc()).limit(limit)
            return list(conn.execute(stmt).mappings())

    def inventory_size(self) -> int:
        with self.engine.connect() as conn:
            stmt = (
                sa.select(sa.func.count())
                .select_from(VERSIONS)
                .where(VERSIONS.c.valid_to.is_(None))
            )
            return int(conn.execute(stmt).scalar_one())

    def writer(self, sweep_id: int, now: datetime) -> SweepWriter:
        return SweepWriter(self, sweep_id, now)

    # --- inventory questions ------------------------------------------------------------------

    def inventory_at(self, sweep_id: int) -> Iterator[RowMapping]:
        """The numbers as they stood at sweep ``sweep_id``."""
        stmt = sa.select(VERSIONS).where(
            VERSIONS.c.valid_from <= sweep_id,
            sa.or_(VERSIONS.c.valid_to.is_(None), VERSIONS.c.valid_to > sweep_id),
        )
        with self.engine.connect() as conn:
            yield from conn.execute(stmt.execution_options(yield_per=1000)).mappings()

    def changes_between(self, before: int, after: int) -> dict[str, list[str]]:
        """Number ids added, removed and changed between two sweeps."""
        with self.engine.connect() as conn:

            def ids_at(sid: int) -> dict[str, int]:
                stmt = sa.select(VERSIONS.c.number_id, VERSIONS.c.id).where(
                    VERSIONS.c.valid_from <= sid,
                    sa.or_(VERSIONS.c.valid_to.is_(None), VERSIONS.c.valid_to > sid),
                )
                return {r.number_id: r.id for r in conn.execute(stmt)}

            old, new = ids_at(before), ids_at(after)
        return {
            "added": sorted(new.keys() - old.keys()),
            "removed": sorted(old.keys() - new.keys()),
            "changed": sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
        }

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
            .order_by(VERSIONS.c.number_id, VERSIONS.c.valid_from)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    def row_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in (SWEEPS, VERSIONS, FINDINGS, DELIVERIES, NOTIFICATIONS, ATTEMPTS)
            }

    # --- findings -----------------------------------------------------------------------------

    def findings(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        """Findings for display: open ones (with ``include_closed``, resolved too), newest first.

        ``last_seen`` of an open finding is the start of the last complete sweep (it was seen
        there by definition), so a re-sweep need not rewrite every open finding.
        """
        stmt = sa.select(FINDINGS).order_by(FINDINGS.c.state, FINDINGS.c.rule, FINDINGS.c.e164)
        if not include_closed:
            stmt = stmt.where(FINDINGS.c.state == "open")
        last = self.last_sweep("complete")
        silences = self.active_silences(_now())
        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(stmt).mappings():
                item = dict(row)
                if item["state"] == "open" and last is not None:
                    item["last_seen"] = max(item["last_seen"], last["started_at"])
                if item["state"] == "open" and is_silenced(item, silences):
                    item["state"] = "silenced"
                out.append(item)
        rank = {"critical": 0, "warning": 1, "info": 2}
        states = {"open": 0, "silenced": 1, "resolved": 2}
        out.sort(key=lambda f: (states.get(f["state"], 3), rank.get(f["severity"], 3), f["rule"]))
        return out

    def open_counts(self) -> dict[tuple[str, str], int]:
        stmt = (
            sa.select(FINDINGS.c.rule, FINDINGS.c.severity, sa.func.count())
            .where(FINDINGS.c.state == "open")
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
    ) -> int:
        with self._begin() as conn:
            result = conn.execute(
                sa.insert(SILENCES).values(
                    rule=rule,
                    e164=e164,
                    account_id=account_id,
                    until=until,
                    reason=reason,
                    created_at=now,
                )
            )
            return int(result.inserted_primary_key[0])

    def remove_silence(self, silence_id: int) -> bool:
        with self._begin() as conn:
            result = conn.execute(sa.delete(SILENCES).where(SILENCES.c.id == silence_id))
            return bool(result.rowcount)

    def silences(self) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(SILENCES).order_by(SILENCES.c.id)).mappings())

    def active_silences(self, now: datetime) -> list[RowMapping]:
        with self.engine.connect() as conn:
            stmt = sa.select(SILENCES).where(SILENCES.c.until > now)
            return list(conn.execute(stmt).mappings())

    # --- locks --------------------------------------------------------------------------------

    def try_lock(self, name: str, now: datetime, stale_after: timedelta) -> SweepLock | None:
        """Take the named lock or return None when another live process holds it."""
        lock = SweepLock(self, name)
        return lock if lock.acquire(now, stale_after) else None


def _now() -> datetime:
    from monitor.db import utcnow

    return utcnow()


def is_silenced(finding: dict[str, Any] | RowMapping, silences: Iterable[RowMapping]) -> bool:
    for s in silences:
        if s["rule"] not in ("*", finding["rule"]):
            continue
        if s["e164"] and s["e164"] != finding["e164"]:
            continue
        if s["account_id"] and s["account_id"] != finding["account_id"]:
            continue
        return True
    return False


def _counts(counts: SweepCounts) -> dict[str, Any]:
    return {
        "numbers_seen": counts.numbers_seen,
        "total_reported": counts.total_reported,
        "pages": counts.pages,
        "requests": counts.requests,
        "retries": counts.retries,
        "versions_written": counts.versions_written,
        "numbers_gone": counts.numbers_gone,
        "findings_opened": counts.findings_opened,
        "findings_resolved": counts.findings_resolved,
    }


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


def _short(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest[:32])


def _processor(type_: Any, dialect: Any) -> Any:
    process = type_._cached_bind_processor(dialect)
    return process if process is not None else (lambda value: value)


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
        dialect = store.engine.dialect
        self._bind = {
            name: _processor(VERSIONS.c[name].type, dialect)
            for name in ("next_billing_date", "expires_at", "monthly_fee", "tags", "raw")
        }
        marks = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(_VERSION_COLUMNS))
        self._insert_sql = (
            f"INSERT INTO number_versions ({', '.join(_VERSION_COLUMNS)}) VALUES ({marks})"
        )

    def __enter__(self) -> SweepWriter:
        try:
            self._conn = self.store.engine.connect()
            self._conn.begin()
        except OperationalError as exc:
            raise DatabaseError(f"database error: {describe_db_error(exc)}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._conn is not None
        if self._conn.in_transaction():
            self._conn.rollback()
        self._conn.close()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "SweepWriter used outside its with-block"
        return self._conn

    def commit(self) -> None:
        self.conn.commit()

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
        """Close the current version of every number this (complete) sweep did not see."""
        gone = [nid for nid in self._current_hashes() if nid not in seen]
        self._close(gone)
        return len(gone)

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
        for part in chunks(number_ids):
            self.conn.execute(
                sa.update(VERSIONS)
                .where(VERSIONS.c.valid_to.is_(None), VERSIONS.c.number_id.in_(part))
                .values(valid_to=self.sweep_id)
            )

    def _version_row(self, rec: NumberRecord) -> tuple[Any, ...]:
        p = self._bind
        return (
            rec.id,
            rec.e164,
            rec.account_id,
            rec.status[:32],
            (rec.country or "")[:8] or None,
            (rec.region or "")[:128] or None,
            (rec.application_id or "")[:128] or None,
            rec.is_blocked,
            p["next_billing_date"](rec.next_billing_date),
            p["expires_at"](rec.expires_at),
            p["monthly_fee"](rec.monthly_fee),
            (rec.currency or "")[:8] or None,
            p["tags"](list(rec.tags)),
            rec.content_hash,
            p["raw"](rec.raw),
            self.sweep_id,
            None,
        )

    def _insert_versions(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert version rows through the driver's executemany.

        Values were converted by the columns' own SQLAlchemy bind processors (UTC datetimes,
        decimals, JSON), so what is stored is what ``insert()`` would store, without its
        per-row parameter bookkeeping, which costs more than SQLite's own work here.
        """
        if rows:
            self.conn.exec_driver_sql(self._insert_sql, rows)

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
                ).where(FINDINGS.c.state == "open", FINDINGS.c.rule.in_(rules))
            )
        }
        new_rows = []
        updates = []
        for key, d in drafts.items():
            row = open_rows.get(key)
            if row is None:
                new_rows.append(
                    {
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
                        "resolved_at": None,
                        "opened_sweep_id": self.sweep_id,
                        "resolved_sweep_id": None,
                    }
                )
            elif (row.severity, row.message, row.due_at, row.tier) != (
                d.severity,
                d.message,
                d.due_at,
                d.tier,
            ):
                updates.append(
                    {
                        "fid": row.id,
                        "severity": d.severity,
                        "message": d.message,
                        "due_at": d.due_at,
                        "tier": d.tier,
                    }
                )
        if new_rows:
            conn.execute(sa.insert(FINDINGS), new_rows)
        if updates:
            conn.execute(
                sa.update(FINDINGS)
                .where(FINDINGS.c.id == sa.bindparam("fid"))
                .values(
                    severity=sa.bindparam("severity"),
                    message=sa.bindparam("message"),
                    due_at=sa.bindparam("due_at"),
                    tier=sa.bindparam("tier"),
                ),
                updates,
            )
        cleared = [row.id for key, row in open_rows.items() if key not in drafts]
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
        return len(new_rows), len(cleared)

    def complete(self, counts: SweepCounts, finished_at: datetime) -> None:
        self.conn.execute(
            sa.update(SWEEPS)
            .where(SWEEPS.c.id == self.sweep_id)
            .values(status="complete", finished_at=finished_at, error=None, **_counts(counts))
        )


class SweepLock:
    """One sweep at a time across replicas: a PostgreSQL advisory lock, or a lease row on SQLite."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.owner = owner_id()
        self._conn: Connection | None = None

    def acquire(self, now: datetime, stale_after: timedelta) -> bool:
        try:
            if self.store.dialect == "postgresql":
                return self._acquire_pg()
            return self._acquire_lease(now, stale_after)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot take the sweep lock: {describe_db_error(exc)}") from None

    def _acquire_pg(self) -> bool:
        import zlib

        conn = self.store.engine.connect()
        key = zlib.crc32(f"did-monitor:{self.name}".encode())
        got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        if got:
            self._conn = conn
            self._key = key
        else:
            conn.close()
        return got

    def _acquire_lease(self, now: datetime, stale_after: timedelta) -> bool:
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.insert(LOCKS)
                .prefix_with("OR IGNORE")
                .values(name=self.name, owner=None, acquired_at=None)
            )
            holder = (
                conn.execute(sa.select(LOCKS).where(LOCKS.c.name == self.name)).mappings().one()
            )
            if holder["owner"] and not _lease_dead(
                holder["owner"], holder["acquired_at"], now, stale_after
            ):
                return False
            result = conn.execute(
                sa.update(LOCKS)
                .where(LOCKS.c.name == self.name, _same_owner(holder["owner"]))
                .values(owner=self.owner, acquired_at=now)
            )
            return bool(result.rowcount)

    def release(self) -> None:
        try:
            if self._conn is not None:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
                self._conn.close()
                self._conn = None
            elif self.store.dialect != "postgresql":
                with self.store.engine.begin() as conn:
                    conn.execute(
                        sa.update(LOCKS)
                        .where(LOCKS.c.name == self.name, LOCKS.c.owner == self.owner)
                        .values(owner=None, acquired_at=None)
                    )
        except SQLAlchemyError:
            pass  # a lock we cannot release dies with our connection or goes stale

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_owner(owner: str | None) -> Any:
    col = LOCKS.c.owner
    return col.is_(None) if owner is None else col == owner


def _lease_dead(owner: str, acquired_at: datetime | None, now: datetime, stale: timedelta) -> bool:
    """A lease is dead when its process on this host is gone, or it is older than ``stale``."""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return acquired_at is None or now - acquired_at > stale
