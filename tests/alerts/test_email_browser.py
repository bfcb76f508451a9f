"""The email digest in a real browser (Debian's chromium driven by Playwright) at desktop and
phone widths: the tables are there, every number is shown, nothing runs off the screen.

Set DID_MONITOR_UPDATE_SCREENSHOT=1 to rewrite docs/digest-email.png (the README shows it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.digest import Digest
from monitor.alerts.email import render_document
from monitor.findings import FindingView

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "digest-email.png"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: chromium refuses to start as root (containers, CI) otherwise
        chrome = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chrome
        finally:
            chrome.close()


def digest_of_120() -> Digest:
    """A week with 120 flagged numbers of a 600-number inventory, as an operator would see it."""
    customers = ["Acme Telecom", "Bluebird Clinics", None, "Northwind Logistics", "Kite & Co"]
    rules = [
        ("blocked", "critical", "number is blocked", None),
        ("missing_application", "critical", "no application attached: inbound calls hang up", None),
        ("billing_due", "warning", "next billing soon", 4),
        ("expiring", "warning", "number expires soon", 9),
        ("billing_due", "info", "next billing soon", 12),
    ]
    items = []
    for i in range(120):
        rule, severity, message, days = rules[i % len(rules)]
        account = customers[(i // 5 + i) % len(customers)]
        items.append(
            FindingView(
                rule=rule,
                severity=severity,
                e164=f"+9198{(i * 7919) % 10**8:08d}",
                account_id=f"MA_{(i // 5 + i) % 5:04d}K",
                account_name=account,
                message=message,
                due_at=None if days is None else NOW + timedelta(days=(days + i) % 14 - 2),
                tags=(("vip",) if i % 4 == 0 else ()) + (("support",) if i % 6 == 0 else ()),
                monthly_fee=Decimal("350.00") if i % 3 else Decimal("1.50"),
                currency="INR" if i % 3 else "USD",
            )
        )
    return Digest(
        new=items[:104],
        reminders=items[104:116],
        resolved=items[116:],
        still_open=31,
        numbers_swept=600,
        at_risk={"INR": Decimal("28000.00"), "USD": Decimal("60.00")},
        swept_at=NOW,
    )


@pytest.mark.parametrize(("width", "height"), [(1280, 1400), (375, 812)])
def test_email_in_a_browser_at_desktop_and_phone_widths(
    browser: Any, tmp_path: Path, width: int, height: int
) -> None:
    digest = digest_of_120()
    page_file = tmp_path / "digest.html"
    page_file.write_text(render_document(digest, "html", max_rows=200).body, encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": height})
    # as a mail client shows it: no scripts, no images
    page.route(
        "**/*",
        lambda route: route.abort() if route.request.url.startswith("http") else route.continue_(),
    )
    page.goto(page_file.as_uri())
    headings = page.locator("h2").all_inner_texts()
    assert [h.split()[0] for h in headings] == ["Critical", "Warning", "Info", "Resolved"]
    rows = page.locator("table.findings > tbody > tr")
    assert rows.count() == 120
    shown = "\n".join(rows.all_inner_texts())
    for it in [*digest.new, *digest.reminders, *digest.resolved]:
        assert it.e164 in shown
    header = page.locator("table.findings").first.locator("thead th > span")
    assert header.all_inner_texts() == ["Number", "Account", "Rule", "What and when", "Tags"]
    # nothing runs off the screen: no sideways scrolling, at either width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    cells = rows.first.locator("td > span")
    tops = [cells.nth(n).bounding_box()["y"] for n in range(cells.count())]
    assert len(tops) == 5  # the first finding has tags
    if width > 700:  # on a desktop the five cells of a finding sit side by side
        assert len(set(tops)) == 1
    else:  # on a phone they wrap: the rule sits below the number, the tags below the rule
        assert tops[0] == tops[1] < tops[2] == tops[3] < tops[4]
    shot = tmp_path / f"digest-{width}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DID_MONITOR_UPDATE_SCREENSHOT"):
        target = SCREENSHOT if width > 600 else SCREENSHOT.with_name("digest-email-phone.png")
        target.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(target))
    page.close()


def test_600_findings_by_default_show_the_most_urgent_and_say_where_the_rest_are(
    browser: Any, tmp_path: Path
) -> None:
    small = digest_of_120()
    many = [*small.new, *small.reminders] * 5
    digest = Digest(new=many, numbers_swept=600, swept_at=NOW)
    body = render_document(digest, "html", dashboard_url="https://monitor.example.com/").body
    assert len(body.encode()) < 100_000  # under Gmail's clip
    page_file = tmp_path / "digest.html"
    page_file.write_text(body, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.route(
        "**/*",
        lambda route: route.abort() if route.request.url.startswith("http") else route.continue_(),
    )
    page.goto(page_file.as_uri())
    shown = page.locator("table.findings > tbody > tr").count()
    assert 0 < shown <= 100
    banner = page.get_by_text("most urgent of 580 findings")
    assert banner.is_visible()
    assert f"{580 - shown} more in the attached CSV" in banner.inner_text()
    assert page.get_by_role("link", name="the dashboard", exact=True).is_visible()
    assert page.get_by_text("more in the attached CSV").first.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.close()
