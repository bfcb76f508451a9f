"""All terminal output of the CLI and the demo: rich consoles, one table printer driven by column
specs, sweep outcomes, ``status``, digest previews, and report rows as table, CSV and JSON.
Printing only: no command logic.

Every write passes the secret scrubber. Tables keep key columns (numbers, ids, severities)
whole: Rich squeezes every column of a table wider than the terminal, cutting
``+916085945572`` to ``+91608594557…``; here key columns are sized to their longest value and
never wrap, only free text (messages, reasons) folds (down to ``FREE_TEXT_MIN``, or a
``key_first`` column to its key), and when even that does not fit the table is printed wider
than the terminal (lines wrap on screen, values stay whole). Piped output (a pipe, a file) is
as wide as its longest values: nothing folds, nothing is squeezed to 80 columns.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from itertools import groupby
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from monitor.config import LoadedConfig, redacted
from monitor.errors import ConfigError
from monitor.findings import FindingView, as_json, due_day, number_text
from monitor.redact import ScrubbingStream
from monitor.reports import COST_FIELDS, DIFF_FIELDS, DUE_FIELDS, INVENTORY_FIELDS
from monitor.vocab import csv_cell, day_text, iso, money_text, shade, tty, when_text

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


def say(*lines: object, to: Console | None = None) -> None:
    """Plain sentences on stdout (or ``to``), one a line, every value made inert for a terminal."""
    for line in lines:
        (to or out).print(tty(line))


def note(label: str, text: str, style: str = "yellow") -> None:
    """``label text`` on stderr, the label in ``style``."""
    err.print(f"[{style}]{label}[/] {tty(text)}")


def error(text: str) -> None:
    first, *rest = text.splitlines()
    note("error:", first, "bold red")
    say(*rest, to=err)


def _json_default(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else str(value)


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True, default=_json_default) + "\n"


Cell = str | Text


def _value(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def shown(value: Any) -> str:
    """One value as terminal text (markup and control characters made harmless)."""
    if value is None or value == "" or value == [] or value == ():
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return tty(", ".join(str(v) for v in value))
    return tty(value)


def _day(value: Any) -> str:
    return day_text(value) or "—"


def _due(tz: tzinfo) -> Column:
    """The findings table's due column: each finding's due day in the rules' time zone ``tz``
    (``findings.due_day``), the day its message names."""
    return Column("due", lambda r: due_day(r, tz) or "—")


def _money(value: Any) -> str:
    return money_text(value) if value is not None else "—"


@dataclass(frozen=True)
class Column:
    header: str
    get: Callable[[Any], Cell] | None = None  # the cell from the whole row
    show: Callable[[Any], Cell] = shown  # else the cell from the row's value under ``name``
    free_text: bool = False  # folds over several lines; every other column keeps its width
    right: bool = False  # right-justified (amounts, counts)
    key: str = ""  # its name for --columns (default: the header, "_" for spaces)
    # Free text whose first word is a key value (an id before a name, a rule before its
    # message): the column is never narrower than that word, which is never cut.
    key_first: bool = False

    @property
    def name(self) -> str:
        return self.key or self.header.replace(" ", "_")

    def cell(self, row: Any) -> Cell:
        return self.get(row) if self.get else self.show(_value(row, self.name))


@dataclass(frozen=True)
class Spec:
    """A table's columns; on a terminal too narrow for the ``default`` ones (all if None), only
    the ``narrow`` ones are shown unless ``--wide``."""

    columns: tuple[Column, ...]
    narrow: tuple[str, ...] = ()
    default: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def pick(self, text: str | None) -> list[str] | None:
        """``--columns a,b,c`` read against the names; ``ConfigError`` naming the unknown."""
        if text is None:
            return None
        names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.names]
        if unknown or not names:
            what = f"unknown column {', '.join(map(repr, unknown))}" if unknown else "no column"
            raise ConfigError(f"--columns: {what}", hint=f"columns: {', '.join(self.names)}")
        return names


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


def print_table(
    spec: Spec,
    rows: Iterable[Any],
    *,
    title: str | None = None,
    footer: Iterable[Any] = (),
    wide: bool = False,
    only: Sequence[str] | None = None,
    console: Console | None = None,
) -> None:
    """``rows`` (mappings or objects) as a table with key columns kept whole; ``footer`` rows
    (totals) after a line, in bold. ``only`` (``--columns``): those columns, in that order;
    else the default ones, except on a terminal where they cannot fit even with free text
    folded: then the narrow ones (unless ``wide``), and the terminal is told what was left out.
    How it folds: see this module's docstring."""
    console = console or out
    body, feet = list(rows), list(footer)
    names, cells = spec.names, [[c.cell(r) for c in spec.columns] for r in [*body, *feet]]

    def pick(keep: list[int]) -> tuple[list[Column], list[list[Cell]]]:
        return [spec.columns[i] for i in keep], [[r[i] for i in keep] for r in cells]

    keep, left_out = [names.index(n) for n in only or spec.default or names], []
    may_drop = only is None and not wide and spec.narrow and console.is_terminal
    if may_drop and _widths(*pick(keep))[1] > console.width:
        left_out = [names[i] for i in keep if names[i] not in spec.narrow]
        keep = [names.index(n) for n in spec.narrow]
    columns, cells = pick(keep)
    table = Table(title=tty(title) if title else None, title_justify="left")
    for i, col in enumerate(columns):
        least = _widths([col], [[r[i]] for r in cells])[1] - 4
        fold: dict[str, Any] = {"overflow": "fold"} if col.free_text else {"no_wrap": True}
        table.add_column(
            col.header, min_width=least, justify="right" if col.right else "left", **fold
        )
    for n, row in enumerate(cells):
        if n == len(body) and n:
            table.add_section()
        table.add_row(*row, style="bold" if n >= len(body) else None)
    natural, needed = _widths(columns, cells)
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


def account_cell(account_id: str | None, name: str | None) -> str:
    """An account as a table shows it: its id (a key value), then its name."""
    return " ".join(tty(v) for v in (account_id, name) if v)


def severity_cell(severity: str) -> str:
    """A severity in its colour (``vocab.PALETTE``)."""
    return f"[{shade(severity).terminal}]{tty(severity)}[/]"


def _account(row: Any) -> str:
    return account_cell(_value(row, "account_id"), _value(row, "account_name"))


ACCOUNT = Column("account", _account, free_text=True, key_first=True)  # the id, then the name

FINDINGS = Spec(
    (
        Column("rule"),
        Column("severity", show=severity_cell),
        Column("number", lambda r: tty(number_text(r))),
        replace(
            ACCOUNT,
            get=lambda r: account_cell(r.account_id, r.account_name if r.has_number else None),
        ),
        Column("state"),
        Column("first seen", show=_day),
        Column("message", free_text=True),
        Column("last seen", show=_day),
        _due(UTC),  # print_findings shows it in the rules' time zone
        Column(
            "finding",
            lambda r: f"[bold]{tty(r.rule)}[/]\n{tty(r.message)}",
            free_text=True,
            key_first=True,
        ),
    ),
    narrow=("severity", "number", "account", "finding"),
    default=("rule", "severity", "number", "account", "state", "first_seen", "message"),
)
HISTORY = Spec(
    (
        Column("from", lambda r: when_text(r["from_time"])),
        Column("until", lambda r: when_text(r["to_time"]) or "(current)"),
        Column("status"),
        ACCOUNT,
        Column("application", lambda r: shown(r["application_id"])),
        Column("blocked", lambda r: shown(bool(r["is_blocked"]))),
        Column("next billing", lambda r: _day(r["next_billing_date"])),
        Column(
            "changed",
            show=lambda v: "first seen" if v is None else shown(v or "(no field change)"),
            free_text=True,
        ),
    ),
    narrow=("from", "status", "account", "changed"),
)
SILENCES = Spec(
    (
        Column("id"),
        Column("rule"),
        Column("number", lambda r: tty(r["e164"] or "*")),
        Column("account", lambda r: tty(r["account_id"] or "*")),
        Column("for", lambda r: account_cell(r["e164"], r["account_id"]) or "*"),
        Column("until", show=when_text),
        Column("active"),
        Column("by", lambda r: shown(r["created_by"])),
        Column("matches", right=True),
        Column("reason", free_text=True),
    ),
    narrow=("id", "rule", "for", "until", "reason"),
    # "for": number and account in one, for a narrow terminal
    default=("id", "rule", "number", "account", "until", "active", "by", "matches", "reason"),
)
QUEUED = Spec(
    (
        *(Column(n) for n in ("id", "kind", "status")),
        Column("created", show=when_text, key="created_at"),
        Column("attempts"),
        Column("next attempt", lambda r: when_text(r["next_attempt_at"]) or "by hand"),
        Column("last error", free_text=True),
    )
)


# Report fields that may fold on a narrow terminal (numbers, ids and amounts are never cut), that
# are right-justified, and that are not shown as they are.
WRAP = {"account_name", "region", "application_id", "tags", "field", "before", "after"}
RIGHT = {"monthly_fee", "active_numbers", "monthly_rental", "numbers", "renewals", "amount_due"}
RIGHT |= {"unpriced"}
SHOW = {"monthly_fee": _money, "monthly_rental": _money, "amount_due": _money}
SHOW |= {"next_billing_date": _day, "expires_at": _day}


def _report(
    fields: Sequence[str], narrow: Sequence[str] = (), headers: Mapping[str, str] | None = None
) -> Spec:
    """A report's table: a column per field (its ``--columns`` name), the account's id and name
    in one column (``diff``, without ``narrow``, shows the id alone)."""
    named = bool(narrow)
    columns = tuple(
        replace(ACCOUNT, key=f)
        if named and f == "account_id"
        else Column(
            (headers or {}).get(f, f.replace("_", " ")),
            show=SHOW.get(f, shown),
            free_text=f in WRAP,
            right=f in RIGHT,
            key=f,
        )
        for f in fields
    )
    return Spec(
        columns, tuple(narrow), tuple(f for f in fields if f != "account_name" or not named)
    )


REPORTS = {
    "inventory": _report(
        INVENTORY_FIELDS,
        ("e164", "account_id", "status", "next_billing_date"),
        {"e164": "number", "number_id": "id", "application_id": "application", "monthly_fee": "fee"}
        | {"next_billing_date": "next billing", "expires_at": "expires"},
    ),
    "costs": _report(COST_FIELDS, ("account_id", "currency", "active_numbers", "monthly_rental")),
    "due": _report(DUE_FIELDS, ("account_id", "currency", "numbers", "amount_due")),
    "diff": _report(DIFF_FIELDS),
}


def print_findings(
    rows: Sequence[FindingView],
    silenced: int = 0,
    compact: bool = False,
    tz: tzinfo = UTC,
    **view: Any,
) -> None:
    """Findings as a table, in the order given (``compact``: without state and first seen), due
    days in the rules' time zone ``tz`` (``settings.rules_zone``); then how many ``silenced``
    ones were left out."""
    if not rows:
        out.print("no findings")
    else:
        states = Counter(r.state for r in rows)
        columns = tuple(_due(tz) if c.name == "due" else c for c in FINDINGS.columns)
        spec, title = replace(FINDINGS, columns=columns), f"{len(rows)} open finding(s)"
        if set(states) != {"open"}:
            spec = replace(spec, narrow=("state", *spec.narrow))
            counts = (f"{states[s]} {s}" for s in ("open", "silenced", "resolved") if states[s])
            title = f"{len(rows)} finding(s): {', '.join(counts)}"
        if compact:
            drop = ("state", "first_seen")
            spec = replace(spec, default=tuple(n for n in spec.default or () if n not in drop))
        print_table(spec, rows, title=title, **view)
    if silenced:
        out.print(f"and {silenced} silenced finding(s), not listed (--all lists them)")


# An announcement as ``findings --json`` writes it; two keys are renamed from the outbox's.
_ANNOUNCED = ("channel", "event", "tier", "at", "delivery_id", "delivery_status", "sent_at")
_RENAMED = {"at": "created_at", "delivery_status": "status"}
# The standard library's encoder (C), built once; compact, with times written by iso().
_FINDING_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def print_findings_json(
    batches: Iterable[list[FindingView]],
    notifications: Callable[[list[int]], dict[int, list[dict[str, Any]]]],
) -> None:
    """A JSON array, one finding per line, written batch by batch as the rows arrive; each
    finding with its announcements (``Outbox.notifications_for``)."""
    stream = ScrubbingStream(sys.stdout)  # JSON is scrubbed like everything else
    stream.write("[")
    first = True
    for batch in batches:
        history = notifications([r.id for r in batch if r.id is not None])
        lines = []
        for row in batch:
            item = as_json(row)
            item["notifications"] = [
                {k: n[_RENAMED.get(k, k)] for k in _ANNOUNCED} for n in history.get(row.id or 0, [])
            ]
            lines.append(("\n  " if first else ",\n  ") + _FINDING_ENCODER.encode(item))
            first = False
        stream.write("".join(lines))
    stream.write("\n]\n" if not first else "]\n")
    stream.flush()


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[Any], None]]:
    """A rich progress bar on a terminal, if ``enabled``; plain log lines every 10% otherwise."""
    if enabled and err.is_terminal:
        with Progress(
            TextColumn("sweeping"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages"),
            TextColumn("{task.fields[numbers]} numbers, {task.fields[rate]} pages/s"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("sweep", total=None, numbers=0, rate="–")

            def update(p: Any) -> None:
                elapsed = bar.tasks[0].elapsed or 0.0
                rate = f"{p.pages_done / elapsed:.0f}" if elapsed > 0 else "–"
                bar.update(
                    task, completed=p.pages_done, total=p.pages_total, numbers=p.numbers, rate=rate
                )

            yield update
        return
    marks: set[int] = set()

    def plain(p: Any) -> None:
        decile = p.pages_done * 10 // p.pages_total if p.pages_total else None
        if decile is not None and decile not in marks:
            marks.add(decile)
            args = (p.pass_no, p.pages_done, p.pages_total, p.numbers)
            logging.getLogger("monitor.sweep").info("pass %d: %d/%d pages, %d numbers", *args)

    yield plain


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
            note("warning:", f"sweep {outcome.sweep_id}: {outcome.partial}")
    else:
        note("error:", f"sweep {outcome.sweep_id} failed: {outcome.error or ''}", "bold red")
        queued = outcome.failure_alerts
        told = {
            None: "the 'sweep failed' alert could not be queued (see the log)",
            0: "no channel takes service alerts, so nobody else was told",
        }.get(queued, f"a 'sweep failed' alert was queued for {queued} channel(s)")
        say(f"  no finding was resolved; {told}", to=err)
    for d in outcome.deliveries:
        mark = "[green]sent[/]" if d.ok else f"[red]failed[/]: {tty(d.error or '')}"
        out.print(f"  {d.kind} → {tty(d.channel)}: {mark}")
    if outcome.ok and not outcome.partial and outcome.delivery_failures:
        err.print(
            f"[yellow]{outcome.delivery_failures} alert delivery(ies) failed; "
            "they are kept, and retried on the next sweep or by `run` unless marked not retried.[/]"
        )


def print_config(loaded: LoadedConfig, placeholders: Sequence[str]) -> None:
    """The effective settings, secrets redacted, each with where it came from."""
    where = tty(loaded.path) if loaded.path else "(no file: defaults and environment)"
    out.print(f"config: {where} is valid")

    def keys(path: str, values: dict[str, Any], indent: str = "") -> None:
        for key, value in values.items():
            if isinstance(value, dict) and path == "rules":  # a rule's own table
                out.print(f"[bold]{tty(f'[rules.{key}]')}[/]")
                keys(f"rules.{key}", value, "  ")
                continue
            text = json.dumps(value, ensure_ascii=False)
            source = loaded.sources.get(f"{path}.{key}") or "default"
            out.print(f"{indent}{tty(key)} = {tty(text)}  [dim]# {tty(source)}[/]")

    for section, values in redacted(loaded.settings).items():
        if not isinstance(values, list):
            out.print(f"\n[bold]{tty(f'[{section}]')}[/]")
            keys(section, values)
        for i, item in enumerate(values if isinstance(values, list) else []):
            out.print(f"\n[bold]{tty(f'[[{section}]]')}[/]  # {i}")
            keys(f"{section}[{i}]", item)
    if not loaded.settings.vobiz.auth_token:
        note(
            "note:",
            "no API token set (vobiz.auth_token or VOBIZ_AUTH_TOKEN); `sweep` and `run` need one",
        )
    for warning in placeholders:
        note("warning:", warning)


def print_test_results(results: Iterable[tuple[str, str | None]]) -> None:
    for name, problem in results:
        out.print(
            f"{tty(name)}: " + (f"[red]FAILED[/] {tty(problem)}" if problem else "[green]ok[/]")
        )


def print_previews(previews: Iterable[Preview], channel: str | None, fmt: str | None) -> int:
    """Each channel's digest preview: the body on stdout as it would be sent (raw, for a file or
    a pipe), what it is on stderr. Returns how many were shown."""
    shown = 0
    for item in previews:
        if channel is not None and item.channel.name != channel:
            continue
        name, msg, row = tty(item.channel.name), item.message, item.stored
        if msg is None and row is None:
            err.print(f"[bold]── {name}:[/] nothing to announce, and no digest sent yet")
        elif msg is None and row is not None and fmt and row["body_format"] != fmt:
            err.print(
                f"[bold]── {name}:[/] nothing new to announce; its last digest was sent as "
                f"{tty(row['body_format'])}, not {fmt}: drop --format to see it as it was sent"
            )
        elif msg is None and row is not None:
            err.print(
                f"[bold]── {name}:[/] nothing new to announce; its last digest "
                f"({row['body_format']}, {iso(row['created_at'])}, {row['status']}):"
            )
            say(f"   title: {row['title']}", to=err)
            raw(f"{row['body']}\n")
            shown += 1
        elif msg is not None:
            blocks = msg.parts.get("slack") if fmt is None else None
            kind = "Slack Block Kit JSON" if blocks else msg.body_format
            err.print(f"[bold]── {name}:[/] next digest ({kind})")
            say(f"   title: {msg.title}", to=err)
            for att in msg.parts.get("attachments", []):
                rows = max(att["content"].count("\n") - 1, 0)
                say(f"   attachment: {att['name']} ({rows} findings)", to=err)
            raw(f"{json.dumps(blocks, indent=2, ensure_ascii=False) if blocks else msg.body}\n")
            shown += 1
    return shown


def print_queued(rows: Iterable[Mapping[Any, Any]]) -> None:
    """Queued deliveries, one table per channel (no message bodies: only what identifies them)."""
    for channel, group in groupby(rows, lambda r: r["channel"]):  # rows come by channel
        items = list(group)
        out.print(f"\n[bold]── {tty(channel)}:[/] {len(items)} queued")
        print_table(QUEUED, items)


def print_silences(rows: Sequence[Mapping[str, Any]], now: datetime, *, wide: bool) -> None:
    if not rows:
        out.print("no silences")
        return
    active = [{**r, "active": "yes" if r["until"] > now else "expired"} for r in rows]
    title = f"{len(rows)} silence(s), times in UTC; matches: open findings it covers"
    print_table(SILENCES, active, title=title, wide=wide)


def print_history(e164: str, rows: list[Any], names: Mapping[str, Any], **view: Any) -> None:
    named = [{**r, "account_name": names.get(r["account_id"])} for r in rows]
    print_table(HISTORY, named, title=f"history of {e164} (times in UTC)", **view)


Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")


def pick(fmt: str | None, is_terminal: bool) -> Format:
    """The format asked for; without one, a table on a terminal and CSV otherwise."""
    return fmt if fmt in FORMATS else ("table" if is_terminal else "csv")


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """A header line of ``fields``, then one line per row (RFC 4180 quoting, ``\\r\\n``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fields)
    writer.writerows([csv_cell(row.get(f)) for f in fields] for row in rows)
    return buf.getvalue()


def report_title(report: Any) -> str:
    sweep = f"sweep {report.sweep.id} of {when_text(report.sweep.started_at)}"
    if report.name == "inventory":
        return f"{len(report.rows)} number(s) in {sweep}"
    if report.name == "due":
        w = report.forecast.window
        span = f"{day_text(w.first)} to {day_text(w.last)} ({w.tz})"
        return f"rental due {span}, active numbers of {sweep}"
    if report.name == "diff":
        return (
            f"changes from sweep {report.since.id} ({when_text(report.since.started_at)}) "
            f"to sweep {report.sweep.id} ({when_text(report.sweep.started_at)})"
        )
    return f"monthly rental of active numbers, {sweep}"


def print_report(report: Any, fmt: str | None, names: Mapping[str, Any] = {}, **view: Any) -> None:
    """A ``monitor.reports.Report`` as a table, CSV (rows only) or JSON (with sweeps); ``names``:
    the accounts' names, shown beside their ids in a table. ``view``: ``print_table``'s ``wide``
    and ``only`` (``--columns``, which picks the columns of a CSV too; JSON keeps every field)."""
    spec = REPORTS[report.name]
    chosen = pick(fmt, out.is_terminal)
    fc = report.forecast
    if chosen == "csv":
        fields = view.get("only") or spec.names
        raw(csv_text((r.as_dict() for r in report.rows), fields))
    elif chosen == "json":
        doc: dict[str, Any] = {"report": report.name, "sweep": report.sweep.as_dict()}
        if report.since is not None:
            doc["since"] = report.since.as_dict()
        doc["rows"] = [r.as_dict() for r in report.rows]
        if report.name in ("costs", "due"):
            doc["totals"] = [t.as_dict() for t in report.totals]
        if fc is not None:
            doc["window"] = fc.window.as_dict()
            doc["undated"] = fc.undated
        print_json(doc)
    elif not report.rows:
        say(f"{report_title(report)}: nothing to show")
    else:
        rows = [
            vars(r) | ({"account_name": names.get(r.account_id)} if names else {})
            for r in report.rows
        ]
        print_table(spec, rows, title=report_title(report), footer=map(vars, report.totals), **view)
    text = fc.undated_note() if fc is not None else None
    if text and chosen == "table":
        out.print(tty(text), soft_wrap=False)  # folded at a terminal's width
    elif text and chosen == "csv":  # CSV keeps its rows alone on stdout
        say(text, to=err)


def raw(text: str) -> None:
    """Text for a file or a pipe (CSV, JSON, a digest's body) to stdout as it is, scrubbed."""
    ScrubbingStream(sys.stdout).write(text)


def print_json(document: Any) -> None:
    raw(json_text(document))


def print_status(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or out
    last = info["last_sweep"]
    if last is None:
        console.print("no sweep yet")
    else:
        colour = "green" if last["status"] == "complete" else "red"
        console.print(
            f"last sweep: #{last['id']} [{colour}]{last['status']}[/] at "
            f"{when_text(last['started_at'])}, {last['numbers_seen']} numbers"
            + (f" — {tty(last['error'])}" if last["error"] else "")
        )
        ok = info["last_complete_sweep"]
        if ok and ok["id"] != last["id"]:
            console.print(f"last complete sweep: #{ok['id']} at {when_text(ok['started_at'])}")
    silenced = info["silenced_total"]
    console.print(
        f"open findings: {info['open_total']}" + (f" (and {silenced} silenced)" if silenced else "")
    )
    for item in info["open_findings"]:
        quiet = f"  ({item['silenced']} silenced)" if item["silenced"] else ""
        console.print(f"  {tty(item['rule']):<22} {item['severity']:<9} {item['count']:>6}{quiet}")
    console.print("channels:" + ("" if info["channels"] else "\n  (none configured)"))
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
        console.print(f"  {tty(name)}: {state}, {ch['pending']} waiting to be sent{extra}")
    if info["next_sweep"]:
        console.print(f"next scheduled sweep: {when_text(info['next_sweep'])}")
