"""The one finding view: a stored finding (with its number, account, silence and dates) as the
record every output draws, and its urgency order.

``store.finding_query`` is the one query that lists findings for every output (the CLI table,
``--json``, the digests and their CSV, the dashboard): it decides in SQL whether a finding is
silenced and what its ``last_seen`` is. ``view`` turns one of its rows into a ``FindingView``;
renderers only draw that record, through ``vocab``'s words.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import RowMapping

from monitor import vocab


@dataclass(frozen=True)
class FindingView:
    """A finding as every output shows it. ``e164`` holds the number, or for a finding without
    one (``has_number`` false: about an account or an availability watch) its subject
    ("account:<id>", "availability:<country>:<region>"). ``state`` is "open", "silenced" (open,
    under a silence active now) or "resolved"."""

    rule: str
    severity: str
    e164: str
    account_id: str
    message: str
    tags: tuple[str, ...] = ()
    monthly_fee: Decimal | None = None
    currency: str | None = None
    tier: int | None = None
    due_at: datetime | None = None
    account_name: str | None = None
    has_number: bool = True
    id: int | None = None
    number_id: str | None = None
    state: str = "open"
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    resolved_at: datetime | None = None
    subject: str = ""  # what the finding is about: its identity with the rule


# The fields that default to None, which ``view`` copies from a row as they are (when present).
_AS_STORED = tuple(f.name for f in fields(FindingView) if f.default is None)


def view(row: Mapping[str, Any] | RowMapping) -> FindingView:
    """The view of one row of ``store.finding_query`` (or of any finding row with the findings
    table's columns; ``silenced`` and ``account_name`` are read when present)."""
    state = row.get("state") or "open"
    if state == "open" and row.get("silenced"):
        state = "silenced"
    tags = row.get("tags")
    return FindingView(
        rule=row["rule"],
        severity=row["severity"],
        e164=row["e164"] or row.get("subject") or "",
        account_id=row["account_id"] or "",
        message=row["message"],
        tags=_tag_list(tags) if isinstance(tags, str) else tuple(str(t) for t in tags or ()),
        has_number=row["e164"] is not None,
        state=state,
        subject=row.get("subject") or "",
        **{name: row.get(name) for name in _AS_STORED},
    )


@functools.lru_cache(maxsize=4096)
def _tag_list(text: str) -> tuple[str, ...]:
    """Tags stored as JSON text (SQLite): a few distinct lists repeat over 100,000s of rows, so
    each is parsed once."""
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(t) for t in value) if isinstance(value, list) else ()


def number_text(item: FindingView) -> str:
    """What the number column shows (unescaped): the number, or for a finding without one what
    it is about: the account's name (or id), or the watched country and region."""
    if item.has_number:
        return item.e164
    kind, _, rest = item.e164.partition(":")
    if kind == "account":
        return item.account_name or item.account_id or rest
    if kind == "availability":
        country, _, region = rest.partition(":")
        return f"availability {country}" + (f" {region}" if region and region != "*" else "")
    return item.e164


def urgency(item: FindingView) -> tuple[int, int, datetime, str, str]:
    """Sort key, most urgent first: severity, then what is broken now (no date) before dates,
    then the nearest date; rule and number only make the order stable (``store.urgency_order``
    is the same order in SQL)."""
    return (
        -vocab.SEVERITY_RANK.get(item.severity, -1),
        0 if item.due_at is None else 1,
        item.due_at or datetime.min.replace(tzinfo=UTC),
        item.rule,
        item.e164,
    )


def days_left(item: FindingView, now: datetime | None, tz: tzinfo) -> int | None:
    """Whole days from ``now`` to the finding's due date (negative once past), counted in the
    rules' time zone ``tz`` (``settings.rules_zone``) as the rule that wrote its message did."""
    return vocab.days_left(item.due_at, now, tz)


def due_day(item: FindingView, tz: tzinfo) -> str:
    """The finding's due day ("" for none) in the rules' time zone ``tz``: the day its message
    names."""
    return vocab.day_text(item.due_at, tz)


def as_json(item: FindingView) -> dict[str, Any]:
    """The finding as ``findings --json`` writes it: times as ``vocab.iso``, the fee as
    ``vocab.money_text`` without the currency (given apart)."""
    return {
        "id": item.id,
        "rule": item.rule,
        "severity": item.severity,
        "e164": item.e164 if item.has_number else None,
        "number_id": item.number_id,
        "account_id": item.account_id or None,
        "account_name": item.account_name,
        "state": item.state,
        "first_seen": vocab.iso(item.first_seen),
        "last_seen": vocab.iso(item.last_seen),
        "resolved_at": vocab.iso(item.resolved_at),
        "message": item.message,
        "due_at": vocab.iso(item.due_at),
        "tier": item.tier,
        "tags": list(item.tags),
        "monthly_fee": None if item.monthly_fee is None else vocab.money_text(item.monthly_fee),
        "currency": item.currency,
    }
