"""``did-monitor demo``: the whole pipeline against the bundled sandbox, nothing to configure.

By default a page that teaches: what was found (counts by severity, the most urgent few, the
rental per currency), how to see the same data on the dashboard, and what to do next. With
``--all``: every finding, the invoice lines and the whole alert digest as well."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from monitor.clock import Clock
from monitor.config import ChannelConfig, DatabaseConfig, RulesConfig, Settings, VobizConfig
from monitor.display import print_findings, print_report_table
from monitor.findings import FindingView, number_text
from monitor.pipeline import run_cycle
from monitor.reports import COST_FIELDS, costs
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier
from monitor.vocab import SEVERITIES, money_list, shade, tty

TOP = 5  # findings shown in the summary
DIGEST_LINES = 4  # of the digest's body
DASHBOARD = "127.0.0.1:8080"


def run_demo(
    *,
    numbers: int,
    seed: int,
    db_path: Path,
    console: Console,
    clock: Clock,
    show_all: bool = False,
) -> None:
    db_path = db_path.resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with Sandbox(numbers=numbers, seed=seed, now=clock()).start() as box:
        console.print(
            f"[bold]1.[/] sandbox Partner API on {box.url} serving {numbers} numbers (seed {seed})"
        )
        settings = Settings(
            vobiz=VobizConfig(base_url=box.url, auth_id=box.auth_id, auth_token=box.auth_token),
            database=DatabaseConfig(url=f"sqlite:///{db_path}"),
            # The optional availability watch, on two places, to show it at work.
            rules=RulesConfig.model_validate(
                {
                    "low_availability": {
                        "watch": [
                            {"country": "IN", "region": "Maharashtra", "min_available": 10},
                            {"country": "US", "region": "CA", "min_available": 10},
                        ]
                    }
                }
            ),
            channels=(
                ChannelConfig(name="preview", url="json://localhost/preview", format="markdown"),
            ),
        )
        store = Store(settings.database.url)
        store.migrate()
        notifier = RecordingNotifier()
        outcome = run_cycle(settings, store, notifier, trigger="demo", clock=clock)
    c = outcome.counts
    if not outcome.ok:
        console.print(f"[red]the demo sweep failed: {tty(outcome.error or '')}[/]")
        raise SystemExit(1)
    console.print(
        f"[bold]2.[/] swept {c.numbers_seen} numbers in {c.pages} pages ({c.requests} requests) "
        f"in {outcome.duration:.2f}s into {db_path}"
    )
    rows = store.findings(clock())  # most urgent first
    report = costs(store.engine)
    store.dispose()
    _summary(console, rows, report)
    if show_all:
        _everything(console, rows, report, notifier)
    else:
        _digest_excerpt(console, notifier)
    url = f"sqlite:///{db_path}"
    console.print(
        f"\n[bold]See it on the dashboard[/] (run with dashboard.listen set; ^C stops it):\n"
        f"  DID_MONITOR__DATABASE__URL={url} DID_MONITOR__DASHBOARD__LISTEN={DASHBOARD} "
        f"did-monitor run\n"
        f"  then open http://{DASHBOARD}/   (in a config file: {escape('[dashboard]')} "
        f'listen = "{DASHBOARD}")\n'
        "\n[bold]Next[/], with your Vobiz account:\n"
        f"  cp config.example.toml config.toml   # add a {escape('[[channels]]')}: Slack, "
        "email, any Apprise URL\n"
        "  export VOBIZ_AUTH_ID=... VOBIZ_AUTH_TOKEN=...\n"
        "  did-monitor check-config && did-monitor test-alert   # one test message per channel\n"
        "  did-monitor run                      # sweeps weekly, alerts, serves the dashboard"
    )


def _summary(console: Console, rows: list[FindingView], report: Any) -> None:
    by_severity = Counter(r.severity for r in rows)
    counts = ", ".join(f"{by_severity[s]} {s}" for s in SEVERITIES if by_severity[s])
    console.print(f"[bold]3.[/] the rules found {len(rows)} open findings: {counts or 'none'}")
    if rows:
        console.print("   most urgent first:")
    for r in rows[:TOP]:
        what = tty(_subject(r))
        console.print(
            f"   [{shade(r.severity).terminal}]{r.severity:<8}[/] {tty(r.rule):<20} {what}: "
            f"{tty(r.message)}",
            overflow="ellipsis",
            no_wrap=True,
        )
    if len(rows) > TOP:
        console.print(f"   … and {len(rows) - TOP} more (`did-monitor demo --all` lists them)")
        by_rule = Counter(r.rule for r in rows)
        rules = ", ".join(f"{tty(rule)} {n}" for rule, n in by_rule.most_common())
        console.print(f"   by rule: {rules}")
    rental = money_list({t.currency: t.monthly_rental for t in report.totals})
    console.print(
        f"[bold]4.[/] monthly rental of active numbers: {rental or 'none'} "
        "(per customer: did-monitor costs)"
    )


def _subject(row: FindingView) -> str:
    """A finding's number and customer, without saying the customer twice."""
    name = row.account_name or row.account_id
    if row.has_number:
        return f"{row.e164} ({name})" if name else row.e164
    return number_text(row) or "—"


def _digest_excerpt(console: Console, notifier: RecordingNotifier) -> None:
    if not notifier.sent:
        console.print("[bold]5.[/] the alert digest: nothing to announce")
        return
    msg = notifier.sent[0]
    lines = msg.body.splitlines()
    console.print(
        f"[bold]5.[/] the alert digest a chat channel would get, in Markdown "
        f"(its first lines; --all prints all {len(lines)}):"
    )
    console.print(f"   title: {tty(msg.title)}")
    for line in lines[:DIGEST_LINES]:
        console.print(f"   {tty(line)}", overflow="ellipsis", no_wrap=True)
    if len(lines) > DIGEST_LINES:
        console.print("   …")


def _everything(
    console: Console, rows: list[FindingView], report: Any, notifier: RecordingNotifier
) -> None:
    print_findings(rows, compact=True)
    print_report_table(
        console,
        [r.as_dict() for r in report.rows],
        COST_FIELDS,
        f"monthly rental of active numbers, sweep {report.sweep.id}",
        right=("active_numbers", "monthly_rental", "unpriced"),
        footer=[t.as_dict() for t in report.totals],
    )
    console.print("[bold]5.[/] the alert digest that would be sent (Markdown, as to Slack):")
    for msg in notifier.sent:
        console.print(Rule(tty(msg.title), align="left"))
        for line in msg.body.splitlines():
            console.print(tty(line), soft_wrap=True)
        console.print(Rule())
    if not notifier.sent:
        console.print("(nothing to announce)")
