"""The ``did-monitor`` command: it reads arguments, calls the module doing the work and hands
what it returns to ``display.py`` (all terminal output lives there).

Longer than 400 lines because it is a flat list of small commands; splitting the list would
only scatter the command surface.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from monitor import __version__, display, logs, redact, reports
from monitor.alerts.outbox import Outbox
from monitor.clock import Clock, system_clock
from monitor.config import LoadedConfig, Settings, load, placeholder_warnings
from monitor.display import HISTORY, REPORTS, note, print_report, say
from monitor.errors import ConfigError, DatabaseError, LockBusy, MonitorError, SweepCancelled
from monitor.model import normalize_e164, parse_time
from monitor.store import Store
from monitor.store.db import MAX_ROW_ID
from monitor.vocab import iso, parse_duration


class State:
    """Per-invocation state: the config is loaded once, on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self.clock: Clock = system_clock  # the one place a CLI process takes the time from

    @cached_property
    def loaded(self) -> LoadedConfig:
        loaded = load(self.config_path)
        for warning in loaded.warnings:
            note("warning:", warning)
        logs.setup(loaded.settings.logging.level, loaded.settings.logging.format)
        return loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    def store(self, *, read: bool = False, migrate: bool | None = None) -> Store:
        """The store; ``read``: for commands that only look, which never create a database."""
        url = self.settings.database.url
        if read and not _exists(url):
            raise DatabaseError(
                f"no database at {redact.mask_url(url, keep_path=True)}: "
                "nothing has been swept into it yet",
                hint="run `did-monitor sweep` first, or check database.url (and --config)",
            )
        store = Store(url)
        if self.settings.database.auto_migrate if migrate is None else migrate:
            store.migrate()
        return store

    def with_channels(self) -> Settings:
        if not self.settings.channels:
            raise ConfigError(
                "no [[channels]] configured", hint="add one to the config; see config.example.toml"
            )
        return self.settings


def _exists(url: str) -> bool:
    """False only for an SQLite file that is not there."""
    try:
        parsed = make_url(url)
    except Exception:
        return True  # the engine reports a bad URL in its own words
    is_file = parsed.get_backend_name() == "sqlite" and bool(parsed.database)
    return not is_file or Path(parsed.database or "").exists()


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


def command(name: str | None = None, group: click.Group = cli) -> Callable[[Any], click.Command]:
    """A subcommand of ``group`` that is handed the invocation's ``State`` first."""
    return lambda f: group.command(name)(click.make_pass_decorator(State)(f))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except MonitorError as exc:  # a database that is down or not migrated is a DatabaseError
        display.error(str(exc))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        say("aborted", to=display.err)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        say("interrupted", to=display.err)
        sys.exit(130)


# Options several commands take, declared once.
_WIDE = click.option(
    "--wide", is_flag=True, help="Every column, even on a terminal too narrow for them."
)
_COLUMNS = click.option(
    "--columns", metavar="A,B,C", help="Only these columns, in this order (table, CSV)."
)
_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(display.FORMATS),
    help="Output format (default: table on a terminal, CSV otherwise).",
)
_CHANNEL = click.option("--channel", help="Only this channel.")
_ACCOUNT = click.option("--account", help="Only this customer account (MA_...).")
ROW_ID = click.IntRange(1, MAX_ROW_ID)  # a silence or delivery id the database can hold
_SEED = click.option("--seed", default=1, show_default=True, type=int)


@command()
@click.option("--no-progress", is_flag=True, help="Log lines instead of a progress bar.")
def sweep(state: State, no_progress: bool) -> None:
    """One full cycle now: fetch every number, store, evaluate rules, deliver alerts."""
    from monitor.alerts.notify import AppriseNotifier
    from monitor.pipeline import run_cycle

    settings, store = state.settings, state.store()
    received: list[str] = []  # the signals that stopped it
    notifier = AppriseNotifier(settings.alerts.delivery_timeout_seconds)
    try:
        with display.progress(not no_progress) as progress, _interruptible(received) as stop:
            outcome = run_cycle(  # trigger: "manual"
                settings, store, notifier, clock=state.clock, progress=progress, cancel=stop
            )
    except LockBusy as exc:
        say(exc.message)
        return
    except (SweepCancelled, KeyboardInterrupt):
        by = (received or ["SIGINT"])[0]
        note(
            "interrupted", f"by {by}: the sweep was rolled back and recorded as aborted", "bold red"
        )
        sys.exit(128 + signal.Signals[by].value)  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    display.print_outcome(outcome)
    if not outcome.ok or outcome.partial or outcome.delivery_failures:
        sys.exit(1)


@contextmanager
def _interruptible(names: list[str]) -> Iterator[threading.Event]:
    """SIGTERM, SIGHUP and ^C set the event the running sweep stops at (it rolls back and is
    marked aborted), their names added to ``names``; a second one interrupts at once. The handler
    only sets an event: raising inside worker handshakes could leave a lock held and the process
    unable to exit."""
    from monitor.service import STOP_SIGNALS  # not at the top: it would slow every command

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        names.append(signal.Signals(signum).name)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()  # else: leave signals alone
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS if in_main}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, for scripts.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved and silenced findings.")
@_WIDE
@_COLUMNS
def findings(state: State, as_json: bool, show_all: bool, wide: bool, columns: str | None) -> None:
    """Open findings, most urgent first: by severity, then due date, then rule (with --all:
    silenced and resolved ones too)."""
    only = display.FINDINGS.pick(columns)
    store, now = state.store(read=True), state.clock()
    batches = (  # the store's open findings include silenced ones
        [r for r in b if show_all or r.state == "open"]
        for b in store.iter_findings(now, include_closed=show_all)
    )
    if as_json:  # written batch by batch as the rows arrive
        display.print_findings_json(batches, Outbox(store).notifications_for)
        return
    rows = [r for b in batches for r in b]
    silenced = 0 if show_all else sum(store.silenced_counts(now).values())
    zone = state.settings.rules_zone
    display.print_findings(rows, silenced=silenced, tz=zone, wide=wide, only=only)


@command()
@_ACCOUNT
@click.option("--status", help="Only numbers in this status (e.g. active).")
@click.option("--country", help="Only numbers in this country (ISO-2, e.g. IN).")
@_FORMAT
@_WIDE
@_COLUMNS
def inventory(
    state: State, /, account: str | None, status: str | None, country: str | None, **view: Any
) -> None:
    """The numbers of the latest complete sweep, one row each."""
    only = REPORTS["inventory"].pick(view.pop("columns"))
    store = state.store()
    rep = reports.inventory(store.engine, account=account, status=status, country=country)
    print_report(rep, names=store.account_names(at=rep.sweep.id), only=only, **view)


@command()
@_ACCOUNT
@click.option("--at", metavar="DATE", help="As of the complete sweep in force then.")
@click.option(
    "--due-within",
    metavar="DURATION",
    help="Instead: the rental falling due from now for this long (e.g. 7d, 30d, 2w).",
)
@_FORMAT
@_WIDE
@_COLUMNS
def costs(
    state: State, /, account: str | None, at: str | None, due_within: str | None, **view: Any
) -> None:
    """Invoice lines: per account and currency, active numbers and their monthly rental; with
    --due-within, the rental whose billing dates fall in that window (a monthly cycle that
    renews inside it counts again)."""
    zone = state.settings.rules_zone
    only = REPORTS["costs" if due_within is None else "due"].pick(view.pop("columns"))
    if due_within is None:
        when = reports.parse_when(at, zone, "--at") if at else None
        rep = reports.costs(state.store().engine, account=account, at=when)
    else:
        if at:
            raise ConfigError("--due-within counts from now; it cannot be combined with --at")
        within = parse_ahead(due_within, "--due-within")
        if within is None:
            raise ConfigError(
                f"--due-within: cannot read {due_within!r}", hint="use a duration: 7d, 30d, 2w"
            )
        window = reports.DueWindow.ahead(state.clock(), within, zone)
        rep = reports.due(state.store().engine, window=window, account=account)
    print_report(rep, only=only, **view)


@command()
@click.option("--since", metavar="SWEEP_ID|DATE", help="Compare this sweep with the latest.")
@_FORMAT
def diff(state: State, since: str | None, fmt: str | None) -> None:
    """Numbers added, removed and changed between two complete sweeps (default: the last two)."""
    rep = reports.diff(state.store().engine, since=since, tz=state.settings.rules_zone)
    print_report(rep, fmt)


@command()
@click.argument("e164")
@_WIDE
@_COLUMNS
def history(state: State, e164: str, wide: bool, columns: str | None) -> None:
    """One number's stored changes over time."""
    only = HISTORY.pick(columns)
    store = state.store(read=True)
    e164 = normalize_e164(e164) or e164
    rows = reports.number_history(store.history(e164))
    if not rows:
        raise MonitorError(
            f"no number {e164} in the database",
            hint="numbers are stored in E.164 form, e.g. +14155550100; see `did-monitor findings`",
        )
    last = store.last_sweep("complete")
    names = store.account_names(at=last["id"]) if last is not None else {}
    display.print_history(e164, rows, names, wide=wide, only=only)


@command()
@click.option("--json", "as_json", is_flag=True)
def status(state: State, as_json: bool) -> None:
    """Last sweep, open findings by rule and severity, channel health, next scheduled sweep."""
    from monitor.health import collect

    info = collect(state.settings, state.store(read=True), state.clock())
    display.print_json(info) if as_json else display.print_status(info)


@command("check-config")
@click.option("--strict", is_flag=True, help="Placeholder values left from the example: exit 2.")
def check_config(state: State, strict: bool) -> None:
    """Validate the config and print the effective settings, secrets redacted."""
    placeholders = placeholder_warnings(state.settings)
    display.print_config(state.loaded, placeholders)
    if strict and placeholders:
        raise ConfigError(
            f"--strict: {len(placeholders)} placeholder value(s) in the config (warnings above)",
            hint="replace each with the real value, or disable what it belongs to",
        )


@cli.group()
def db() -> None:
    """Database maintenance."""


@command("upgrade", db)
def db_upgrade(state: State) -> None:
    """Bring the schema to the latest migration (idempotent)."""
    say(f"database at revision {state.store(migrate=True).revision()} (latest)")


@command("test-alert")
@_CHANNEL
def test_alert(state: State, channel: str | None) -> None:
    """Send a test message to each channel and print the result per channel."""
    from monitor.alerts.deliver import send_test
    from monitor.alerts.notify import AppriseNotifier

    settings = state.with_channels()
    _refuse_disabled(settings, channel, "nothing is sent to it, not even a test alert", "test it")
    notifier = AppriseNotifier(settings.alerts.delivery_timeout_seconds)
    results = send_test(settings, notifier, channel)
    display.print_test_results(results)
    if any(e for _, e in results):
        sys.exit(1)


@command()
@click.option("--preview", is_flag=True, help="Render the digest without sending it.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "markdown", "text"]),
    help="Render in this format instead of each channel's own.",
)
@_CHANNEL
@click.option(
    "--copy-templates",
    "copy_to",
    metavar="DIR",
    help="Copy the packaged digest templates into DIR (for alerts.templates_dir) and stop.",
)
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
    settings = state.with_channels()
    nothing = "no digest is made for it, so none to preview"
    _refuse_disabled(settings, channel, nothing, "preview it")
    previews = preview_digests(state.store(), settings, state.clock(), fmt)  # type: ignore[arg-type]
    if not display.print_previews(previews, channel, fmt):
        raise MonitorError(
            f"nothing to preview{f' as {fmt}' if fmt else ''}: see why for each channel above",
            hint="a channel's next digest appears once a sweep finds something new to tell it",
        )


def _refuse_disabled(settings: Settings, channel: str | None, nothing: str, to: str) -> None:
    """Exit 1 saying so when the channel named (or, with none, every channel) is disabled:
    nothing is made or sent for it (``nothing`` says what not), so a command has nothing to do
    for it. A name not configured exits 2."""
    chosen = [settings.channel(channel)] if channel else settings.channels
    if not any(c.enabled for c in chosen):
        which = f"channel {channel!r} is" if channel else "every channel is"
        raise MonitorError(
            f"{which} disabled (enabled = false): {nothing}",
            hint=f"set enabled = true in its [[channels]] entry to {to}",
        )


def _copy_templates(target: Path) -> None:
    """Copy each packaged template into ``target``, never over a file already there."""
    from monitor.alerts.email import PACKAGED, TEMPLATE_NAMES

    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in TEMPLATE_NAMES:
            dest = target / name
            if dest.exists():
                say(f"{dest} exists: left as it is")
                continue
            dest.write_text((PACKAGED / name).read_text(encoding="utf-8"), encoding="utf-8")
            say(f"copied {dest}")
    except OSError as exc:
        raise ConfigError(f"--copy-templates: cannot write to {target}: {exc.strerror}") from None
    say(f'edit them, then set alerts.templates_dir = "{target}"')


@command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--numbers", default=500, show_default=True, type=click.IntRange(0, 5_000_000))
@_SEED
@click.option(
    "--latency-ms", default=0.0, show_default=True, type=float, help="Added to every request."
)
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--warm", is_flag=True, help="Render every page of 100 before serving (benchmarks).")
def sandbox(state: State, /, latency_ms: float, warm: bool, **options: Any) -> None:
    """Serve the fake Partner API (same paths, auth, pagination and envelope) until ^C."""
    from monitor.sandbox import Sandbox

    box = Sandbox(now=state.clock(), latency=latency_ms / 1000, **options)
    try:
        box.bind()
    except OSError as exc:
        raise ConfigError(
            f"--host/--port: cannot listen on {box.host}:{box.port}: {exc.strerror}"
        ) from None
    if warm:
        say(f"rendered {box.warm()} pages of 100 ahead of time")
    auth = f"-H 'X-Auth-ID: {box.auth_id}' -H 'X-Auth-Token: {box.auth_token}'"
    say(
        f"sandbox Partner API on {box.url} with {options['numbers']} numbers "
        f"(seed {options['seed']})",
        f"  credentials: VOBIZ_AUTH_ID={box.auth_id} VOBIZ_AUTH_TOKEN={box.auth_token}",
        f"  try: curl {auth} '{box.url}/api/v1/partner/numbers?per_page=2'",
    )
    try:
        box.serve_forever()
    except KeyboardInterrupt:
        say("sandbox stopped")


@command()
@click.option("--numbers", default=300, show_default=True, type=click.IntRange(1, 200_000))
@_SEED
@click.option(
    "--db",
    "db_path",
    default="did-monitor-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file for the demo (recreated each run).",
)
@click.option(
    "--all", "show_all", is_flag=True, help="Every finding, invoice line and the whole digest."
)
def demo(state: State, /, **options: Any) -> None:
    """Sandbox API → sweep → SQLite → rules → a summary of what was found, then how to see it
    on the dashboard (--all: every finding and the digest that would be sent).

    Needs no config, credentials or network."""
    from monitor.demo import run_demo

    logs.setup("WARNING", "text")
    run_demo(clock=state.clock, **options)


@cli.group()
def silence() -> None:
    """Silence findings: tracked but not announced until the silence ends."""


@command("add", silence)
@click.option("--rule", required=True, help="Rule id, or * for every rule.")
@click.option("--number", "e164", help="Only this number (E.164).")
@click.option("--account", "account_id", help="Only this customer account (MA_...).")
@click.option("--until", required=True, help="Date or RFC 3339 time, or a duration like 7d / 12h.")
@click.option("--reason", required=True)
@click.option("--by", metavar="NAME", help="Who adds it (default: your user name).")
@click.option("--force", is_flag=True, help="Add it even if it matches no open finding.")
def silence_add(state: State, /, rule: str, until: str, force: bool, **silence: Any) -> None:
    """Hold back a rule's findings (for a number or an account) until a time."""
    from monitor.rules import rule_ids

    known = rule_ids(state.settings.rules)  # built-in and user-defined
    if rule != "*" and rule not in known:
        raise ConfigError(f"--rule: unknown rule {rule!r}", hint=f"rules: {', '.join(known)}, or *")
    if (e164 := silence["e164"]) is not None:
        silence["e164"] = normalize_e164(e164)
        if silence["e164"] is None:
            raise ConfigError(
                f"--number: {e164!r} is not a phone number in E.164 form",
                hint="a + and the country code, then the number: +918012345678",
            )
    now = state.clock()
    end = parse_until(until, now)
    store = state.store()
    matches = store.open_matching(rule, silence["e164"], silence["account_id"])
    if not matches and not force:
        raise ConfigError(
            "this silence matches no open finding: check --rule, --number and --account",
            hint="see `did-monitor findings`; --force adds it anyway (for a finding to come)",
        )
    if silence["by"] is None:
        silence["by"] = ""
        with suppress(OSError, KeyError):  # no user name in the environment or password database
            silence["by"] = getpass.getuser()
    sid = store.add_silence(rule, end, silence.pop("reason"), now, **silence)
    say(f"silence {sid} added until {iso(end)}: it matches {matches} open finding(s)")


MAX_AHEAD = timedelta(days=36_525)  # 100 years: how far --until and --due-within reach


def parse_ahead(text: str, option: str, hint: str | None = None) -> timedelta | None:
    """``vocab.parse_duration`` of an option that reaches ahead of now: ``ConfigError`` past
    ``MAX_AHEAD`` (no calendar or forecast goes on for ever), ``None`` for what is no duration."""
    span = parse_duration(text, option)
    if span is not None and span > MAX_AHEAD:
        raise ConfigError(f"{option}: {text} is too far ahead (at most 100 years)", hint=hint)
    return span


def parse_until(text: str, now: datetime) -> datetime:
    span = parse_ahead(
        text, "--until", hint="a silence that should never end is better a disabled rule"
    )
    try:
        when = now + span if span is not None else parse_time(text)
    except (ValueError, OverflowError):
        when = None
    if when is None:
        raise ConfigError(
            f"--until: cannot read {text!r}", hint="use 2026-12-31, an RFC 3339 time, or 7d / 12h"
        )
    if when <= now:
        raise ConfigError(f"--until: {text} is in the past")
    return when


@command("list", silence)
@_WIDE
def silence_list(state: State, wide: bool) -> None:
    """Every silence: what it covers, until when, who added it, the open findings it matches."""
    display.print_silences(state.store(read=True).silences(), state.clock(), wide=wide)


@command("remove", silence)
@click.argument("silence_id", type=ROW_ID)
def silence_remove(state: State, silence_id: int) -> None:
    if not state.store(read=True).remove_silence(silence_id):
        raise ConfigError(f"no silence with id {silence_id}", hint="see `did-monitor silence list`")
    say(f"silence {silence_id} removed")


@cli.group()
def outbox() -> None:
    """Deliveries not sent yet: list them, send them again, drop those that should never go."""


@command("list", outbox)
@_CHANNEL
def outbox_list(state: State, channel: str | None) -> None:
    """Queued deliveries (pending, failed, being sent, held: channel off) per channel."""
    rows = Outbox(state.store(read=True)).queued(channel)
    if not rows:
        say(f"nothing queued{f' for channel {channel}' if channel else ''}")
    display.print_queued(rows)


_QUEUED_OF = click.option("--channel", help="Every queued delivery of this channel.")
_IDS = click.option("--id", "ids", type=ROW_ID, multiple=True, help="This delivery (repeatable).")


def _chosen(
    state: State, channel: str | None, ids: tuple[int, ...], verb: str
) -> tuple[Outbox, list[Any]]:
    """The outbox and the queued deliveries ``--channel`` and ``--id`` name, printed (or said to
    be none); an ``--id`` that is not queued is an error."""
    if not channel and not ids:
        raise click.UsageError(
            f"say what to {verb}: --channel NAME and/or --id N (see outbox list)"
        )
    box = Outbox(state.store(read=True))
    rows = box.queued(channel)
    if missing := sorted(set(ids) - {r["id"] for r in rows}):
        where = f" on channel {channel}" if channel else ""
        raise ConfigError(
            f"--id {missing[0]}: no queued delivery with that id{where}",
            hint="see `did-monitor outbox list` for the queued ones",
        )
    rows = [r for r in rows if not ids or r["id"] in ids]
    if not rows:
        say(f"nothing queued for channel {channel}: nothing to {verb}")
    display.print_queued(rows)
    return box, rows


def _left_alone(rows: list[Any], done: list[int], what: str) -> None:
    """Exit 1 naming the deliveries of ``rows`` not ``done``: being sent right now."""
    if busy := [r["id"] for r in rows if r["id"] not in done]:
        note(
            "warning:",
            f"{', '.join(map(str, busy))} {what}: being sent right now "
            "(or finished meanwhile); see `did-monitor outbox list` in a moment",
        )
        sys.exit(1)


@command("retry", outbox)
@_QUEUED_OF
@_IDS
def outbox_retry(state: State, channel: str | None, ids: tuple[int, ...]) -> None:
    """Send queued deliveries again now, one that failed for good among them."""
    box, rows = _chosen(state, channel, ids, "retry")
    enabled = {c.name for c in state.settings.channels if c.enabled}
    if off := sorted({r["channel"] for r in rows} - enabled):
        raise ConfigError(
            f"channel {off[0]} is disabled or not in the config: retried, its deliveries "
            "would be held again",
            hint=f"set enabled = true on channel {off[0]!r} first, or `did-monitor outbox drop`",
        )
    if rows:
        due = box.retry([r["id"] for r in rows], state.clock())
        say(
            f"due now: {len(due)} (id {', '.join(map(str, due)) or 'none'}); `run` sends them "
            "within service.retry_interval_seconds, or else the next `sweep` does"
        )
        _left_alone(rows, due, "not made due")


@command("drop", outbox)
@_QUEUED_OF
@_IDS
@click.option("--yes", is_flag=True, help="Drop without asking for confirmation.")
def outbox_drop(state: State, channel: str | None, ids: tuple[int, ...], yes: bool) -> None:
    """Drop queued deliveries: they are kept, marked dropped, and never sent."""
    box, rows = _chosen(state, channel, ids, "drop")
    if not rows:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "outbox drop: stdin is not a terminal, so it cannot ask for confirmation",
                hint="add --yes to drop without asking",
            )
        if not click.confirm(f"Drop the {len(rows)} shown above (kept, never sent)?"):
            say("nothing dropped", to=display.err)
            sys.exit(1)
    dropped = box.drop([r["id"] for r in rows], state.clock())
    say(f"dropped {len(dropped)} (id {', '.join(map(str, dropped)) or 'none'})")
    _left_alone(rows, dropped, "not dropped")


@command()
@click.option(
    "--once-now", is_flag=True, help="Sweep immediately at start, then follow the schedule."
)
def run(state: State, once_now: bool) -> None:
    """The long-running service: migrate, then sweep on schedule until SIGTERM/SIGINT/SIGHUP."""
    from monitor.service import Service

    service = Service(state.settings, state.store(), run_now=once_now, clock=state.clock)
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
