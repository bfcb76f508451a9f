"""The database door on both databases: locks, silences, inventory questions."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from monitor.sandbox import Sandbox
from monitor.store import FINDINGS, Store, silenced
from tests.conftest import FIXED_NOW, FakeClock


def hushed(store: Store, now: datetime, **finding: str) -> bool:
    """Whether ``store.silenced`` (the one test) holds back a finding with these fields."""
    sweep_id = store.start_sweep(now, "manual")
    row = {"rule": "blocked", "e164": "+1", "account_id": "MA_A"} | finding
    with store.engine.begin() as conn:
        fid = conn.execute(
            sa.insert(FINDINGS)
            .values(
                subject=f"{sweep_id}:{row['e164']}",  # a new finding each time
                severity="critical",
                state="open",
                message="m",
                tags=[],
                first_seen=now,
                last_seen=now,
                opened_sweep_id=sweep_id,
                **row,
            )
            .returning(FINDINGS.c.id)
        ).scalar_one()
        return bool(conn.execute(sa.select(silenced(now)).where(FINDINGS.c.id == fid)).scalar_one())


def test_silences_round_trip(store: Store, clock: FakeClock) -> None:
    sid = store.add_silence(
        "blocked", clock() + timedelta(days=1), "why", clock(), account_id="MA_A"
    )
    (row,) = store.silences()
    assert row["id"] == sid and row["until"] > clock()
    assert hushed(store, clock())
    assert not hushed(store, clock(), account_id="MA_B")
    assert not hushed(store, clock(), rule="expiring")
    assert not hushed(store, clock() + timedelta(days=2))  # ended
    assert store.remove_silence(sid) and not store.remove_silence(sid)
    assert not hushed(store, clock())


def test_wildcard_silence(store: Store, clock: FakeClock) -> None:
    store.add_silence("*", clock() + timedelta(days=1), "maintenance", clock(), e164="+1")
    assert hushed(store, clock(), rule="expiring", account_id="MA_Z")
    assert not hushed(store, clock(), rule="expiring", e164="+2", account_id="MA_Z")


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
    target = next(f for f in store.findings(clock()) if f.e164)
    rule, e164 = target.rule, target.e164
    assert store.open_matching(rule, e164, None) == 1
    assert store.open_matching("*", None, target.account_id) >= 1
    assert store.open_matching(rule, "+10000000000", None) == 0
    store.add_silence(rule, clock() + timedelta(days=1), "why", clock(), e164=e164, by="alice")
    key = (rule, target.severity)
    assert store.silenced_counts(clock()) == {key: 1}
    assert store.open_counts(clock()).get(key, 0) == everything[key] - 1
    assert store.silenced_counts(clock() + timedelta(days=2)) == {}
    (row,) = store.silences()
    assert row["created_by"] == "alice" and row["matches"] == 1
    states = [f.state for f in store.findings(clock())]
    assert states.count("silenced") == 1 and states[-1] == "silenced"  # open ones come first


def test_history_is_oldest_first_when_the_number_id_changes(
    store: Store, sandbox: Sandbox, clock: FakeClock
) -> None:
    """A number whose id changed to one that sorts before the old one: its versions are still
    in time order (the old id's closed one, then the new id's current one)."""
    from monitor.pipeline import run_cycle
    from monitor.testing import RecordingNotifier
    from tests.conftest import make_settings

    settings = make_settings(sandbox, store.url)
    first = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    old_id = sandbox.inventory.item(7)["id"]
    item = sandbox.inventory.update(7, id="00000000-new")
    assert old_id > "00000000-new"  # the new id sorts first
    clock.advance(days=7)
    second = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert first.ok and second.ok
    rows = store.history(item["e164"])
    assert [(r["number_id"], r["valid_from"], r["valid_to"]) for r in rows] == [
        (old_id, first.sweep_id, second.sweep_id),
        ("00000000-new", second.sweep_id, None),
    ]
