"""``did-monitor demo``: the whole pipeline against the bundled sandbox, nothing to configure."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from monitor.clock import Clock
from monitor.config import (
    AvailabilityConfig,
    AvailabilityWatch,
    ChannelConfig,
    DatabaseConfig,
    RulesConfig,
    Settings,
    VobizConfig,
)
from monitor.display import print_findings, print_report_table
from monitor.pipeline import run_cycle
from monitor.render import tty
from monitor.reports import COST_FIELDS, costs
from monitor.sandbox import Sandbox
from monitor.store import Store
from monitor.testing import RecordingNotifier


def run_demo(*, numbers: int, seed: int, db_path: Path, console: Console, clock: Clock) -> None:
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
            rules=RulesConfig(
                low_availability=AvailabilityConfig(
                    watch=(
                        AvailabilityWatch(country="IN", region="Maharashtra", min_available=10),
                        AvailabilityWatch(country="US", region="CA", min_available=10),
                    )
                )
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
    rows = store.findings(clock())
    by_rule = Counter(r["rule"] for r in rows)
    summary = ", ".join(f"{rule}: {n}" for rule, n in sorted(by_rule.items())) or "none"
    console.print(f"[bold]3.[/] rules found {len(rows)} open finding(s) — {summary}")
    first_each: dict[str, dict[str, object]] = {}
    for row in rows:
        first_each.setdefault(row["rule"], row)
    console.print("one finding of each rule (did-monitor findings shows them all):")
    print_findings(list(first_each.values()), compact=True)
    report = costs(store.engine)
    console.print(
        f"[bold]4.[/] what to bill each customer for numbers this month "
        f"(did-monitor costs; {len(report.rows)} invoice line(s)):"
    )
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
    console.print(
        f"\nThe database is {db_path}. Explore it with, e.g.:\n"
        f"  DID_MONITOR__DATABASE__URL=sqlite:///{db_path} did-monitor findings --json\n"
        f"  DID_MONITOR__DATABASE__URL=sqlite:///{db_path} did-monitor inventory --status active\n"
        "Next: copy config.example.toml to config.toml, set VOBIZ_AUTH_ID/VOBIZ_AUTH_TOKEN, "
        "add a channel, and run `did-monitor sweep`."
    )
    store.dispose()
