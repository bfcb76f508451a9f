"""The one finding view: one stored finding, read by the one query (``store.finding_query``),
drawn through every output (the CLI table, ``--json``, the CSV attachment, email, Slack, chat
and the dashboard) tells the same money, dates and severity in each."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from rich.console import Console
from starlette.testclient import TestClient

from monitor import display, vocab
from monitor.alerts.chat import render_body
from monitor.alerts.digest import Digest
from monitor.alerts.email import findings_csv, render_document
from monitor.alerts.slack import build
from monitor.config import ChannelConfig, RulesConfig
from monitor.findings import FindingView, as_json, view
from monitor.model import parse_number
from monitor.pipeline import run_cycle
from monitor.rules import RuleContext, evaluate
from monitor.sandbox import Sandbox
from monitor.store import ACCOUNTS, FINDINGS, Store
from monitor.testing import RecordingNotifier
from monitor.web.app import build_app
from monitor.web.views import Dashboard
from tests.conftest import FakeClock, make_settings

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
DUE = datetime(2026, 12, 12, tzinfo=UTC)
FIRST_SEEN = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


@pytest.fixture
def stored(sqlite_store: Store) -> FindingView:
    """One critical finding about a number of a named customer, rental 100 "usd" a month, due
    on 2026-12-12, stored as a sweep stores it and read back through the one query."""
    sweep = sqlite_store.start_sweep(FIRST_SEEN, "manual")
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.insert(ACCOUNTS).values(
                account_id="MA_ACME",
                name="Acme Telecom",
                status="active",
                content_hash="x",
                raw={},
                valid_from=sweep,
            )
        )
        conn.execute(
            sa.insert(FINDINGS).values(
                rule="billing_due",
                subject="PN_1",
                number_id="PN_1",
                e164="+14155550100",
                account_id="MA_ACME",
                severity="critical",
                state="open",
                message="next billing on 2026-12-12",
                due_at=DUE,
                tier=7,
                monthly_fee=Decimal("100"),
                currency="usd",
                tags=["gold"],
                first_seen=FIRST_SEEN,
                last_seen=FIRST_SEEN,
                opened_sweep_id=sweep,
            )
        )
    (finding,) = sqlite_store.findings(NOW)
    return finding


def test_the_view_reads_the_stored_finding(stored: FindingView) -> None:
    assert stored.account_name == "Acme Telecom" and stored.state == "open"
    assert stored.monthly_fee == Decimal("100") and stored.due_at == DUE
    assert stored.tags == ("gold",) and stored.has_number and stored.subject == "PN_1"


def test_the_same_money_dates_and_severity_in_every_output(
    stored: FindingView, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    money, day = "100.00", "2026-12-12"  # vocab.money_text and vocab.day_text
    assert vocab.money_text(stored.monthly_fee or Decimal(0), stored.currency) == "100.00 USD"
    digest = Digest(new=[stored], at_risk={"USD": Decimal("100")}, swept_at=NOW)

    console = Console(file=io.StringIO(), width=250, color_system=None)
    monkeypatch.setattr(display, "out", console)
    display.print_findings([stored], only=["severity", "number", "account", "due", "message"])
    table = console.file.getvalue()  # type: ignore[attr-defined]

    document = as_json(stored)
    csv_text = findings_csv(digest)
    email = render_document(digest, "html").body
    slack = json.dumps(build(digest, "title"), ensure_ascii=False)
    chat = render_body(digest, "markdown")
    dashboard = _dashboard_page(sqlite_store)

    outputs = {
        "table": table,
        "json": json.dumps(document),
        "csv": csv_text,
        "email": email,
        "slack": slack,
        "chat": chat,
        "dashboard": dashboard,
    }
    # Severity: named the same everywhere, and in one palette's colour where coloured.
    for name, text in outputs.items():
        assert "critical" in text.lower(), name
    for name in ("email", "slack"):
        assert vocab.PALETTE["critical"].colour in outputs[name], name
    assert vocab.PALETTE["warning"].colour not in outputs["slack"]
    # Money: exact, two decimals, never an exponent or a different rounding.
    assert document["monthly_fee"] == money and f",{money}," in csv_text
    for name in ("email", "slack", "chat"):
        assert f"{money} USD" in outputs[name], name
    for name, text in outputs.items():
        assert "1E+2" not in text and "100.0 " not in text, name
    # Dates: the due day in every output that shows it, in the one day form.
    assert document["due_at"] == "2026-12-12T00:00:00Z"
    for name in ("table", "csv", "email", "slack", "dashboard"):
        assert day in outputs[name], name
    assert "2026-12-12 00:00 UTC" in dashboard  # vocab.when_text
    for name, text in outputs.items():
        assert not re.search(r"\b12/12/2026\b|\b2026-12-12T00:00:00(?!Z)", text), name


KOLKATA = ZoneInfo("Asia/Kolkata")


@pytest.fixture
def kolkata_stored(sqlite_store: Store) -> FindingView:
    """A billing_due finding as the rule writes it with ``rules.timezone = "Asia/Kolkata"``:
    billing at 20:00 UTC on 2026-12-10, which is 01:30 on the 11th there; at ``NOW`` (15:00 on
    the 5th there) that is 6 days away, while UTC's days would say the 10th and 5 days."""
    billing = datetime(2026, 12, 10, 20, tzinfo=UTC)
    rec = parse_number(
        {"id": "PN_9", "e164": "+919800000009", "account_id": "MA_ACME", "status": "active"}
        | {"application_id": "app", "next_billing_date": vocab.iso(billing)}
    )
    assert rec is not None
    ctx = RuleContext(now=NOW, config=RulesConfig(timezone="Asia/Kolkata"), tz=KOLKATA)
    (draft,) = [d for d in evaluate([rec], ctx) if d.rule == "billing_due"]
    assert draft.message == "next billing in 6 day(s), on 2026-12-11" and draft.due_at == billing
    sweep = sqlite_store.start_sweep(FIRST_SEEN, "manual")
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.insert(FINDINGS).values(
                rule=draft.rule,
                subject=draft.subject,
                number_id=draft.number_id,
                e164=draft.e164,
                account_id=draft.account_id,
                severity="critical",
                state="open",
                message=draft.message,
                due_at=draft.due_at,
                tier=draft.tier,
                tags=[],
                first_seen=FIRST_SEEN,
                last_seen=FIRST_SEEN,
                opened_sweep_id=sweep,
            )
        )
    (finding,) = sqlite_store.findings(NOW)
    return finding


def test_every_output_counts_days_in_the_rules_time_zone(
    kolkata_stored: FindingView, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: with ``rules.timezone`` east of UTC the finding said "in 6 day(s), on
    2026-12-11" while the email, its CSV, Slack and the findings table said the 10th, 5 days
    left (UTC's days). Every output counts the rules' days now."""
    stored = kolkata_stored
    digest = Digest(new=[stored], swept_at=NOW, tz=KOLKATA)
    console = Console(file=io.StringIO(), width=250, color_system=None)
    monkeypatch.setattr(display, "out", console)
    display.print_findings([stored], only=["number", "due", "message"], tz=KOLKATA)
    table = console.file.getvalue()  # type: ignore[attr-defined]
    csv_text = findings_csv(digest)
    outputs = {
        "table": table,
        "csv": csv_text,
        "email": render_document(digest, "html").body,
        "text email": render_document(digest, "text").body,
        "slack": json.dumps(build(digest, "title"), ensure_ascii=False),
        "chat": render_body(digest, "markdown"),
    }
    for name, text in outputs.items():
        assert "next billing in 6 day(s), on 2026-12-11" in text, name
        for wrong in ("2026-12-10", "5 day", "5d left"):
            assert wrong not in text, (name, wrong)
    (row,) = csv.DictReader(io.StringIO(csv_text))
    assert row["due_date"] == "2026-12-11" and row["days_left"] == "6"
    assert "2026-12-11 (6d left)" in outputs["slack"]
    for name in ("email", "text email"):
        assert "2026-12-11" in outputs[name].replace(stored.message, ""), name
        assert "6 days left" in outputs[name], name
    assert re.search(r"2026-12-11 \W+ next billing in 6 day", table)
    # For machines, the exact moment in UTC: ``--json`` (and the dashboard names it UTC).
    assert as_json(stored)["due_at"] == "2026-12-10T20:00:00Z"
    dashboard = _dashboard_page(sqlite_store, rules={"timezone": "Asia/Kolkata"})
    assert stored.message in dashboard and "2026-12-10 20:00 UTC" in dashboard


def test_a_digest_sent_after_a_sweep_counts_days_in_the_rules_time_zone(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    """Through a sweep: the digest the pipeline composes is told the rules' time zone."""
    number_id = next(iter(sandbox.inventory.ids()))
    item = sandbox.inventory.update(number_id, next_billing_date="2026-11-24T20:00:00Z")
    e164 = item["e164"]
    notifier = RecordingNotifier()
    channels = (
        ChannelConfig(name="slack", url="slack://T000AAAA/B000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX"),
    )
    settings = make_settings(
        sandbox, sqlite_store.url, channels, rules={"timezone": "Asia/Kolkata"}
    )
    run_cycle(settings, sqlite_store, notifier, clock=clock)  # at 2026-11-23 12:00 UTC
    (sent,) = notifier.sent
    lines = [
        block["text"]["text"]
        for block in sent.parts["slack"]["blocks"]
        if "text" in block and "billing_due" in block["text"]["text"]
    ]
    (line,) = [
        part
        for text in lines
        for part in text.split("\n")
        if e164 in part and "billing_due" in part
    ]
    assert "next billing in 2 day(s), on 2026-11-25 · 2026-11-25 (2d left)" in line


def test_json_money_is_plain_text_not_an_exponent(stored: FindingView) -> None:
    """The bug the issue found: a fee of 100 printed as "1E+2"."""
    assert as_json(stored)["monthly_fee"] == "100.00"


def test_silenced_and_last_seen_are_decided_by_the_query(sqlite_store: Store) -> None:
    sweep = sqlite_store.start_sweep(FIRST_SEEN, "manual")
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.insert(FINDINGS).values(
                rule="blocked",
                subject="PN_2",
                number_id="PN_2",
                e164="+14155550101",
                account_id="MA_X",
                severity="warning",
                state="open",
                message="blocked",
                tags=[],
                first_seen=FIRST_SEEN,
                last_seen=FIRST_SEEN,
                opened_sweep_id=sweep,
            )
        )
        conn.execute(
            sa.update(sa.table("sweeps", sa.column("id"), sa.column("status")))
            .where(sa.column("id") == sweep)
            .values(status="complete")
        )
    later = sqlite_store.start_sweep(FIRST_SEEN + timedelta(days=7), "manual")
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.update(sa.table("sweeps", sa.column("id"), sa.column("status")))
            .where(sa.column("id") == later)
            .values(status="complete")
        )
    (open_,) = sqlite_store.findings(NOW)
    assert open_.last_seen == FIRST_SEEN + timedelta(days=7)  # seen by the last complete sweep
    sqlite_store.add_silence("blocked", NOW + timedelta(days=1), "known", NOW, by="test")
    (hushed,) = sqlite_store.findings(NOW, include_closed=True)
    assert hushed.state == "silenced"
    assert view({**_row(hushed), "silenced": True}).state == "silenced"


def _row(finding: FindingView) -> dict[str, object]:
    return {
        "rule": finding.rule,
        "severity": finding.severity,
        "e164": finding.e164,
        "account_id": finding.account_id,
        "message": finding.message,
        "state": "open",
    }


def _dashboard_page(store: Store, **sections: object) -> str:
    settings = make_settings(None, store.url, **sections)
    app = build_app(
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        registry=CollectorRegistry(),
        dashboard=Dashboard(store, settings, clock=FakeClock(NOW)),
    )
    with TestClient(app) as client:
        page = client.get("/findings")
        assert page.status_code == 200
        palette = client.get("/static/palette.css")
        assert palette.status_code == 200
        assert vocab.PALETTE["critical"].colour in palette.text
        return page.text
