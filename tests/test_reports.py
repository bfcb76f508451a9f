"""Reports (inventory, costs, diff) and the change rules, over real sweeps of the sandbox into
SQLite and PostgreSQL; every figure is checked against one computed here from the sandbox."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from monitor import reports
from monitor.config import ChannelConfig
from monitor.errors import ConfigError
from monitor.pipeline import run_cycle
from monitor.sandbox import DELETE, Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from monitor.web.app import build_app
from monitor.web.views import Dashboard
from tests.conftest import FakeClock, make_settings

CHAN = ChannelConfig(name="ops", url="json://127.0.0.1:1/x")


def sweep(sandbox: Sandbox, store: Store, clock: FakeClock, notifier: Any = None) -> Any:
    out = run_cycle(
        make_settings(sandbox, store.url, (CHAN,)),
        store,
        notifier or RecordingNotifier(),
        clock=clock,
    )
    assert out.ok, out.error
    clock.advance(days=7)
    return out


def items(sandbox: Sandbox) -> list[dict[str, Any]]:
    inv = sandbox.inventory
    return [inv.item(inv.index_of(nid)) for nid in inv.ids()]


def expected_costs(sandbox: Sandbox) -> dict[tuple[str, str], tuple[int, Decimal]]:
    lines: dict[tuple[str, str], tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for it in items(sandbox):
        if it["status"] != "active":
            continue
        count, total = lines[(it["account_id"], it["currency"])]
        lines[(it["account_id"], it["currency"])] = (
            count + 1,
            total + Decimal(str(it["monthly_fee"])),
        )
    return dict(lines)


def test_costs_match_the_sums_of_the_inventory(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep(sandbox, store, clock)
    rep = reports.costs(store.engine)
    got = {(r.account_id, r.currency): (r.active_numbers, r.monthly_rental) for r in rep.rows}
    assert got == expected_costs(sandbox)
    assert all(isinstance(r.monthly_rental, Decimal) for r in rep.rows)
    for total in rep.totals:
        mine = [r for r in rep.rows if r.currency == total.currency]
        assert total.monthly_rental == sum((r.monthly_rental for r in mine), Decimal(0))
        assert total.active_numbers == sum(r.active_numbers for r in mine)
    account = rep.rows[0].account_id
    only = reports.costs(store.engine, account=account)
    assert {r.account_id for r in only.rows} == {account}


def test_costs_at_a_date_use_the_sweep_in_force_then(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    first_at = clock.now
    sweep(sandbox, store, clock)
    before = expected_costs(sandbox)
    active = next(it for it in items(sandbox) if it["status"] == "active")
    sandbox.inventory.update(active["id"], monthly_fee="999.99")
    sweep(sandbox, store, clock)
    assert {
        (r.account_id, r.currency): (r.active_numbers, r.monthly_rental)
        for r in reports.costs(store.engine, at=first_at + timedelta(days=1)).rows
    } == before
    latest = reports.costs(store.engine)
    assert latest.sweep.id == 2
    with pytest.raises(ConfigError, match="no complete sweep on or before"):
        reports.costs(store.engine, at=first_at - timedelta(days=1))


def test_inventory_rows_and_filters(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    sweep(sandbox, store, clock)
    every = items(sandbox)
    rep = reports.inventory(store.engine)
    assert len(rep.rows) == len(every)
    assert {r.number_id for r in rep.rows} == {it["id"] for it in every}
    active_in = reports.inventory(store.engine, status="ACTIVE", country="in").rows
    assert len(active_in) == sum(
        1 for it in every if it["status"] == "active" and it["country"] == "IN"
    )
    account = every[0]["account_id"]
    assert {r.account_id for r in reports.inventory(store.engine, account=account).rows} == {
        account
    }
    row = rep.rows[0].as_dict()
    assert list(row) == list(reports.INVENTORY_FIELDS)
    json.dumps(row)  # JSON-ready as it is


def test_changes_are_reported_told_once_and_resolve_silently(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    notifier = RecordingNotifier()
    sweep(sandbox, store, clock, notifier)
    inv = sandbox.inventory
    ids = list(inv.ids())
    changed_id, gone_id = ids[0], ids[1]
    old = inv.item(inv.index_of(changed_id))
    inv.update(changed_id, application_id=None, monthly_fee="777.25", account_id="MA_MOVED")
    inv.remove([gone_id])
    (added_id,) = inv.add(1)
    notifier.sent.clear()
    second = sweep(sandbox, store, clock, notifier)

    rep = reports.diff(store.engine)
    assert (rep.since and rep.since.id, rep.sweep.id) == (1, second.sweep_id)
    by_change = defaultdict(list)
    for r in rep.rows:
        by_change[r.change].append(r)
    assert [r.number_id for r in by_change["added"]] == [added_id]
    assert [r.number_id for r in by_change["removed"]] == [gone_id]
    fields = {r.field: (r.before, r.after) for r in by_change["changed"]}
    assert fields["monthly_fee"] == (str(old["monthly_fee"]), "777.25")
    assert fields["account_id"] == (old["account_id"], "MA_MOVED")
    assert fields["application_id"][1] == "null"  # the key holds null: JSON text

    events = {
        f.subject: f for f in store.findings(clock.now) if f.rule in ("changed", "disappeared")
    }
    subjects = set(events)
    assert gone_id in subjects  # disappeared
    kinds = {s.split(":")[1].split("@")[0] for s in subjects if s.startswith(changed_id + ":")}
    assert kinds >= {"application", "monthly_fee", "account"}
    assert all(f.severity == "info" for f in events.values() if f.rule == "changed")
    (digest,) = notifier.sent
    assert "moved from account" in digest.body and "no longer in the inventory" in digest.body

    notifier.sent.clear()
    sweep(sandbox, store, clock, notifier)  # nothing changed: the events resolve, untold
    assert not [f for f in store.findings(clock.now) if f.rule in ("changed", "disappeared")]
    assert all("moved from account" not in m.body for m in notifier.sent)
    assert reports.diff(store.engine).rows == []
    since_first = reports.diff(store.engine, since="1")
    assert {r.change for r in since_first.rows} == {"added", "removed", "changed"}


def test_diff_tells_an_explicit_null_from_a_missing_key(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """A key that is missing has no value (None: an empty CSV cell, "—" in a table); a key that
    holds null has the JSON text "null", so a missing key that turns into null is a change
    that reads as one."""
    inv = sandbox.inventory
    first, second = list(inv.ids())[:2]
    inv.update(first, application_id=DELETE)
    inv.update(second, application_id=None)
    sweep(sandbox, store, clock)
    inv.update(first, application_id=None)
    inv.update(second, application_id=DELETE)
    sweep(sandbox, store, clock)
    got = {(r.number_id, r.field): (r.before, r.after) for r in reports.diff(store.engine).rows}
    assert got == {
        (first, "application_id"): (None, "null"),
        (second, "application_id"): ("null", None),
    }


def test_diff_needs_two_complete_sweeps(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="no complete sweep yet"):
        reports.diff(store.engine)
    sweep(sandbox, store, clock)
    with pytest.raises(ConfigError, match="only one complete sweep"):
        reports.diff(store.engine)
    with pytest.raises(ConfigError, match="not a complete sweep"):
        reports.diff(store.engine, since="99")
    with pytest.raises(ConfigError, match="--since"):  # int("²") used to raise ValueError
        reports.diff(store.engine, since="²")


@pytest.mark.parametrize("since", [str(2**31), str(2**63), "99999999999999999999"])
def test_a_sweep_id_beyond_the_column_is_no_complete_sweep(
    sandbox: Sandbox, store: Store, clock: FakeClock, since: str
) -> None:
    """sweeps.id is an INTEGER (32 bits on PostgreSQL, 64 on SQLite): a larger id is not a
    sweep, the same error as any id that is no complete sweep, not a database error."""
    sweep(sandbox, store, clock)
    sweep(sandbox, store, clock)
    with pytest.raises(ConfigError, match=f"--since: sweep {since} is not a complete sweep"):
        reports.diff(store.engine, since=since)


def test_a_failed_sweep_reports_nothing_gone(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep(sandbox, store, clock)
    sandbox.inventory.remove([next(iter(sandbox.inventory.ids()))])
    sandbox.faults.add(page=2, times=100, status=500)
    settings = make_settings(sandbox, store.url, (CHAN,), vobiz={"max_retries": 0})
    out = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert not out.ok
    assert not [f for f in store.findings(clock.now) if f.rule == "disappeared"]
    assert reports.costs(store.engine).sweep.id == 1  # the failed sweep is no state


def cli_env(store: Store, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``did-monitor`` reading ``store`` with no config file."""
    (tmp_path / "none.toml").write_text("")
    config = {"DID_MONITOR_CONFIG": str(tmp_path / "none.toml"), "COLUMNS": "200"}
    return os.environ | {"DID_MONITOR__DATABASE__URL": store.url} | config


def did(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_report_commands_print_stable_csv_and_json(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    sweep(sandbox, sqlite_store, clock)
    env = cli_env(sqlite_store, tmp_path)
    out = did("costs", "--format", "csv", env=env)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == list(reports.COST_FIELDS)
    want = expected_costs(sandbox)
    assert {
        (r["account_id"], r["currency"]): (int(r["active_numbers"]), Decimal(r["monthly_rental"]))
        for r in rows
    } == want
    doc = json.loads(did("costs", "--format", "json", env=env).stdout)
    assert doc["report"] == "costs" and doc["sweep"]["id"] == 1
    assert {t["currency"] for t in doc["totals"]} == {c for _, c in want}
    inv = json.loads(did("inventory", "--format", "json", "--status", "active", env=env).stdout)
    assert inv["rows"] and all(r["status"] == "active" for r in inv["rows"])
    table = did("inventory", "--format", "table", env=env)
    assert table.returncode == 0 and "number(s) in sweep 1" in table.stdout
    bad = did("diff", env=env)
    assert bad.returncode == 2 and "only one complete sweep" in bad.stderr
    bad = did("costs", "--at", "someday", env=env)
    assert bad.returncode == 2 and "--at: cannot read" in bad.stderr


def test_every_report_format_masks_a_remembered_secret(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    secret = "tok-4f9a2c7e1b"  # the API token, also found in a number's tags
    sandbox.inventory.update(0, tags=["ops", secret])
    sweep(sandbox, sqlite_store, clock)
    env = cli_env(sqlite_store, tmp_path) | {"VOBIZ_AUTH_TOKEN": secret}
    for fmt in ("csv", "json", "table"):
        out = did("inventory", "--format", fmt, "--columns", "e164,tags", env=env)
        assert out.returncode == 0, out.stderr
        assert secret not in out.stdout and "***" in out.stdout, fmt


def test_history_the_number_page_and_diff_name_the_same_changed_fields(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    sweep(sandbox, sqlite_store, clock)
    inv = sandbox.inventory
    nid = next(iter(inv.ids()))
    item = inv.item(inv.index_of(nid))
    caps = dict(item["capabilities"], sms=not item["capabilities"]["sms"])  # a nested field
    inv.update(nid, capabilities=caps, status="released")  # and a top-level one
    sweep(sandbox, sqlite_store, clock)
    want = "capabilities.sms, status"
    env = cli_env(sqlite_store, tmp_path)

    diffed = json.loads(did("diff", "--format", "json", env=env).stdout)
    assert ", ".join(r["field"] for r in diffed["rows"] if r["number_id"] == nid) == want
    shown = did("history", item["e164"], "--columns", "from,changed", env=env)
    assert shown.returncode == 0, shown.stderr
    cells = [line.split("│")[-2].strip() for line in shown.stdout.splitlines() if "│" in line]
    assert cells[-2:] == ["first seen", want], shown.stdout
    dashboard = Dashboard(sqlite_store, make_settings(sandbox, sqlite_store.url), clock=clock)
    app = build_app(
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        registry=CollectorRegistry(),
        dashboard=dashboard,
    )
    page = TestClient(app).get("/numbers/" + item["e164"]).text
    assert f"<td>{want}</td>" in page and "<td>first seen</td>" in page


# --- rental due (costs --due-within) -------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "start", "days", "want"),
    [
        # a monthly cycle that renews inside the window counts again
        ("2026-11-25", "2026-11-23", 60, 2),
        # across a month boundary: 30 Nov, then 30 Dec
        ("2026-11-30", "2026-11-23", 30, 1),
        ("2026-11-30", "2026-11-23", 38, 2),
        # a 31st renews on the last day of a shorter month, and on the 31st again after it
        ("2027-01-31", "2027-02-01", 27, 0),
        ("2027-01-31", "2027-02-01", 28, 1),  # 28 Feb 2027 is inside [1 Feb, 1 Mar)
        ("2027-01-31", "2027-03-30", 2, 1),  # 31 Mar, not 28 Mar
        # a leap day renews on 29 March, and on 28 February in a year without one
        ("2028-02-29", "2028-03-28", 2, 1),
        ("2028-02-29", "2029-02-27", 2, 1),
        # a stale date (its renewal has passed) counts only the renewals inside the window
        ("2026-10-10", "2026-11-23", 30, 1),  # 10 Dec
        ("2026-10-10", "2026-11-23", 10, 0),
        # the window is half open: its end belongs to the next window
        ("2026-12-23", "2026-11-23", 30, 0),
    ],
)
def test_renewals_count_calendar_months(first: str, start: str, days: int, want: int) -> None:
    begin = date.fromisoformat(start)
    got = reports.renewals(date.fromisoformat(first), begin, begin + timedelta(days=days))
    assert got == want


def test_renewals_are_never_capped_within_the_longest_window() -> None:
    """A window as long as --due-within allows (100 years) counts every monthly renewal: one
    billed today renews 1201 times in 36,525 days from 2026-12-06 (100 years are 36,524 days
    then), where the count used to stop at 1200."""
    today = date(2026, 12, 6)
    end = today + timedelta(days=36_525)
    assert reports.renewals(today, today, end) == 1201
    assert reports.renewals(date(2026, 11, 6), today, end) == 1201  # stale by a month
    assert reports.renewals(today, today, today + timedelta(days=36_524)) == 1200


@pytest.mark.parametrize(
    ("text", "zone"),
    [("9999-12-31", "America/Los_Angeles"), ("0001-01-01T00:00:00+05:30", "UTC")],
)
def test_a_moment_beyond_the_calendar_is_an_error_naming_the_option(text: str, zone: str) -> None:
    """The end of 9999-12-31 in Los Angeles is in year 10000 in UTC: no database can compare
    it, so it is refused where it is read."""
    from zoneinfo import ZoneInfo

    with pytest.raises(ConfigError, match=r"^--at: "):
        reports.parse_when(text, ZoneInfo(zone), "--at")
    assert reports.parse_when("9999-12-30", ZoneInfo("America/Los_Angeles"), "--at").year == 9999


@pytest.mark.parametrize(
    ("billing", "now", "zone", "today"),
    [
        # a bare date reads as midnight UTC: billed today counts whatever the hour of the sweep
        ("2026-03-02T00:00:00+00:00", "2026-03-02T06:00:00+00:00", "UTC", True),
        ("2026-03-02T00:00:00+00:00", "2026-03-02T23:59:00+00:00", "UTC", True),
        ("2026-03-01T00:00:00+00:00", "2026-03-02T06:00:00+00:00", "UTC", False),
        # days are the rules' time zone's: 2 March 20:00 UTC is 3 March in Kolkata
        ("2026-03-02T20:00:00+00:00", "2026-03-03T01:00:00+05:30", "Asia/Kolkata", True),
    ],
)
def test_the_window_is_whole_days_today_included(
    billing: str, now: str, zone: str, today: bool
) -> None:
    from zoneinfo import ZoneInfo

    window = reports.DueWindow.ahead(datetime.fromisoformat(now), timedelta(days=7), ZoneInfo(zone))
    day = datetime.fromisoformat(billing).astimezone(window.tz).date()
    assert (reports.renewals(day, window.first, window.end) == 1) is today
    assert window.last - window.first == timedelta(days=6)
    assert reports.DueWindow.ahead(datetime.fromisoformat(now), timedelta(hours=12), UTC).last == (
        datetime.fromisoformat(now).astimezone(UTC).date()
    )


def plant_billing(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Five active numbers with planted billing dates (the rest made inactive): a month
    boundary, a 31st, a leap day, a number renewing twice in 60 days, and one with no date."""
    inv = sandbox.inventory
    ids = list(inv.ids())
    plan = {
        "boundary": ("MA_DUE1", "INR", "100", "2026-11-30T00:00:00Z"),
        "thirty_first": ("MA_DUE1", "INR", "12.5", "2026-12-31T09:00:00Z"),
        "leap": ("MA_DUE2", "USD", "3", "2028-02-29T00:00:00Z"),
        "twice": ("MA_DUE2", "USD", "1.25", "2026-11-24T00:00:00Z"),
        "undated": ("MA_DUE1", "INR", "7", DELETE),
    }
    planted: dict[str, dict[str, Any]] = {}
    for nid, (key, (acct, cur, fee, billing)) in zip(ids, plan.items(), strict=False):
        planted[key] = inv.update(
            nid,
            status="active",
            account_id=acct,
            currency=cur,
            monthly_fee=fee,
            next_billing_date=billing,
        )
    for nid in ids[len(plan) :]:
        inv.update(nid, status="suspended")
    return planted


def test_due_within_counts_each_renewal_in_exact_decimals(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    planted = plant_billing(sandbox)
    sweep(sandbox, store, clock)
    now = clock()  # 2026-11-30 12:00 UTC: the first sweep plus a week

    def window(days: int) -> reports.DueWindow:
        return reports.DueWindow.ahead(now, timedelta(days=days), UTC)

    rep = reports.due(store.engine, window=window(60))  # 30 Nov to 28 Jan
    got = {(r.account_id, r.currency): (r.numbers, r.renewals, r.amount_due) for r in rep.rows}
    # boundary: billed today (30 Nov 00:00, before the sweep's hour) and again 30 Dec; the 31st:
    # 31 Dec only (31 Jan is past the window)
    assert got == {
        ("MA_DUE1", "INR"): (2, 3, Decimal("212.50")),
        ("MA_DUE2", "USD"): (1, 2, Decimal("2.50")),  # 24 Dec and 24 Jan; the leap day is far
    }
    assert {t.currency: t.amount_due for t in rep.totals} == {
        "INR": Decimal("212.50"),
        "USD": Decimal("2.50"),
    }
    assert rep.forecast is not None
    assert rep.forecast.undated == [planted["undated"]["e164"]]
    week = reports.due(store.engine, window=window(7))
    assert [(r.account_id, r.amount_due) for r in week.rows] == [("MA_DUE1", Decimal("100"))]
    assert week.forecast is not None and week.forecast.undated


def test_costs_due_within_command_names_the_undated_numbers(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    import os

    planted = plant_billing(sandbox)
    sweep(sandbox, sqlite_store, clock)
    (tmp_path / "none.toml").write_text("")
    env = os.environ | {
        "DID_MONITOR__DATABASE__URL": sqlite_store.url,
        "DID_MONITOR_CONFIG": str(tmp_path / "none.toml"),
    }
    undated = planted["undated"]["e164"]
    doc = json.loads(did("costs", "--due-within", "60d", "--format", "json", env=env).stdout)
    assert doc["report"] == "due" and doc["undated"] == [undated]
    # the command counts from its own clock: it agrees with the one forecast over its window
    start = date.fromisoformat(doc["window"]["from"])
    assert date.fromisoformat(doc["window"]["to"]) - start == timedelta(days=59)
    assert doc["window"]["timezone"] == "UTC"
    window = reports.DueWindow(start, start + timedelta(days=60), UTC)
    same = reports.due(sqlite_store.engine, window=window)
    assert doc["rows"] == [r.as_dict() for r in same.rows]
    assert doc["totals"] == [t.as_dict() for t in same.totals]
    out = did("costs", "--due-within", "60d", "--format", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["amount_due"] for r in rows] == [r.as_dict()["amount_due"] for r in same.rows]
    assert out.stdout.splitlines()[0].split(",") == list(reports.DUE_FIELDS)
    assert undated in out.stderr and "no next billing date" in out.stderr
    table = did("costs", "--due-within", "2w", "--format", "table", env=env)
    assert table.returncode == 0, table.stderr
    assert "1 active number(s) have no next billing date" in table.stdout
    assert undated in table.stdout
    for bad, says in [("soon", "cannot read"), ("0d", "no time at all"), ("٣d", "cannot read")]:
        out = did("costs", "--due-within", bad, env=env)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


def test_the_digest_names_the_rental_due_in_the_next_7_days(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    from monitor.alerts.compose import compose
    from monitor.alerts.digest import Digest
    from monitor.config import AlertsConfig

    plant_billing(sandbox)  # swept on 23 Nov: 24 Nov is within 7 days (23-29 Nov), 30 Nov not
    notifier = RecordingNotifier()
    sweep(sandbox, sqlite_store, clock, notifier)
    bodies = [m.body for m in notifier.sent if m.channel == "ops"]
    assert bodies, "the sweep found suspended numbers: the channel gets a digest"
    line = "Rental due in the next 7 days: 1.25 USD"
    assert line + " (1 active number(s) have no billing date)" in bodies[0]
    digest = Digest(due_soon={"INR": Decimal("100")}, numbers_swept=1)
    for fmt in ("markdown", "text", "html"):
        chan = ChannelConfig(name="x", url="json://127.0.0.1:1/x")
        msg = compose(digest, chan, AlertsConfig(), fmt)  # type: ignore[arg-type]
        assert "Rental due in the next 7 days: 100.00 INR" in msg.body, fmt


def test_a_currency_in_any_case_is_one_currency_everywhere(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    from monitor.web import queries

    inv = sandbox.inventory
    inr = [i for i, it in enumerate(items(sandbox)) if it["status"] == "active"][:3]
    for index in inr:
        inv.update(index, currency="inr", monthly_fee="10", next_billing_date="2026-11-24")
    sweep(sandbox, sqlite_store, clock)
    currencies = {r.currency for r in reports.costs(sqlite_store.engine).totals}
    assert "inr" not in currencies and "INR" in currencies
    with sqlite_store.engine.connect() as conn:
        ref = reports.complete_sweeps(conn, 1)[0]
        window = reports.DueWindow(date(2026, 11, 23), date(2026, 11, 25), UTC)
        assert set(reports.forecast(conn, ref.id, window).totals) <= {"INR", "USD"}
    charts = queries.rental_by_sweep(sqlite_store, [ref.id])
    assert "inr" not in charts and "INR" in charts
