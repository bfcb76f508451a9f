"""Planning: finding lifecycle → per-channel digests → outbox rows, in the sweep's transaction.

Alerts are rows before they are messages: a digest is rendered and stored in the same transaction
as the findings it announces, then sent from the outbox, and every attempt is recorded. Delivery
(retries, backoff, failures kept in the outbox) is ``alerts.deliver``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection, RowMapping

from monitor.alerts.chat import render_sweep_failed, render_sweep_partial, render_unreadable_dates
from monitor.alerts.compose import Message, compose
from monitor.alerts.digest import DUE_DAYS, Digest, rental_at_risk
from monitor.alerts.outbox import (
    AnnounceState,
    Outbox,
    add_delivery,
    add_notifications,
    load_announce_state,
    numbers_per_account,
)
from monitor.config import ChannelConfig, Settings
from monitor.findings import FindingView, urgency, view
from monitor.reports import DueWindow, Forecast, forecast
from monitor.rules import event_rules, rule_ids
from monitor.store import Store
from monitor.store.db import latest_sweeps
from monitor.vocab import SEVERITY_RANK, Format

Render = Callable[[Format], tuple[str, str]]  # a service message's title and body in a format


# --- routing ----------------------------------------------------------------------------------


def matches(channel: ChannelConfig, finding: RowMapping | dict[str, Any]) -> bool:
    """Whether ``channel``'s own filters (severity, rule, account, tag) accept ``finding``."""
    if SEVERITY_RANK[finding["severity"]] < SEVERITY_RANK[channel.min_severity]:
        return False
    if channel.rules and finding["rule"] not in channel.rules:
        return False
    if channel.accounts and finding["account_id"] not in channel.accounts:
        return False
    return not (channel.tags and not set(channel.tags) & set(finding["tags"] or ()))


def route(channels: Sequence[ChannelConfig], finding: RowMapping | dict[str, Any]) -> list[str]:
    """Channels that receive ``finding``: every matching channel; default channels take the rest."""
    active = [c for c in channels if c.enabled]
    chosen = [c.name for c in active if not c.default and matches(c, finding)]
    if chosen:
        return chosen
    return [c.name for c in active if c.default and matches(c, finding)]


# --- planning ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """One channel's digest, and the notification rows that record what it announces."""

    channel: ChannelConfig
    digest: Digest = field(default_factory=Digest)
    notifications: list[dict[str, Any]] = field(default_factory=list)


def plan_digests(
    state: AnnounceState,
    settings: Settings,
    now: datetime,
    numbers_swept: int,
    per_account: dict[str, int] | None = None,
    caveat: str = "",
    notes: str = "",
) -> list[Plan]:
    """Decide what each channel is told after a complete sweep (pure: no I/O).

    New: open, unsilenced findings routed to this channel that it has not announced. Reminders:
    open findings whose reminder tier is more urgent than the one last announced. Resolved:
    findings resolved by this sweep that the channel had announced (and not yet as resolved),
    whatever the routing says now: a channel told of a problem hears it cleared, though the
    finding's severity or the channel's filters changed since. A channel with none of these gets
    nothing. Open findings of a rule that is off now (for the finding's account) or gone from the
    config are left out: lifecycle leaves them open, as they were, but they are neither announced
    nor counted (still open, rental at risk). A digest carries ``caveat`` (why the sweep was
    partial); a partner channel's carries ``notes`` too, as a summary line of its own (numbers
    with an unreadable date, which may be any customer's).
    """
    plans = {c.name: Plan(c) for c in settings.channels if c.enabled}
    if not plans:
        return []
    # Each channel's open numbers, silenced or not, by number: its rental at risk.
    exposed: dict[str, dict[str, FindingView]] = {name: {} for name in plans}
    tables = {rid: settings.rules.rule(rid) for rid in rule_ids(settings.rules, enabled_only=True)}
    for row in state.open:
        table = tables.get(row["rule"])
        if table is None or not table.for_account(row["account_id"]).enabled:
            continue  # its rule is off (for this account) or gone: left open, not announced
        item = view(row)
        for name in route(settings.channels, row):
            exposed[name].setdefault(item.e164, item)
            if row.get("silenced", False):
                continue
            plan = plans[name]
            told = state.told.get((row["id"], name))
            if told is None or not told.opened:
                plan.digest.new.append(item)
                plan.notifications.append(_note(row, name, "opened", now))
            elif row["tier"] is not None and (told.tier is None or row["tier"] < told.tier):
                plan.digest.reminders.append(item)
                plan.notifications.append(_note(row, name, "reminded", now))
            else:  # announced and quiet: one of the "other findings still open"
                plan.digest.still_open += 1
    if settings.alerts.resolved:
        events = event_rules()  # they resolve themselves: "resolved" would be noise
        for row in state.resolved_now:
            if row["rule"] in events:
                continue
            for name, plan in plans.items():  # every enabled channel, not just today's route
                told = state.told.get((row["id"], name))
                if told is not None and told.opened and not told.resolved:
                    plan.digest.resolved.append(view(row))
                    plan.notifications.append(_note(row, name, "resolved", now))
    out = []
    for plan in plans.values():
        d = plan.digest
        # A customer's channel learns its own inventory size, never the partner's.
        accounts = plan.channel.accounts
        d.numbers_swept = (
            sum((per_account or {}).get(a, 0) for a in accounts) if accounts else numbers_swept
        )
        d.swept_at, d.tz = now, settings.rules_zone
        d.caveat = caveat
        d.notes = "" if accounts else notes
        d.at_risk = rental_at_risk(list(exposed[plan.channel.name].values()))
        for section in (d.new, d.reminders, d.resolved):
            section.sort(key=urgency)  # the one order: severity, due date, rule
        if not d.is_quiet:
            out.append(plan)
    return out


def _planned(
    conn: Connection,
    settings: Settings,
    sweep_id: int,
    now: datetime,
    *,
    numbers_swept: int,
    notes: str,
    caveat: str = "",
) -> list[Plan]:
    """``plan_digests`` for sweep ``sweep_id`` from what the database holds, with each digest's
    rental falling due."""
    state = load_announce_state(conn, sweep_id, now)
    per_account = numbers_per_account(conn) if any(c.accounts for c in settings.channels) else None
    plans = plan_digests(state, settings, now, numbers_swept, per_account, caveat, notes)
    add_due_soon(conn, plans, now, settings.rules_zone)
    return plans


def add_due_soon(conn: Connection, plans: Sequence[Plan], now: datetime, tz: tzinfo) -> None:
    """Give each digest the rental falling due in the next ``DUE_DAYS`` days (whole days of
    ``tz``, today included), of the numbers its channel may see (a customer's channel: its
    accounts' only), from the one forecast."""
    window = DueWindow.ahead(now, timedelta(days=DUE_DAYS), tz)
    seen: dict[tuple[str, ...], Forecast] = {}
    for plan in plans:
        accounts = plan.channel.accounts
        fc = seen.get(accounts)
        if fc is None:
            fc = seen[accounts] = forecast(conn, None, window, accounts or None)
        plan.digest.due_soon = {c: fc.totals[c].amount_due for c in sorted(fc.totals)}
        plan.digest.due_undated = len(fc.undated)


def _note(row: RowMapping, channel: str, event: str, now: datetime) -> dict[str, Any]:
    return dict(
        finding_id=row["id"], channel=channel, event=event, tier=row["tier"], created_at=now
    )


def store_digests(
    conn: Connection,
    settings: Settings,
    sweep_id: int,
    now: datetime,
    numbers_swept: int,
    caveat: str = "",
    notes: str = "",
) -> int:
    """Plan and store this sweep's digests in the sweep's own transaction; returns how many.

    ``caveat`` is set when the sweep was partial; a digest carries it, and every partner channel
    that gets no digest gets it as a notice of its own, so a quiet partial sweep is never
    silent (it resolves nothing until a sweep reads every item). ``notes`` (what the sweep read
    but could not check: numbers with an unreadable date, ``sweep.UnreadableDates``) are a line
    of every partner channel's digest; a partner channel without a digest gets them as an
    ``unreadable_dates`` notice only when they differ from the last complete sweep's notes, so
    one bad date in the API's data is announced once, not after every sweep."""
    if not any(c.enabled for c in settings.channels):
        return 0  # nobody to tell: do not load every open finding for nothing
    plans = _planned(
        conn, settings, sweep_id, now, numbers_swept=numbers_swept, caveat=caveat, notes=notes
    )
    for plan in plans:
        chan = plan.channel
        msg = compose(plan.digest, chan, settings.alerts)
        delivery_id = add_delivery(
            conn, channel=chan.name, kind="digest", now=now, sweep_id=sweep_id, **asdict(msg)
        )
        add_notifications(conn, [n | {"delivery_id": delivery_id} for n in plan.notifications])
    told = {plan.channel.name for plan in plans}  # their digest carries caveat and notes
    if caveat:
        render = partial(render_sweep_partial, caveat, swept_at=now)
        _broadcast(conn, settings, "sweep_partial", render, now, sweep_id=sweep_id, exclude=told)
    if notes and notes != _previous_notes(conn, sweep_id):
        render = partial(render_unreadable_dates, notes, swept_at=now)
        _broadcast(conn, settings, "unreadable_dates", render, now, sweep_id=sweep_id, exclude=told)
    return len(plans)


def _previous_notes(conn: Connection, sweep_id: int) -> str:
    """The notes of the last complete sweep before ``sweep_id`` ("" without one): what the
    partner channels were last told about numbers with an unreadable date."""
    previous = latest_sweeps(conn, "complete", before=sweep_id)
    return (previous[0]["notes"] if previous else None) or ""


@dataclass
class Preview:
    """What a channel's next digest would be (``message``), or else its last one (``stored``)."""

    channel: ChannelConfig
    message: Message | None = None
    stored: RowMapping | None = None


def preview_digests(
    store: Store, settings: Settings, now: datetime, fmt: Format | None = None
) -> list[Preview]:
    """Render, without storing or sending, the digest each enabled channel would get if the last
    complete sweep were announced now; a channel with nothing to announce shows its last
    stored digest instead. ``fmt`` overrides each channel's body format."""
    last = store.last_sweep("complete")
    digests: dict[str, Digest] = {}
    if last is not None:
        notes = last["notes"] or ""  # what the sweep could not check, as its digest said
        with store.connect() as conn:
            swept = last["numbers_seen"]
            found = _planned(conn, settings, last["id"], now, numbers_swept=swept, notes=notes)
        for plan in found:
            plan.digest.swept_at = last["started_at"]
            digests[plan.channel.name] = plan.digest
    outbox = Outbox(store)
    return [
        Preview(chan, message=compose(digests[chan.name], chan, settings.alerts, fmt))
        if chan.name in digests
        else Preview(chan, stored=outbox.last_digest(chan.name))
        for chan in settings.channels
        if chan.enabled
    ]


def _broadcast(
    conn: Connection,
    settings: Settings,
    kind: str,
    render: Render,
    now: datetime,
    *,
    sweep_id: int | None = None,
    exclude: Collection[str] = (),
) -> int:
    """Store one service message for every enabled channel not in ``exclude``, in ``conn``'s
    transaction; returns how many.

    Channels scoped to customer accounts are left out: a reseller's customer hears about its own
    numbers, not about the partner's sweeps or other channels.
    """
    targets = [
        c for c in settings.channels if c.enabled and c.name not in exclude and not c.accounts
    ]
    for chan in targets:
        fmt = chan.body_format()
        title, body = render(fmt)
        msg = Message(title, body, fmt)
        add_delivery(conn, channel=chan.name, kind=kind, now=now, sweep_id=sweep_id, **asdict(msg))
    return len(targets)


def enqueue_sweep_failed(
    store: Store, settings: Settings, sweep_id: int, error: str, now: datetime
) -> int:
    with store.begin() as conn:
        render = partial(render_sweep_failed, error, failed_at=now)
        return _broadcast(conn, settings, "sweep_failed", render, now, sweep_id=sweep_id)
