"""One sweep at a time across replicas: a PostgreSQL advisory lock, or a lease row on SQLite.

A sweep is skipped only when a live did-monitor lease says another sweep holds the lock, and the
skip names that holder and when its lease expires (``LockBusy``). Anything else that keeps the
lock from being taken (SQLite busy because another program holds a write transaction, a database
that cannot be read) is a ``DatabaseError``: a failed sweep, never a silent skip.

On PostgreSQL the lock is ``pg_try_advisory_xact_lock``, taken in a transaction of its own
connection that the sweep then writes through (``SweepLock.connection``): the lock lasts as long
as the sweep's transaction, so a session that ends (terminated, timed out) takes the sweep's
uncommitted writes with it and no other sweep can write beside it. The ``service_locks`` row is
then only the holder's name card, written beside the lock for others to read.
"""

from __future__ import annotations

import os
import socket
import zlib
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import DatabaseBusy, DatabaseError, LockBusy
from monitor.store.db import LOCKS, owner_id, translated

BUSY_TIMEOUT_MS = 2000  # how long SQLite may be busy before taking the lease counts as failed


class SweepLock(AbstractContextManager["SweepLock"]):
    """The sweep lock: ``acquire`` takes it or raises (``LockBusy`` or ``DatabaseError``, as
    above); ``release`` (or leaving the with-block) gives it back."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner_id()
        # PostgreSQL: the connection whose open transaction holds the lock; the sweep writes
        # through it, so its writes and the lock end together. None on SQLite.
        self.connection: Connection | None = None
        self._held = False

    @property
    def lost(self) -> bool:
        """True when the lock's PostgreSQL session ended before release: the lock is gone, and
        so is every write of the sweep's transaction."""
        return self.connection is not None and self.connection.invalidated

    def acquire(self, now: datetime, stale_after: timedelta) -> None:
        try:
            with translated():
                if self.engine.dialect.name == "postgresql":
                    self._acquire_pg(now, stale_after)
                else:
                    self._acquire_lease(now, stale_after)
        except DatabaseError as exc:
            if exc.detail is None:  # said in our own words already
                raise
            raise DatabaseError(
                f"cannot take the sweep lock in {self._where()}: {exc.detail}", detail=exc.detail
            ) from None
        self._held = True

    def _where(self) -> str:
        """The database, for messages: the SQLite file, or PostgreSQL's host and database."""
        url = self.engine.url
        if self.engine.dialect.name == "sqlite":
            return f"the database file {os.path.abspath(url.database or '')}"
        return f"the database {url.database} on {url.host or 'localhost'}"

    def _acquire_pg(self, now: datetime, stale_after: timedelta) -> None:
        key = zlib.crc32(f"did-monitor:{self.name}".encode())
        conn = self.engine.connect()
        try:
            conn.begin()
            got = conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
            if not got.scalar():
                conn.rollback()
                self._refuse_busy(conn, now, stale_after, taken=True)
            with self.engine.begin() as card:  # the name card, for those who find it taken
                card.execute(sa.delete(LOCKS).where(LOCKS.c.name == self.name))
                card.execute(
                    sa.insert(LOCKS).values(name=self.name, owner=self.owner, acquired_at=now)
                )
        except BaseException:
            conn.close()
            raise
        self.connection = conn

    def _acquire_lease(self, now: datetime, stale_after: timedelta) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                self._refuse_busy(conn, now, stale_after)  # a read: WAL lets it past a writer
                conn.commit()
                try:
                    with conn.begin():
                        self._claim(conn, now, stale_after)
                except DatabaseBusy as exc:
                    # Only a did-monitor lease that appeared meanwhile makes it a skip.
                    self._refuse_busy(conn, now, stale_after)
                    raise DatabaseError(
                        f"{self._where()} is locked by another program "
                        f"({exc.detail}), not by a did-monitor sweep",
                        hint="find the program holding a write transaction on it (e.g. with "
                        "`fuser`); the sweep fails and is retried",
                    ) from None
            finally:
                conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
                conn.commit()

    def _claim(self, conn: Connection, now: datetime, stale_after: timedelta) -> None:
        conn.execute(sa.insert(LOCKS).prefix_with("OR IGNORE").values(name=self.name))
        holder = self._refuse_busy(conn, now, stale_after)
        owner = holder["owner"] if holder else None
        result = conn.execute(
            sa.update(LOCKS)
            .where(LOCKS.c.name == self.name, LOCKS.c.owner.is_not_distinct_from(owner))
            .values(owner=self.owner, acquired_at=now)
        )
        if not result.rowcount:  # cannot happen inside SQLite's write lock; say so if it does
            raise DatabaseError(f"the sweep lease in {self._where()} changed while it was taken")

    def _refuse_busy(
        self, conn: Connection, now: datetime, stale_after: timedelta, *, taken: bool = False
    ) -> Any:
        """The lease row (None: there is none), read through ``conn``; when it names a live
        holder, or when the lock is ``taken`` (on PostgreSQL the advisory lock is the proof),
        ``LockBusy`` instead: another sweep holds the lock, named with when its lease expires. A
        holder whose name card is not written yet is unnamed."""
        stmt = sa.select(LOCKS.c.owner, LOCKS.c.acquired_at).where(LOCKS.c.name == self.name)
        holder = conn.execute(stmt).mappings().first()
        if not taken and not _live(holder, now, stale_after):
            return holder
        owner = holder["owner"] if holder and holder["owner"] else "a did-monitor process"
        since = holder["acquired_at"] if holder and holder["acquired_at"] else now
        expires = since + stale_after
        raise LockBusy(
            f"another did-monitor process ({owner}) is sweeping this database; its lease "
            f"expires at {expires.astimezone(UTC).isoformat(timespec='seconds')}; skipped",
            owner=owner,
            held_since=since,
            expires_at=expires,
        )

    def release(self) -> None:
        conn, self.connection = self.connection, None
        held, self._held = self._held, False
        try:
            if conn is not None:
                conn.close()  # ends the transaction, and the advisory lock with it
            if held:
                with self.engine.begin() as db:
                    db.execute(
                        sa.update(LOCKS)
                        .where(LOCKS.c.name == self.name, LOCKS.c.owner == self.owner)
                        .values(owner=None, acquired_at=None)
                    )
        except (DatabaseError, SQLAlchemyError):
            pass  # a lock we cannot release dies with our connection or goes stale

    def __exit__(self, *exc: object) -> None:
        self.release()


def _live(holder: Any, now: datetime, stale: timedelta) -> bool:
    """A lease row that names a live holder: an owner and a start, and not dead. A lease is
    dead when its process on this host is gone (or is us, restarted with the same pid, as PID 1
    in a container is), or when it is older than ``stale`` whoever holds it: a live process with
    its pid may be another program that reused the pid of a killed sweep."""
    if holder is None or not holder["owner"] or holder["acquired_at"] is None:
        return False
    owner = holder["owner"]
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return bool(owner == owner_id())
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, as another user
    return bool(now - holder["acquired_at"] <= stale)
