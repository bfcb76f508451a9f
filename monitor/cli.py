"""The ``did-monitor`` command: parsing arguments and printing results, nothing else.

Longer than 400 lines because it is a flat list of small commands, each a few lines of argument
parsing that hands over to the module doing the work (terminal output lives in ``display.py``);
splitting the list would only scatter the command surface.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.markup import escape

from monitor import __version__, logs, redact
from monitor.clock import Clock, system_clock
from monitor.config import LoadedConfig, Settings, load, redacted
from monitor.display import (
    Column,
    err,
    json_default,
    out,
    print_findings,
    print_outcome,
    print_preview,
    print_report,
    print_table,
    stdout,
)
from monitor.errors import ConfigError, DatabaseError, LockBusy, MonitorError, SweepCancelled
from monitor.findings import as_json
from monitor.vocab import iso, parse_duration, tty, when_text


def fail(error: MonitorError) -> NoReturn:
    first, *rest = str(error).splitlines()
    err.print(f"[bold red]error:[/] {tty(first)}")
    for line in rest:
        err.print(tty(line))
    sys.exit(error.exit_code)


class State:
    """Per-invocation state: the config is loaded once, on first use."""

    def __init__(self, config_path: str | None, clock: Clock = system_clock) -> None:
        self.config_path = config_path
        self.clock = clock  # the one place a CLI process takes the time from
        self._loaded: LoadedConfig | None = None

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            self._loaded = load(self.config_path)
            for warning in self._loaded.warnings:
                err.print(f"[yellow]warning:[/] {tty(warning)}")
            logs.setup(self._loaded.settings.logging.level, self._loaded.settings.logging.format)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $DID_MONITOR_CONFIG, else ./config.toml).",
)
@click.version_option(__version__, prog_name="did-monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Watch a Vobiz partner's phone-number inventory and alert before customers notice."""
    ctx.obj = State(config_path)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except MonitorError as exc:  # a database that is down or not migrated is a DatabaseError
        fail(exc)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _store(settings: Settings, *, migrate: bool | None = None, read: bool = False) -> Any:
    """The store; ``read``: for commands that only look, which never create a database."""
    from monitor.store import Store

    url = settings.database.url
    if read:
        _must_exist(url)
    store = Store(url)
    if settings.database.auto_migrate if migrate is None else migrate:
        store.migrate()
    return store


def _must_exist(url: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return  # the engine reports a bad URL in its own words
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    if not Path(parsed.database).exists():
        raise DatabaseError(
            f"no database at {redact.mask_url(url, keep_path=True)}: "
            "nothing has been swept into it yet",
            hint="run `did-monitor sweep` first, or check database.url (and --config)",
        )


# --- sweep ------------------------------------------------------------------------------------


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on a terminal; plain log lines every 10% otherwise."""
    if not enabled:
        log = logging.getLogger("monitor.sweep")
        marks: set[int] = set()

        def plain(p: Any) -> None:
            if p.pages_total:
                decile = p.pages_done * 10 // p.pages_total
                if decile not in marks:
                    marks.add(decile)
                    log.info(
                        "pass %d: %d/%d pages, %d numbers",
                        p.pass_no,
                        p.pages_done,
                        p.pages_total,
                        p.numbers,
                    )

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


@cli.command()
@click.option("--no-progress", is_flag=True, help="Log lines instead of a progress bar.")
@pass_state
def sweep(state: State, no_progress: bool) -> None:
    """One full cycle now: fetch every number, store, evaluate rules, deliver alerts."""
    from monitor.alerts.notify import AppriseNotifier
    from monitor.pipeline import run_cycle

    settings = state.settings
    store = _store(settings)
    notifier = AppriseNotifier(settings.alerts.delivery_timeout_seconds)
    try:
        with (
            _progress(err.is_terminal and not no_progress) as progress,
            _interruptible() as stop,
        ):
            outcome = run_cycle(
                settings,
                store,
                notifier,
                trigger="manual",
                clock=state.clock,
                progress=progress,
                cancel=stop.event,
            )
    except LockBusy as exc:
        out.print(exc.message)
        return
    except (SweepCancelled, KeyboardInterrupt):
        by = stop.signal_name or "SIGINT"
        err.print(
            f"[bold red]interrupted[/] by {by}: the sweep was rolled back and recorded as aborted"
        )
        sys.exit(128 + signal.Signals[by].value)  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    print_outcome(outcome)
    if not outcome.ok or outcome.partial:
        sys.exit(1)
    if outcome.delivery_failures:
        err.print(
            f"[yellow]{outcome.delivery_failures} alert delivery(ies) failed; "
            "they are kept, and retried on the next sweep or by `run` unless marked not retried.[/]"
        )
        sys.exit(1)


class _Stop:
    """Set by the first SIGTERM/SIGINT: the sweep stops at its next page and rolls back."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None


@contextmanager
def _interruptible() -> Iterator[_Stop]:
    """SIGTERM, SIGHUP and ^C ask the running sweep to stop (it rolls back and is marked aborted);
    a second one interrupts at once. The handler only sets an event: raising inside worker
    handshakes could leave a lock held and the process unable to exit."""
    stop = _Stop()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.event.is_set():
            raise KeyboardInterrupt
        stop.signal_name = signal.Signals(signum).name
        stop.event.set()

    try:
        stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {sig: signal.signal(sig, on_signal) for sig in stops}
    except ValueError:  # not the main thread: leave signals alone
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- findings -----------------------------------------------------------------------------------


_WIDE = click.option(
    "--wide", is_flag=True, help="Every column, even on a terminal too narrow for them."
)
_COLUMNS = click.option(
    "--columns", "columns", metavar="A,B,C", help="Only these columns, in this order (table, CSV)."
)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, for scripts.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved and silenced findings.")
@_WIDE
@_COLUMNS
@pass_state
def findings(state: State, as_json: bool, show_all: bool, wide: bool, columns: str | None) -> None:
    """Open findings, most urgent first: by severity, then due date, then rule (with --all:
    silenced and resolved ones too)."""
    from monitor.display import FINDING_COLUMNS, column_names

    only = column_names(columns, [c.name for c in FINDING_COLUMNS])
    store = _store(state.settings, read=True)
    now = state.clock()
    if as_json:
        _stream_findings_json(store, show_all, now)
        return
    rows = store.findings(now, include_closed=show_all)
    if not show_all:
        rows = [r for r in rows if r.state == "open"]
    print_findings(rows, wide=wide, only=only)
    silenced = sum(store.silenced_counts(now).values())
    if silenced and not show_all:
        out.print(f"and {silenced} silenced finding(s), not listed (--all lists them)")


def _json_default(value: Any) -> Any:
    """What the JSON encoder meets besides plain data: datetimes, as ISO 8601 UTC with "Z"."""
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# The standard library's encoder (C), built once; compact, with times written by iso().
_FINDING_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def _stream_findings_json(store: Any, show_all: bool, now: datetime) -> None:
    """A JSON array, one finding per line, written batch by batch as the rows arrive."""
    from monitor.alerts.outbox import Outbox

    outbox = Outbox(store)
    stream = stdout()
    stream.write("[")
    first = True
    encode = _FINDING_ENCODER.encode
    for batch in store.iter_findings(now, include_closed=show_all):
        if not show_all:
            batch = [r for r in batch if r.state == "open"]
        history = outbox.notifications_for([r.id for r in batch if r.id is not None])
        lines = []
        for row in batch:
            item = as_json(row)
            item["notifications"] = [
                {
                    "channel": n["channel"],
                    "event": n["event"],
                    "tier": n["tier"],
                    "at": n["created_at"],
                    "delivery_id": n["delivery_id"],
                    "delivery_status": n["status"],
                    "sent_at": n["sent_at"],
                }
                for n in history.get(row.id or 0, [])
            ]
            lines.append(("\n  " if first else ",\n  ") + encode(item))
            first = False
        stream.write("".join(lines))
    stream.write("\n]\n" if not first else "]\n")
    stream.flush()


# --- reports ------------------------------------------------------------------------------------

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    help="Output format (default: table on a terminal, CSV otherwise).",
)


@cli.command()
@click.option("--account", help="Only this customer account (MA_...).")
@click.option("--status", help="Only numbers in this status (e.g. active).")
@click.option("--country", help="Only numbers in this country (ISO-2, e.g. IN).")
@_FORMAT
@_WIDE
@_COLUMNS
@pass_state
def inventory(
    state: State,
    account: str | None,
    status: str | None,
    country: str | None,
    fmt: str | None,
    wide: bool,
    columns: str | None,
) -> None:
    """The numbers of the latest complete sweep, one row each."""
    from monitor.display import column_names
    from monitor.reports import INVENTORY_FIELDS
    from monitor.reports import inventory as report

    only = column_names(columns, INVENTORY_FIELDS)
    store = _store(state.settings)
    rep = report(store.engine, account=account, status=status, country=country)
    names = store.account_names(at=rep.sweep.id)
    title = (
        f"{len(rep.rows)} number(s) in sweep {rep.sweep.id} of {when_text(rep.sweep.started_at)}"
    )
    headers = {
        "e164": "number",
        "number_id": "id",
        "account_id": "account",
        "application_id": "application",
        "monthly_fee": "fee",
        "next_billing_date": "next billing",
        "expires_at": "expires",
    }
    dates = ("next_billing_date", "expires_at")
    print_report(
        rep,
        INVENTORY_FIELDS,
        fmt,
        title,
        dates,
        only=only,
        right=("monthly_fee",),
        headers=headers,
        names=names,
        narrow=("e164", "account_id", "status", "next_billing_date"),
        wide=wide,
    )


@cli.command()
@click.option("--account", help="Only this customer account (MA_...).")
@click.option("--at", "at", metavar="DATE", help="As of the complete sweep in force then.")
@click.option(
    "--due-within",
    "due_within",
    metavar="DURATION",
    help="Instead: the rental falling due from now for this long (e.g. 7d, 30d, 2w).",
)
@_FORMAT
@_WIDE
@_COLUMNS
@pass_state
def costs(
    state: State,
    account: str | None,
    at: str | None,
    due_within: str | None,
    fmt: str | None,
    wide: bool,
    columns: str | None,
) -> None:
    """Invoice lines: per account and currency, active numbers and their monthly rental; with
    --due-within, the rental whose billing dates fall in that window (a monthly cycle that
    renews inside it counts again)."""
    from monitor.display import column_names
    from monitor.reports import COST_FIELDS, DUE_FIELDS, DueWindow, due, parse_when
    from monitor.reports import costs as report

    settings = state.settings
    only = column_names(columns, DUE_FIELDS if due_within is not None else COST_FIELDS)
    if due_within is not None:
        if at:
            raise ConfigError("--due-within counts from now; it cannot be combined with --at")
        within = parse_duration(due_within, "--due-within")
        if within is None:
            raise ConfigError(
                f"--due-within: cannot read {due_within!r}", hint="use a duration: 7d, 30d, 2w"
            )
        window = DueWindow.ahead(state.clock(), within, settings.rules_zone)
        rep = due(_store(settings).engine, window=window, account=account)
        title = f"rental due {window.first} to {window.last} ({window.tz}), active numbers of "
        title += f"sweep {rep.sweep.id} of {when_text(rep.sweep.started_at)}"
        print_report(
            rep,
            DUE_FIELDS,
            fmt,
            title,
            only=only,
            right=("numbers", "renewals", "amount_due", "unpriced"),
            narrow=("account_id", "currency", "numbers", "amount_due"),
            wide=wide,
        )
        return
    when = parse_when(at, settings.rules_zone, "--at") if at else None
    rep = report(_store(settings).engine, account=account, at=when)
    title = f"monthly rental of active numbers, sweep {rep.sweep.id} of "
    title += when_text(rep.sweep.started_at)
    print_report(
        rep,
        COST_FIELDS,
        fmt,
        title,
        only=only,
        right=("active_numbers", "monthly_rental", "unpriced"),
        narrow=("account_id", "currency", "active_numbers", "monthly_rental"),
        wide=wide,
    )


@cli.command()
@click.option("--since", metavar="SWEEP_ID|DATE", help="Compare this sweep with the latest.")
@_FORMAT
@pass_state
def diff(state: State, since: str | None, fmt: str | None) -> None:
    """Numbers added, removed and changed between two complete sweeps (default: the last two)."""
    from monitor.reports import DIFF_FIELDS
    from monitor.reports import diff as report

    settings = state.settings
    rep = report(_store(settings).engine, since=since, tz=settings.rules_zone)
    assert rep.since is not None
    title = f"changes from sweep {rep.since.id} ({when_text(rep.since.started_at)}) "
    title += f"to sweep {rep.sweep.id} ({when_text(rep.sweep.started_at)})"
    print_report(rep, DIFF_FIELDS, fmt, title)


# --- config, database, alerts ------------------------------------------------------------------


@cli.command("check-config")
@click.option("--strict", is_flag=True, help="Placeholder values left from the example: exit 2.")
@pass_state
def check_config(state: State, strict: bool) -> None:
    """Validate the config and print the effective settings, secrets redacted."""
    from monitor.config import placeholder_warnings

    loaded = state.loaded
    where = escape(str(loaded.path)) if loaded.path else "(no file: defaults and environment)"
    out.print(f"config: {where} is valid")
    data = redacted(loaded.settings)
    for section, values in data.items():
        if isinstance(values, list):
            for i, item in enumerate(values):
                out.print(f"\n[bold]{escape(f'[[{section}]]')}[/]  # {i}")
                for key, value in item.items():
                    _print_key(f"{section}[{i}].{key}", key, value, loaded.sources)
            continue
        out.print(f"\n[bold]\\[{section}][/]")
        for key, value in values.items():
            if isinstance(value, dict) and section == "rules":
                out.print(f"[bold]\\[rules.{key}][/]")
                for k2, v2 in value.items():
                    _print_key(f"rules.{key}.{k2}", f"  {k2}", v2, loaded.sources)
            else:
                _print_key(f"{section}.{key}", key, value, loaded.sources)
    if not loaded.settings.vobiz.auth_token:
        err.print(
            "[yellow]note:[/] no API token set (vobiz.auth_token or VOBIZ_AUTH_TOKEN); "
            "`sweep` and `run` need one"
        )
    placeholders = placeholder_warnings(loaded.settings)
    for warning in placeholders:
        err.print(f"[yellow]warning:[/] {tty(warning)}")
    if strict and placeholders:
        raise ConfigError(
            f"--strict: {len(placeholders)} placeholder value(s) in the config (warnings above)",
            hint="replace each with the real value, or disable what it belongs to",
        )


def _print_key(path: str, key: str, value: Any, sources: dict[str, str]) -> None:
    source = sources.get(path, "default")
    shown = escape(tty(json.dumps(value, ensure_ascii=False)))
    out.print(f"{escape(tty(key))} = {shown}  [dim]# {escape(tty(source))}[/]")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Bring the schema to the latest migration (idempotent)."""
    store = _store(state.settings, migrate=True)
    out.print(f"database at revision {store.revision()} (latest)")


@cli.command("test-alert")
@click.option("--channel", help="Only this channel.")
@pass_state
def test_alert(state: State, channel: str | None) -> None:
    """Send a test message to each channel and print the result per channel."""
    from monitor.alerts.deliver import send_test
    from monitor.alerts.notify import AppriseNotifier

    settings = state.settings
    if not settings.channels:
        raise ConfigError(
            "no [[channels]] configured", hint="add one to the config; see config.example.toml"
        )
    results = send_test(
        settings, AppriseNotifier(settings.alerts.delivery_timeout_seconds), channel
    )
    for name, error in results:
        if error:
            out.print(f"{tty(name)}: [red]FAILED[/] {tty(error)}")
        else:
            out.print(f"{tty(name)}: [green]ok[/]")
    if any(e for _, e in results):
        sys.exit(1)


@cli.command()
@click.option("--preview", is_flag=True, help="Render the digest without sending it.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "markdown", "text"]),
    help="Render in this format instead of each channel's own.",
)
@click.option("--channel", help="Only this channel.")
@click.option(
    "--copy-templates",
    "copy_to",
    metavar="DIR",
    help="Copy the packaged digest templates into DIR (for alerts.templates_dir) and stop.",
)
@pass_state
def digest(
    state: State, preview: bool, fmt: str | None, channel: str | None, copy_to: str | None
) -> None:
    """Show the digest each channel would get next (or got last), without sending anything.

    The body goes to stdout (redirect it to a file to open an email in a browser); which
    channel it is, and any attachment, go to stderr."""
    from monitor.alerts.plan import preview_digests

    if copy_to:
        _copy_templates(Path(copy_to))
        return
    if not preview:
        raise click.UsageError(
            "digests are sent by `sweep` and `run`; add --preview to see one without sending"
        )
    settings = state.settings
    if not settings.channels:
        raise ConfigError(
            "no [[channels]] configured", hint="add one to the config; see config.example.toml"
        )
    chosen = [settings.channel(channel)] if channel else settings.channels  # unknown: exit 2
    if not any(c.enabled for c in chosen):
        which = f"channel {channel!r} is" if channel else "every channel is"
        raise MonitorError(
            f"{which} disabled (enabled = false): no digest is made for it, so none to preview",
            hint="set enabled = true in its [[channels]] entry to preview it",
        )
    previews = preview_digests(_store(settings), settings, state.clock(), fmt)  # type: ignore[arg-type]
    shown = 0
    for item in previews:
        if channel is not None and item.channel.name != channel:
            continue
        row, name = item.stored, tty(item.channel.name)
        if item.message is None and row is None:
            err.print(f"[bold]── {name}:[/] nothing to announce, and no digest sent yet")
        elif item.message is None and fmt and row is not None and row["body_format"] != fmt:
            err.print(
                f"[bold]── {name}:[/] nothing new to announce; its last digest was sent as "
                f"{tty(row['body_format'])}, not {fmt}: drop --format to see it as it was sent"
            )
        else:
            print_preview(item, fmt)
            shown += 1
    if not shown:
        raise MonitorError(
            f"nothing to preview{f' as {fmt}' if fmt else ''}: see why for each channel above",
            hint="a channel's next digest appears once a sweep finds something new to tell it",
        )


def _copy_templates(target: Path) -> None:
    """Copy each packaged template into ``target``, never over a file already there."""
    from monitor.alerts.email import PACKAGED, TEMPLATE_NAMES

    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in TEMPLATE_NAMES:
            dest = target / name
            if dest.exists():
                out.print(f"{tty(dest)} exists: left as it is")
                continue
            dest.write_text((PACKAGED / name).read_text(encoding="utf-8"), encoding="utf-8")
            out.print(f"copied {tty(dest)}")
    except OSError as exc:
        raise ConfigError(f"--copy-templates: cannot write to {target}: {exc.strerror}") from None
    out.print(f'edit them, then set alerts.templates_dir = "{tty(target)}"')


# --- sandbox and demo ---------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--numbers", default=500, show_default=True, type=click.IntRange(0, 5_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--latency-ms", default=0.0, show_default=True, type=float, help="Added to every request."
)
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--warm", is_flag=True, help="Render every page of 100 before serving (benchmarks).")
@pass_state
def sandbox(
    state: State,
    host: str,
    port: int,
    numbers: int,
    seed: int,
    latency_ms: float,
    error_rate: float,
    warm: bool,
) -> None:
    """Serve the fake Partner API (same paths, auth, pagination and envelope) until ^C."""
    from monitor.sandbox import Sandbox

    box = Sandbox(
        numbers=numbers,
        seed=seed,
        now=state.clock(),
        host=host,
        port=port,
        latency=latency_ms / 1000,
        error_rate=error_rate,
    )
    try:
        box.bind()
    except OSError as exc:
        raise ConfigError(
            f"--host/--port: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    if warm:
        out.print(f"rendered {box.warm()} pages of 100 ahead of time")
    out.print(f"sandbox Partner API on {box.url} with {numbers} numbers (seed {seed})")
    out.print(f"  credentials: VOBIZ_AUTH_ID={box.auth_id} VOBIZ_AUTH_TOKEN={box.auth_token}")
    out.print(
        f"  try: curl -H 'X-Auth-ID: {box.auth_id}' -H 'X-Auth-Token: {box.auth_token}' "
        f"'{box.url}/api/v1/partner/numbers?per_page=2'"
    )
    try:
        box.serve_forever()
    except KeyboardInterrupt:
        out.print("sandbox stopped")


@cli.command()
@click.option("--numbers", default=300, show_default=True, type=click.IntRange(1, 200_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--db",
    "db_path",
    default="did-monitor-demo.db",
    show_default=True,
    help="SQLite file for the demo (recreated each run).",
)
@click.option(
    "--all", "show_all", is_flag=True, help="Every finding, invoice line and the whole digest."
)
@pass_state
def demo(state: State, numbers: int, seed: int, db_path: str, show_all: bool) -> None:
    """Sandbox API → sweep → SQLite → rules → a summary of what was found, then how to see it
    on the dashboard (--all: every finding and the digest that would be sent).

    Needs no config, credentials or network."""
    from monitor.demo import run_demo

    logs.setup("WARNING", "text")
    run_demo(
        numbers=numbers,
        seed=seed,
        db_path=Path(db_path),
        console=out,
        clock=state.clock,
        show_all=show_all,
    )


# --- history, silences, status, run ------------------------------------------------------------


@cli.command()
@click.argument("e164")
@_WIDE
@_COLUMNS
@pass_state
def history(state: State, e164: str, wide: bool, columns: str | None) -> None:
    """One number's stored changes over time."""
    from monitor.display import account_cell, column_names
    from monitor.model import normalize_e164
    from monitor.reports import number_history

    names = ("from", "until", "status", "account", "application", "blocked", "next billing")
    table = [
        *(Column(n, free_text=n == "account", key_first=n == "account") for n in names),
        Column("changed", free_text=True),
    ]
    only = column_names(columns, [c.name for c in table])
    store = _store(state.settings, read=True)
    e164 = normalize_e164(e164) or e164
    rows = number_history(store.history(e164))
    if not rows:
        raise MonitorError(
            f"no number {tty(e164)} in the database",
            hint="numbers are stored in E.164 form, e.g. +14155550100; see `did-monitor findings`",
        )
    last = store.last_sweep("complete")
    accounts = store.account_names(at=last["id"]) if last is not None else {}
    cells = []
    for r in rows:
        changed = r["changed"]
        cells.append(
            [
                when_text(r["from_time"]),
                when_text(r["to_time"]) if r["to_time"] else "(current)",
                tty(r["status"]),
                account_cell(r["account_id"], accounts.get(r["account_id"])),
                tty(r["application_id"] or "—"),
                "yes" if r["is_blocked"] else "no",
                (iso(r["next_billing_date"]) or "—")[:10],
                "first seen" if changed is None else tty(", ".join(changed) or "(no field change)"),
            ]
        )
    print_table(
        out,
        table,
        cells,
        title=f"history of {tty(e164)} (times in UTC)",
        narrow=("from", "status", "account", "changed"),
        wide=wide,
        only=only,
    )


@cli.group()
def silence() -> None:
    """Silence findings: tracked but not announced until the silence ends."""


@silence.command("add")
@click.option("--rule", required=True, help="Rule id, or * for every rule.")
@click.option("--number", "e164", help="Only this number (E.164).")
@click.option("--account", "account_id", help="Only this customer account (MA_...).")
@click.option(
    "--until", "until", required=True, help="Date or RFC 3339 time, or a duration like 7d / 12h."
)
@click.option("--reason", required=True)
@click.option("--by", "by", metavar="NAME", help="Who adds it (default: your user name).")
@click.option("--force", is_flag=True, help="Add it even if it matches no open finding.")
@pass_state
def silence_add(
    state: State,
    rule: str,
    e164: str | None,
    account_id: str | None,
    until: str,
    reason: str,
    by: str | None,
    force: bool,
) -> None:
    """Hold back a rule's findings (for a number or an account) until a time."""
    from monitor.model import normalize_e164
    from monitor.rules import rule_ids

    known = rule_ids(state.settings.rules)  # built-in and user-defined
    if rule != "*" and rule not in known:
        raise ConfigError(f"--rule: unknown rule {rule!r}", hint=f"rules: {', '.join(known)}, or *")
    if e164 is not None:
        number = normalize_e164(e164)
        if number is None:
            raise ConfigError(
                f"--number: {e164!r} is not a phone number in E.164 form",
                hint="a + and the country code, then the number: +918012345678",
            )
        e164 = number
    now = state.clock()
    end = parse_until(until, now)
    store = _store(state.settings)
    matches = store.open_matching(rule, e164, account_id)
    if not matches and not force:
        raise ConfigError(
            "this silence matches no open finding: check --rule, --number and --account",
            hint="see `did-monitor findings`; --force adds it anyway (for a finding to come)",
        )
    who = by if by is not None else _user_name()
    sid = store.add_silence(rule, end, reason, now, e164=e164, account_id=account_id, by=who)
    out.print(f"silence {sid} added until {iso(end)}: it matches {matches} open finding(s)")


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        return ""


MAX_SILENCE = timedelta(days=36_525)


def parse_until(text: str, now: datetime) -> datetime:
    from monitor.model import parse_time

    span = parse_duration(text, "--until")
    if span is not None:
        if span > MAX_SILENCE:
            raise ConfigError(
                f"--until: {text} is too far ahead (at most 100 years)",
                hint="a silence that should never end is better a disabled rule",
            )
        return now + span
    try:
        when = parse_time(text)
    except (ValueError, OverflowError):
        when = None
    if when is None:
        raise ConfigError(
            f"--until: cannot read {text!r}", hint="use 2026-12-31, an RFC 3339 time, or 7d / 12h"
        )
    if when <= now:
        raise ConfigError(f"--until: {text} is in the past")
    return when


@silence.command("list")
@_WIDE
@pass_state
def silence_list(state: State, wide: bool) -> None:
    """Every silence: what it covers, until when, who added it, the open findings it matches."""
    store = _store(state.settings, read=True)
    rows = store.silences()
    if not rows:
        out.print("no silences")
        return
    now = state.clock()
    names = ("id", "rule", "number", "account", "for", "until", "active", "by")
    columns = [
        *(Column(n) for n in names),
        Column("matches", right=True),
        Column("reason", free_text=True),
    ]
    default = [c.name for c in columns if c.name != "for"]  # "for": number and account in one
    cells = []
    for r in rows:
        cells.append(
            [
                str(r["id"]),
                tty(r["rule"]),
                tty(r["e164"] or "*"),
                tty(r["account_id"] or "*"),
                " ".join(tty(v) for v in (r["e164"], r["account_id"]) if v) or "*",
                when_text(r["until"]),
                "yes" if r["until"] > now else "expired",
                tty(r["created_by"] or "—"),
                str(r["matches"]),
                tty(r["reason"]),
            ]
        )
    print_table(
        out,
        columns,
        cells,
        title=f"{len(rows)} silence(s), times in UTC; matches: open findings it covers",
        narrow=("id", "rule", "for", "until", "reason"),
        wide=wide,
        default=default,
    )


@silence.command("remove")
@click.argument("silence_id", type=int)
@pass_state
def silence_remove(state: State, silence_id: int) -> None:
    store = _store(state.settings, read=True)
    if not store.remove_silence(silence_id):
        raise ConfigError(f"no silence with id {silence_id}", hint="see `did-monitor silence list`")
    out.print(f"silence {silence_id} removed")


# --- outbox -----------------------------------------------------------------------------------


@cli.group()
def outbox() -> None:
    """Deliveries not sent yet: list them, send them again, drop those that should never go."""


def _print_queued(rows: list[Any]) -> None:
    """Queued deliveries, one table per channel (no message bodies: only what identifies them)."""
    names = ("id", "kind", "status", "created", "attempts", "next attempt")
    columns = [*(Column(n) for n in names), Column("last error", free_text=True)]
    by_channel: dict[str, list[Any]] = {}
    for row in rows:
        by_channel.setdefault(row["channel"], []).append(row)
    for channel, items in by_channel.items():
        out.print(f"\n[bold]── {tty(channel)}:[/] {len(items)} queued")
        cells = [
            [
                str(r["id"]),
                tty(r["kind"]),
                r["status"],
                when_text(r["created_at"]),
                str(r["attempts"]),
                when_text(r["next_attempt_at"]) if r["next_attempt_at"] else "by hand",
                tty(r["last_error"] or ""),
            ]
            for r in items
        ]
        print_table(out, columns, cells)


@outbox.command("list")
@click.option("--channel", help="Only this channel.")
@pass_state
def outbox_list(state: State, channel: str | None) -> None:
    """Queued deliveries (pending, failed, being sent) per channel."""
    from monitor.alerts.outbox import Outbox

    rows = Outbox(_store(state.settings, read=True)).queued(channel)
    if not rows:
        out.print(f"nothing queued{f' for channel {tty(channel)}' if channel else ''}")
        return
    _print_queued(rows)


def _chosen_queued(
    state: State, channel: str | None, ids: tuple[int, ...], verb: str
) -> tuple[Any, list[Any]]:
    """The outbox and the queued deliveries ``--channel`` and ``--id`` name, printed (or said to
    be none); an ``--id`` that is not queued is an error."""
    from monitor.alerts.outbox import Outbox

    if not channel and not ids:
        raise click.UsageError(
            f"say what to {verb}: --channel NAME and/or --id N (see outbox list)"
        )
    box = Outbox(_store(state.settings, read=True))
    rows = box.queued(channel)
    if ids:
        missing = sorted(set(ids) - {r["id"] for r in rows})
        if missing:
            where = f" on channel {channel}" if channel else ""
            raise ConfigError(
                f"--id {missing[0]}: no queued delivery with that id{where}",
                hint="see `did-monitor outbox list` for the queued ones",
            )
        rows = [r for r in rows if r["id"] in ids]
    if not rows:
        out.print(f"nothing queued for channel {tty(channel)}: nothing to {verb}")
    else:
        _print_queued(rows)
    return box, rows


def _left_alone(rows: list[Any], done: list[int], what: str) -> None:
    busy = [r["id"] for r in rows if r["id"] not in done]
    if busy:
        err.print(
            f"[yellow]warning:[/] {', '.join(map(str, busy))} {what}: being sent right now "
            "(or finished meanwhile); see `did-monitor outbox list` in a moment"
        )
        sys.exit(1)


@outbox.command("retry")
@click.option("--channel", help="Every queued delivery of this channel.")
@click.option("--id", "ids", type=int, multiple=True, help="This delivery (repeatable).")
@pass_state
def outbox_retry(state: State, channel: str | None, ids: tuple[int, ...]) -> None:
    """Send queued deliveries again now, one that failed for good among them."""
    box, rows = _chosen_queued(state, channel, ids, "retry")
    if not rows:
        return
    due = box.retry([r["id"] for r in rows], state.clock())
    out.print(
        f"due now: {len(due)} (id {', '.join(map(str, due)) or 'none'}); `run` sends them "
        "within service.retry_interval_seconds, or else the next `sweep` does"
    )
    _left_alone(rows, due, "not made due")


@outbox.command("drop")
@click.option("--channel", help="Every queued delivery of this channel.")
@click.option("--id", "ids", type=int, multiple=True, help="This delivery (repeatable).")
@click.option("--yes", is_flag=True, help="Drop without asking for confirmation.")
@pass_state
def outbox_drop(state: State, channel: str | None, ids: tuple[int, ...], yes: bool) -> None:
    """Drop queued deliveries: they are kept, marked dropped, and never sent."""
    box, rows = _chosen_queued(state, channel, ids, "drop")
    if not rows:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "outbox drop: stdin is not a terminal, so it cannot ask for confirmation",
                hint="add --yes to drop without asking",
            )
        if not click.confirm(f"Drop the {len(rows)} shown above (kept, never sent)?"):
            err.print("nothing dropped")
            sys.exit(1)
    dropped = box.drop([r["id"] for r in rows], state.clock())
    out.print(f"dropped {len(dropped)} (id {', '.join(map(str, dropped)) or 'none'})")
    _left_alone(rows, dropped, "not dropped")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def status(state: State, as_json: bool) -> None:
    """Last sweep, open findings by rule and severity, channel health, next scheduled sweep."""
    from monitor.display import collect

    info = collect(state.settings, _store(state.settings, read=True), state.clock())
    if as_json:
        stdout().write(json.dumps(info, indent=2, default=json_default, ensure_ascii=False) + "\n")
        return
    from monitor.display import print_status

    print_status(info, out)


@cli.command()
@click.option(
    "--once-now", is_flag=True, help="Sweep immediately at start, then follow the schedule."
)
@pass_state
def run(state: State, once_now: bool) -> None:
    """The long-running service: migrate, then sweep on schedule until SIGTERM/SIGINT/SIGHUP."""
    from monitor.service import Service

    settings = state.settings
    store = _store(settings)
    service = Service(settings, store, run_now=once_now, clock=state.clock)
    code = service.run_forever()
    if service.left_behind:
        # A send still running in Apprise's worker threads would hold the interpreter's exit
        # (it joins them) past the shutdown bound, and then complete a delivery the outbox has
        # handed back for a retry: end now instead.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
