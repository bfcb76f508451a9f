"""One sweep at a time across replicas: a PostgreSQL advisory lock, or a lease row on SQLite."""

from __future__ import annotations

import os
import socket
import zlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.db import LOCKS, describe_db_error, owner_id
from monitor.errors import DatabaseError


class SweepLock:
    """One sweep at a time across replicas: a PostgreSQL advisory lock, or a lease row on SQLite."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner_id()
        self._conn: Connection | None = None

    def acquire(self, now: datetime, stale_after: timedelta) -> bool:
        try:
            if self.engine.dialect.name == "postgresql":
                return self._acquire_pg()
            return self._acquire_lease(now, stale_after)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot take the sweep lock: {describe_db_error(exc)}") from None

    def _acquire_pg(self) -> bool:
        conn = self.engine.connect()
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
        try:
            return self._take_lease(now, stale_after)
        except OperationalError as exc:
            # Another process's sweep holds SQLite's write lock for its whole transaction, so
            # the database being busy means just that: someone else is sweeping.
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise

    def _take_lease(self, now: datetime, stale_after: timedelta) -> bool:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 2000")  # decide fast whether it is busy
            conn.commit()
            try:
                with conn.begin():
                    return self._claim(conn, now, stale_after)
            finally:
                conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
                conn.commit()

    def _claim(self, conn: Connection, now: datetime, stale_after: timedelta) -> bool:
        conn.execute(
            sa.insert(LOCKS)
            .prefix_with("OR IGNORE")
            .values(name=self.name, owner=None, acquired_at=None)
        )
        holder = conn.execute(sa.select(LOCKS).where(LOCKS.c.name == self.name)).mappings().one()
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
            elif self.engine.dialect.name != "postgresql":
                with self.engine.begin() as conn:
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
    """A lease is dead when its process on this host is gone (or is us, restarted with the same
    pid, as PID 1 in a container is), or when it is older than ``stale``."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return owner != owner_id()
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return acquired_at is None or now - acquired_at > stale
