"""End to end in a real headless browser: ``did-monitor run`` as a subprocess against the
sandbox, Debian's chromium driven by Playwright (launched from ``/usr/bin/chromium``; no browser
is ever downloaded). Waits for the first sweep, loads the overview with JavaScript off, checks
the charts, follows a finding to its number page and checks hostile API strings show as text.

Also makes the README's screenshot: with ``DID_MONITOR_UPDATE_SCREENSHOT=1`` the overview is
saved to ``docs/dashboard.png`` (otherwise under the test's temporary folder).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from monitor.config import DatabaseConfig, Settings, VobizConfig
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, free_port

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_TAGS = ["<script>alert(1)</script>", "<!channel>"]
HOSTILE_REGION = "<img src=x onerror=alert(2)>"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python package playwright is not installed"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium package is not installed (apt-get install chromium)",
)


def command() -> list[str]:
    script = Path(sys.executable).with_name("did-monitor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor"]


def sweep_history(box: Sandbox, db_url: str) -> None:
    """Six weekly sweeps in the past, the inventory growing and changing, so the charts have a
    history to draw before the service's own first sweep."""
    store = Store(db_url)
    store.migrate()
    now = datetime.now(UTC) - timedelta(weeks=6)
    settings = Settings(
        vobiz=VobizConfig(base_url=box.url, auth_id=box.auth_id, auth_token=box.auth_token),
        database=DatabaseConfig(url=db_url),
    )
    try:
        for week in range(6):
            box.inventory.add(15 * week)
            for index in range(week * 7, week * 7 + 20):
                box.inventory.update(index + 1, is_blocked=week % 2 == 0)
            clock = FakeClock(now + timedelta(weeks=week))
            assert run_cycle(settings, store, RecordingNotifier(), clock=clock).ok
    finally:
        store.dispose()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Sandbox, str]]:
    """A running service swept once; yields (base URL, sandbox, database URL)."""
    box = Sandbox(numbers=400, seed=11, now=datetime.now(UTC)).start()
    box.inventory.update(0, tags=HOSTILE_TAGS, region=HOSTILE_REGION, is_blocked=True)
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    sweep_history(box, db_url)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[vobiz]
base_url = "{box.url}"
auth_id = "{box.auth_id}"
auth_token = "{box.auth_token}"
[database]
url = "{db_url}"
[schedule]
cron = "0 6 * * mon"
run_on_start = true
[service]
health_listen = "127.0.0.1:{port}"
shutdown_timeout_seconds = 10
[[channels]]
name = "ops-webhook"
url = "json://127.0.0.1:9/hook"
""",
        encoding="utf-8",
    )
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command(), "--config", str(config), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    try:
        wait_for_first_sweep(db_url, proc, log_path, after=6)
        yield f"http://127.0.0.1:{port}", box, db_url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        with pytest.raises(httpx.ConnectError):  # the listener stopped with the scheduler
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        box.stop()


def wait_for_first_sweep(db_url: str, proc: subprocess.Popen[bytes], log: Path, after: int) -> None:
    """Until the service's own first sweep (an id past ``after``) has completed."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"did-monitor run exited early:\n{log.read_text(errors='replace')}")
        store = Store(db_url)
        try:
            last = store.last_sweep("complete")
        finally:
            store.dispose()
        if last is not None and last["id"] > after:
            return
        time.sleep(0.25)
    pytest.fail(f"no complete sweep within 90 s:\n{log.read_text(errors='replace')}")


def test_the_dashboard_in_a_real_browser(service: tuple[str, Sandbox, str], tmp_path: Path) -> None:
    base, box, db_url = service
    store = Store(db_url)
    try:  # so that the silences page has one to show
        now = datetime.now(UTC)
        store.add_silence("billing_due", now + timedelta(days=14), "renewal agreed", now, by="ops")
    finally:
        store.dispose()
    shots = Path(os.environ.get("DID_MONITOR_SCREENSHOT_DIR", tmp_path))
    hostile_e164 = str(box.inventory.item(0)["e164"])
    dialogs: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            # JavaScript off: every page must work without it (there is none to run anyway).
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            off_site: list[str] = []
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(base) else off_site.append(request.url)
                ),
            )

            response = page.goto(base + "/", wait_until="networkidle")
            assert response is not None and response.status == 200
            assert page.title() == "Overview · did-monitor"
            assert page.locator("h1").inner_text() == "Overview"
            assert page.locator("td", has_text="ops-webhook").count() >= 1
            charts = page.locator("section.charts img")
            assert charts.count() == 5  # inventory, rental in INR, in USD, findings, statuses
            for index in range(5):
                box_size = charts.nth(index).bounding_box()
                assert box_size is not None and box_size["width"] > 300
                src = charts.nth(index).get_attribute("src")
                assert src is not None
                svg = page.request.get(base + src)
                assert svg.status == 200 and svg.headers["content-type"] == "image/svg+xml"
                assert b"<svg" in svg.body()
            assert not failed and not off_site
            shot = SCREENSHOT if os.environ.get("DID_MONITOR_UPDATE_SCREENSHOT") else None
            page.screenshot(path=str(shot or tmp_path / "dashboard.png"), full_page=True)

            page.goto(base + "/findings?rule=blocked")
            link = page.locator("a.number", has_text=hostile_e164).first
            link.click()
            page.wait_for_load_state()
            assert page.url == base + "/numbers/" + quote(hostile_e164, safe="+")
            assert page.locator("h1").inner_text() == f"Number {hostile_e164}"
            page.screenshot(path=str(tmp_path / "number.png"), full_page=True)
            for tag in HOSTILE_TAGS:
                assert page.locator("span.tag", has_text=tag).count() >= 1, tag
            assert HOSTILE_REGION in page.locator("dl.facts").inner_text()
            assert page.locator("script").count() == 0
            assert page.locator("img[src=x]").count() == 0
            assert page.get_by_text("blocked").count() >= 1
            assert not dialogs
            context.close()
            every_page_fits(browser, base, hostile_e164, box, shots)
        finally:
            browser.close()


def every_page_fits(browser: Any, base: str, e164: str, box: Sandbox, shots: Path) -> None:
    """Every page at a phone's 375 px and a laptop's 1280 px: the page itself never scrolls
    sideways (a wide table scrolls inside its own box). Screenshots go to ``shots``."""
    account = str(box.inventory.item(0)["account_id"])
    pages = {
        "overview": "/",
        "findings": "/findings",
        "number": "/numbers/" + quote(e164, safe="+"),
        "accounts": "/accounts",
        "account": "/accounts/" + quote(account, safe=""),
        "sweeps": "/sweeps",
        "silences": "/silences",
    }
    for width in (375, 1280):
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": width, "height": 800}
        )
        page = context.new_page()
        try:
            for name, path in pages.items():
                response = page.goto(base + path, wait_until="networkidle")
                assert response is not None and response.status == 200, path
                page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
                # evaluate() runs in the page's isolated world even with JavaScript off.
                scroll = page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, f"{path} is {scroll} px wide at {width} px"
            # At 1280 px even the widest table, the sweeps', shows its last column.
            page.goto(base + "/sweeps", wait_until="networkidle")
            table = page.evaluate(
                "[document.querySelector('.scroll').scrollWidth,"
                " document.querySelector('.scroll').clientWidth]"
            )
            assert width < 1280 or table[0] <= table[1], table
        finally:
            context.close()
