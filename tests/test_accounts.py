"""Customer accounts: read whole with the sweep, stored change-only, never with a credential."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.accounts import ACCOUNTS_PATH, fetch_accounts, parse_account
from monitor.config import ChannelConfig
from monitor.db import metadata
from monitor.errors import ApiError, IncompleteSweep
from monitor.outbox import load_announce_state
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, make_settings

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


def pages(*bodies: Any) -> Any:
    calls: list[dict[str, Any]] = []

    def get_json(path: str, params: dict[str, Any]) -> Any:
        assert path == ACCOUNTS_PATH
        calls.append(params)
        body = bodies[min(len(calls), len(bodies)) - 1]
        return body(params["page"]) if callable(body) else body

    return get_json, calls


def acct(n: int) -> dict[str, Any]:
    return {"auth_id": f"MA_{n}", "name": f"C{n}", "auth_token": f"tok{n}"}


def test_an_account_nested_too_deep_is_unreadable_even_beside_a_credential() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    assert parse_account({"auth_id": "MA_1", "auth_token": "t", "x": deep}) is None
    assert parse_account({"auth_id": "MA_1", "auth_token": "t", "x": [[1]]}) is not None


def test_an_account_on_two_pages_keeps_the_later_page() -> None:
    pages = {
        1: [acct(1) | {"name": "p1"}],
        2: [acct(1) | {"name": "p2"}, acct(2)],
        3: [acct(1) | {"name": "p3"}, acct(3)],
    }

    def body(page: int) -> Any:
        return {"accounts": pages[page], "total": 3, "page": page, "size": 1}

    def backwards(wanted: range) -> Any:  # pages arriving in any order
        return [(body(p), p) for p in reversed(wanted)]

    got = fetch_accounts(lambda path, params: body(params["page"]), 1, get_pages=backwards)
    assert {a.account_id: a.name for a in got} == {"MA_1": "p3", "MA_2": "C2", "MA_3": "C3"}


def test_fetch_reads_every_page_and_checks_the_total() -> None:
    def body(page: int) -> Any:
        chunk = [acct(n) for n in range((page - 1) * 2, min(page * 2, 5))]
        return {"accounts": chunk, "total": 5, "page": page, "size": 2}

    get_json, calls = pages(body)
    got = fetch_accounts(get_json, per_page=2)
    assert [a.account_id for a in got] == [f"MA_{n}" for n in range(5)]
    assert len(calls) == 3


def test_an_incomplete_account_list_is_refused() -> None:
    short = {"accounts": [acct(1)], "total": 2, "page": 1, "size": 100}
    get_json, calls = pages(short)
    with pytest.raises(IncompleteSweep, match="1 distinct accounts read, the API reports 2"):
        fetch_accounts(get_json)
    assert len(calls) == 2  # read again once before giving up
    get_json, _ = pages({"error": "nope"})
    with pytest.raises(ApiError, match="no 'accounts' list"):
        fetch_accounts(get_json)


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
    flagged = {
        f["account_id"]: f for f in store.findings(clock.now) if f["rule"] == "no_active_number"
    }
    for empty in sandbox.inventory.empty_account_ids:
        assert "no number at all" in flagged[empty]["message"]
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
