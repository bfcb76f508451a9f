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

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from monitor.alerts.outbox import Outbox
from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.findings import FindingView, number_text
from monitor.redact import ScrubbingStream
from monitor.schedule import build_trigger, fire_at_or_after
from monitor.store import Store
from monitor.vocab import csv_cell, day_text, iso, shade, tty

if TYPE_CHECKING:  # only the type: importing the pipeline would slow every CLI command
    from monitor.alerts.plan import Preview
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


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


@dataclass(frozen=True)
class Column:
    header: str
    free_text: bool = False  # folds over several lines; every other column keeps its width
    right: bool = False  # right-justified (amounts, counts)
    key: str = ""  # its name for --columns (default: the header, "_" for spaces)
    # Free text whose first word is a key value (an id before a name, a rule before its
    # message): the column is never narrower than that word, which is never cut.
    key_first: bool = False

    @property
    def name(self) -> str:
        return self.key or self.header.replace(" ", "_")


Cell = str | Text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(cell).plain


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> tuple[int, int]:
    """(natural, least): the table's width with every value on one line, and its width with
    free text folded as far as it may go (key columns and key words are never cut)."""
    natural = least = 1
    for i, col in enumerate(columns):
        texts = [_plain(row[i]) for row in rows]
        header = cell_len(_plain(col.header))
        width = max([header, *(cell_len(line) for t in texts for line in t.splitlines())])
        floor = width
        if col.free_text:
            floor = min(width, FREE_TEXT_MIN)
            if col.key_first:  # as wide as its widest first word
                floor = max([header, *(cell_len(t.split(None, 1)[0]) for t in texts if t.strip())])
        natural += width + 3
        least += floor + 3
    return natural, least


def choose_columns(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    narrow: Sequence[str] = (),
    wide: bool = False,
    only: Sequence[str] | None = None,
    default: Sequence[str] | None = None,
) -> tuple[list[int], list[str]]:
    """Which of ``columns`` to print (their indexes) and which were left out (names).

    ``only`` (``--columns``): those, in that order. Else the ``default`` ones (all if None),
    except on a terminal where they cannot fit even with free text folded: then the ``narrow``
    ones, unless ``wide`` (``--wide``). Piped output keeps every default column."""
    names = [c.name for c in columns]
    shown = [names.index(n) for n in only or default or names]
    if only is not None or wide or not narrow or not console.is_terminal:
        return shown, []
    least = _widths([columns[i] for i in shown], [[r[i] for i in shown] for r in rows])[1]
    if least <= console.width:
        return shown, []
    keep = [names.index(n) for n in narrow]
    return keep, [names[i] for i in shown if i not in keep]


def column_names(
    text: str | None, known: Sequence[str], option: str = "--columns"
) -> list[str] | None:
    """``--columns a,b,c`` read against the ``known`` names; ``ConfigError`` naming the unknown."""
    if text is None:
        return None
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"{option}: unknown column {', '.join(map(repr, unknown))}"
            if unknown
            else f"{option}: no column named",
            hint=f"columns: {', '.join(known)}",
        )
    return names


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
    footer: Sequence[Sequence[Cell]] = (),
    narrow: Sequence[str] = (),
    wide: bool = False,
    only: Sequence[str] | None = None,
    default: Sequence[str] | None = None,
) -> None:
    """Print ``rows`` (cells as markup strings or ``Text``) with key columns kept whole;
    ``footer`` rows (e.g. totals) come after a line, in bold. ``narrow``, ``wide`` and
    ``only`` choose the columns (``choose_columns``); a terminal is told what was left out.

    Not on a terminal (a pipe, a file), the table is as wide as its longest values: nothing
    folds. On a terminal, key columns never wrap and are as wide as their longest value; when
    the table is wider than the terminal only free text folds (down to ``FREE_TEXT_MIN``, or a
    ``key_first`` column to its key), and past that the table is printed wider than the
    terminal rather than cutting a value.
    """
    keep, left_out = choose_columns(
        console, columns, [*rows, *footer], narrow=narrow, wide=wide, only=only, default=default
    )
    columns = [columns[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    footer = [[row[i] for i in keep] for row in footer]
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        justify: Literal["left", "right"] = "right" if col.right else "left"
        _, least = _widths([col], [[r[i]] for r in [*rows, *footer]])
        if col.free_text:
            table.add_column(col.header, overflow="fold", min_width=least - 4, justify=justify)
        else:
            table.add_column(col.header, no_wrap=True, min_width=least - 4, justify=justify)
    for row in rows:
        table.add_row(*row)
    if footer and rows:
        table.add_section()
    for row in footer:
        table.add_row(*row, style="bold")
    natural, needed = _widths(columns, [*rows, *footer])
    # Rich fits a table to the console's width (80 columns for a pipe) by squeezing every
    # column, key columns included, down to nothing; a table given its own width is not.
    if not console.is_terminal:
        table.width = natural
    elif natural > console.width:
        table.width = max(console.width, needed)
    # On a terminal a title longer than the table folds too (soft wrap would leave it whole).
    console.print(table, crop=False, soft_wrap=not console.is_terminal)
    if left_out:
        console.print(
            f"[dim]not shown: {', '.join(left_out)} (--wide shows every column, "
            "--columns a,b,c picks)[/]",
            soft_wrap=False,
        )


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


FINDING_COLUMNS = (
    Column("rule"),
    Column("severity"),
    Column("number"),
    Column("account", free_text=True, key_first=True),  # the id, then the customer's name
    Column("state"),
    Column("first seen"),
    Column("message", free_text=True),
    Column("last seen"),
    Column("due"),
    Column("finding", free_text=True, key_first=True),  # the rule, then the message
)
FINDING_DEFAULT = ("rule", "severity", "number", "account", "state", "first_seen", "message")


def account_cell(account_id: str | None, name: str | None) -> str:
    """An account as a table shows it: its id (a key value), then its name."""
    return " ".join(tty(v) for v in (account_id, name) if v)


def severity_cell(severity: str) -> str:
    """A severity in its colour (``vocab.PALETTE``)."""
    return f"[{shade(severity).terminal}]{tty(severity)}[/]"


def print_findings(
    rows: Sequence[FindingView],
    *,
    compact: bool = False,
    wide: bool = False,
    only: Sequence[str] | None = None,
) -> None:
    """Findings as a table, in the order given; on a narrow terminal severity, number, account
    and the rule with its message (and state, when not all are open) unless ``wide``;
    ``only``: these columns (``FINDING_COLUMNS`` names)."""
    if not rows:
        out.print("no findings")
        return
    default = [n for n in FINDING_DEFAULT if not compact or n not in ("state", "first_seen")]
    states = Counter(r.state for r in rows)
    narrow = ["severity", "number", "account", "finding"]
    if set(states) != {"open"}:
        narrow.insert(0, "state")
    cells_of_rows = []
    for r in rows:
        rule = tty(r.rule)
        cells = {
            "rule": rule,
            "severity": severity_cell(r.severity),
            "number": tty(number_text(r)),
            "account": account_cell(r.account_id, r.account_name if r.has_number else None),
            "state": r.state,
            "first_seen": day_text(r.first_seen),
            "message": tty(r.message),
            "last_seen": day_text(r.last_seen),
            "due": day_text(r.due_at),
            "finding": f"[bold]{rule}[/]\n{tty(r.message)}",
        }
        cells_of_rows.append([cells[c.name] for c in FINDING_COLUMNS])
    if set(states) == {"open"}:
        title = f"{len(rows)} open finding(s)"
    else:
        title = f"{len(rows)} finding(s): " + ", ".join(
            f"{states[s]} {s}" for s in ("open", "silenced", "resolved") if states[s]
        )
    print_table(
        out,
        FINDING_COLUMNS,
        cells_of_rows,
        title=title,
        narrow=narrow,
        wide=wide,
        only=only,
        default=default,
    )


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


def print_report(
    report: Any,
    fields: tuple[str, ...],
    fmt: str | None,
    title: str,
    dates: tuple[str, ...] = (),
    *,
    only: Sequence[str] | None = None,
    **kw: Any,
) -> None:
    """Print a ``monitor.reports.Report`` as a table, CSV (rows only) or JSON (with sweeps).
    ``only`` (``--columns``) picks the columns of a table or CSV; JSON keeps every field."""
    rows = [r.as_dict() for r in report.rows]
    chosen = pick(fmt, out.is_terminal)
    fc = report.forecast
    if chosen == "csv":
        click.echo(csv_text(rows, only or fields), nl=False)
    elif chosen == "json":
        doc: dict[str, Any] = {"report": report.name, "sweep": report.sweep.as_dict()}
        if report.since is not None:
            doc["since"] = report.since.as_dict()
        doc["rows"] = rows
        if report.name in ("costs", "due"):
            doc["totals"] = [t.as_dict() for t in report.totals]
        if fc is not None:
            doc["window"] = fc.window.as_dict()
            doc["undated"] = fc.undated
        click.echo(json_text(doc), nl=False)
    elif not rows:
        out.print(f"{title}: nothing to show")
    else:
        for row in rows:  # a table shows days; CSV and JSON keep the exact times
            for key in dates:
                row[key] = row[key][:10] if row.get(key) else row.get(key)
        footer = [t.as_dict() for t in report.totals]
        print_report_table(
            out,
            rows,
            only or fields,
            title,
            footer=footer,
            **kw | {"wide": kw.get("wide") or only is not None},
        )
    note = fc.undated_note() if fc is not None else None
    if note and chosen == "table":
        out.print(tty(note), soft_wrap=False)  # folded at a terminal's width
    elif note and chosen == "csv":  # CSV keeps its rows alone on stdout
        click.echo(tty(note), err=True)


def print_report_table(
    console: Console,
    rows: Sequence[dict[str, Any]],
    fields: Sequence[str],
    title: str,
    *,
    headers: dict[str, str] | None = None,
    right: Sequence[str] = (),
    footer: Sequence[dict[str, Any]] = (),
    names: dict[str, str | None] | None = None,
    narrow: Sequence[str] = (),
    wide: bool = False,
) -> None:
    """Report rows as a table whose key columns (numbers, ids, amounts) are never cut. An
    account's name (a row's ``account_name``, else from ``names``) is shown beside its id;
    ``narrow`` and ``wide`` as ``print_table`` takes them."""
    named = "account_id" in fields and ("account_name" in fields or names is not None)
    if named:
        fields = [f for f in fields if f != "account_name"]
        names = names or {}
        rows = [
            r
            | {
                "account_id": account_cell(
                    r["account_id"], r.get("account_name") or names.get(r["account_id"])
                )
            }
            for r in rows
        ]
    columns = [
        Column(
            (headers or {}).get(
                f, "account" if named and f == "account_id" else f.replace("_", " ")
            ),
            free_text=f in WRAP or (named and f == "account_id"),
            right=f in right,
            key=f,
            key_first=named and f == "account_id",
        )
        for f in fields
    ]

    def cell(f: str, value: Any) -> str:
        return value if named and f == "account_id" else shown(value)

    print_table(
        console,
        columns,
        [[cell(f, r.get(f)) for f in fields] for r in rows],
        title=tty(title),
        footer=[[shown(r.get(f)) for f in fields] for r in footer],
        narrow=narrow,
        wide=wide,
    )


# --- report rows as table, CSV and JSON -------------------------------------------------


Format = Literal["table", "csv", "json"]


FORMATS: tuple[Format, ...] = ("table", "csv", "json")


# A leading = @ (or + - followed by something that is not a plain number, like "+SUM(A1)") makes
# a spreadsheet evaluate the cell; "+911234567890" and "-1.50" stay numbers as they are.


# Columns that may fold on a narrow terminal; numbers, ids and amounts are never cut.
WRAP = frozenset({"account_name", "region", "application_id", "tags", "field", "before", "after"})


def pick(fmt: str | None, is_terminal: bool) -> Format:
    """The format asked for; without one, a table on a terminal and CSV otherwise."""
    if fmt in FORMATS:
        return fmt
    return "table" if is_terminal else "csv"


def csv_text(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """A header line of ``fields``, then one line per row (RFC 4180 quoting, ``\\r\\n``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([csv_cell(row.get(f)) for f in fields])
    return buf.getvalue()


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True, default=str) + "\n"


def shown(value: Any) -> str:
    """One value as terminal text (markup and control characters made harmless)."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return tty(", ".join(str(v) for v in value))
    return tty(value)


def next_run(settings: Settings, now: datetime) -> datetime | None:
    return fire_at_or_after(build_trigger(settings.schedule, jitter=False), now)


def collect(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:

    def sweep_info(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            k: row[k]
            for k in (
                "id",
                "status",
                "started_at",
                "finished_at",
                "numbers_seen",
                "findings_opened",
                "findings_resolved",
                "error",
            )
        }

    counts = store.open_counts(now)
    quiet = store.silenced_counts(now)
    health = Outbox(store).channel_health(c.name for c in settings.channels)
    for name, info in health.items():
        # Failing from the first failed attempt; alerts.failing_after only decides when the
        # other channels are told (``others_told``).
        info["failing"] = info["consecutive_failures"] > 0
        info["others_told"] = info["consecutive_failures"] >= settings.alerts.failing_after
        info["enabled"] = settings.channel(name).enabled
    return {
        "last_sweep": sweep_info(store.last_sweep()),
        "last_complete_sweep": sweep_info(store.last_sweep("complete")),
        # "open" is what `findings` lists: open and not silenced; silenced ones are counted apart
        "open_findings": [
            {
                "rule": r,
                "severity": s,
                "count": counts.get((r, s), 0),
                "silenced": quiet.get((r, s), 0),
            }
            for r, s in sorted(counts.keys() | quiet.keys())
        ],
        "open_total": sum(counts.values()),
        "silenced_total": sum(quiet.values()),
        "channels": health,
        "next_sweep": next_run(settings, now),
    }


def print_status(info: dict[str, Any], out: Console) -> None:
    last = info["last_sweep"]
    if last is None:
        out.print("no sweep yet")
    else:
        colour = "green" if last["status"] == "complete" else "red"
        out.print(
            f"last sweep: #{last['id']} [{colour}]{last['status']}[/] at "
            f"{last['started_at']:%Y-%m-%d %H:%M} UTC, {last['numbers_seen']} numbers"
            + (f" — {tty(last['error'])}" if last["error"] else "")
        )
        ok = info["last_complete_sweep"]
        if ok and ok["id"] != last["id"]:
            out.print(f"last complete sweep: #{ok['id']} at {ok['started_at']:%Y-%m-%d %H:%M} UTC")
    silenced = info["silenced_total"]
    out.print(
        f"open findings: {info['open_total']}" + (f" (and {silenced} silenced)" if silenced else "")
    )
    for item in info["open_findings"]:
        quiet = f"  ({item['silenced']} silenced)" if item["silenced"] else ""
        out.print(f"  {tty(item['rule']):<22} {item['severity']:<9} {item['count']:>6}{quiet}")
    out.print("channels:")
    if not info["channels"]:
        out.print("  (none configured)")
    for name, ch in info["channels"].items():
        state = "[green]ok[/]"
        if ch["failing"]:
            told = ", other channels told" if ch["others_told"] else ""
            state = f"[red]failing[/] ({ch['consecutive_failures']} in a row{told})"
        if not ch["enabled"]:
            state = "disabled"
        extra = (
            f", last error: {tty(ch['last_error'])}" if ch["failing"] and ch["last_error"] else ""
        )
        out.print(f"  {tty(name)}: {state}, {ch['pending']} waiting to be sent{extra}")
    if info["next_sweep"]:
        out.print(f"next scheduled sweep: {info['next_sweep']:%Y-%m-%d %H:%M} UTC")
