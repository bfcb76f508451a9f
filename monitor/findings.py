"""The one finding view: a stored finding (with its number, account, silence and dates) as the
record every output draws, and its urgency order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.engine import RowMapping

from monitor.vocab import SEVERITY_RANK


@dataclass(frozen=True)
class Item:
    """A finding as a digest shows it."""

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
    # False for a finding about an account or an availability watch: ``e164`` then holds the
    # finding's subject ("account:<id>", "availability:<country>:<region>").
    has_number: bool = True


def number_text(item: Item) -> str:
    """What a digest shows in the number column (unescaped): the number, or for a finding without
    one what it is about: the account's name (or id), or the watched country and region."""
    if item.has_number:
        return item.e164
    kind, _, rest = item.e164.partition(":")
    if kind == "account":
        return item.account_name or item.account_id or rest
    if kind == "availability":
        country, _, region = rest.partition(":")
        return f"availability {country}" + (f" {region}" if region and region != "*" else "")
    return item.e164


def urgency(item: Item) -> tuple[int, int, datetime, str, str]:
    """Sort key, most urgent first: severity, then what is broken now (no date) before dates,
    then the nearest date; rule and number only make the order stable."""
    return (
        -SEVERITY_RANK.get(item.severity, -1),
        0 if item.due_at is None else 1,
        item.due_at or datetime.min.replace(tzinfo=UTC),
        item.rule,
        item.e164,
    )


def days_left(item: Item, now: datetime | None) -> int | None:
    """Whole days from ``now`` to the item's due date (negative once past); None without one."""
    if item.due_at is None or now is None:
        return None
    return (item.due_at.date() - now.date()).days


def _item(row: RowMapping) -> Item:
    return Item(
        rule=row["rule"],
        severity=row["severity"],
        e164=row["e164"] or row["subject"],
        account_id=row["account_id"] or "",
        message=row["message"],
        tags=tuple(row["tags"] or ()),
        monthly_fee=row["monthly_fee"],
        currency=row["currency"],
        tier=row["tier"],
        due_at=row.get("due_at"),
        # Account names come with the accounts data where the store has it.
        account_name=row.get("account_name"),
        has_number=row["e164"] is not None,
    )
