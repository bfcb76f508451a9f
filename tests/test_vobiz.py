from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.config import VobizConfig
from monitor.errors import ApiError, ApiGaveUp, AuthError, ConfigError, RetryableApiError
from monitor.sandbox import Sandbox
from monitor.vobiz import (
    NUMBERS,
    VobizClient,
    error_text,
    parse_retry_after,
)
from tests.conftest import Hostile


def client_for(box: Sandbox, **overrides: object) -> tuple[VobizClient, list[float]]:
    sleeps: list[float] = []
    values: dict[str, object] = {
        "base_url": box.url,
        "auth_id": box.auth_id,
        "auth_token": box.auth_token,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "timeout_seconds": 2,
        "max_requests_per_second": 0,
    }
    cfg = VobizConfig.model_validate(values | overrides)
    return VobizClient(cfg, sleep=sleeps.append), sleeps


def test_sends_auth_headers_and_reads_a_page(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox)
    with client:
        page = client.read_page(NUMBERS, 1, 100)
    assert page.total == 150
    assert len(page.records) == 100
    assert page.records[0].raw["id"] == page.records[0].id
    assert sandbox.requests[-1].query == {"page": "1", "per_page": "100"}


def test_per_page_is_clamped_to_100(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox)
    with client:
        client.read_page(NUMBERS, 1, 500)
    assert sandbox.requests[-1].query["per_page"] == "100"


def test_legacy_data_envelope(sandbox: Sandbox) -> None:
    sandbox.legacy_envelope = True
    client, _ = client_for(sandbox)
    with client:
        assert len(client.read_page(NUMBERS, 2, 100).records) == 50


def test_wrong_credentials_stop_without_retry(sandbox: Sandbox) -> None:
    cfg = VobizConfig(base_url=sandbox.url, auth_id="PA_WRONG", auth_token="nope")
    with VobizClient(cfg, sleep=lambda s: None) as client, pytest.raises(AuthError) as exc:
        client.read_page(NUMBERS, 1)
    assert exc.value.status == 401
    assert "invalid X-Auth-ID" in exc.value.message
    assert "auth_token" in (exc.value.hint or "")
    assert sandbox.request_count == 1
    assert "nope" not in str(exc.value)


def test_missing_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auth_token"):
        VobizClient(VobizConfig(auth_id="", auth_token=""))


def test_retries_429_honouring_retry_after(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, times=2, status=429, retry_after="3")
    client, sleeps = client_for(sandbox)
    with client:
        page = client.read_page(NUMBERS, 1, 100)
    assert page.total == 150
    assert sleeps == [3.0, 3.0]
    assert client.stats.retries == 2
    assert client.stats.requests == 3


def test_5xx_burst_backs_off_exponentially(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, times=3, status=503)
    client, sleeps = client_for(sandbox, backoff_base_seconds=1, backoff_max_seconds=100)
    with client:
        client.read_page(NUMBERS, 1)
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2 and 2 <= sleeps[2] <= 4


def test_gives_up_after_max_retries(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, times=-1, status=502)
    client, sleeps = client_for(sandbox, max_retries=2)
    with client, pytest.raises(ApiGaveUp, match="gave up after 3 attempts"):
        client.read_page(NUMBERS, 1)
    assert len(sleeps) == 2


def test_retry_budget_is_shared(sandbox: Sandbox) -> None:
    sandbox.faults.add(times=-1, status=500)
    client, _ = client_for(sandbox, max_retries=10)
    client.budget = threading.Semaphore(3)
    with client, pytest.raises(ApiGaveUp, match="retry budget"):
        client.read_page(NUMBERS, 1)
    assert sandbox.request_count == 4


def test_garbage_and_closed_connections_are_retried(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, kind="garbage")
    sandbox.faults.add(page=1, kind="close")
    client, sleeps = client_for(sandbox)
    with client:
        assert client.read_page(NUMBERS, 1).total == 150
    assert len(sleeps) >= 1


def test_timeout_is_retried(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, kind="timeout", delay=1.5)
    client, sleeps = client_for(sandbox, timeout_seconds=0.3)
    with client:
        assert client.read_page(NUMBERS, 1).total == 150
    assert len(sleeps) == 1


def test_other_4xx_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.faults.add(page=1, status=404)
    client, sleeps = client_for(sandbox)
    with client, pytest.raises(ApiError) as exc:
        client.read_page(NUMBERS, 1)
    assert not isinstance(exc.value, RetryableApiError)
    assert sleeps == []


def test_unreachable_api_is_retryable_then_gives_up() -> None:
    cfg = VobizConfig(
        base_url="http://127.0.0.1:9",
        auth_id="PA_X",
        auth_token="t",
        max_retries=1,
        backoff_base_seconds=0,
    )
    with (
        VobizClient(cfg, sleep=lambda s: None) as client,
        pytest.raises(ApiGaveUp, match="cannot reach"),
    ):
        client.read_page(NUMBERS, 1)


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    in_30s = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7", None) == 7.0
    assert parse_retry_after(in_30s, now) == 30.0
    assert parse_retry_after(in_30s, None) is None  # no Date header: our own backoff decides
    assert parse_retry_after("100000", now) == 60.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_error_text_both_shapes() -> None:
    assert error_text({"status": "error", "error": {"code": "bad", "message": "why"}}) == "bad: why"
    assert (
        error_text({"api_id": "1", "error": "not_found", "message": "no such"})
        == "not_found: no such"
    )
    assert error_text({"message": "only"}) == "only"


def test_parse_page_rejects_wrong_shapes() -> None:
    with pytest.raises(RetryableApiError):
        NUMBERS.parse([], 1)
    with pytest.raises(RetryableApiError):
        NUMBERS.parse({"items": "nope"}, 1)
    page = NUMBERS.parse({"items": [{"id": "a", "e164": "+1"}, {"junk": True}, 5], "total": "x"}, 1)
    assert page.total is None and len(page.records) == 1 and page.unreadable == [2, 3]


def test_rate_limit_spaces_requests(sandbox: Sandbox) -> None:
    """The second request starts a whole interval (1 s) after the first: what the first took
    plus the wait. (The sleep is recorded, not slept; a slow machine only shortens it.)"""
    import time

    client, sleeps = client_for(sandbox, max_requests_per_second=1)
    began = time.monotonic()
    with client:
        for page in (1, 2):
            client.read_page(NUMBERS, page)
    took = time.monotonic() - began
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 1.0
    assert took + sleeps[0] >= 1.0


def test_proxies_and_ca_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """httpx's own ``trust_env``: the proxy variables pick the transport for the API's URL."""
    import httpx

    from monitor.vobiz import http_client

    def proxied(url: str) -> bool:
        with http_client() as client:
            transport = client._transport_for_url(httpx.URL(url))
            return transport is not client._transport

    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not proxied("https://api.vobiz.ai/api/v1/partner/me")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert proxied("https://api.vobiz.ai/api/v1/partner/me")
    monkeypatch.setenv("NO_PROXY", "api.vobiz.ai")
    assert not proxied("https://api.vobiz.ai/api/v1/partner/me")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("ALL_PROXY", "http://me:p%40ss@proxy.example:3128")
    assert proxied("https://api.vobiz.ai/api/v1/partner/me")
    monkeypatch.delenv("ALL_PROXY")
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))  # a CA bundle of your own is read
    with pytest.raises((FileNotFoundError, OSError)):
        http_client()


def test_a_socks_proxy_without_its_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("httpx")
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed: a SOCKS proxy works")
    from monitor.vobiz import http_client

    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.example:1080")
    with pytest.raises(ConfigError, match="proxy"):
        http_client()


def test_a_shared_client_is_not_closed_by_the_api_client(sandbox: Sandbox) -> None:
    from monitor.vobiz import http_client

    shared = http_client(2)
    cfg = VobizConfig(base_url=sandbox.url, auth_id=sandbox.auth_id, auth_token=sandbox.auth_token)
    with shared:
        with VobizClient(cfg, http=shared) as client:
            assert client.read_page(NUMBERS, 1).total == 150
        assert not shared.is_closed
        # the credentials go with each API request, never as the shared client's defaults
        assert "X-Auth-Token" not in shared.headers


def test_close_waits_out_a_request_in_flight_then_closes_its_pool(sandbox: Sandbox) -> None:
    """A fetch thread abandoned mid-request still gets its page over an open pool (closing the
    pool under a connecting request would orphan that socket); the pool closes when it ends, and
    a thread waking from a backoff afterwards sends nothing."""
    import threading

    sandbox.faults.add(page=1, kind="timeout", delay=0.5)
    client, _ = client_for(sandbox, timeout_seconds=5)
    pages: list[int] = []
    worker = threading.Thread(target=lambda: pages.append(client.read_page(NUMBERS, 1).page))
    worker.start()
    while client.stats.requests == 0:
        threading.Event().wait(0.01)
    client.close()
    assert not client._http.is_closed  # the request in flight keeps it open
    worker.join(10)
    assert pages == [1] and client._http.is_closed
    with pytest.raises(ApiError, match="client is closed"):
        client.read_page(NUMBERS, 2)
    assert client.stats.requests == 1


# --- paged lists: the fetch threads ------------------------------------------------------------


def test_pages_from_threads_arrive_parsed_with_figures_and_budget_accounted(
    sandbox: Sandbox,
) -> None:
    client, _ = client_for(sandbox, retry_budget=3)
    sandbox.faults.add(page=3, times=2, status=503)
    with client:
        pages = list(client.iter_pages(NUMBERS, 20, 3))
    assert sorted(p.page for p in pages) == list(range(1, 9))
    assert all(p.total == 150 for p in pages)
    assert all(r.query["per_page"] == "20" for r in sandbox.requests)
    assert sum(len(p.records) for p in pages) == 150
    assert client.stats.requests == 8 + 2 and client.stats.retries == 2
    # the two retries in the threads came out of the sweep's one budget: one of three is left
    assert client.budget.acquire(blocking=False) and not client.budget.acquire(blocking=False)


def test_a_page_error_from_a_thread_comes_back_as_itself(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox, max_retries=1)
    sandbox.faults.add(page=4, times=-1, status=500)
    with client, pytest.raises(ApiGaveUp, match="500") as exc:
        list(client.iter_pages(NUMBERS, 20, 2))
    assert exc.value.status == 500 and client.stats.retries >= 1
    wrong, _ = client_for(sandbox, auth_token="wrong")
    with wrong, pytest.raises(AuthError):
        list(wrong.iter_pages(NUMBERS, 20, 2))


# --- paged lists: an API that pages by a size of its own -----------------------------------------


@pytest.mark.parametrize("with_total", [True, False])
def test_an_api_capping_the_page_size_is_paged_by_its_own_size(
    hostile: Hostile, with_total: bool
) -> None:
    """Asked for 100 a page, the API sends 50: every page is read by the size it uses, with its
    total (4 requests) or without (until a page shorter than page 1: 5 requests)."""
    numbers = [{"id": f"n{n}", "e164": f"+1415555{n:04d}"} for n in range(1, 201)]
    asked: list[str] = []

    def respond(h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(h.path).query).items()}
        asked.append(query["per_page"])
        page = int(query["page"])
        envelope: dict[str, Any] = {"items": numbers[(page - 1) * 50 : page * 50]}
        return 200, json.dumps(envelope | ({"total": 200} if with_total else {})).encode()

    hostile.respond = respond
    cfg = VobizConfig(base_url=hostile.url, auth_id="PA_1", auth_token="t0k", max_retries=0)
    with VobizClient(cfg) as client:
        pages = list(client.iter_pages(NUMBERS, 100, 2))
    assert sorted(p.page for p in pages) == list(range(1, len(pages) + 1))
    assert sorted(r.id for p in pages for r in p.records) == sorted(n["id"] for n in numbers)
    assert hostile.requests == (4 if with_total else 5) and set(asked) == {"100"}


def test_a_short_first_page_without_total_is_read_on_once(hostile: Hostile) -> None:
    """A list that fits on one page costs one request more: the page after it is empty."""
    items = [{"id": f"n{n}", "e164": f"+1415555{n:04d}"} for n in range(1, 8)]
    hostile.respond = lambda h: (
        200,
        json.dumps({"items": items if "page=1&" in h.path else []}).encode(),
    )
    cfg = VobizConfig(base_url=hostile.url, auth_id="PA_1", auth_token="t0k", max_retries=0)
    with VobizClient(cfg) as client:
        pages = list(client.iter_pages(NUMBERS, 100, 2))
    assert [len(p.records) for p in pages] == [7, 0] and hostile.requests == 2
