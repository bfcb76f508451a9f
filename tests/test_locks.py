"""One sweep at a time: advisory locks on PostgreSQL, lease rows on SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import sqlalchemy as sa

from monitor.db import LOCKS
from monitor.store import Store
from tests.conftest import FakeClock


def test_one_lock_holder_at_a_time(store: Store, clock: FakeClock) -> None:
    first = store.try_lock("sweep", clock(), timedelta(hours=1))
    assert first is not None
    if store.engine.dialect.name == "postgresql":
        # advisory locks are per session: a second connection cannot take it
        other = Store(store.url)
        try:
            assert other.try_lock("sweep", clock(), timedelta(hours=1)) is None
        finally:
            other.dispose()
    else:
        # the lease names this live process: nobody may take it until released or stale
        with store.engine.begin() as conn:
            conn.execute(sa.update(LOCKS).values(owner="otherhost:1"))
        assert store.try_lock("sweep", clock(), timedelta(hours=1)) is None
        assert store.try_lock("sweep", clock() + timedelta(hours=2), timedelta(hours=1)) is not None
    first.release()


def test_lease_of_a_dead_process_is_taken_over(sqlite_store: Store, clock: FakeClock) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(proc.stdout)

    lock = sqlite_store.try_lock("sweep", clock(), timedelta(hours=6))
    assert lock is not None
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.update(LOCKS).values(owner=f"{socket.gethostname()}:{dead_pid}"))
    assert dead_pid != os.getpid()
    assert sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)) is not None


def test_a_restarted_pid_1_is_not_its_past_self(sqlite_store: Store, clock: FakeClock) -> None:
    """In a container the restarted process has the same host name and pid as the killed one."""
    stale = f"{socket.gethostname()}:{os.getpid()}:an-earlier-instance"
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.insert(LOCKS).values(name="sweep", owner=stale, acquired_at=clock()))
    assert sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)) is not None


def test_a_busy_database_means_someone_else_is_sweeping(
    sqlite_store: Store, clock: FakeClock
) -> None:
    """While another process's sweep holds SQLite's write lock, the answer is "skip", fast."""
    import time

    holder = sqlite_store.engine.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        other = Store(sqlite_store.url)
        started = time.monotonic()
        assert other.try_lock("sweep", clock(), timedelta(hours=6)) is None
        assert time.monotonic() - started < 10
        other.dispose()
    finally:
        holder.rollback()
        holder.close()
