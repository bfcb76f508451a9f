"""Every sweep ends, and one bad item never rewrites the truth: a hostile fake API on loopback.

Covers ``vobiz`` (whole-request deadline, size and depth caps, item reading) and ``sweep`` /
``pipeline`` (paging bounded by page 1's promise, partial sweeps, identity changes).
"""

from __future__ import annotations

import gzip
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import ChannelConfig
from monitor.errors import ApiError, IncompleteSweep
from monitor.model import parse_number
from monitor.pipeline import run_cycle
from monitor.store import DELIVERIES, FINDINGS, SWEEPS, VERSIONS, Store
from monitor.sweep import fetch_inventory
from monitor.testing import RecordingNotifier
from monitor.vobiz import NUMBERS, VobizClient
from tests.conftest import FakeClock, Hostile, make_settings


def item(n: int, **extra: Any) -> dict[str, Any]:
    base = {
        "id": f"n{n}",
        "e164": f"+1415555{n:04d}",
        "account_id": "MA_1",
        "status": "active",
        "application_id": "app" if n != 2 else None,  # n2 has a critical finding
    }
    return base | extra


def query(h: BaseHTTPRequestHandler) -> dict[str, int]:
    return {k: int(v[0]) for k, v in parse_qs(urlsplit(h.path).query).items() if v[0].isdigit()}


def body(items: list[Any], total: int | None, page: int = 1) -> bytes:
    env: dict[str, Any] = {"items": items, "page": page, "per_page": 100}
    if total is not None:
        env["total"] = total
    return json.dumps(env).encode()


def sweep(
    api: Hostile,
    store: Store,
    clock: FakeClock,
    notifier: RecordingNotifier | None = None,
    channels: tuple[ChannelConfig, ...] = (),
    **vobiz: Any,
) -> Any:
    s = make_settings(
        None,
        store.url,
        channels,
        vobiz={
            "base_url": api.url,
            "auth_id": "PA_1",
            "auth_token": "tok-1234",
            "max_retries": 0,
            "timeout_seconds": 2,
            **vobiz,
        },
        sweep={"accounts": False},  # this API answers every path with the numbers it is given
    )
    return run_cycle(s, store, notifier or RecordingNotifier(), clock=clock)


@pytest.fixture
def db(sqlite_store: Store) -> Store:
    return sqlite_store


def test_a_huge_total_with_empty_pages_ends_at_once(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    hostile.respond = lambda h: (
        200,
        body([item(1), item(2)] if query(h).get("page", 1) == 1 else [], 1_000_000_000),
    )
    started = time.monotonic()
    outcome = sweep(hostile, db, clock, per_page=2)
    assert not outcome.ok and "came back empty" in (outcome.error or "")
    assert hostile.requests < 30 and time.monotonic() - started < 10


def test_an_api_ignoring_page_without_total_ends(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    hostile.respond = lambda h: (200, body([item(1), item(2)], None))
    outcome = sweep(hostile, db, clock, per_page=2)
    assert not outcome.ok and "repeats page 1" in (outcome.error or "")
    assert hostile.requests <= 3


def test_an_api_ignoring_per_page_is_read_once(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    everything = [item(n) for n in range(1, 251)]
    hostile.respond = lambda h: (200, body(everything, 250))
    outcome = sweep(hostile, db, clock, per_page=100)
    assert outcome.ok and outcome.counts.numbers_seen == 250
    assert hostile.requests == 1


@pytest.mark.parametrize("with_total", [True, False])
def test_an_api_capping_per_page_is_swept_whole(
    hostile: Hostile, db: Store, clock: FakeClock, with_total: bool
) -> None:
    """Asked for 100 a page, the API sends 50: without a total the sweep was complete with page 1
    alone (50 of 200), with one it failed every time (100 of 200, every other page skipped)."""
    everything = [item(n) for n in range(1, 201)]

    def capped(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        page = query(h).get("page", 1)
        return 200, body(everything[(page - 1) * 50 : page * 50], 200 if with_total else None)

    hostile.respond = capped
    outcome = sweep(hostile, db, clock, per_page=100)
    assert outcome.ok and not outcome.partial, outcome.error
    assert outcome.counts.numbers_seen == 200


def test_a_trickling_response_ends_at_the_timeout(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(40):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass
        return 0, b""

    hostile.raw = trickle
    started = time.monotonic()
    outcome = sweep(hostile, db, clock, timeout_seconds=1)
    assert not outcome.ok and "took longer than vobiz.timeout_seconds" in (outcome.error or "")
    assert time.monotonic() - started < 6


def test_a_gzip_bomb_is_refused(hostile: Hostile, db: Store, clock: FakeClock) -> None:
    bomb = gzip.compress(b'{"items": [' + b" " * (40 * 1024 * 1024) + b"]}", 1)

    def send(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        h.send_response(200)
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(bomb)))
        h.end_headers()
        h.wfile.write(bomb)
        return 0, b""

    hostile.raw = send
    outcome = sweep(hostile, db, clock)
    assert not outcome.ok and "larger than 32 MiB" in (outcome.error or "")


def test_deep_nesting_is_a_clear_failure(hostile: Hostile, db: Store, clock: FakeClock) -> None:
    deep = b'{"items": [{"id": "n1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    hostile.respond = lambda h: (200, deep)
    outcome = sweep(hostile, db, clock)
    assert not outcome.ok and "nested deeper" in (outcome.error or "")


def test_an_unreadable_item_makes_the_sweep_partial(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    good = [item(1), item(2), item(3), item(4)]
    hostile.respond = lambda h: (200, body(good, 4))
    assert sweep(hostile, db, clock).ok
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FINDINGS)).scalar() == 1
    clock.advance(days=7)
    # n2 (the critical one) holds an invalid UTF-8 byte; n3 has a null id; n4 a nested one
    page = body([item(1), item(2, region="@@"), {**item(3), "id": None}, item(4, id={"a": 1})], 4)
    page = page.replace(b"@@", b"\xff\xfe", 1)
    hostile.respond = lambda h: (200, page)
    outcome = sweep(hostile, db, clock)
    assert outcome.ok and outcome.partial
    assert "3 item(s) could not be read" in outcome.partial
    assert "page 1 position 2" in outcome.partial and "page 1 position 4" in outcome.partial
    assert outcome.counts.numbers_gone == 0 and outcome.counts.findings_resolved == 0
    with db.engine.connect() as conn:
        states = conn.execute(sa.select(FINDINGS.c.state)).scalars().all()
        row = conn.execute(sa.select(SWEEPS).order_by(SWEEPS.c.id.desc())).mappings().first()
        current = conn.execute(
            sa.select(sa.func.count()).select_from(VERSIONS).where(VERSIONS.c.valid_to.is_(None))
        ).scalar()
    assert states == ["open"] and current == 4
    assert row is not None and row["status"] == "partial" and "position 2" in row["error"]


def test_a_quiet_partial_sweep_still_tells_the_partner_channels(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    """Nothing new and nothing resolved (a partial sweep resolves nothing): no digest, so the
    partner's channels get the caveat as a notice of its own; a customer's channel does not."""
    channels = (
        ChannelConfig(name="ops", url="json://127.0.0.1:1/x"),
        ChannelConfig(
            name="mail", url="mailto://smtp.example.com?from=m@example.com&to=a@example.com"
        ),
        ChannelConfig(name="cust", url="json://127.0.0.1:1/y", accounts=("MA_1",)),
    )
    good = [item(1), item(2), item(3)]
    hostile.respond = lambda h: (200, body(good, 3))
    first = RecordingNotifier()
    assert sweep(hostile, db, clock, first, channels).ok
    assert {m.channel for m in first.sent} == {"ops", "mail", "cust"}  # n2's finding, once
    clock.advance(days=7)
    hostile.respond = lambda h: (200, body([*good, {**item(4), "id": None}], 4))
    quiet = RecordingNotifier()
    outcome = sweep(hostile, db, clock, quiet, channels)
    assert outcome.ok and outcome.partial
    assert sorted(m.channel for m in quiet.sent) == ["mail", "ops"]
    for m in quiet.sent:
        assert m.title == "did-monitor: sweep incomplete" and m.level == "warning"
        assert "1 item(s) could not be read (page 1 position 4)" in m.body
    assert next(m for m in quiet.sent if m.channel == "mail").body.startswith("<p>")
    with db.engine.connect() as conn:
        kinds = conn.execute(
            sa.select(DELIVERIES.c.kind).where(DELIVERIES.c.sweep_id == outcome.sweep_id)
        ).scalars()
        assert sorted(kinds) == ["sweep_partial", "sweep_partial"]


def test_ids_renamed_at_once_fail_like_a_shrink(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    good = [item(n) for n in range(1, 11)]
    hostile.respond = lambda h: (200, body(good, 10))
    assert sweep(hostile, db, clock).ok
    renamed = [{**{k: v for k, v in i.items() if k != "id"}, "number_id": i["id"]} for i in good]
    hostile.respond = lambda h: (200, body(renamed, 10))
    clock.advance(days=7)
    outcome = sweep(hostile, db, clock)
    assert not outcome.ok and "ids seem to have changed" in (outcome.error or "")
    # the 10 it added are not "known before" (the count used to say 20, and judge 10/20)
    assert "10 of the 10 numbers known before are missing" in (outcome.error or "")
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(FINDINGS.c.state)).scalars().all() == ["open"]


def test_the_sweep_deadline_stops_a_long_sweep(
    hostile: Hostile, db: Store, clock: FakeClock
) -> None:
    hostile.respond = lambda h: (200, body([item(1)], 1))
    s = make_settings(
        None, db.url, vobiz={"base_url": hostile.url, "auth_id": "A", "auth_token": "tok1"}
    )
    with VobizClient(s.vobiz) as api, pytest.raises(IncompleteSweep, match="max_duration"):
        fetch_inventory(api, s, lambda recs: None, deadline=time.monotonic() - 1)


# --- fuzz: reading items never raises ----------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["id", "e164", "status", "tags", "auth_token", "next_billing_date", "x"]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_JSON, max_size=5), _JSON)
def test_fuzz_item_parser_never_raises(items: list[Any], total: Any) -> None:
    page = NUMBERS.parse({"items": items, "total": total}, 1)
    assert page.item_count == len(items) == len(page.records) + len(page.unreadable)
    for raw in items:
        rec = parse_number(raw)
        assert rec is None or "auth_token" not in rec.raw_json


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_fuzz_page_bodies_fail_only_as_api_errors(data: bytes) -> None:
    from monitor.vobiz import decode_json

    try:
        decoded = decode_json(data, "GET")
        NUMBERS.parse(decoded, 1)
    except ApiError:
        pass
