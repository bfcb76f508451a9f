"""Customer accounts: read whole with the sweep, stored change-only, never with a credential."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from monitor.accounts import ACCOUNTS_PATH, fetch_accounts, parse_account
from monitor.alerts.outbox import load_announce_state
from monitor.config import ChannelConfig, VobizConfig
from monitor.errors import ApiError, IncompleteSweep, MonitorError
from monitor.model import parse_number
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.store.db import metadata
from monitor.sweep import fetch_inventory
from monitor.testing import RecordingNotifier
from monitor.vobiz import VobizClient
from tests.conftest import FakeClock, Hostile, make_settings

CHAN = ChannelConfig(name="ops", url="json://127.0.0.1:1/x")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("auth_token", True),
        ("authToken", True),
        ("api-key", True),
        ("client_secret", True),
        ("password", True),
        ("sip_passwd", True),
        ("private_key", True),
        ("otp", True),
        ("credentials", True),
        ("auth_id", False),
        ("name", False),
        ("status", False),
        ("created_at", False),
    ],
)
def test_credential_names(name: str, secret: bool) -> None:
    rec = parse_account({"id": "MA_1", name: "value"})
    assert rec is not None and (name not in rec.raw) is secret


def test_credentials_are_dropped_at_any_depth() -> None:
    item = {
        "auth_id": "MA_1",
        "auth_token": "s3cr3t",
        "sip": {"username": "u", "password": "p", "trunks": [{"apiKey": "k", "host": "h"}]},
    }
    rec = parse_account(item | {"name": " Acme ", "status": "ACTIVE"})
    assert rec is not None and rec.name == "Acme" and rec.status == "active"
    assert rec.raw == {
        "auth_id": "MA_1",
        "name": " Acme ",
        "status": "ACTIVE",
        "sip": {"username": "u", "trunks": [{"host": "h"}]},
    }
    assert "s3cr3t" not in str(rec)
    assert parse_account({"name": "no id"}) is None
    assert parse_account(["not", "an", "object"]) is None


def test_an_account_id_is_read_as_every_api_id_is() -> None:
    """A JSON number is an id (as a number's is); a long one is the same hash the numbers of
    that account carry."""
    rec = parse_account({"id": 42, "name": "B"})
    assert rec is not None and rec.account_id == "42"
    long_id = "MA_" + "x" * 80
    rec = parse_account({"auth_id": long_id})
    number = parse_number({"id": "n1", "account_id": long_id})
    assert rec is not None and number is not None and rec.account_id == number.account_id
    assert parse_account({"auth_id": True}) is None and parse_account({"id": {"a": 1}}) is None


def test_an_account_nested_too_deep_is_unreadable_even_beside_a_credential() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    assert parse_account({"auth_id": "MA_1", "auth_token": "t", "x": deep}) is None
    assert parse_account({"auth_id": "MA_1", "auth_token": "t", "x": [[1]]}) is not None


def acct(n: int) -> dict[str, Any]:
    return {"auth_id": f"MA_{n}", "name": f"C{n}", "auth_token": f"tok{n}"}


def serve(api: Hostile, pages: Callable[[int], Any]) -> None:
    """``api`` answers page N of the numbers and of the accounts with ``pages(N)``: (the items,
    the total or None for none) in the list's envelope, or anything else as the whole body."""

    def respond(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        answer = pages(int(parse_qs(urlsplit(h.path).query)["page"][0]))
        if not isinstance(answer, tuple):
            return 200, json.dumps(answer).encode()
        items, total = answer
        key = "accounts" if ACCOUNTS_PATH in h.path else "items"
        envelope = {key: items} | ({} if total is None else {"total": total})
        return 200, json.dumps(envelope).encode()

    api.respond = respond


def client_of(api: Hostile, **vobiz: Any) -> VobizClient:
    values = {"max_retries": 0, "timeout_seconds": 2, "max_requests_per_second": 0} | vobiz
    return VobizClient(VobizConfig(base_url=api.url, auth_id="PA_1", auth_token="t0k", **values))


def test_an_account_on_two_pages_keeps_the_later_page(hostile: Hostile) -> None:
    pages = {
        1: [acct(1) | {"name": "p1"}],
        2: [acct(1) | {"name": "p2"}, acct(2)],
        3: [acct(1) | {"name": "p3"}, acct(3)],
    }
    order: list[int] = []

    def page(n: int) -> tuple[Any, int]:
        if n == 2:
            time.sleep(0.3)  # page 3 arrives first
        order.append(n)
        return pages[n], 3

    serve(hostile, page)
    with client_of(hostile) as client:
        got = fetch_accounts(client, 1, 2).accounts
    assert order[:3] == [1, 3, 2]
    assert {a.account_id: a.name for a in got} == {"MA_1": "p3", "MA_2": "C2", "MA_3": "C3"}


def test_fetch_reads_every_page_and_checks_the_total(hostile: Hostile) -> None:
    serve(hostile, lambda n: ([acct(i) for i in range((n - 1) * 2, min(n * 2, 5))], 5))
    with client_of(hostile) as client:
        got = fetch_accounts(client, 2, 2).accounts
    assert [a.account_id for a in got] == [f"MA_{n}" for n in range(5)]
    assert hostile.requests == 3


@pytest.mark.parametrize("total", [5, None])
def test_an_api_capping_the_account_page_size_is_read_whole(
    hostile: Hostile, total: int | None
) -> None:
    """Asked for 100 a page, the API sends 2: read by its own size, as the numbers are."""
    serve(hostile, lambda n: ([acct(i) for i in range((n - 1) * 2, min(n * 2, 5))], total))
    with client_of(hostile) as client:
        got = fetch_accounts(client, 100, 2).accounts
    assert [a.account_id for a in got] == [f"MA_{n}" for n in range(5)]


def test_an_incomplete_account_list_is_refused(hostile: Hostile) -> None:
    # an account on both pages (the list shifted), so one of the 3 the total counts is missed
    serve(hostile, lambda n: ([acct(1), acct(2)] if n == 1 else [acct(2)], 3))
    with client_of(hostile) as client:
        with pytest.raises(IncompleteSweep, match="2 distinct accounts read, the API reports 3"):
            fetch_accounts(client, 2, 2)
        assert hostile.requests == 4  # read again once before giving up
        serve(hostile, lambda n: {"error": "nope"})
        with pytest.raises(ApiError, match="no 'accounts' list"):
            fetch_accounts(client, 100, 2)


def item(n: int) -> dict[str, Any]:
    """An item both lists can read: a number, and an account."""
    return acct(n) | {"id": f"MA_{n}", "e164": f"+1415555{n:04d}"}


@pytest.mark.parametrize(
    ("pages", "numbers_error", "accounts_error"),
    [
        # an API that ignores ?page=, with a total and without
        (lambda n: ([item(1), item(2)], 6), "repeats page 1", "repeats page 1"),
        (lambda n: ([item(1), item(2)], None), "repeats page 1", "repeats page 1"),
        # an empty page before the promised end
        (lambda n: ([item(1), item(2)] if n == 1 else [], 10**9), "came back empty", None),
        # a total that shifts from page to page
        (
            lambda n: ([item(2 * n), item(2 * n + 1)], 4 + n),
            "did not add up",
            "the total was not the same on every page",
        ),
        # a body that is not an object
        (lambda n: ["not", "an", "object"], "expected a JSON object, got list", None),
    ],
)
def test_accounts_are_paged_and_judged_as_the_numbers_are(
    hostile: Hostile,
    tmp_path: Path,
    pages: Callable[[int], Any],
    numbers_error: str,
    accounts_error: str | None,
) -> None:
    serve(hostile, pages)
    vobiz = {"base_url": hostile.url, "auth_id": "PA_1", "auth_token": "t0k", "per_page": 2}
    settings = make_settings(
        None, f"sqlite:///{tmp_path / 'x.db'}", vobiz=vobiz | {"max_retries": 0}
    )
    caught: list[BaseException] = []
    with client_of(hostile, per_page=2) as client:
        for read in (
            lambda: fetch_inventory(client, settings, lambda records: None),
            lambda: fetch_accounts(client, 2, 2),
        ):
            with pytest.raises(MonitorError) as error:
                read()
            caught.append(error.value)
    numbers, accounts = caught
    assert numbers_error in str(numbers), numbers
    assert (accounts_error or numbers_error) in str(accounts), accounts
    assert type(numbers) is type(accounts)
    assert hostile.requests < 40


def sweep(sandbox: Sandbox, store: Store, clock: FakeClock, **kw: Any) -> Any:
    settings = make_settings(sandbox, store.url, (CHAN,), **kw)
    out = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    clock.advance(days=7)
    return out


def test_accounts_are_stored_change_only_and_found_without_numbers(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    first = sweep(sandbox, store, clock)
    assert first.ok, first.error
    listed = {a["auth_id"] for a in sandbox.inventory.accounts()}
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT account_id, valid_to FROM account_versions")).all()
    assert {r[0] for r in rows} == listed and all(r[1] is None for r in rows)
    flagged = {f.account_id: f for f in store.findings(clock.now) if f.rule == "no_active_number"}
    for empty in sandbox.inventory.empty_account_ids:
        assert "no number at all" in flagged[empty].message
    assert sweep(sandbox, store, clock).ok
    with store.engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM account_versions")).scalar_one()
    assert count == len(listed)  # unchanged: nothing written again


def test_a_failing_account_list_fails_the_sweep(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sandbox.faults.add(path=ACCOUNTS_PATH, times=-1, status=500)
    out = sweep(sandbox, store, clock, vobiz={"max_retries": 0})
    assert not out.ok and ACCOUNTS_PATH in (out.error or "")
    assert store.last_sweep("complete") is None


def test_customer_tokens_never_reach_the_database_or_the_logs(
    sandbox: Sandbox, store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = [str(a["auth_token"]) for a in sandbox.inventory.accounts()]
    assert tokens and all(len(t) >= 20 for t in tokens)
    caplog.set_level(logging.DEBUG)
    assert sweep(sandbox, store, clock).ok
    assert not [t for t in tokens if t in caplog.text]
    if store.engine.dialect.name == "sqlite":
        path = Path(store.engine.url.database or "")
        stored = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        assert stored and not [t for t in tokens if t.encode() in stored]
        return
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            text = " ".join(
                str(r[0]) for r in conn.execute(sa.text(f"SELECT t::text FROM {table.name} t"))
            )
            assert not [t for t in tokens if t in text], table.name


def test_digests_name_the_account_of_findings_with_and_without_numbers(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    settings = make_settings(sandbox, store.url, (CHAN,))
    notifier = RecordingNotifier()
    assert run_cycle(settings, store, notifier, clock=clock).ok
    body = "\n".join(m.body for m in notifier.sent)
    names = {str(a["auth_id"]): str(a["name"]) for a in sandbox.inventory.accounts()}
    for empty in sandbox.inventory.empty_account_ids:
        assert names[empty] in body  # the account finding shows the customer's name
    assert "account:" not in body
    with store.engine.connect() as conn:
        state = load_announce_state(conn, 1, clock.now)
    assert state.open and all(r["account_name"] == names.get(r["account_id"]) for r in state.open)
    assert any(r["e164"] is not None and r["account_name"] for r in state.open)


def test_an_unreadable_account_makes_the_sweep_partial_not_failed(
    hostile: Hostile, tmp_path: Path, clock: FakeClock
) -> None:
    """An account with an integer id is read; one that cannot be read at all counts like an
    unreadable number: the sweep is partial (numbers stored, rules run, nothing closed), not
    failed with "1 distinct accounts read, the API reports 2"."""
    numbers = [
        {"id": "n1", "e164": "+14155550001", "account_id": "MA_1", "status": "active"},
        {"id": "n2", "e164": "+14155550002", "account_id": "42", "status": "active"},
    ]
    listed: list[Any] = [acct(1), {"id": 42, "name": "B", "status": "active"}]

    def respond(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        if ACCOUNTS_PATH in h.path:
            envelope = {"accounts": listed, "total": 2, "page": 1, "size": 100}
            return 200, json.dumps(envelope).encode()
        return 200, json.dumps({"items": numbers, "total": 2}).encode()

    hostile.respond = respond
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    vobiz = {"base_url": hostile.url, "auth_id": "PA_1", "auth_token": "t0k", "max_retries": 0}
    settings = make_settings(None, store.url, vobiz=vobiz)

    def current_accounts() -> set[str]:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT account_id FROM account_versions WHERE valid_to IS NULL")
            )
            return {r[0] for r in rows}

    first = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert first.ok and not first.partial, first.error
    assert current_accounts() == {"MA_1", "42"}
    clock.advance(days=7)
    listed[1] = {"id": None, "name": "B", "status": "active"}
    second = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert second.ok and second.partial, second.error
    assert "1 account(s) could not be read (accounts page 1 position 2)" in second.partial
    assert second.counts.numbers_seen == 2 and second.counts.findings_resolved == 0
    assert current_accounts() == {"MA_1", "42"}  # the unreadable one may be 42: not closed
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, error FROM sweeps ORDER BY id DESC")).first()
    assert row is not None and row[0] == "partial" and "account(s) could not be read" in row[1]
