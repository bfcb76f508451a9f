"""Terminal output for the CLI and the demo: rich consoles, finding tables, sweep outcomes and
the JSON shape of a finding. Printing only: no command logic, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from monitor.render import tty

if TYPE_CHECKING:  # only the type: importing the pipeline would slow every CLI command
    from monitor.alerts import Preview
    from monitor.pipeline import SweepOutcome

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


# --- sweep ------------------------------------------------------------------------------------


def print_outcome(outcome: SweepOutcome) -> None:
    c = outcome.counts
    if outcome.ok:
        out.print(
            f"sweep {outcome.sweep_id} complete: {c.numbers_seen} numbers in {c.pages} pages "
            f"({c.requests} requests, {c.retries} retries) in {outcome.duration:.1f}s; "
            f"{c.versions_written} changed, {c.numbers_gone} gone; findings: "
            f"{c.findings_opened} opened, {c.findings_resolved} resolved; "
            f"{outcome.digests} digest(s)"
        )
    else:
        err.print(
            f"[bold red]error:[/] sweep {outcome.sweep_id} failed: {tty(outcome.error or '')}"
        )
        err.print("  no finding was resolved; a 'sweep failed' alert was queued for every channel")
    for d in outcome.deliveries:
        mark = "[green]sent[/]" if d.ok else f"[red]failed[/]: {tty(d.error or '')}"
        out.print(f"  {d.kind} → {tty(d.channel)}: {mark}")


def finding_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "rule": row["rule"],
        "severity": row["severity"],
        "e164": row["e164"],
        "number_id": row["number_id"],
        "account_id": row["account_id"],
        "state": row["state"],
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "resolved_at": iso(row["resolved_at"]),
        "message": row["message"],
        "due_at": iso(row["due_at"]),
        "tier": row["tier"],
        "tags": list(row["tags"] or []),
        "monthly_fee": None if row["monthly_fee"] is None else str(row["monthly_fee"].normalize()),
        "currency": row["currency"],
    }


def print_findings(
    rows: list[dict[str, Any]], limit: int | None = None, *, compact: bool = False
) -> None:
    if not rows:
        out.print("no findings")
        return
    table = Table(title=f"{len(rows)} finding(s)", title_justify="left")
    columns = ["rule", "severity", "number", "account"]
    columns += ["message"] if compact else ["state", "first seen", "message"]
    for col in columns:
        table.add_column(col, no_wrap=col != "message", overflow="fold")
    colour = {"critical": "red", "warning": "yellow", "info": "blue"}
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        sev = r["severity"]
        cells = [
            r["rule"],
            f"[{colour.get(sev, 'white')}]{sev}[/]",
            tty(r["e164"] or ""),
            tty(r["account_id"] or ""),
        ]
        if not compact:
            cells += [r["state"], r["first_seen"].strftime("%Y-%m-%d")]
        table.add_row(*cells, tty(r["message"]))
    out.print(table)
    if limit is not None and len(rows) > limit:
        out.print(f"… and {len(rows) - limit} more (did-monitor findings shows them all)")


# --- digests ----------------------------------------------------------------------------------


def print_preview(item: Preview, fmt: str | None) -> None:
    """A channel's digest preview: the body on stdout as it would be sent (raw, for a file or a
    pipe), what it is on stderr."""
    name = tty(item.channel.name)
    msg, row = item.message, item.stored
    if msg is None:
        if row is None:
            err.print(f"[bold]── {name}:[/] nothing to announce, and no digest sent yet")
            return
        err.print(
            f"[bold]── {name}:[/] nothing new to announce; its last digest "
            f"({row['body_format']}, {iso(row['created_at'])}, {row['status']}):"
        )
        err.print(f"   title: {tty(row['title'])}")
        click.echo(row["body"])
        return
    blocks = msg.parts.get("slack")
    shown = "Slack Block Kit JSON" if blocks and fmt is None else msg.body_format
    err.print(f"[bold]── {name}:[/] next digest ({shown})")
    err.print(f"   title: {tty(msg.title)}")
    for att in msg.parts.get("attachments", []):
        rows = max(att["content"].count("\n") - 1, 0)
        err.print(f"   attachment: {tty(att['name'])} ({rows} findings)")
    if blocks and fmt is None:
        click.echo(json.dumps(blocks, indent=2, ensure_ascii=False))
    else:
        click.echo(msg.body)
