"""Tests for the dashboard's pages through Starlette's test client, over a real SQLite database
swept from the sandbox: what each page shows, filters and pagination, escaping of hostile API
strings, security headers, read-only methods, access control, and that no secret is rendered."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape as html_escape
from html import unescape as html_unescape
from itertools import pairwise

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.config import ChannelConfig, DashboardConfig, RulesConfig, Settings
from monitor.pipeline import run_cycle
from monitor.rules import REGISTRY
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from monitor.web import charts
from monitor.web.app import build_app
from monitor.web.security import Access
from monitor.web.views import Dashboard
from tests.conftest import FakeClock, make_settings

HOSTILE = ("<script>alert(1)</script>", "<!channel>", "<b>bold</b>")
CHANNEL_SECRET = "hunter2-channel-secret"


@dataclass
class Swept:
    store: Store
    settings: Settings
    clock: FakeClock
    hostile_e164: str
    idle_account: str


@pytest.fixture
def swept(sandbox: Sandbox, sqlite_store: Store, clock: FakeClock) -> Swept:
    """Three sweeps: a first one, one after a number turned hostile and blocked and a whole
    account went inactive, and one that failed."""
    channels = (ChannelConfig(name="ops", url=f"json://user:{CHANNEL_SECRET}@127.0.0.1:9/hook"),)
    settings = make_settings(
        sandbox, sqlite_store.url, channels, dashboard=DashboardConfig(page_size=10)
    )
    notifier = RecordingNotifier()
    assert run_cycle(settings, sqlite_store, notifier, clock=clock).ok
    first = sandbox.inventory.item(0)
    sandbox.inventory.update(0, tags=list(HOSTILE), region=HOSTILE[0], is_blocked=True)
    account = sandbox.inventory.item(5)["account_id"]
    for index in range(sandbox.inventory.total):
        if sandbox.inventory.item(index)["account_id"] == account:
            sandbox.inventory.update(index, status="inactive")
    clock.advance(days=7)
    assert run_cycle(settings, sqlite_store, notifier, clock=clock).ok
    sandbox.faults.add(page=2, times=-1, status=500)
    clock.advance(days=7)
    assert not run_cycle(settings, sqlite_store, notifier, clock=clock).ok
    sandbox.faults.clear()
    return Swept(sqlite_store, settings, clock, first["e164"], account)


def client_for(swept: Swept, access: Access | None = None) -> TestClient:
    dashboard = Dashboard(swept.store, swept.settings, clock=swept.clock)
    app = build_app(
        health=lambda: (True, {"status": "ok"}),
        ready=lambda: (True, {"status": "ready"}),
        registry=CollectorRegistry(),
        dashboard=dashboard,
        access=access,
    )
    return TestClient(app)


def dashboard_app(store: Store, clock: FakeClock) -> Starlette:
    """The dashboard over ``store`` as it is (no sweep needed)."""
    return build_app(
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        registry=CollectorRegistry(),
        dashboard=Dashboard(store, make_settings(None, store.url), clock=clock),
    )


@pytest.fixture
def client(swept: Swept) -> Iterator[TestClient]:
    with client_for(swept) as c:
        yield c


def assert_safe_html(html: str) -> None:
    """No script and no inline style at all: the CSP allows neither."""
    assert "<script" not in html.lower()
    assert " style=" not in html and "<style" not in html


def test_overview_shows_the_last_sweep_inventory_findings_channels_and_charts(
    client: TestClient, swept: Swept
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert_safe_html(html)
    last = swept.store.last_sweep()
    assert last is not None and last["status"] == "failed"
    assert f"#{last['id']}" in html and "failed" in html
    assert "last complete sweep: #2" in html
    total = sum(swept.store.numbers_by_status().values())
    assert f"{total} numbers" in html
    for (rule, _severity), _count in swept.store.open_counts().items():
        assert f"?rule={rule}&amp;severity=" in html
    assert ">ops<" in html
    charts = re.findall(r'<img src="(/charts/[\w-]+\.svg)"', html)
    # One rental panel per currency: INR and USD never share an axis.
    assert sorted(charts) == [
        "/charts/findings.svg",
        "/charts/inventory.svg",
        "/charts/rental-0.svg",
        "/charts/rental-1.svg",
        "/charts/status.svg",
    ]
    assert "active numbers in INR" in html and "active numbers in USD" in html
    assert "Next sweep" in html and "UTC" in html


def test_charts_are_svg_without_script(client: TestClient) -> None:
    for name in ("inventory", "rental-0", "rental-1", "findings", "status"):
        response = client.get(f"/charts/{name}.svg")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        svg = response.text
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert "<script" not in svg and "kozea.github.io" not in svg
        assert "script-src" not in response.headers["content-security-policy"]
    assert client.get("/charts/nothing.svg").status_code == 404
    assert client.get("/charts/rental.svg").status_code == 404


def svg_texts(svg: str) -> list[str]:
    return [html_unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_charts_are_honest_one_currency_per_panel_counts_from_zero(client: TestClient) -> None:
    titles = []
    for index in (0, 1):
        svg = client.get(f"/charts/rental-{index}.svg").text
        texts = svg_texts(svg)
        titles += [t for t in texts if t.startswith("Monthly rental")]
        # A linear amount axis from zero: evenly spaced labels (a log axis has 1, 10, 100).
        axis = svg[svg.index('class="axis y') : svg.index('class="axis x')]
        ticks = [float(t.replace(",", "")) for t in svg_texts(axis) if t]
        assert ticks[0] == 0 and len(ticks) > 2
        assert len({round(b - a, 6) for a, b in pairwise(ticks)}) == 1, ticks
    assert sorted(titles) == [
        "Monthly rental of active numbers, INR",
        "Monthly rental of active numbers, USD",
    ]
    inventory = svg_texts(client.get("/charts/inventory.svg").text)
    assert "0" in inventory  # a 1% dip is not drawn as a cliff


def test_sweeps_of_one_day_have_labels_of_their_own() -> None:
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    times = [start, start + timedelta(hours=3), start + timedelta(days=7)]
    svg = charts.inventory_chart(times, [800, 790, 795]).decode()
    texts = svg_texts(svg)
    assert "2026-12-01 09:00" in texts and "2026-12-01 12:00" in texts
    # 52 weekly sweeps: only a few labels are printed, so none overprint.
    many = [start + timedelta(weeks=i) for i in range(52)]
    labels = [t for t in svg_texts(charts.inventory_chart(many, [800] * 52).decode()) if ":" in t]
    assert 2 <= len(labels) <= 8


def test_security_headers_on_every_response(client: TestClient) -> None:
    for path in ("/", "/findings", "/healthz", "/metrics", "/static/dashboard.css", "/nowhere"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "script-src" not in csp, path
        assert headers["x-content-type-options"] == "nosniff", path


def test_read_only_every_other_method_is_405(client: TestClient) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", "/findings", "/static/dashboard.css", "/charts/status.svg"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET, HEAD"
    assert client.head("/").status_code == 200


def test_the_rule_filter_offers_exactly_the_enabled_rules(swept: Swept) -> None:
    """Built-in and user rules that are on, a user rule with no finding too; not a rule that is
    off though it has open findings, nor the rules table's other keys."""
    never = {"id": "never_matches", "message": "m", "when": {"path": "status", "eq": "nope"}}
    rules = RulesConfig.model_validate({"blocked": {"enabled": False}, "custom": [never]})
    swept.settings = swept.settings.model_copy(update={"rules": rules})
    html = client_for(swept).get("/findings").text
    select = html[html.index('<select name="rule">') :]
    offered = re.findall(r'<option value="([^"]+)"', select[: select.index("</select>")])
    assert offered == [*(r for r in REGISTRY if r != "blocked"), "never_matches"]
    assert swept.store.open_counts()[("blocked", "critical")]


def test_findings_filter_paginate_and_link_to_numbers(client: TestClient, swept: Swept) -> None:
    open_total = sum(swept.store.open_counts().values())
    assert open_total > 10  # more than one page of 10
    first = client.get("/findings")
    assert first.status_code == 200
    assert_safe_html(first.text)
    assert f"1–10 of {open_total}" in first.text
    assert 'rel="next" href="/findings?page=2"' in first.text
    second = client.get("/findings?page=2")
    assert f"11–{min(20, open_total)} of {open_total}" in second.text
    links = re.findall(r'href="(/numbers/[^"]+)"', first.text)
    # A finding about a customer account (no_active_number) has no number to link to.
    # The sandbox has two customers without numbers and the idle one: at most three rows
    # without a link (they are urgent, so on the first page).
    assert 7 <= len(links) <= 10
    assert client.get(links[0]).status_code == 200

    blocked = client.get("/findings?rule=blocked&severity=critical")
    count = swept.store.open_counts()[("blocked", "critical")]
    assert f"of {count}" in blocked.text
    assert "/numbers/" + swept.hostile_e164 in blocked.text

    account = client.get(f"/findings?account={swept.idle_account}&state=all")
    assert account.status_code == 200
    mine = [
        f
        for f in swept.store.findings(swept.clock(), include_closed=True)
        if f.account_id == swept.idle_account
    ]
    assert mine and f"of {len(mine)}" in account.text
    assert "No finding matches." in client.get("/findings?account=nobody").text
    assert client.get("/findings?state=resolved").status_code == 200


@pytest.mark.parametrize(
    "query", ["severity=loud", "state=gone", "page=0", "page=x", "rule=" + "r" * 200]
)
def test_a_bad_filter_is_a_400_naming_it(client: TestClient, query: str) -> None:
    response = client.get(f"/findings?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.text


@pytest.mark.parametrize("path", ["/findings", "/accounts", "/sweeps"])
@pytest.mark.parametrize(
    "page",
    ["²", "١", "１", "1" * 5000, "+1", " 1", "1_0"],
    ids=["superscript", "arabic-indic", "fullwidth", "5000-digits", "plus", "space", "underscore"],
)
def test_page_numbers_are_ascii_digits_only(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, page: str
) -> None:
    response = client.get(path, params={"page": page})
    assert response.status_code == 400, response.text
    assert "page must be a whole number" in response.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


HOSTILE_QUERY_VALUES = ("²", "١", "\x00", "1" * 5000, "%ff", "-1", "\u202e", "x" * 200)


def test_no_query_value_answers_500(store: Store, clock: FakeClock) -> None:
    """On SQLite and PostgreSQL (which refuses NUL in text) alike."""
    with TestClient(dashboard_app(store, clock)) as c:
        for path in ("/", "/findings", "/accounts", "/sweeps"):
            for name in ("page", "rule", "severity", "account", "state"):
                for value in HOSTILE_QUERY_VALUES:
                    response = c.get(path, params={name: value})
                    assert response.status_code in (200, 400), (path, name, value)
        assert c.get("/numbers/%00").status_code == 404


def test_silenced_findings_are_their_own_state(client: TestClient, swept: Swept) -> None:
    swept.store.add_silence(
        "blocked", swept.clock.now.replace(year=2030), "agreed", swept.clock.now
    )
    open_page = client.get("/findings?rule=blocked")
    assert "No finding matches." in open_page.text
    silenced = client.get("/findings?rule=blocked&state=silenced")
    assert "badge-silenced" in silenced.text and swept.hostile_e164 in silenced.text


def test_number_page_history_findings_and_hostile_strings_as_text(
    client: TestClient, swept: Swept
) -> None:
    response = client.get("/numbers/" + swept.hostile_e164)
    assert response.status_code == 200
    html = response.text
    assert_safe_html(html)
    for hostile in HOSTILE:
        assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;!channel&gt;" in html
    assert "is_blocked" in html and "tags" in html  # what the second sweep changed
    assert html.count("#1 ·") >= 1 and "#2 ·" in html
    assert "blocked" in html  # the finding it raised
    missing = client.get("/numbers/+10000000000")
    assert missing.status_code == 404 and "no number +10000000000 on record" in missing.text


def test_accounts_with_no_active_number_come_first(
    client: TestClient, swept: Swept, sandbox: Sandbox
) -> None:
    response = client.get("/accounts")
    assert response.status_code == 200
    html = response.text
    assert_safe_html(html)
    # The idle customer and the two with no number at all (only in the account list) lead, by
    # id, each with its name; a customer's auth_token is never shown.
    body = html[html.index("<tbody>") :]
    rows = body.split("</tr>")
    idle = sorted([swept.idle_account, *sandbox.inventory.empty_account_ids])
    accounts = {str(a["auth_id"]): a for a in sandbox.inventory.accounts()}
    for row, account_id in zip(rows, idle, strict=False):
        assert account_id in row and "no active number" in row
        assert html_escape(accounts[account_id]["name"]) in row
        assert accounts[account_id]["auth_token"] not in html
    assert re.search(r"[\d,]+\.\d\d (INR|USD)", html)


def test_sweeps_show_outcome_duration_counts_and_the_failure_reason(client: TestClient) -> None:
    html = client.get("/sweeps").text
    assert_safe_html(html)
    assert html.count("badge-complete") == 2 and html.count("badge-failed") == 1
    assert "500" in html  # the failed sweep's reason names the API error
    assert " s</td>" in html


def test_no_secret_is_rendered(client: TestClient, swept: Swept) -> None:
    token = swept.settings.vobiz.auth_token
    assert token
    for path in (
        "/",
        "/findings?state=all",
        "/accounts",
        "/sweeps",
        "/numbers/" + swept.hostile_e164,
    ):
        html = client.get(path).text
        assert token not in html and CHANNEL_SECRET not in html, path


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_basic_auth_and_bearer_token(swept: Swept) -> None:
    token = "t" * 32
    with client_for(swept, Access("ops", "s3cret pass", token)) as c:
        denied = c.get("/")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith('Basic realm="did-monitor"')
        assert c.get("/metrics").status_code == 401
        assert c.get("/", headers=basic("ops", "s3cret pass")).status_code == 200
        assert c.get("/", headers=basic("ops", "wrong")).status_code == 401
        assert c.get("/", headers=basic("root", "s3cret pass")).status_code == 401
        assert c.get("/", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
        latin1 = {"Authorization": "Basic \xe9t\xe9".encode("latin-1")}
        assert c.get("/", headers=latin1).status_code == 401  # was a 500
        assert c.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
        # probes and the stylesheet stay open for orchestrators and the login page
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/static/dashboard.css").status_code == 200
    with client_for(swept, Access(token=token)) as c:
        denied = c.get("/findings")
        assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")


def test_a_view_that_fails_answers_500_without_details(
    swept: Swept, caplog: pytest.LogCaptureFixture
) -> None:
    swept.store.engine.dispose()
    with swept.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE silences")
    with client_for(swept) as c:
        response = c.get("/findings")
    assert response.status_code == 500
    assert "Traceback" not in response.text and "database error" in response.text


def test_the_dashboard_can_be_turned_off(swept: Swept) -> None:
    app = build_app(
        health=lambda: (True, {}), ready=lambda: (True, {}), registry=CollectorRegistry()
    )
    with TestClient(app) as c:
        assert c.get("/").status_code == 404
        assert c.get("/findings").json()["paths"] == ["/healthz", "/metrics", "/readyz"]


@pytest.mark.parametrize("root", ["", "/monitor"])
def test_error_pages_link_from_the_application_root(
    sqlite_store: Store, clock: FakeClock, root: str
) -> None:
    with TestClient(dashboard_app(sqlite_store, clock), root_path=root) as c:
        for path in ("/static/nothing.css", "/static/", "/static", "/nowhere", "/numbers/+1000"):
            response = c.get(path, follow_redirects=False)
            assert response.status_code == 404, path
            links = re.findall(r'(?:href|action|src)="([^"]*)"', response.text)
            assert f"{root}/static/dashboard.css" in links, (path, links)
            assert f"{root}/findings" in links, (path, links)
            assert not [link for link in links if "/static/static/" in link or "/static/f" in link]


BIDI_OR_ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def test_bidi_and_terminal_controls_from_the_api_are_not_shown(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    item = sandbox.inventory.item(0)
    sandbox.inventory.update(
        0,
        region="\u202eevil\x1b[31m",
        tags=["\u2066left\u2069", "bell\x07"],
        status="\u202eactive",
        application_id="\u200fapp",
    )
    for index in range(1, 20):  # active ones among them draw a line in the rental chart
        sandbox.inventory.update(index, currency="\u202eUS\x1b")
    account = next(a for a in sandbox.inventory._accounts if a["auth_id"] == item["account_id"])
    account["name"] = "\u202eRENAMED\u202c"
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    with TestClient(dashboard_app(sqlite_store, clock)) as c:
        pages = ("/", "/accounts", "/findings?state=all", "/numbers/" + item["e164"])
        overview = c.get("/").text
        panels = re.findall(r'<img src="(/charts/rental-\d+\.svg)"', overview)
        assert len(panels) == 3  # INR, USD and the unreadable currency, each its own panel
        for path in (*pages, "/charts/status.svg", *panels):
            response = c.get(path)
            assert response.status_code == 200, path
            assert not BIDI_OR_ESCAPE.search(response.text), (
                path,
                BIDI_OR_ESCAPE.findall(response.text),
            )
        number = c.get("/numbers/" + item["e164"]).text
        assert "evil [31m" in number and "left" in number
        accounts = c.get("/accounts").text
        assert re.search(r"<bdi>\s*RENAMED\s*</bdi>", accounts)


def test_overview_leads_with_critical_findings_and_counts_silenced_apart(
    client: TestClient, swept: Swept
) -> None:
    now = swept.clock()
    swept.store.add_silence("blocked", now + timedelta(days=30), "agreed", now)
    html = client.get("/").text
    opened, hushed = swept.store.open_counts(now), swept.store.silenced_counts(now)
    critical = sum(n for (_, severity), n in opened.items() if severity == "critical")
    assert hushed and sum(hushed.values()) > 0
    cards = html.index('<section class="cards">')
    first_card = html[cards : html.index("</div>", cards)]
    assert "Critical findings" in first_card
    assert f'<a href="/findings?severity=critical">{critical} critical</a>' in first_card
    assert f">{sum(opened.values())} open</a>" in html
    assert f"{sum(hushed.values())} silenced" in html
    # "open" never counts a silenced finding, here as on /findings.
    page = client.get("/findings").text
    assert f"of {sum(opened.values())}<" in page
    assert f">{sum(opened.values())} open</a>" in page
    assert f">{sum(hushed.values())} silenced</a>" in page


def test_findings_page_is_most_urgent_first_searchable_and_names_accounts(
    client: TestClient, swept: Swept, sandbox: Sandbox
) -> None:
    html = client.get("/findings").text
    severities = re.findall(r'<td><span class="badge badge-(critical|warning|info)">', html)
    rank = {"critical": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=rank.__getitem__)
    assert severities[0] == "critical"
    prefix = swept.hostile_e164[:7]
    found = client.get("/findings", params={"number": prefix, "state": "all"}).text
    numbers = re.findall(r'<a class="number" href="[^"]+">([^<]+)</a>', found)
    assert numbers and all(n.startswith(prefix) for n in numbers)
    assert swept.hostile_e164 in numbers
    assert f'name="number" value="{prefix}"' in found
    # Each account is named beside its id and links to its own page.
    names = {str(a["auth_id"]): a["name"] for a in sandbox.inventory.accounts()}
    links = re.findall(r'<a class="account" href="/accounts/([^"]+)"><bdi>([^<]+)</bdi>', html)
    assert links
    for account_id, name in links:
        assert html_escape(names[account_id]) == name


def test_account_page_lists_its_numbers_findings_and_rental(
    client: TestClient, swept: Swept, sandbox: Sandbox
) -> None:
    number = client.get("/numbers/" + swept.hostile_e164).text
    account_id = sandbox.inventory.item(0)["account_id"]
    name = next(a["name"] for a in sandbox.inventory.accounts() if a["auth_id"] == account_id)
    assert f'href="/accounts/{account_id}"><bdi>{html_escape(name)}</bdi>' in number
    page = client.get(f"/accounts/{account_id}")
    assert page.status_code == 200
    html = page.text
    assert_safe_html(html)
    assert html_escape(name) in html and account_id in html
    assert "/numbers/" + swept.hostile_e164 in html
    assert "blocked" in html  # its open finding
    assert re.search(r"\d+\.\d\d (INR|USD)", html)  # its rental
    assert "due in 30 days" in html
    accounts = client.get("/accounts").text
    assert f'href="/accounts/{account_id}"' in accounts
    missing = client.get("/accounts/nobody")
    assert missing.status_code == 404 and "no account nobody on record" in missing.text
    assert client.get("/accounts/%00").status_code == 404


def test_silences_page_lists_who_added_what_and_what_it_matches(
    client: TestClient, swept: Swept
) -> None:
    now = swept.clock()
    assert "No silence." in client.get("/silences").text
    swept.store.add_silence(
        "blocked", now + timedelta(days=14), "renewal <agreed>", now, by="asha@ops"
    )
    swept.store.add_silence("*", now - timedelta(days=1), "old", now - timedelta(days=9))
    html = client.get("/silences").text
    assert_safe_html(html)
    matched = swept.store.open_counts()[("blocked", "critical")]
    rows = html[html.index("<tbody>") :].split("</tr>")
    assert "blocked" in rows[0] and "renewal &lt;agreed&gt;" in rows[0]
    assert "asha@ops" in rows[0] and f'<td class="num">{matched}</td>' in rows[0]
    assert "any rule" in rows[1] and "badge-ended" in rows[1]


def test_after_a_partial_sweep_the_pages_show_the_last_complete_sweep(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    """A partial sweep that read a raised fee and a released number is never a state of the
    inventory: the overview counts and the account page sums what `inventory` and `costs` say."""
    from monitor import reports
    from monitor.vocab import money_text

    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    first = sandbox.inventory.item(0)
    account = first["account_id"]
    mine = [
        i
        for i in range(sandbox.inventory.total)
        if sandbox.inventory.item(i)["account_id"] == account
        and sandbox.inventory.item(i)["status"] == "active"
    ]
    sandbox.inventory.update(mine[0], monthly_fee="5000", currency="INR")
    sandbox.inventory.update(mine[1], status="released")
    sandbox.inventory.update(next(i for i in range(9) if i not in mine[:2]), id=None)
    clock.advance(days=7)
    outcome = run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock)
    assert outcome.ok and outcome.partial
    swept = reports.inventory(sqlite_store.engine).rows
    costs = reports.costs(sqlite_store.engine, account=account)
    with TestClient(dashboard_app(sqlite_store, clock)) as client:
        overview = client.get("/").text
        assert f"{len(swept)} numbers" in overview
        html = client.get(f"/accounts/{account}").text
    active = sum(line.active_numbers for line in costs.rows)
    assert f"({active} active)" in html
    for line in costs.rows:
        assert money_text(line.monthly_rental, line.currency) in html
    assert "5000.00 INR" not in html


def test_number_page_after_its_id_changed_shows_it_current_newest_first(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    """The number's new id sorts before its old one: the page still shows the version in force
    and the history newest first."""
    settings = make_settings(sandbox, sqlite_store.url)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    old_id = sandbox.inventory.item(7)["id"]
    item = sandbox.inventory.update(7, id="00000000-new")
    clock.advance(days=7)
    assert run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock).ok
    with TestClient(dashboard_app(sqlite_store, clock)) as client:
        html = client.get("/numbers/" + item["e164"]).text
    assert "Not in the current inventory" not in html
    facts = html[: html.index("<h2>History</h2>")]
    assert "<dt>number id</dt><dd>00000000-new</dd>" in facts and old_id not in facts
    history = html[html.index("<h2>History</h2>") : html.index("<h2>Findings</h2>")]
    rows = history[history.index("<tbody>") :].split("</tr>")[:2]
    assert "<td>#2 ·" in rows[0] and "<td>now</td>" in rows[0]
    assert "<td>#1 ·" in rows[1] and "<td>#2 ·" in rows[1]


def test_account_page_names_an_account_finding_without_a_number_link(
    client: TestClient, swept: Swept, sandbox: Sandbox
) -> None:
    """A finding about the account itself (no_active_number, subject "account:<id>") has no
    number page: its number column names the account, as the findings page does."""
    account = swept.idle_account
    html = client.get(f"/accounts/{account}").text
    findings = html[html.index("<h2>Open findings</h2>") : html.index("<h2>Numbers</h2>")]
    assert "no_active_number" in findings
    assert "/numbers/account" not in html
    name = next(a["name"] for a in sandbox.inventory.accounts() if a["auth_id"] == account)
    assert f"<td>{html_escape(name)}</td>" in findings
