"""The database door on both databases: locks, silences, inventory questions."""

from __future__ import annotations

from datetime import timedelta

from monitor.sandbox import Sandbox
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


def test_open_means_unsilenced_in_counts_lists_and_matches(
    store: Store, sandbox: Sandbox, clock: FakeClock
) -> None:
    from monitor.pipeline import run_cycle
    from monitor.testing import RecordingNotifier
    from tests.conftest import make_settings

    run_cycle(make_settings(sandbox, store.url), store, RecordingNotifier(), clock=clock)
    everything = store.open_counts()
    assert store.open_counts(clock()) == everything and store.silenced_counts(clock()) == {}
    target = next(f for f in store.findings(clock()) if f["e164"])
    rule, e164 = target["rule"], target["e164"]
    assert store.open_matching(rule, e164, None) == 1
    assert store.open_matching("*", None, target["account_id"]) >= 1
    assert store.open_matching(rule, "+10000000000", None) == 0
    store.add_silence(rule, clock() + timedelta(days=1), "why", clock(), e164=e164, by="alice")
    key = (rule, target["severity"])
    assert store.silenced_counts(clock()) == {key: 1}
    assert store.open_counts(clock()).get(key, 0) == everything[key] - 1
    assert store.silenced_counts(clock() + timedelta(days=2)) == {}
    (row,) = store.silences()
    assert row["created_by"] == "alice" and row["matches"] == 1
    states = [f["state"] for f in store.findings(clock())]
    assert states.count("silenced") == 1 and states[-1] == "silenced"  # open ones come first
