"""The database door on both databases: locks, silences, inventory questions."""

from __future__ import annotations

from datetime import timedelta

from monitor.store import Store, is_silenced
from tests.conftest import FIXED_NOW, FakeClock


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
    assert store.findings(FIXED_NOW, include_closed=True) == []
    assert store.history("+1") == []
    assert store.open_counts() == {}
