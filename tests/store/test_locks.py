"""One sweep at a time: advisory locks on PostgreSQL, lease rows on SQLite. A skip needs a live
did-monitor lease; any other busy database is an error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from monitor.config import ChannelConfig
from monitor.errors import DatabaseError, LockBusy, LockLost
from monitor.pipeline import run_cycle
from monitor.sandbox import NUMBERS_PATH, Sandbox
from monitor.store import Store
from monitor.store.db import DELIVERIES, LOCKS, VERSIONS, owner_id
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, make_settings, sweep_row


def test_one_lock_holder_at_a_time(store: Store, clock: FakeClock) -> None:
    first = store.try_lock("sweep", clock(), timedelta(hours=1))
    if store.engine.dialect.name == "postgresql":
        # advisory locks are per session: a second connection cannot take it
        other = Store(store.url)
        try:
            with pytest.raises(LockBusy) as busy:
                other.try_lock("sweep", clock(), timedelta(hours=1))
        finally:
            other.dispose()
    else:
        # the lease names this live process: nobody may take it until released or stale
        with store.engine.begin() as conn:
            conn.execute(sa.update(LOCKS).values(owner="otherhost:1"))
        with pytest.raises(LockBusy) as busy:
            store.try_lock("sweep", clock(), timedelta(hours=1))
        store.try_lock("sweep", clock() + timedelta(hours=2), timedelta(hours=1)).release()
    first.release()
    # the skip names the holder and when its lease expires
    assert busy.value.owner == (
        owner_id() if store.engine.dialect.name != "sqlite" else "otherhost:1"
    )
    assert busy.value.held_since == clock()
    assert busy.value.expires_at == clock() + timedelta(hours=1)
    assert busy.value.owner in busy.value.message and "2026-11-23T13:00:00" in busy.value.message
    store.try_lock("sweep", clock(), timedelta(hours=1)).release()  # released: free again


def test_lease_of_a_dead_process_is_taken_over(sqlite_store: Store, clock: FakeClock) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(proc.stdout)

    sqlite_store.try_lock("sweep", clock(), timedelta(hours=6))
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.update(LOCKS).values(owner=f"{socket.gethostname()}:{dead_pid}"))
    assert dead_pid != os.getpid()
    sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)).release()


def test_a_stale_lease_whose_pid_another_program_reused_is_taken_over(
    sqlite_store: Store, clock: FakeClock
) -> None:
    """A sweep killed for good (SIGKILL, the OOM killer) left its lease; its pid now belongs to
    another live program. Past ``stale`` the lease is dead all the same; before, it holds."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{socket.gethostname()}:{other.pid}:a-killed-sweep"
        with sqlite_store.engine.begin() as conn:
            conn.execute(
                sa.insert(LOCKS).values(
                    name="sweep", owner=owner, acquired_at=clock() - timedelta(hours=7)
                )
            )
        with pytest.raises(LockBusy):
            sqlite_store.try_lock("sweep", clock(), timedelta(hours=8))
        sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)).release()
    finally:
        other.kill()
        other.wait()


def test_a_restarted_pid_1_is_not_its_past_self(sqlite_store: Store, clock: FakeClock) -> None:
    """In a container the restarted process has the same host name and pid as the killed one."""
    stale = f"{socket.gethostname()}:{os.getpid()}:an-earlier-instance"
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.insert(LOCKS).values(name="sweep", owner=stale, acquired_at=clock()))
    sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)).release()


def test_a_sweep_in_progress_is_a_skip_that_names_it(sqlite_store: Store, clock: FakeClock) -> None:
    """Another did-monitor sweep holds its lease and SQLite's write lock for its transaction:
    the lease is read past the write lock, so the answer is a prompt skip naming the holder."""
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.insert(LOCKS).values(name="sweep", owner="otherhost:7", acquired_at=clock())
        )
    holder = sqlite_store.engine.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")
    other = Store(sqlite_store.url)
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy) as busy:
            other.try_lock("sweep", clock(), timedelta(hours=6))
        assert time.monotonic() - started < 1  # read, not waited for
        assert busy.value.owner == "otherhost:7"
        assert busy.value.expires_at == clock() + timedelta(hours=6)
    finally:
        holder.rollback()
        holder.close()
        other.dispose()


def test_a_database_busy_with_another_program_is_an_error_naming_the_file(
    sqlite_store: Store, clock: FakeClock
) -> None:
    """No did-monitor lease explains the busy database: that is a failure, not a skip."""
    holder = sqlite_store.engine.connect()
    holder.exec_driver_sql("BEGIN EXCLUSIVE")
    other = Store(sqlite_store.url)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseError) as failed:
            other.try_lock("sweep", clock(), timedelta(hours=6))
        assert time.monotonic() - started < 10
    finally:
        holder.rollback()
        holder.close()
        other.dispose()
    path = str(sqlite_store.engine.url.database)
    assert path in failed.value.message
    assert "another program" in failed.value.message and "\n" not in failed.value.message


@pytest.mark.postgres
def test_a_sweep_whose_lock_session_ends_rolls_back_quietly(
    pg_url: str, sandbox: Sandbox, clock: FakeClock
) -> None:
    """The lock is held by the sweep's own transaction: when its session is terminated, the
    sweep's writes go with it, a second sweep can run at once without tripping on them, and
    the first one ends as aborted with no "sweep failed" alert and no row flipped back: the
    second marked it aborted when it took the lock, and the first leaves that as it is."""
    store = Store(pg_url)
    store.migrate()
    settings = make_settings(sandbox, pg_url, channels=(ChannelConfig(name="ops", url="json://x"),))
    at_page_2, release = threading.Event(), threading.Event()

    def hold_first_page_2(path: str, query: dict[str, str]) -> None:
        if path == NUMBERS_PATH and query.get("page") == "2" and not at_page_2.is_set():
            at_page_2.set()
            release.wait(10)

    sandbox.on_request = hold_first_page_2
    first: list[BaseException] = []

    def sweep_first() -> None:
        try:
            run_cycle(settings, store, RecordingNotifier(), clock=clock)
        except BaseException as exc:
            first.append(exc)

    thread = threading.Thread(target=sweep_first)
    thread.start()
    try:
        assert at_page_2.wait(10), "the first sweep never reached page 2"
        terminate_lock_holders(store)
        second = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    finally:
        release.set()
        thread.join(20)
    try:
        assert second.ok, second.error
        assert [type(e) for e in first] == [LockLost]
        first_row = sweep_row(store, 1)
        assert first_row["status"] == "aborted" and "interrupted" in (first_row["error"] or "")
        assert sweep_row(store, second.sweep_id)["status"] == "complete"
        with store.engine.connect() as conn:
            kinds = conn.execute(sa.select(DELIVERIES.c.kind)).scalars().all()
            current = conn.execute(
                sa.select(sa.func.count()).where(VERSIONS.c.valid_to.is_(None))
            ).scalar_one()
        assert "sweep_failed" not in kinds
        assert current == 150
    finally:
        store.dispose()


def terminate_lock_holders(store: Store) -> None:
    """End the session holding the sweep's advisory lock, as a database timeout would."""
    holders = sa.text(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
    )
    with store.engine.connect() as conn:
        pids = list(conn.execute(holders).scalars())
        assert pids, "the sweep holds no advisory lock"
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        conn.commit()
        for _ in range(100):  # pg_terminate_backend only signals: wait for the session to end
            if not list(conn.execute(holders).scalars()):
                return
            conn.rollback()
            time.sleep(0.05)


@pytest.mark.postgres
def test_a_failure_after_another_replica_took_over_is_not_recorded_or_alerted(
    pg_url: str, sandbox: Sandbox, clock: FakeClock
) -> None:
    """The sweep's lock ends with its transaction, before its failure is recorded: a replica
    that takes the lock meanwhile marks the sweep aborted (here while the API fails). The late
    failure leaves that row as it is and sends no "sweep failed" alert after the fact."""
    store = Store(pg_url)
    store.migrate()
    settings = make_settings(sandbox, pg_url, channels=(ChannelConfig(name="ops", url="json://x"),))

    def other_replica_takes_over(path: str, query: dict[str, str]) -> None:
        if path == NUMBERS_PATH and query.get("page") == "2":
            store.abort_running_sweeps(clock())  # as the next replica does, holding the lock
            raise RuntimeError("the API breaks")

    sandbox.on_request = other_replica_takes_over
    try:
        outcome = run_cycle(settings, store, RecordingNotifier(), clock=clock)
        assert not outcome.ok and outcome.failure_alerts == 0
        row = sweep_row(store, outcome.sweep_id)
        assert row["status"] == "aborted" and row["error"].startswith("interrupted")
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(DELIVERIES.c.kind)).scalars().all() == []
    finally:
        store.dispose()


@pytest.mark.postgres
def test_losing_the_lock_sweep_after_sweep_is_alerted_from_the_third(
    pg_url: str, sandbox: Sandbox, clock: FakeClock
) -> None:
    """One lost session is quiet (a restart, a failover); the third sweep in a row that loses
    its session is a failed sweep, alerted with the likely cause (a session timeout)."""
    store = Store(pg_url)
    store.migrate()
    settings = make_settings(sandbox, pg_url, channels=(ChannelConfig(name="ops", url="json://x"),))

    def lose_the_session(path: str, query: dict[str, str]) -> None:
        if path == NUMBERS_PATH and query.get("page") == "2":
            terminate_lock_holders(store)

    sandbox.on_request = lose_the_session
    notifier = RecordingNotifier()
    try:
        for _ in range(2):
            with pytest.raises(LockLost):
                run_cycle(settings, store, notifier, clock=clock)
            clock.advance(hours=1)
        assert notifier.sent == []
        third = run_cycle(settings, store, notifier, clock=clock)
        assert not third.ok and third.failure_alerts == 1
        assert "(3 in a row)" in (third.error or "")
        assert "idle_in_transaction_session_timeout" in (third.error or "")
        row = sweep_row(store, third.sweep_id)
        assert row["status"] == "aborted" and "(3 in a row)" in row["error"]
        (alert,) = notifier.sent
        assert "idle_in_transaction_session_timeout" in alert.body

        sandbox.on_request = None  # a sweep that completes ends the run of lost sessions
        clock.advance(hours=1)
        assert run_cycle(settings, store, notifier, clock=clock).ok
        sandbox.on_request = lose_the_session
        clock.advance(hours=1)
        with pytest.raises(LockLost):
            run_cycle(settings, store, notifier, clock=clock)
    finally:
        store.dispose()


@pytest.mark.parametrize(("max_duration", "skipped"), [(4 * 3600, False), (12 * 3600, True)])
def test_a_lease_outlives_the_longest_sweep_the_config_allows(
    sqlite_store: Store, sandbox: Sandbox, clock: FakeClock, max_duration: int, skipped: bool
) -> None:
    """Another host's lease taken 7 hours ago: dead after the default 6 hours, but alive while
    sweep.max_duration (12 h) still lets its sweep run."""
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.insert(LOCKS).values(
                name="sweep", owner="otherhost:7", acquired_at=clock() - timedelta(hours=7)
            )
        )
    settings = make_settings(sandbox, sqlite_store.url, sweep={"max_duration": max_duration})
    if skipped:
        with pytest.raises(LockBusy) as busy:
            run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock)
        assert busy.value.owner == "otherhost:7"
    else:
        assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
