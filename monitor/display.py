"""Terminal output for the CLI and the demo: rich consoles, finding tables, sweep outcomes and
the JSON shape of a finding. Printing only: no command logic, no database.

Every write passes the secret scrubber. Tables keep key columns (numbers, ids, severities)
whole: Rich squeezes every column of a table wider than the terminal, cutting
``+916085945572`` to ``+91608594557…``; here key columns are sized to their longest value and
never wrap, only free text (messages, reasons) folds, and when even that does not fit the table
is printed wider than the terminal (lines wrap on screen, values stay whole). Piped output is
never squeezed to 80 columns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from monitor import formats
from monitor.redact import ScrubbingStream
from monitor.render import tty

if TYPE_CHECKING:  # only the type: importing the pipeline would slow every CLI command
    from monitor.alerts import Preview
    from monitor.pipeline import SweepOutcome


class ScrubbedConsole(Console):
    """A rich console whose every write passes the secret scrubber."""

    @property
    def file(self) -> IO[str]:
        return cast(IO[str], ScrubbingStream(super().file))

    @file.setter
    def file(self, new_file: IO[str]) -> None:
        self._file = new_file


out = ScrubbedConsole(highlight=False, soft_wrap=True)
err = ScrubbedConsole(stderr=True, highlight=False, soft_wrap=True)
FREE_TEXT_MIN = 24  # a folded message column narrower than this is unreadable


def stdout() -> ScrubbingStream:
    """Standard output for machine-readable text (JSON), scrubbed like everything else."""
    return ScrubbingStream(sys.stdout)


def iso(value: datetime | None) -> str | None:
    """The one time format of JSON output: ISO 8601 in UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


@dataclass(frozen=True)
class Column:
    header: str
    free_text: bool = False  # folds over several lines; every other column keeps its width
    right: bool = False  # right-justified (amounts, counts)


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    *,
    title: str | None = None,
    footer: Sequence[Sequence[str | Text]] = (),
) -> None:
    """Print ``rows`` (cells as markup strings or ``Text``) with key columns kept whole;
    ``footer`` rows (e.g. totals) come after a line, in bold.

    Not on a terminal (a pipe, a file), the table is as wide as its longest values: nothing
    folds. On a terminal, key columns never wrap and are as wide as their longest value; when
    the table is wider than the terminal only free text folds (down to ``FREE_TEXT_MIN``), and
    past that the table is printed wider than the terminal rather than cutting a value.
    """
    widths = [Text.from_markup(c.header).cell_len for c in columns]
    for row in [*rows, *footer]:
        for i, cell in enumerate(row):
            text = cell if isinstance(cell, Text) else Text.from_markup(cell)
            widths[i] = max(widths[i], text.cell_len)
    table = Table(title=title, title_justify="left")
    needed = 1
    for col, width in zip(columns, widths, strict=True):
        justify: Literal["left", "right"] = "right" if col.right else "left"
        if col.free_text:
            table.add_column(
                col.header, overflow="fold", min_width=min(width, FREE_TEXT_MIN), justify=justify
            )
            needed += min(width, FREE_TEXT_MIN) + 3
        else:
            table.add_column(col.header, no_wrap=True, min_width=width, justify=justify)
            needed += width + 3
    for row in rows:
        table.add_row(*row)
    if footer and rows:
        table.add_section()
    for row in footer:
        table.add_row(*row, style="bold")
    # Rich fits a table to the console's width (80 columns for a pipe) by squeezing every
    # column, key columns included, down to nothing; a table given its own width is not.
    natural = Measurement.get(console, console.options.update_width(1 << 20), table).maximum
    if not console.is_terminal:
        table.width = natural
    elif natural > console.width:
        table.width = max(console.width, needed)
    console.print(table, crop=False)


# --- sweep ------------------------------------------------------------------------------------


def print_outcome(outcome: SweepOutcome) -> None:
    c = outcome.counts
    if outcome.ok:
        word = "PARTIAL" if outcome.partial else "complete"
        out.print(
            f"sweep {outcome.sweep_id} {word}: {c.numbers_seen} numbers in {c.pages} pages "
            f"({c.requests} requests, {c.retries} retries) in {outcome.duration:.1f}s; "
            f"{c.versions_written} changed, {c.numbers_gone} gone; findings: "
            f"{c.findings_opened} opened, {c.findings_resolved} resolved; "
            f"{outcome.digests} digest(s)"
        )
        if outcome.partial:
            err.print(f"[yellow]warning:[/] sweep {outcome.sweep_id}: {tty(outcome.partial)}")
    else:
        err.print(
            f"[bold red]error:[/] sweep {outcome.sweep_id} failed: {tty(outcome.error or '')}"
        )
        queued = outcome.failure_alerts
        if queued is None:
            told = "the 'sweep failed' alert could not be queued (see the log)"
        elif queued == 0:
            told = "no channel takes service alerts, so nobody else was told"
        else:
            told = f"a 'sweep failed' alert was queued for {queued} channel(s)"
        err.print(f"  no finding was resolved; {told}")
    for d in outcome.deliveries:
        mark = "[green]sent[/]" if d.ok else f"[red]failed[/]: {tty(d.error or '')}"
        out.print(f"  {d.kind} → {tty(d.channel)}: {mark}")


def finding_json(row: dict[str, Any], *, raw_times: bool = False) -> dict[str, Any]:
    """One finding as JSON-ready data; ``raw_times`` leaves datetimes for an encoder that writes
    them itself (the CLI's streaming one, with ``iso``)."""
    to_text: Callable[[datetime | None], Any] = (lambda v: v) if raw_times else iso
    return {
        "id": row["id"],
        "rule": row["rule"],
        "severity": row["severity"],
        "e164": row["e164"],
        "number_id": row["number_id"],
        "account_id": row["account_id"],
        "state": row["state"],
        "first_seen": to_text(row["first_seen"]),
        "last_seen": to_text(row["last_seen"]),
        "resolved_at": to_text(row["resolved_at"]),
        "message": row["message"],
        "due_at": to_text(row["due_at"]),
        "tier": row["tier"],
        "tags": list(row["tags"] or []),
        "monthly_fee": None if row["monthly_fee"] is None else str(row["monthly_fee"].normalize()),
        "currency": row["currency"],
    }


def print_findings(rows: list[dict[str, Any]], *, compact: bool = False) -> None:
    if not rows:
        out.print("no findings")
        return
    names = ["rule", "severity", "number", "account"]
    names += [] if compact else ["state", "first seen"]
    columns = [*(Column(n) for n in names), Column("message", free_text=True)]
    colour = {"critical": "red", "warning": "yellow", "info": "blue"}
    cells_of_rows = []
    for r in rows:
        sev = r["severity"]
        cells = [
            r["rule"],
            f"[{colour.get(sev, 'white')}]{sev}[/]",
            tty(r["e164"] or ""),
            tty(r["account_id"] or ""),
        ]
        if not compact:
            cells += [r["state"], r["first_seen"].strftime("%Y-%m-%d")]
        cells_of_rows.append([*cells, tty(r["message"])])
    print_table(out, columns, cells_of_rows, title=f"{len(rows)} finding(s)")


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


# --- reports ----------------------------------------------------------------------------------


def when_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def print_report(
    report: Any,
    fields: tuple[str, ...],
    fmt: str | None,
    title: str,
    dates: tuple[str, ...] = (),
    **kw: Any,
) -> None:
    """Print a ``monitor.reports.Report`` as a table, CSV (rows only) or JSON (with sweeps)."""
    rows = [r.as_dict() for r in report.rows]
    chosen = formats.pick(fmt, out.is_terminal)
    fc = report.forecast
    if chosen == "csv":
        click.echo(formats.csv_text(rows, fields), nl=False)
    elif chosen == "json":
        doc: dict[str, Any] = {"report": report.name, "sweep": report.sweep.as_dict()}
        if report.since is not None:
            doc["since"] = report.since.as_dict()
        doc["rows"] = rows
        if report.name in ("costs", "due"):
            doc["totals"] = [t.as_dict() for t in report.totals]
        if fc is not None:
            doc["window"] = {"from": iso(fc.start), "to": iso(fc.end)}
            doc["undated"] = fc.undated
        click.echo(formats.json_text(doc), nl=False)
    elif not rows:
        out.print(f"{title}: nothing to show")
    else:
        for row in rows:  # a table shows days; CSV and JSON keep the exact times
            for key in dates:
                row[key] = row[key][:10] if row.get(key) else row.get(key)
        footer = [t.as_dict() for t in report.totals]
        print_report_table(out, rows, fields, title, footer=footer, **kw)
    note = fc.undated_note() if fc is not None else None
    if note and chosen != "json":  # CSV keeps its rows alone on stdout
        click.echo(tty(note), err=chosen == "csv")


def print_report_table(
    console: Console,
    rows: Sequence[dict[str, Any]],
    fields: Sequence[str],
    title: str,
    *,
    headers: dict[str, str] | None = None,
    right: Sequence[str] = (),
    footer: Sequence[dict[str, Any]] = (),
) -> None:
    """Report rows as a table whose key columns (numbers, ids, amounts) are never cut."""
    columns = [
        Column(
            (headers or {}).get(f, f.replace("_", " ")),
            free_text=f in formats.WRAP,
            right=f in right,
        )
        for f in fields
    ]
    print_table(
        console,
        columns,
        [[formats.shown(r.get(f)) for f in fields] for r in rows],
        title=tty(title),
        footer=[[formats.shown(r.get(f)) for f in fields] for r in footer],
    )
