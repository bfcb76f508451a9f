"""Tests for the fake Vobiz Partner API, driven over real loopback HTTP with httpx."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from monitor.sandbox import DELETE, NUMBERS_PATH, Inventory, Sandbox

NOW = datetime(2026, 3, 25, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(numbers=250, seed=7, now=NOW) as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=sandbox.headers, timeout=5) as c:
        yield c


def numbers(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get(NUMBERS_PATH, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sweep(client: httpx.Client, path: str = NUMBERS_PATH, per_page: int = 100) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        body = client.get(path, params={"page": page, "per_page": per_page}).json()
        if not body["items"]:
            return ids
        ids += [item["id"] for item in body["items"]]
        page += 1


def parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def test_auth_is_required_and_401_has_the_documented_shape(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as anonymous:
        missing = anonymous.get(NUMBERS_PATH)
        wrong = anonymous.get(
            "/api/v1/partner/me", headers={**sandbox.headers, "X-Auth-Token": "x"}
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == "error"
        assert body["error"] == {
            "code": "unauthorized",
            "message": "invalid X-Auth-ID or X-Auth-Token",
            "details": None,
        }
        uuid.UUID(body["requestId"])


def test_unknown_path_is_404_in_the_api_id_shape(client: httpx.Client) -> None:
    response = client.get("/api/v1/partner/nope")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"api_id", "error", "message"}
    assert body["error"] == "not_found"
    uuid.UUID(body["api_id"])


def test_pagination_covers_every_number_exactly_once(client: httpx.Client) -> None:
    ids = sweep(client, per_page=37)
    assert len(ids) == len(set(ids)) == 250
    past_end = numbers(client, page=99, per_page=37)
    assert past_end["items"] == []
    assert past_end["total"] == 250


def test_defaults_and_per_page_clamp(client: httpx.Client) -> None:
    first = numbers(client)
    assert (first["page"], first["per_page"], first["total"]) == (1, 20, 250)
    assert len(first["items"]) == 20
    assert first["account_auth_id"] == "PA_SANDBOX"
    big = numbers(client, per_page=500)
    assert (big["per_page"], len(big["items"])) == (100, 100)
    assert numbers(client, per_page=0)["per_page"] == 1


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"page": "abc"}, {"page": ""}, {"per_page": "x"}, {"page": "1_0"}]
)
def test_invalid_paging_is_400(client: httpx.Client, params: dict[str, Any]) -> None:
    response = client.get(NUMBERS_PATH, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_legacy_envelope_uses_data(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.legacy_envelope = True
    body = numbers(client, per_page=5)
    assert "items" not in body
    assert len(body["data"]) == 5


def test_account_route_filters_and_searches(sandbox: Sandbox, client: httpx.Client) -> None:
    everything = [sandbox.inventory.item(i) for i in range(250)]
    account = everything[0]["account_id"]
    mine = [n for n in everything if n["account_id"] == account]
    path = f"/api/v1/partner/accounts/{account}/numbers"
    body = client.get(path, params={"per_page": 100}).json()
    assert body["account_auth_id"] == account
    assert body["total"] == len(mine)
    assert [n["id"] for n in body["items"]] == [n["id"] for n in mine]
    needle = mine[0]["e164"][-6:]
    found = client.get(path, params={"search": needle}).json()
    assert mine[0]["id"] in [n["id"] for n in found["items"]]
    assert all(needle in n["e164"] for n in found["items"])
    empty = client.get("/api/v1/partner/accounts/MA_UNKNOWN0/numbers").json()
    assert (empty["items"], empty["total"]) == ([], 0)


def test_accounts_list_me_and_empty_accounts(sandbox: Sandbox, client: httpx.Client) -> None:
    body = client.get("/api/v1/partner/accounts", params={"size": 2}).json()
    assert set(body) == {"accounts", "total", "page", "size"}
    assert (body["size"], len(body["accounts"]), body["total"]) == (2, 2, 5 + 2)
    every = client.get("/api/v1/partner/accounts", params={"per_page": 100}).json()["accounts"]
    for account in every:
        assert account["auth_id"].startswith("MA_")
        assert len(account["auth_id"]) == 11
        assert account["status"] == "active"
        assert len(account["auth_token"]) >= 32
        parse_ts(account["created_at"])
    owners = {sandbox.inventory.item(i)["account_id"] for i in range(250)}
    assert len(sandbox.inventory.empty_account_ids) == 2
    assert owners.isdisjoint(sandbox.inventory.empty_account_ids)
    assert owners | set(sandbox.inventory.empty_account_ids) == {a["auth_id"] for a in every}
    name = every[3]["name"]
    hits = client.get("/api/v1/partner/accounts", params={"search": name.lower()}).json()
    assert every[3] in hits["accounts"]
    me = client.get("/api/v1/partner/me").json()
    assert me == {"auth_id": "PA_SANDBOX", "name": "Sandbox Partner", "balance": "1234.50"}


def test_same_seed_and_now_give_identical_data() -> None:
    a, b = Inventory(300, seed=3, now=NOW), Inventory(300, seed=3, now=NOW)
    assert a.page(2, 100) == b.page(2, 100)
    assert a.accounts() == b.accounts()
    assert Inventory(300, seed=4, now=NOW).page(2, 100) != a.page(2, 100)
    assert Inventory(300, seed=3, now=NOW + timedelta(days=1)).page(2, 100) != a.page(2, 100)


def test_item_shapes() -> None:
    inventory = Inventory(400, seed=5, now=NOW)
    items = [inventory.item(i) for i in range(400)]
    assert len({n["e164"] for n in items}) == 400
    for n in items:
        assert uuid.UUID(n["id"]).version == 4
        assert n["e164"].startswith("+91" if n["country"] == "IN" else "+1")
        assert len(n["e164"]) == (13 if n["country"] == "IN" else 12)
        assert n["currency"] == ("INR" if n["country"] == "IN" else "USD")
        for key in ("created_at", "updated_at", "purchased_at", "last_billing_date"):
            parse_ts(n[key])
        assert set(n["capabilities"]) == {"voice", "sms", "mms", "fax"}
    stamps = [n["created_at"] for n in items]
    assert any(s.endswith("+00:00") for s in stamps)
    assert any("." in s for s in stamps)
    fee_types = {type(n["monthly_fee"]) for n in items}
    assert fee_types == {int, float, str}


def test_problem_shares_for_2000_numbers() -> None:
    items, total = Inventory(2000, seed=11, now=NOW).page(1, 2000)
    assert total == 2000

    def share(predicate: Any) -> float:
        return sum(1 for n in items if predicate(n)) / len(items)

    def billing_in(n: dict[str, Any], low: float, high: float) -> bool:
        if "next_billing_date" not in n:
            return False
        days = (parse_ts(n["next_billing_date"]) - NOW).total_seconds() / 86400
        return low <= days < high

    statuses = Counter(n["status"] for n in items)
    assert 0.85 < statuses["active"] / 2000 < 0.94
    assert set(statuses) >= {"pending_purchase", "pending_release", "inactive", "blocked"}
    assert 0 < statuses["quarantined"] < 30
    assert 0.02 < share(lambda n: n.get("application_id", 0) is None) < 0.06
    assert 0.003 < share(lambda n: n.get("application_id") == "") < 0.02
    assert 0.003 < share(lambda n: "application_id" not in n) < 0.02
    assert 0.01 < share(lambda n: n["is_blocked"]) < 0.035
    assert 0.04 < share(lambda n: billing_in(n, 0, 7)) < 0.08
    assert 0.01 < share(lambda n: billing_in(n, -30, 0)) < 0.035
    assert 0.003 < share(lambda n: "next_billing_date" not in n) < 0.02
    assert 0.86 < share(lambda n: billing_in(n, 8, 60)) < 0.95
    assert 0.03 < share(lambda n: "expires_at" in n and "monthly_cost" in n) < 0.07
    assert 0.1 < share(lambda n: n["country"] == "US") < 0.2
    assert 0.02 < share(lambda n: n["region"] is None) < 0.2
    hostile = {"<script>alert(1)</script>", "line1\nline2", "*bold*", "@channel"}
    assert 0.002 < share(lambda n: hostile & set(n["tags"])) < 0.025
    assert share(lambda n: n["provider"] == "") > 0.4


def test_add_front_shifts_pages_remove_and_update(sandbox: Sandbox, client: httpx.Client) -> None:
    inventory = sandbox.inventory
    before = [n["id"] for n in numbers(client, per_page=10)["items"]]
    added = inventory.add(3, front=True)
    after = numbers(client, per_page=10)
    assert after["total"] == 253
    assert [n["id"] for n in after["items"]] == added + before[:7]
    appended = inventory.add(2)
    assert sweep(client)[-2:] == appended
    assert inventory.remove([added[0], before[0]]) == 2
    ids = sweep(client)
    assert len(ids) == inventory.total == 253
    assert added[0] not in ids
    assert before[0] not in ids
    with pytest.raises(KeyError):
        inventory.remove([added[0]])
    target = before[1]
    other = sandbox.inventory.empty_account_ids[0]
    patched = inventory.update(target, status="blocked", application_id=DELETE, account_id=other)
    assert "application_id" not in patched
    served = client.get(f"/api/v1/partner/accounts/{other}/numbers").json()["items"]
    assert [(n["id"], n["status"]) for n in served] == [(target, "blocked")]
    assert "application_id" not in served[0]
    assert inventory.index_of(target) == 1
    assert list(inventory.ids()) == ids


def test_on_request_hook_can_mutate_mid_sweep(sandbox: Sandbox, client: httpx.Client) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def hook(path: str, query: dict[str, str]) -> None:
        seen.append((path, query))
        if query.get("page") == "2" and len(seen) == 2:
            sandbox.inventory.add(5, front=True)

    sandbox.on_request = hook
    ids = sweep(client)
    # Page 2 was served after five numbers landed in front, so five ids repeat.
    assert len(ids) == 255
    assert len(set(ids)) == 250
    assert seen[0] == (NUMBERS_PATH, {"page": "1", "per_page": "100"})


def test_status_faults_then_recovery(sandbox: Sandbox, client: httpx.Client) -> None:
    fault = sandbox.faults.add(page=2, times=2, status=429, retry_after="3")
    assert numbers(client, page=1)["page"] == 1
    for _ in range(2):
        response = client.get(NUMBERS_PATH, params={"page": 2})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json()["error"]["code"] == "rate_limited"
    assert numbers(client, page=2)["page"] == 2
    assert fault.hits == 2
    assert len(sandbox.faults) == 0
    assert [r.status for r in sandbox.requests] == [200, 429, 429, 200]
    assert sandbox.requests[1].query == {"page": "2"}
    assert sandbox.request_count == 4


def test_forever_fault_on_another_path(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.add(path="/api/v1/partner/me", times=-1, status=500)
    assert [client.get("/api/v1/partner/me").status_code for _ in range(3)] == [500] * 3
    assert client.get(NUMBERS_PATH).status_code == 200
    sandbox.faults.clear()
    assert client.get("/api/v1/partner/me").status_code == 200


def test_garbage_close_and_timeout_faults(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.add(kind="garbage")
    garbage = client.get(NUMBERS_PATH)
    assert garbage.status_code == 200
    with pytest.raises(ValueError, match="Expecting value"):
        garbage.json()
    sandbox.faults.add(kind="close")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(NUMBERS_PATH)
    sandbox.faults.add(kind="timeout", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        client.get(NUMBERS_PATH, timeout=0.1)
    assert numbers(client)["total"] == 250
    assert [r.status for r in sandbox.requests][:2] == [200, 0]


def test_slow_answer_still_arrives_for_a_patient_client(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    sandbox.faults.add(kind="timeout", delay=0.2)
    started = time.perf_counter()
    assert numbers(client)["total"] == 250
    assert time.perf_counter() - started >= 0.2


def test_random_error_and_rate_limit_rates(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.error_rate, sandbox.rate_limit_rate = 0.3, 0.2
    codes = Counter(client.get(NUMBERS_PATH).status_code for _ in range(100))
    assert set(codes) == {200, 429, 503}
    assert 15 < codes[503] < 45
    assert 8 < codes[429] < 35
    sandbox.error_rate, sandbox.rate_limit_rate = 0.0, 1.0
    limited = client.get(NUMBERS_PATH)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert client.get("/api/v1/partner/me").status_code == 200  # rates hit numbers routes only


def test_latency_and_keep_alive(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.latency = 0.05
    started = time.perf_counter()
    for _ in range(3):
        numbers(client, per_page=1)
    assert time.perf_counter() - started >= 0.15
    assert sandbox.connections == 1


def test_stop_is_clean_and_restartable() -> None:
    sb = Sandbox(numbers=3, now=NOW)
    with pytest.raises(RuntimeError):
        _ = sb.url
    with sb, httpx.Client(base_url=sb.url, headers=sb.headers) as c:
        assert c.get(NUMBERS_PATH).json()["total"] == 3
    port = sb.port
    sb.start()
    try:
        assert sb.port == port  # a restart comes back where clients expect it
        assert httpx.get(sb.url + NUMBERS_PATH, headers=sb.headers).status_code == 200
    finally:
        sb.stop()
