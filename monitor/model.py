"""Plain data the pipeline passes between stages, kept apart from the database tables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec


class NumberRecord(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One phone number as the API described it, parsed tolerantly; ``raw_json`` is the item as
    the API sent it (see ``parse_item``), and ``content_hash`` its SHA-256.

    A msgspec ``Struct``: built in C (a sweep builds one per number of the inventory), left out
    of the garbage collector's scans (it holds no cycles), and sent between processes as
    MessagePack without pickling (see ``fetcher``).
    """

    id: str
    e164: str
    account_id: str
    status: str
    country: str | None
    region: str | None
    application_id: str | None
    is_blocked: bool
    next_billing_date: datetime | None
    expires_at: datetime | None
    monthly_fee: Decimal | None
    currency: str | None
    tags: tuple[str, ...]
    content_hash: str = ""
    raw_json: str = ""

    @property
    def raw(self) -> Any:
        """The item as decoded JSON (decoded on demand: the sweep itself never needs it)."""
        return msgspec.json.decode(self.raw_json)


@dataclass(slots=True)
class FindingDraft:
    """What a rule says about one subject in one sweep; the store turns drafts into findings.

    Treat it as immutable (not ``frozen`` for speed, as ``NumberRecord``)."""

    rule: str
    subject: str
    severity: str
    message: str
    number_id: str | None = None
    e164: str | None = None
    account_id: str | None = None
    due_at: datetime | None = None
    tier: int | None = None
    monthly_fee: Decimal | None = None
    currency: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject)


# --- tolerant parsing -------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (``Z`` or offset, fractions or not) or a bare date → aware UTC, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text[:10]), datetime.min.time())
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        return None


MAX_MONEY = Decimal(10) ** 12  # number_versions.monthly_fee is Numeric(18, 6)


def parse_money(value: Any) -> Decimal | None:
    """Money in major units as an exact Decimal; floats go through their shortest repr. Nothing
    (None) for what is not a finite amount the database column can hold."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and abs(amount) < MAX_MONEY else None


def _text(value: Any) -> str | None:
    if type(value) is str:  # the common case first: this runs ten times per number
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return value is True or (isinstance(value, int) and value == 1)


def canonical_json(value: Any) -> bytes:
    """Sorted-key compact JSON: the same bytes for the same data, whatever the key order."""
    return msgspec.json.encode(value, order="sorted")


_DECODER = msgspec.json.Decoder()


def loads(data: bytes | msgspec.Raw) -> Any:
    """Parse JSON (integers of any size stay exact); raises ``ValueError`` on bad JSON."""
    return _DECODER.decode(data)


def _without_nul(value: Any) -> Any:
    """The same JSON value without NUL characters in any string (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _bounded_id(value: str) -> str:
    """Ids longer than the column keep a stable identity as a hash of themselves."""
    if len(value) <= MAX_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:48]


MAX_ID = 64  # number_versions.number_id and account_id
MAX_E164 = 32


def parse_number(raw: Any, verbatim: bytes | None = None) -> NumberRecord | None:
    """Parse one decoded API item; None when it has neither ``id`` nor ``e164``.

    Text is made storable on every database: NUL characters are dropped (the raw JSON too), ids
    longer than their column become a stable hash, and an over-long e164 is cut. ``verbatim`` is
    the item's JSON as the API sent it, kept and hashed as is; without it (or when it holds a
    NUL) the item is stored as sorted-key JSON.
    """
    if not isinstance(raw, dict):
        return None
    if verbatim is None or b"\\u0000" in verbatim:
        text = canonical_json(raw)
        if b"\\u0000" in text:
            raw = _without_nul(raw)
            text = canonical_json(raw)
    else:
        text = verbatim
    get = raw.get
    tags_raw = get("tags")
    cost = get("monthly_cost")
    return _record(
        number_id=_text(get("id")),
        e164=_text(get("e164")) or _text(get("number")),
        account_id=_text(get("account_id")) or _text(get("account_auth_id")),
        status=_text(get("status")),
        country=_text(get("country")),
        region=_text(get("region")),
        application_id=_text(get("application_id")),
        blocked=_truthy(get("is_blocked")),
        next_billing_date=parse_time(get("next_billing_date")),
        expires_at=parse_time(get("expires_at")),
        monthly_fee=parse_money(cost if cost is not None else get("monthly_fee")),
        currency=_text(get("currency")),
        tags=tuple(str(t) for t in tags_raw if t is not None) if type(tags_raw) is list else (),
        text=text,
    )


def _record(
    *,
    number_id: str | None,
    e164: str | None,
    account_id: str | None,
    status: str | None,
    country: str | None,
    region: str | None,
    application_id: str | None,
    blocked: bool,
    next_billing_date: datetime | None,
    expires_at: datetime | None,
    monthly_fee: Decimal | None,
    currency: str | None,
    tags: tuple[str, ...],
    text: bytes,
) -> NumberRecord | None:
    """The record from fields either parser has read: the keying, defaults and column limits
    live here once, so the two parsers cannot drift apart on them."""
    number_id = number_id or (f"e164:{e164}" if e164 else None)
    if number_id is None:
        return None
    status = (status or "unknown").lower()
    return NumberRecord(
        _bounded_id(number_id),
        (e164 or "")[:MAX_E164],
        _bounded_id(account_id or ""),
        status,
        country,
        region,
        application_id,
        status == "blocked" or blocked,
        next_billing_date,
        expires_at,
        monthly_fee,
        (currency or "")[:8] or None,
        tags,
        hashlib.sha256(text).hexdigest(),
        text.decode(errors="replace"),
    )


# --- the fast path: items as the API documents them, decoded in C ----------------------------


class _Item(msgspec.Struct):
    """The fields the monitor reads, typed as documented; other fields are skipped (they stay in
    the verbatim JSON). An item that does not fit these types takes ``parse_number``'s tolerant
    path instead, so both paths give the same record for any item the fast one accepts."""

    id: str | None = None
    e164: str | None = None
    number: str | None = None
    account_id: str | None = None
    account_auth_id: str | None = None
    status: str | None = None
    country: str | None = None
    region: str | None = None
    application_id: str | None = None
    is_blocked: bool | None = None
    # Times and money go through the tolerant parsers, so both paths read them alike
    # (msgspec rounds sub-microsecond digits where ``fromisoformat`` truncates them, and a JSON
    # number becomes a Decimal there exactly, here through its float).
    next_billing_date: str | None = None
    expires_at: str | None = None
    monthly_cost: int | float | str | None = None
    monthly_fee: int | float | str | None = None
    currency: str | None = None
    tags: list[str] | None = None


_ITEM = msgspec.json.Decoder(_Item)


def _clean(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def parse_item(raw: bytes | msgspec.Raw) -> NumberRecord | None:
    """Parse one item from its JSON bytes: typed decoding in C when the item is as documented,
    the tolerant ``parse_number`` otherwise; None for an item neither can read. Its bytes are
    hashed and kept as sent."""
    verbatim = bytes(raw)
    try:
        return _parse_typed(verbatim)
    except msgspec.ValidationError:
        pass
    except (ValueError, OverflowError):
        return None
    try:
        return parse_number(loads(verbatim), verbatim)
    except (ValueError, OverflowError):  # e.g. a date beyond year 9999 once made UTC
        return None


def _time(text: str) -> datetime | None:
    """``parse_time``, with its commonest case first: RFC 3339 in UTC, as the API sends it."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return parse_time(text)
    return parsed if parsed.tzinfo is UTC else parse_time(text)


def _parse_typed(verbatim: bytes) -> NumberRecord | None:
    if b"\\u0000" in verbatim:
        raise msgspec.ValidationError  # NUL characters need the tolerant path's cleaning
    it = _ITEM.decode(verbatim)
    fee = it.monthly_cost if it.monthly_cost is not None else it.monthly_fee
    return _record(
        number_id=_clean(it.id),
        e164=_clean(it.e164) or _clean(it.number),
        account_id=_clean(it.account_id) or _clean(it.account_auth_id),
        status=_clean(it.status),
        country=_clean(it.country),
        region=_clean(it.region),
        application_id=_clean(it.application_id),
        blocked=it.is_blocked is True,
        next_billing_date=_time(it.next_billing_date) if it.next_billing_date else None,
        expires_at=_time(it.expires_at) if it.expires_at else None,
        monthly_fee=parse_money(fee) if fee is not None else None,
        currency=_clean(it.currency),
        tags=tuple(it.tags) if it.tags else (),
        text=verbatim,
    )
