"""The database door on both databases: locks, silences, inventory questions."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import sqlalchemy as sa

from monitor.store import LOCKS, Store, is_silenced
from tests.conftest import FakeClock


def test_one_lock_holder_at_a_time(store: Store, clock: FakeClock) -> None:
    first = store.try_lock("sweep", clock(), timedelta(hours=1))
    assert first is not None
    if store.dialect == "postgresql":
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
    import socket

    lock = sqlite_store.try_lock("sweep", clock(), timedelta(hours=6))
    assert lock is not None
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.update(LOCKS).values(owner=f"{socket.gethostname()}:{dead_pid}"))
    assert dead_pid != os.getpid()
    assert sqlite_store.try_lock("sweep", clock(), timedelta(hours=6)) is not None


def test_silences_round_trip(store: Store, clock: FakeClock) -> None:
    sid = store.add_silence(
        "blocked", clock() + timedelta(days=1), "why", clock(), account_id="MA_A"
    )
    (row,) = store.silences()
    assert row["id"] == sid and row["until"] > clock()
    active = store.active_silences(clock())
    f = {"rule": "blocked", "e164": "+1", "account_id": "MA_A"}
    assert is_silenced(f, active)
    assert not is_silenced(f | {"account_id": "MA_B"}, active)
    assert not is_silenced(f | {"rule": "expiring"}, active)
    assert store.active_silences(clock() + timedelta(days=2)) == []
    assert store.remove_silence(sid) and not store.remove_silence(sid)


def test_wildcard_silence(store: Store, clock: FakeClock) -> None:
    store.add_silence("*", clock() + timedelta(days=1), "maintenance", clock(), e164="+1")
    active = store.active_silences(clock())
    assert is_silenced({"rule": "expiring", "e164": "+1", "account_id": "MA_Z"}, active)
    assert not is_silenced({"rule": "expiring", "e164": "+2", "account_id": "MA_Z"}, active)


def test_empty_database_answers(store: Store) -> None:
    assert store.last_sweep() is None
    assert store.inventory_size() == 0
    assert store.findings(include_closed=True) == []
    assert store.history("+1") == []
    assert store.open_counts() == {}


def test_versions_round_trip_every_value(store: Store, clock: FakeClock) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from monitor.model import parse_number

    raw = {
        "id": "n-1",
        "e164": "+911234",
        "account_id": "MA_A",
        "status": "active",
        "next_billing_date": "2026-12-01T10:20:30.123456Z",
        "monthly_fee": "1.25",
        "tags": ["vip", "<x>"],
        "nested": {"a": [1, 2.5, None, True]},
        "application_id": "",
    }
    rec = parse_number(raw)
    assert rec is not None
    sid = store.start_sweep(clock(), "test")
    with store.writer(sid, clock()) as writer:
        assert writer.write_page([rec]) == 1
        assert writer.write_page([rec]) == 0  # read again in the same sweep: unchanged
        writer.commit()
    (row,) = store.history("+911234")
    assert row["next_billing_date"] == datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC)
    assert row["monthly_fee"] == Decimal("1.25")
    assert row["tags"] == ["vip", "<x>"]
    assert row["raw"] == raw
    assert row["application_id"] is None and row["valid_to"] is None
