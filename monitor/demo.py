"""``did-monitor demo``: the whole pipeline against the bundled sandbox, nothing to configure.

By default a page that teaches: what was found (counts by severity, the most urgent few, the
rental per currency), how to see the same data on the dashboard, and what to do next. With
``--all``: every finding, the invoice lines and the whole alert digest as well."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.rule import Rule

from monitor.clock import Clock
from monitor.config import Settings
from monitor.display import out, print_findings, print_report, severity_cell
from monitor.findings import FindingView, number_text
from monitor.pipeline import run_cycle
from monitor.reports import Report, costs
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from monitor.vocab import SEVERITIES, money_list, tty

TOP = 5  # findings shown in the summary
DIGEST_LINES = 4  # of the digest's body
DASHBOARD = "127.0.0.1:8080"
WATCH = (("IN", "Maharashtra"), ("US", "CA"))  # the optional availability watch, shown at work


def run_demo(*, numbers: int, seed: int, db_path: Path, clock: Clock, show_all: bool) -> None:
    db_path = db_path.resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with Sandbox(numbers=numbers, seed=seed, now=clock()).start() as box:
        out.print(
            f"[bold]1.[/] sandbox Partner API on {box.url} serving {numbers} numbers (seed {seed})"
        )
        api = {"base_url": box.url, "auth_id": box.auth_id, "auth_token": box.auth_token}
        watch = [{"country": c, "region": r, "min_available": 10} for c, r in WATCH]
        rules = {"low_availability": {"watch": watch}}
        preview = {"name": "preview", "url": "json://localhost/preview", "format": "markdown"}
        database = {"url": f"sqlite:///{db_path}"}
        settings = Settings.model_validate(
            {"vobiz": api, "database": database, "rules": rules, "channels": [preview]}
        )
        store = Store(settings.database.url)
        store.migrate()
        notifier = RecordingNotifier()
        outcome = run_cycle(settings, store, notifier, trigger="demo", clock=clock)
    c = outcome.counts
    if not outcome.ok:
        out.print(f"[red]the demo sweep failed: {tty(outcome.error or '')}[/]")
        raise SystemExit(1)
    out.print(
        f"[bold]2.[/] swept {c.numbers_seen} numbers in {c.pages} pages ({c.requests} requests) "
        f"in {outcome.duration:.2f}s into {tty(db_path)}"
    )
    rows = store.findings(clock())  # most urgent first
    report = costs(store.engine)
    store.dispose()
    _summary(rows, report)
    if show_all:
        print_findings(rows, compact=True)
        print_report(report, "table")
        out.print("[bold]5.[/] the alert digest that would be sent (Markdown, as to Slack):")
        for msg in notifier.sent:
            out.print(Rule(tty(msg.title), align="left"))
            for line in msg.body.splitlines():
                out.print(tty(line))
            out.print(Rule())
        if not notifier.sent:
            out.print("(nothing to announce)")
    elif not notifier.sent:
        out.print("[bold]5.[/] the alert digest: nothing to announce")
    else:
        msg = notifier.sent[0]
        lines = msg.body.splitlines()
        out.print(
            f"[bold]5.[/] the alert digest a chat channel would get, in Markdown "
            f"(its first lines; --all prints all {len(lines)}):"
        )
        out.print(f"   title: {tty(msg.title)}")
        for line in [*lines[:DIGEST_LINES], *(["…"] if len(lines) > DIGEST_LINES else [])]:
            out.print(f"   {tty(line)}", overflow="ellipsis", no_wrap=True)
    out.print(
        f"\n[bold]See it on the dashboard[/] (run with dashboard.listen set; ^C stops it):\n"
        f"  DID_MONITOR__DATABASE__URL={tty(f'sqlite:///{db_path}')} "
        f"DID_MONITOR__DASHBOARD__LISTEN={DASHBOARD} did-monitor run\n"
        f"  then open http://{DASHBOARD}/   (in a config file: {tty('[dashboard]')} "
        f'listen = "{DASHBOARD}")\n'
        "\n[bold]Next[/], with your Vobiz account:\n"
        f"  cp config.example.toml config.toml   # add a {tty('[[channels]]')}: Slack, "
        "email, any Apprise URL\n"
        "  export VOBIZ_AUTH_ID=... VOBIZ_AUTH_TOKEN=...\n"
        "  did-monitor check-config && did-monitor test-alert   # one test message per channel\n"
        "  did-monitor run                      # sweeps weekly, alerts, serves the dashboard"
    )


def _summary(rows: list[FindingView], report: Report) -> None:
    by_severity = Counter(r.severity for r in rows)
    counts = ", ".join(f"{by_severity[s]} {s}" for s in SEVERITIES if by_severity[s])
    out.print(f"[bold]3.[/] the rules found {len(rows)} open findings: {counts or 'none'}")
    if rows:
        out.print("   most urgent first:")
    for r in rows[:TOP]:
        pad = " " * (8 - len(r.severity))
        out.print(
            f"   {severity_cell(r.severity)}{pad} {tty(r.rule):<20} {tty(_subject(r))}: "
            f"{tty(r.message)}",
            overflow="ellipsis",
            no_wrap=True,
        )
    if len(rows) > TOP:
        out.print(f"   … and {len(rows) - TOP} more (`did-monitor demo --all` lists them)")
        by_rule = Counter(r.rule for r in rows)
        out.print(f"   by rule: {', '.join(f'{tty(k)} {n}' for k, n in by_rule.most_common())}")
    rental = money_list({t.currency: t.monthly_rental for t in report.totals})
    out.print(
        f"[bold]4.[/] monthly rental of active numbers: {rental} (per customer: did-monitor costs)"
    )


def _subject(row: FindingView) -> str:
    """A finding's number and customer, without saying the customer twice."""
    name = row.account_name or row.account_id
    if row.has_number:
        return f"{row.e164} ({name})" if name else row.e164
    return number_text(row) or "—"
