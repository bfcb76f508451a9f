"""Tests for the dashboard's queries on both databases: per-sweep rental against the inventory
as it stood at each sweep, findings filters and pages, accounts' order and exact sums."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from monitor import reports
from monitor.findings import FindingView, urgency
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.store import VERSIONS, Store, inventory_sweep
from monitor.testing import RecordingNotifier
from monitor.web import queries
from monitor.web.queries import FindingFilter
from tests.conftest import FakeClock, make_settings


def inventory_at(store: Store, sweep_id: int) -> list[RowMapping]:
    """The numbers as they stood at a sweep, the slow way: what the queries must agree with."""
    stmt = sa.select(VERSIONS).where(
        VERSIONS.c.valid_from <= sweep_id,
        sa.or_(VERSIONS.c.valid_to.is_(None), VERSIONS.c.valid_to > sweep_id),
    )
    with store.engine.connect() as conn:
        return list(conn.execute(stmt).mappings())


def sweep_three_times(sandbox: Sandbox, store: Store, clock: FakeClock) -> list[int]:
    """Three complete sweeps with fees, statuses and membership changing between them."""
    settings = make_settings(sandbox, store.url)
    notifier = RecordingNotifier()
    ids = []
    for step in range(3):
        if step == 1:
            sandbox.inventory.update(0, monthly_fee="999.50")
            sandbox.inventory.update(1, status="inactive")
            sandbox.inventory.remove([2, 3])
        if step == 2:
            sandbox.inventory.add(4)
            sandbox.inventory.update(1, status="active")
            sandbox.inventory.update(0, currency="EUR")
        outcome = run_cycle(settings, store, notifier, clock=clock)
        assert outcome.ok
        ids.append(outcome.sweep_id)
        clock.advance(days=7)
    return ids


def test_rental_by_sweep_matches_the_inventory_at_each_sweep(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    ids = sweep_three_times(sandbox, store, clock)
    expected: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(ids))
    for i, sweep_id in enumerate(ids):
        for row in inventory_at(store, sweep_id):
            if row["status"] == "active" and row["monthly_fee"] is not None:
                expected[row["currency"]][i] += float(row["monthly_fee"])
    got = queries.rental_by_sweep(store, ids)
    assert set(got) == set(expected) == {"INR", "USD", "EUR"}
    for currency, series in expected.items():
        assert got[currency] == [round(v, 2) for v in series], currency
    assert got["EUR"] == [0.0, 0.0, 999.5]
    assert queries.rental_by_sweep(store, []) == {}


def test_complete_sweeps_and_sweeps_page(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    ids = sweep_three_times(sandbox, store, clock)
    history = queries.complete_sweeps(store, limit=2)
    assert [s["id"] for s in history] == ids[1:]  # the last two, oldest first
    page = queries.sweeps_page(store, 2, 2)
    assert page.total == 3 and page.pages == 2 and page.has_prev and not page.has_next
    assert [s["id"] for s in page.items] == [ids[0]]


def test_findings_page_filters_and_counts(sandbox: Sandbox, store: Store, clock: FakeClock) -> None:
    sweep_three_times(sandbox, store, clock)
    now = clock()
    everything = store.findings(clock(), include_closed=True)
    open_ = [f for f in everything if f.state == "open"]
    page = queries.findings_page(store, FindingFilter(), 1, 5, now)
    assert page.total == len(open_) and len(page.items) == 5
    # Most urgent first, in the one order of the CLI and the digests (store.findings).
    assert [f.id for f in page.items] == [f.id for f in open_][:5]
    rule, severity = open_[0].rule, open_[0].severity
    narrowed = queries.findings_page(
        store, FindingFilter(rule=rule, severity=severity), 1, 500, now
    )
    assert narrowed.total == sum(1 for f in open_ if f.rule == rule and f.severity == severity)
    account = open_[0].account_id
    mine = queries.findings_page(store, FindingFilter(account=account, state="all"), 1, 500, now)
    assert mine.total == sum(1 for f in everything if f.account_id == account)
    resolved = queries.findings_page(store, FindingFilter(state="resolved"), 1, 500, now)
    assert resolved.total == sum(1 for f in everything if f.state == "resolved")
    store.add_silence(rule, now.replace(year=2030), "test", now, account_id=account)
    silenced = queries.findings_page(store, FindingFilter(state="silenced"), 1, 500, now)
    assert {f.state for f in silenced.items} == {"silenced"}
    assert silenced.total == sum(1 for f in open_ if f.rule == rule and f.account_id == account)
    after = queries.findings_page(store, FindingFilter(), 1, 500, now)
    assert after.total == len(open_) - silenced.total
    assert FindingFilter(rule="x", state="open").query(page=2) == {"rule": "x", "page": "2"}


def test_accounts_page_orders_idle_customers_first_with_exact_rental(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    account = sandbox.inventory.item(7)["account_id"]
    for index in range(sandbox.inventory.total):
        if sandbox.inventory.item(index)["account_id"] == account:
            sandbox.inventory.update(index, status="inactive")
    sweep_three_times(sandbox, store, clock)
    page = queries.accounts_page(store, 1, 500, clock.now, UTC)
    # Customers without any number exist only in the account list; they and the customer whose
    # numbers all went inactive come first, by id.
    empty = sorted(sandbox.inventory.empty_account_ids)
    idle = sorted([*empty, account])
    assert [i.account_id for i in page.items[: len(idle)]] == idle
    assert all(i.active == 0 and i.rental == {} for i in page.items[: len(idle)])
    assert all(i.numbers == 0 for i in page.items if i.account_id in empty)
    names = {str(a["auth_id"]): a["name"] for a in sandbox.inventory.accounts()}
    assert {i.account_id: i.name for i in page.items} == {
        i.account_id: names.get(i.account_id) for i in page.items
    }
    assert all(i.name for i in page.items if i.account_id in empty)
    # Rental per currency is what `did-monitor costs` reports.
    report = reports.costs(store.engine)
    expected: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for line in report.rows:
        if line.active_numbers > line.unpriced:
            expected[line.account_id][line.currency] = line.monthly_rental
    for item in page.items:
        assert item.rental == expected.get(item.account_id, {}), item.account_id
    last = store.last_sweep("complete")
    assert last is not None
    inventory = {r["account_id"] for r in inventory_at(store, last["id"])}
    assert page.total == len(inventory | set(names)) == len(page.items)
    shown = {i.account_id for i in page.items}
    on_page = [f for f in store.findings(clock.now) if f.account_id in shown]
    assert sum(i.open_findings for i in page.items) == len(on_page)
    # Rental due in 7 and 30 days is `did-monitor costs --due-within`'s, per account and overall.
    for days in (7, 30):
        window = reports.DueWindow.ahead(clock.now, timedelta(days=days), UTC)
        due = reports.due(store.engine, window=window)
        by_account: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for line in due.rows:
            by_account[line.account_id][line.currency] = line.amount_due
        assert {i.account_id: i.due.get(days, {}) for i in page.items if i.due.get(days)} == {
            a: v for a, v in by_account.items() if a in shown
        }
        assert page.due[days] == {t.currency: t.amount_due for t in due.totals}
        assert due.forecast is not None and page.undated == len(due.forecast.undated)
    assert page.due[30] and sum(page.due[30].values()) > sum(page.due[7].values())
    # Pages split the same order.
    first = queries.accounts_page(store, 1, 2, clock.now, UTC)
    second = queries.accounts_page(store, 2, 2, clock.now, UTC)
    assert first.items + second.items == page.items[:4] and first.total == page.total


def test_number_history_names_what_changed(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    e164 = sandbox.inventory.item(0)["e164"]
    sweep_three_times(sandbox, store, clock)
    history = reports.number_history(store.history(e164))
    assert [v["changed"] for v in history] == [None, ["monthly_fee"], ["currency"]]


def test_findings_are_ordered_by_severity_then_due_date_then_rule(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep_three_times(sandbox, store, clock)
    page = queries.findings_page(store, FindingFilter(), 1, 10_000, clock())
    assert len({f.severity for f in page.items}) > 1
    keys = [
        urgency(FindingView(f.rule, f.severity, f.e164 or "", "", "", due_at=f.due_at))
        for f in page.items
    ]
    assert keys == sorted(keys)
    # The newest finding is not first merely for being newest: critical ones lead.
    assert page.items[0].severity == "critical"


def test_findings_filter_by_number_prefix_and_name_the_account(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep_three_times(sandbox, store, clock)
    now = clock()
    every = queries.findings_page(store, FindingFilter(), 1, 10_000, now).items
    e164 = next(f.e164 for f in every if f.e164)
    prefix = e164[:6]
    found = queries.findings_page(store, FindingFilter(number=prefix), 1, 10_000, now)
    assert found.total == sum(1 for f in every if (f.e164 or "").startswith(prefix))
    assert found.total and all(f.e164.startswith(prefix) for f in found.items)
    exact = queries.findings_page(store, FindingFilter(number=e164), 1, 10_000, now)
    assert {f.e164 for f in exact.items} == {e164}
    # LIKE's wildcards are text here, not patterns.
    assert queries.findings_page(store, FindingFilter(number="%"), 1, 10, now).total == 0
    assert queries.findings_page(store, FindingFilter(number="+_"), 1, 10, now).total == 0
    names = {str(a["auth_id"]): a["name"] for a in sandbox.inventory.accounts()}
    assert all(f.account_name == names.get(f.account_id) for f in every)
    assert any(f.account_name for f in every)


def test_findings_page_counts_open_and_silenced_apart(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep_three_times(sandbox, store, clock)
    now = clock()
    before = queries.findings_page(store, FindingFilter(), 1, 10, now)
    assert before.open == before.total == sum(store.open_counts().values())
    assert before.silenced == 0
    rule = before.items[0].rule
    store.add_silence(rule, now + timedelta(days=30), "agreed", now)
    after = queries.findings_page(store, FindingFilter(), 1, 10, now)
    hushed = sum(n for (r, _), n in store.open_counts().items() if r == rule)
    assert after.silenced == hushed > 0
    assert after.open == after.total == before.open - hushed
    assert after.open == sum(store.open_counts(now).values())
    assert after.silenced == sum(store.silenced_counts(now).values())


def test_one_account_as_the_accounts_page_shows_it_with_its_numbers(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    sweep_three_times(sandbox, store, clock)
    now = clock()
    listed = queries.accounts_page(store, 1, 500, now, UTC).items
    busiest = max(listed, key=lambda a: a.numbers)
    one = queries.account(store, busiest.account_id, now, UTC)
    assert one == busiest
    assert one.rental and one.due
    numbers = queries.account_numbers(store, busiest.account_id, 1, 500)
    assert numbers.total == busiest.numbers == len(numbers.items)
    assert [n["e164"] for n in numbers.items] == sorted(n["e164"] for n in numbers.items)
    assert queries.account(store, "nobody", now, UTC) is None
    assert queries.account_numbers(store, "nobody", 1, 10).total == 0
    store.add_silence("*", now + timedelta(days=1), "x", now, account_id=busiest.account_id)
    hushed = queries.account(store, busiest.account_id, now, UTC)
    assert hushed is not None
    assert hushed.open_findings == 0
    assert hushed.silenced_findings == busiest.open_findings + busiest.silenced_findings


def sweep_then_partly(sandbox: Sandbox, store: Store, clock: FakeClock) -> tuple[str, int]:
    """A complete sweep, then a partial one (an unreadable item) that read a raised fee and a
    released number of one account: the account's id and the unreadable item's index."""
    settings = make_settings(sandbox, store.url)
    assert run_cycle(settings, store, RecordingNotifier(), clock=clock).ok
    active = [
        i
        for i in range(sandbox.inventory.total)
        if sandbox.inventory.item(i)["status"] == "active"
        and sandbox.inventory.item(i)["monthly_fee"] is not None
    ]
    account = next(
        a
        for a in (sandbox.inventory.item(i)["account_id"] for i in active)
        if sum(sandbox.inventory.item(i)["account_id"] == a for i in active) >= 2
    )
    fee, status = [i for i in active if sandbox.inventory.item(i)["account_id"] == account][:2]
    sandbox.inventory.update(fee, monthly_fee="5000")
    sandbox.inventory.update(status, status="released")
    unreadable = next(i for i in range(sandbox.inventory.total) if i not in (fee, status))
    sandbox.inventory.update(unreadable, id=None)
    clock.advance(days=7)
    outcome = run_cycle(settings, store, RecordingNotifier(), clock=clock)
    assert outcome.ok and outcome.partial
    return str(account), unreadable


def test_accounts_after_a_partial_sweep_are_the_last_complete_sweeps(
    sandbox: Sandbox, store: Store, clock: FakeClock
) -> None:
    """A partial sweep is never a state of the inventory: the accounts page, one account and its
    numbers say what `costs`, `costs --due-within` and `inventory` say, not what it read."""
    account, unreadable = sweep_then_partly(sandbox, store, clock)
    now = clock()
    costs = reports.costs(store.engine)
    inventory = reports.inventory(store.engine)
    assert costs.sweep.id == inventory.sweep.id == 1
    rental: dict[str, dict[str, Decimal]] = defaultdict(dict)
    active: dict[str, int] = defaultdict(int)
    for line in costs.rows:
        active[line.account_id] += line.active_numbers
        if line.active_numbers > line.unpriced:
            rental[line.account_id][line.currency] = line.monthly_rental
    numbers: dict[str, list[str]] = defaultdict(list)
    for row in inventory.rows:
        numbers[row.account_id].append(row.e164)
    page = queries.accounts_page(store, 1, 500, now, UTC)
    assert {i.account_id: i.rental for i in page.items if i.rental} == rental
    assert {i.account_id: i.active for i in page.items if i.active} == active
    assert {i.account_id: i.numbers for i in page.items if i.numbers} == {
        a: len(n) for a, n in numbers.items()
    }
    window = reports.DueWindow.ahead(now, timedelta(days=30), UTC)
    due = reports.due(store.engine, window=window)
    assert page.due[30] == {t.currency: t.amount_due for t in due.totals}
    one = queries.account(store, account, now, UTC)
    assert one is not None and one.rental == rental[account] and one.active == active[account]
    listed = queries.account_numbers(store, account, 1, 500).items
    assert [n["e164"] for n in listed] == sorted(numbers[account])
    as_swept = {r.e164: (r.status, r.monthly_fee) for r in inventory.rows}
    assert {n["e164"]: (n["status"], n["monthly_fee"]) for n in listed} == {
        e: as_swept[e] for e in numbers[account]
    }
    with store.connect() as conn:
        assert inventory_sweep(conn) == costs.sweep.id
    # Once a complete sweep has read them, the changes are the inventory (its current rows).
    sandbox.inventory.update(unreadable, id=f"readable-{unreadable}")
    clock.advance(days=7)
    assert run_cycle(make_settings(sandbox, store.url), store, RecordingNotifier(), clock=clock).ok
    with store.connect() as conn:
        assert inventory_sweep(conn) is None
    again = queries.account(store, account, clock(), UTC)
    assert again is not None and again.active == active[account] - 1
    assert again.rental != rental[account]
