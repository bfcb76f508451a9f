"""Completeness and reliability of one sweep against the sandbox under injected faults."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.alerts.notify import Outgoing
from monitor.config import ChannelConfig
from monitor.errors import IncompleteSweep
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import DELIVERIES, FINDINGS, SWEEPS, VERSIONS, Store
from monitor.sweep import PassResult, check_shrink
from monitor.testing import RecordingNotifier, row_counts
from tests.conftest import FakeClock, make_settings, sweep_row


def cycle(sandbox: Sandbox, store: Store, clock: FakeClock, **kw: Any) -> Any:
    settings = make_settings(sandbox, store.url, **kw)
    return run_cycle(settings, store, RecordingNotifier(), clock=clock)


def current_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(VERSIONS.c.number_id).where(VERSIONS.c.valid_to.is_(None)))
        return {r[0] for r in rows}


def test_complete_sweep_stores_every_number(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 4})
    assert out.ok, out.error
    assert out.counts.numbers_seen == 150 and out.counts.pages == 8
    assert current_ids(store) == set(sandbox.inventory.ids())


def test_injected_faults_end_in_a_complete_sweep(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sandbox.faults.add(page=2, status=429, retry_after="0")
    sandbox.faults.add(page=3, times=3, status=503)
    sandbox.faults.add(page=4, kind="garbage")
    sandbox.faults.add(page=5, kind="timeout", delay=1.0)
    sandbox.faults.add(page=6, kind="close")
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "timeout_seconds": 0.5})
    assert out.ok, out.error
    assert out.counts.retries >= 7
    assert current_ids(store) == set(sandbox.inventory.ids())


def test_api_that_never_recovers_fails_the_sweep_and_stores_nothing(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sandbox.faults.add(page=3, times=-1, status=503)
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "max_retries": 2})
    assert not out.ok
    assert "gave up" in (out.error or "")
    assert current_ids(store) == set()  # pages 1, 2 were rolled back with the rest
    sweep = store.last_sweep()
    assert sweep is not None and sweep["status"] == "failed" and sweep["error"]


def test_numbers_added_mid_sweep_are_reread(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    added: list[str] = []

    def shift(path: str, query: dict[str, str]) -> None:
        if query.get("page") == "3" and not added:
            added.extend(sandbox.inventory.add(5, front=True))  # shifts every later page

    sandbox.on_request = shift
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 1})
    assert out.ok, out.error
    assert current_ids(store) == set(sandbox.inventory.ids())
    assert set(added) <= current_ids(store)


def test_total_changing_every_page_fails_after_rereads(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    def grow(path: str, query: dict[str, str]) -> None:
        sandbox.inventory.add(1, front=True)

    sandbox.on_request = grow
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 2})
    assert not out.ok
    assert "did not add up" in (out.error or "")
    assert current_ids(store) == set()


def test_numbers_removed_only_by_a_complete_sweep(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    assert cycle(sandbox, store, clock).ok
    gone = list(sandbox.inventory.ids())[:3]
    sandbox.inventory.remove(gone)
    sandbox.faults.add(times=-1, status=500)
    clock.advance(days=7)
    assert not cycle(sandbox, store, clock, vobiz={"max_retries": 1}).ok
    assert set(gone) <= current_ids(store)  # a failed sweep never reports numbers as gone
    sandbox.faults.clear()
    clock.advance(days=7)
    out = cycle(sandbox, store, clock)
    assert out.ok and out.counts.numbers_gone == 3
    assert not set(gone) & current_ids(store)


def test_sudden_shrink_fails_the_sweep(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    assert cycle(sandbox, store, clock).ok
    sandbox.inventory.remove(list(sandbox.inventory.ids())[:80])
    out = cycle(sandbox, store, clock)
    assert not out.ok and "shrank from 150 to 70" in (out.error or "")
    assert len(current_ids(store)) == 150
    # the operator can accept a real drop
    assert cycle(sandbox, store, clock, sweep={"max_shrink_fraction": 0.9}).ok
    assert len(current_ids(store)) == 70


def test_duplicates_across_pages_are_counted_once(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    first_id = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.remove([first_id])
    sandbox.inventory.add(1)
    # duplicate: make the new last number carry an existing id
    last = sandbox.inventory.count - 1
    sandbox.inventory.update(last, id=list(sandbox.inventory.ids())[5])
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20})
    # 150 items, 149 distinct ids: that cannot add up, so the sweep fails rather than guess
    assert not out.ok and "did not add up" in (out.error or "")


def test_unchanged_resweep_writes_almost_nothing(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    assert cycle(sandbox, store, clock).ok
    before = row_counts(store.engine)
    clock.advance(hours=1)
    out = cycle(sandbox, store, clock)
    assert out.ok and out.counts.versions_written == 0
    after = row_counts(store.engine)
    assert after["number_versions"] == before["number_versions"]
    assert after["sweeps"] == before["sweeps"] + 1
    # one change → one new version, the old one closed, and history answers by query
    nid = next(iter(sandbox.inventory.ids()))
    sandbox.inventory.update(nid, application_id=None)
    out = cycle(sandbox, store, clock)
    assert out.counts.versions_written == 1
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(VERSIONS.c.number_id, VERSIONS.c.valid_from, VERSIONS.c.valid_to)
        ).all()
    changed = [r for r in rows if r.valid_from == out.sweep_id or r.valid_to == out.sweep_id]
    assert {r.number_id for r in changed} == {nid} and len(changed) == 2
    at_previous = [
        r
        for r in rows
        if r.valid_from <= out.sweep_id - 1
        and (r.valid_to is None or r.valid_to > out.sweep_id - 1)
    ]
    assert len(at_previous) == 150


def test_interrupted_sweep_is_marked_aborted_next_time(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sid = store.start_sweep(clock(), "manual")  # as if the process was SIGKILLed mid-sweep
    out = cycle(sandbox, store, clock)
    assert out.ok
    assert sweep_row(store, sid)["status"] == "aborted"


def test_pass_consistency_rules() -> None:
    ok = PassResult(ids={"a", "b"}, totals={2})
    assert ok.consistent()
    assert not PassResult(ids={"a"}, totals={2}).consistent()
    assert not PassResult(ids={"a", "b"}, totals={2, 3}).consistent()
    assert PassResult(ids={"a"}, totals={2}, malformed=1).consistent()


def test_check_shrink_thresholds() -> None:
    from monitor.config import Settings, SweepConfig

    s = Settings(sweep=SweepConfig(max_shrink_fraction=0.2))
    check_shrink(s, 0, 0)
    check_shrink(s, 100, 80)
    with pytest.raises(IncompleteSweep):
        check_shrink(s, 100, 79)


def test_findings_survive_a_failed_sweep(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    assert cycle(sandbox, store, clock).ok
    with store.engine.connect() as conn:
        open_before = conn.execute(
            sa.select(sa.func.count()).select_from(FINDINGS).where(FINDINGS.c.state == "open")
        ).scalar_one()
    sandbox.faults.add(times=-1, kind="garbage")
    assert not cycle(sandbox, store, clock, vobiz={"max_retries": 1}).ok
    with store.engine.connect() as conn:
        open_after = conn.execute(
            sa.select(sa.func.count()).select_from(FINDINGS).where(FINDINGS.c.state == "open")
        ).scalar_one()
        statuses = [r[0] for r in conn.execute(sa.select(SWEEPS.c.status).order_by(SWEEPS.c.id))]
    assert open_before == open_after > 0
    assert statuses == ["complete", "failed"]


def test_sigkill_mid_sweep_leaves_a_consistent_database(
    sandbox: Sandbox, tmp_path: Any, clock: FakeClock
) -> None:
    """A real process killed with SIGKILL mid-sweep: nothing half-written, next run carries on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "kill.db"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[vobiz]\nbase_url = "{sandbox.url}"\nauth_id = "{sandbox.auth_id}"\n'
        f'auth_token = "{sandbox.auth_token}"\nper_page = 10\nconcurrency = 1\n'
        f'max_requests_per_second = 0\n[database]\nurl = "sqlite:///{db}"\n'
    )
    cfg.chmod(0o600)
    sandbox.latency = 0.2  # 15 pages: about 3 s, time enough to kill it half way
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "sweep", "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while sandbox.request_count < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sandbox.request_count >= 5, "the sweep never got going"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sandbox.latency = 0
    store = Store(f"sqlite:///{db}")
    try:
        assert store.last_sweep()["status"] == "running"  # type: ignore[index]
        assert current_ids(store) == set()  # the pages it had stored were never committed
        out = cycle(sandbox, store, clock)
        assert out.ok
        with store.engine.connect() as conn:
            statuses = list(conn.scalars(sa.select(SWEEPS.c.status).order_by(SWEEPS.c.id)))
        assert statuses == ["aborted", "complete"]
        assert current_ids(store) == set(sandbox.inventory.ids())
    finally:
        store.dispose()


def test_a_swap_mid_sweep_that_keeps_the_total_is_confirmed(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """One number released and another bought between pages: the total still adds up, but a
    number shifted past the reader. A confirming pass must find it rather than call it gone."""
    assert cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 1}).ok
    ids = list(sandbox.inventory.ids())
    swapped: list[str] = []

    def swap(path: str, query: dict[str, str]) -> None:
        if query.get("page") == "2" and not swapped:
            sandbox.inventory.remove([ids[3]])  # on page 1, already read
            swapped.extend(sandbox.inventory.add(1))  # at the end: the total is unchanged

    sandbox.on_request = swap
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 1})
    assert out.ok, out.error
    assert out.counts.numbers_gone == 0  # the number that shifted from page 2 to 1 is not gone
    assert ids[20] in current_ids(store)
    assert set(swapped) <= current_ids(store)
    sandbox.on_request = None
    later = cycle(sandbox, store, clock, vobiz={"per_page": 20, "concurrency": 1})
    assert later.ok and later.counts.numbers_gone == 1  # the released one, once really absent
    assert ids[3] not in current_ids(store)


def test_an_api_without_totals_must_agree_with_itself(
    sandbox: Sandbox, store: Store, clock: FakeClock, monkeypatch: Any
) -> None:
    from monitor.vobiz import VobizClient

    original = VobizClient.get_json

    def no_total(self: VobizClient, path: str, params: Any = None) -> Any:
        body = original(self, path, params)
        body.pop("total", None)
        return body

    monkeypatch.setattr(VobizClient, "get_json", no_total)
    out = cycle(sandbox, store, clock, vobiz={"per_page": 20})
    assert out.ok and out.counts.numbers_seen == 150
    assert out.counts.total_reported is None
    assert (
        cycle(sandbox, store, clock, vobiz={"per_page": 20}, sweep={"reread_attempts": 0}).ok
        is False
    )


def test_cancel_stops_a_sweep_that_is_waiting_out_a_retry(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    import threading
    import time

    from monitor.errors import SweepCancelled

    settings = make_settings(
        sandbox,
        store.url,
        vobiz={"per_page": 20, "backoff_base_seconds": 30, "backoff_max_seconds": 30},
    )
    sandbox.faults.add(page=2, times=-1, status=503)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(SweepCancelled):
        run_cycle(settings, store, RecordingNotifier(), clock=clock, cancel=cancel)
    assert time.monotonic() - started < 5  # not the 30 s backoff
    last = store.last_sweep()
    assert last is not None and last["status"] == "aborted"  # not failed: nothing is alerted
    assert current_ids(store) == set()


def test_an_injected_client_fetches_every_page_itself(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """A caller's own client (its own pauses, its own figures) is the one that fetches."""
    from tests.test_vobiz import client_for

    client, _ = client_for(sandbox)
    settings = make_settings(sandbox, store.url, vobiz={"per_page": 20, "concurrency": 3})
    with client:
        out = run_cycle(settings, store, RecordingNotifier(), clock=clock, client=client)
    assert out.ok, out.error
    assert client.stats.requests == 8 + 1 and out.counts.requests == 8 + 1  # + accounts
    assert sum(store.open_counts().values()) == 48  # the sandbox seed 7 inventory


def test_unreadable_dates_are_counted_and_named_never_dropped(
    sandbox: Sandbox, store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An impossible day, an epoch number and garbage in next_billing_date (and an odd
    expires_at) are named in the sweep's outcome, its row's notes (not its error: the sweep is
    complete), its log and every partner digest, as a note, not a warning that the sweep was
    incomplete. A customer's channel is not told other customers' numbers, and an unchanged
    next sweep with nothing new tells nobody again."""
    ids = list(sandbox.inventory.ids())
    odd = {ids[3]: "2026-02-30", ids[40]: 1767225600, ids[77]: "next tuesday"}
    named = [sandbox.inventory.update(n, next_billing_date=v)["e164"] for n, v in odd.items()]
    expiry = sandbox.inventory.update(ids[120], expires_at={"at": "2026-12-01"})["e164"]
    blank = sandbox.inventory.update(ids[121], expires_at=" ")["e164"]  # no date, not an odd one
    customer = sandbox.inventory.update(ids[0])["account_id"]
    settings = make_settings(sandbox, store.url, note_channels(customer), vobiz={"per_page": 20})
    notifier = RecordingNotifier()
    with caplog.at_level(logging.WARNING):
        out = run_cycle(settings, store, notifier, clock=clock)
    assert out.ok and out.partial is None, out.error
    note = out.unreadable_dates
    assert note is not None and note.startswith("3 numbers have an unreadable next_billing_date")
    assert "1 number has an unreadable expires_at" in note and expiry in note
    assert all(e164 in note for e164 in named) and blank not in note
    row = sweep_row(store, out.sweep_id)
    assert row["status"] == "complete" and row["error"] is None and row["notes"] == note
    assert note in caplog.text
    by_channel = {m.channel: m for m in notifier.sent}
    assert _kinds(store, out.sweep_id) == ["digest", "digest", "digest"]  # no notice besides
    for name in ("ops", "mail"):
        assert all(e164 in by_channel[name].body for e164 in [*named, expiry]), name
    assert f"Note: {note[:20]}" in by_channel["ops"].body
    assert "⚠" not in by_channel["ops"].body and "incomplete" not in by_channel["mail"].body
    assert "unreadable" not in by_channel["cust"].body

    clock.advance(hours=1)  # the same inventory: nothing new and the same note, so no message
    quiet = RecordingNotifier()
    again = run_cycle(settings, store, quiet, clock=clock)
    assert again.ok and again.digests == 0 and again.unreadable_dates == note
    assert quiet.sent == []
    assert sweep_row(store, again.sweep_id)["notes"] == note
    # The sweeps page shows it as each sweep's note, not as an error.
    from starlette.testclient import TestClient

    from tests.test_web_views import dashboard_app

    with TestClient(dashboard_app(store, clock)) as web:
        page = web.get("/sweeps").text
    assert page.count(f'<span class="note">Note: {note[:30]}') == 2 and 'class="error"' not in page


def note_channels(customer: str) -> tuple[ChannelConfig, ...]:
    """Two partner channels (a chat one and an email one) and a customer's channel."""
    return (
        ChannelConfig(name="ops", url="json://127.0.0.1:1/x"),
        ChannelConfig(
            name="mail", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com"
        ),
        ChannelConfig(name="cust", url="json://127.0.0.1:1/y", accounts=(customer,)),
    )


def test_unreadable_dates_are_announced_again_when_the_numbers_change(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """A quiet sweep whose numbers with an unreadable date differ from the last complete
    sweep's tells each partner channel once, in a notice of its own kind and words (not "sweep
    incomplete"); a customer's channel is not told. Once fixed and broken again, it is news."""
    ids = list(sandbox.inventory.ids())
    customer = sandbox.inventory.item(0)["account_id"]
    settings = make_settings(sandbox, store.url, note_channels(customer), vobiz={"per_page": 20})
    flagged = _flagged_numbers(sandbox, store, clock, settings)
    spare = [n for i, n in enumerate(ids) if sandbox.inventory.item(i)["e164"] not in flagged]
    sandbox.inventory.update(spare[0], expires_at="soon")
    first = _quiet_cycle(settings, store, clock)
    assert first.unreadable_dates and first.unreadable_dates.startswith("1 number has")
    assert sorted(m.channel for m in first.sent) == ["mail", "ops"]
    for m in first.sent:
        assert m.title == "did-monitor: numbers with unreadable dates" and m.level == "info"
        assert first.unreadable_dates in m.body and "could not read the whole" not in m.body
    assert _kinds(store, first.sweep_id) == ["unreadable_dates", "unreadable_dates"]

    assert _quiet_cycle(settings, store, clock).sent == []  # the same number: told already
    sandbox.inventory.update(spare[1], expires_at="later")  # one more: the set changed
    second = _quiet_cycle(settings, store, clock)
    assert second.unreadable_dates and second.unreadable_dates.startswith("2 numbers have")
    assert sorted(m.channel for m in second.sent) == ["mail", "ops"]
    sandbox.inventory.update(spare[0], expires_at=None)
    sandbox.inventory.update(spare[1], expires_at=None)
    fixed = _quiet_cycle(settings, store, clock)
    assert fixed.unreadable_dates is None and fixed.sent == []
    sandbox.inventory.update(spare[1], expires_at="later")  # broken again after a clean sweep
    assert sorted(m.channel for m in _quiet_cycle(settings, store, clock).sent) == ["mail", "ops"]


@dataclass
class _Quiet:
    sweep_id: int
    unreadable_dates: str | None
    sent: list[Outgoing]


def _flagged_numbers(sandbox: Sandbox, store: Store, clock: FakeClock, settings: Any) -> set[str]:
    """Sweep once (announcing the inventory's findings) and return the numbers with findings."""
    assert run_cycle(settings, store, RecordingNotifier(), clock=clock).ok
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(FINDINGS.c.e164)).scalars())


def _quiet_cycle(settings: Any, store: Store, clock: FakeClock) -> _Quiet:
    """One more sweep an hour later that opens and resolves nothing."""
    clock.advance(hours=1)
    notifier = RecordingNotifier()
    out = run_cycle(settings, store, notifier, clock=clock)
    assert out.ok and out.digests == 0, out.error
    return _Quiet(out.sweep_id, out.unreadable_dates, notifier.sent)


def _kinds(store: Store, sweep_id: int) -> list[str]:
    with store.engine.connect() as conn:
        stmt = sa.select(DELIVERIES.c.kind).where(DELIVERIES.c.sweep_id == sweep_id)
        return sorted(conn.execute(stmt).scalars())
