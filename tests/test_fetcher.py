"""The page-fetching helper process, against the real sandbox over loopback."""

from __future__ import annotations

import multiprocessing
from contextlib import closing
from typing import Any

import pytest

from monitor import fetcher
from monitor.errors import ApiGaveUp, AuthError
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.vobiz import VobizClient
from tests.conftest import FakeClock
from tests.test_vobiz import client_for

pytestmark = pytest.mark.skipif(not fetcher.available(), reason="needs fork (Linux)")


def helpers() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.name == "did-monitor-fetch"]


def test_pages_arrive_parsed_with_figures_and_budget_accounted(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox, retry_budget=50)
    sandbox.faults.add(page=3, times=2, status=503)
    with client:
        pages = list(fetcher.fetch_pages(client, 2, 8, 20, 3))
        in_threads = {p.page: p for p in (client.numbers_page(n, 20) for n in range(2, 9))}
    assert sorted(p.page for p in pages) == list(range(2, 9))
    for page in pages:  # the same records as parsing in this process, field for field
        assert page.records == in_threads[page.page].records
        assert page.total == 150 and page.per_page == 20
    assert client.stats.requests == 7 + 2 + 7  # the helper's 7 pages, 2 retries, then ours
    assert client.stats.retries == 2 and client.budget.left == 48
    assert helpers() == []


def test_an_error_comes_back_as_itself(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox, max_retries=1)
    sandbox.faults.add(page=4, times=-1, status=500)
    with client, pytest.raises(ApiGaveUp, match="500") as exc:
        list(fetcher.fetch_pages(client, 2, 8, 20, 2))
    assert exc.value.status == 500
    assert client.stats.retries >= 1
    assert helpers() == []


def test_wrong_credentials_are_an_auth_error(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox, auth_token="wrong")
    with client, pytest.raises(AuthError):
        list(fetcher.fetch_pages(client, 2, 4, 20, 2))


def test_closing_early_stops_the_helper(sandbox: Sandbox) -> None:
    client, _ = client_for(sandbox)
    with client, closing(fetcher.fetch_pages(client, 2, 8, 20, 2)) as pages:
        next(pages)
        assert len(helpers()) == 2  # two share the pages when two requests may be in flight
    assert helpers() == []


def test_a_helper_that_dies_fails_the_pass_plainly(sandbox: Sandbox) -> None:
    import os
    import signal

    def kill_the_helper_after_one_page(client: VobizClient) -> None:
        for _ in fetcher.fetch_pages(client, 2, 8, 20, 1):
            (helper,) = helpers()
            os.kill(helper.pid, signal.SIGKILL)
            helper.join(5)

    client, _ = client_for(sandbox)
    with client, pytest.raises(ApiGaveUp, match=r"ended unexpectedly \(exit code -9\)"):
        kill_the_helper_after_one_page(client)
    assert helpers() == []


def test_cancel_stops_a_helper_that_is_waiting_out_a_retry(sandbox: Sandbox) -> None:
    import threading
    import time

    from monitor.errors import SweepCancelled

    client, _ = client_for(sandbox, backoff_base_seconds=30, backoff_max_seconds=30)
    sandbox.faults.add(page=2, times=-1, status=503)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with client, pytest.raises(SweepCancelled):
        list(fetcher.fetch_pages(client, 2, 4, 20, 1, cancel))
    assert time.monotonic() - started < 5  # not the 30 s backoff
    assert helpers() == []


def test_a_helper_outlives_no_killed_sweep(sandbox: Sandbox) -> None:
    """SIGKILL the sweep's process mid-pass: its helper notices and ends too."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sandbox.faults.add(page=5, times=-1, status=503)
    code = f"""
import sys
from monitor import fetcher
from monitor.config import VobizConfig
from monitor.vobiz import VobizClient
cfg = VobizConfig(base_url={sandbox.url!r}, auth_id={sandbox.auth_id!r},
                  auth_token={sandbox.auth_token!r}, backoff_base_seconds=30,
                  backoff_max_seconds=30, max_requests_per_second=0)
client = VobizClient(cfg)
for page in fetcher.fetch_pages(client, 2, 8, 20, 1):
    print("page", page.page, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("page")
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    proc.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{children[0]}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{children[0]}"), "the helper outlived its sweep"


@pytest.mark.parametrize("in_process", [True, False])
def test_sweeps_agree_whoever_fetches(
    sandbox: Sandbox,
    store: Store,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    in_process: bool,
) -> None:
    from monitor.pipeline import run_cycle
    from monitor.testing import RecordingNotifier
    from tests.conftest import make_settings

    calls: list[int] = []
    real = fetcher.fetch_pages

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fetcher, "fetch_pages", counted)
    settings = make_settings(
        sandbox,
        store.url,
        vobiz={"per_page": 20, "concurrency": 3},
        sweep={"fetch_process": in_process},
    )
    out = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert out.ok, out.error
    assert out.counts.numbers_seen == 150 and out.counts.requests == 8
    assert sum(store.open_counts().values()) == 25  # the sandbox seed 7 inventory
    assert bool(calls) is in_process


def test_an_injected_client_is_never_replaced_by_a_helper(
    sandbox: Sandbox, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's own client (its own pauses, its own figures) fetches every page itself."""
    from monitor.pipeline import run_cycle
    from monitor.testing import RecordingNotifier
    from tests.conftest import make_settings

    def refuse(*_: Any) -> Any:
        raise AssertionError("a helper process was used")

    monkeypatch.setattr(fetcher, "fetch_pages", refuse)
    client, _ = client_for(sandbox)
    settings = make_settings(sandbox, store.url, vobiz={"per_page": 20})
    with client:
        out = run_cycle(settings, store, RecordingNotifier(), clock=clock, client=client)
    assert out.ok, out.error
    assert isinstance(client, VobizClient) and client.stats.requests == 8


def test_small_inventories_are_fetched_by_threads(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.sweep import iter_pages

    def refuse(*_: Any) -> Any:
        raise AssertionError("helpers started for a handful of pages")

    monkeypatch.setattr(fetcher, "MIN_PAGES", 20)
    monkeypatch.setattr(fetcher, "fetch_pages", refuse)
    client, _ = client_for(sandbox)
    with client:
        assert len(list(iter_pages(client, 20, 2, in_process=True))) == 8  # 7 more pages < 20
