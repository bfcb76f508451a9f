"""Plain data the pipeline passes between stages, kept apart from the database tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

# Digits become "1", everything else "0": a run of 19 ones marks a number orjson would round.
# translate + find run at memory speed; a regex over a 70 kB page costs five times the parse.
_DIGIT_MASK = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
_LONG_RUN = b"1" * 19


@dataclass(slots=True)
class NumberRecord:
    """One phone number as the API described it, parsed tolerantly; ``raw`` is the item verbatim.

    Treat it as immutable. It is not ``frozen`` because a frozen dataclass's ``__init__`` took
    40% of the time to parse a number, and a sweep parses every number of the inventory.
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
    raw: dict[str, Any] = field(repr=False, compare=False)
    content_hash: str = field(repr=False, compare=False, default="")
    raw_json: str = field(repr=False, compare=False, default="")  # canonical: sorted keys


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
    return parsed.astimezone(UTC)


def parse_money(value: Any) -> Decimal | None:
    """Money in major units as an exact Decimal; floats go through their shortest repr."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


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
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, which orjson does not encode
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def loads(data: bytes) -> Any:
    """Parse JSON fast, without orjson's silent rounding of integers beyond 64 bits."""
    if _LONG_RUN in data.translate(_DIGIT_MASK):
        return json.loads(data)
    return orjson.loads(data)


def content_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(raw)).hexdigest()


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


def parse_number(raw: Any) -> NumberRecord | None:
    """Parse one API item; None when it has neither ``id`` nor ``e164`` (nothing to key it by).

    Text is made storable on every database: NUL characters are dropped (the raw JSON too), ids
    longer than their column become a stable hash, and an over-long e164 is cut.
    """
    if not isinstance(raw, dict):
        return None
    canonical = canonical_json(raw)
    if b"\\u0000" in canonical:
        raw = _without_nul(raw)
        canonical = canonical_json(raw)
    get = raw.get
    e164 = _text(get("e164")) or _text(get("number"))
    number_id = _text(get("id")) or (f"e164:{e164}" if e164 else None)
    if number_id is None:
        return None
    tags_raw = get("tags")
    tags = tuple(str(t) for t in tags_raw if t is not None) if type(tags_raw) is list else ()
    status = (_text(get("status")) or "unknown").lower()
    cost = get("monthly_cost")
    return NumberRecord(  # the canonical JSON is hashed and stored as is: serialised once
        _bounded_id(number_id),
        (e164 or "")[:MAX_E164],
        _bounded_id(_text(get("account_id")) or _text(get("account_auth_id")) or ""),
        status,
        _text(get("country")),
        _text(get("region")),
        _text(get("application_id")),
        status == "blocked" or _truthy(get("is_blocked")),
        parse_time(get("next_billing_date")),
        parse_time(get("expires_at")),
        parse_money(cost if cost is not None else get("monthly_fee")),
        (_text(get("currency")) or "")[:8] or None,
        tags,
        raw,
        hashlib.sha256(canonical).hexdigest(),
        canonical.decode(),
    )
