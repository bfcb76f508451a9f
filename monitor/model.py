"""Plain data the pipeline passes between stages, kept apart from the database tables."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.redact import TooDeep, without_credentials


@dataclass(frozen=True, slots=True)
class NumberRecord:
    """One phone number as the API described it, parsed tolerantly; ``raw_json`` is the item in
    canonical JSON (see ``canonical_json``), and ``content_hash`` its SHA-256. ``item`` is the
    same item decoded, kept while the sweep's page is in hand so rules need not decode it again
    (None on a record built from stored text)."""

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
    item: Any = field(default=None, compare=False, repr=False)
    # The ``DATE_FIELDS`` the item holds a value in that is no time (their dates are None).
    unreadable_dates: tuple[str, ...] = ()

    @property
    def raw(self) -> Any:
        return self.item if self.item is not None else json.loads(self.raw_json)


@dataclass(frozen=True)
class SweepCounts:
    """The figures of one sweep, as its ``sweeps`` row records them."""

    numbers_seen: int = 0
    total_reported: int | None = None
    pages: int = 0
    requests: int = 0
    retries: int = 0
    versions_written: int = 0
    numbers_gone: int = 0
    findings_opened: int = 0
    findings_resolved: int = 0


@dataclass
class DeliveryOutcome:
    """How one try at sending one stored delivery went."""

    delivery_id: int
    channel: str
    kind: str
    ok: bool
    error: str | None = None


@dataclass(slots=True)
class FindingDraft:
    """What a rule says about one subject in one sweep; the store turns drafts into findings.

    Treat it as immutable (not ``frozen``: rules build one per finding, and frozen costs more)."""

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


# --- tolerant parsing -------------------------------------------------------------------------


def parse_day(value: Any) -> date | None:
    """A bare date (``2026-12-31``), else None: a calendar day, in no time zone."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# RFC 3339's leap second (``23:59:60``), which ``datetime`` cannot hold.
_LEAP_SECOND = re.compile(r"(?<=[Tt ][0-9]{2}:[0-9]{2}:)60(?=[.,][0-9]|[Zz+-]|$)")


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (``Z`` or offset, fractions or not) or a bare date → aware UTC, else None.

    The whole text is the time, or it is none: not a date with anything after it (``2027-01-31
    next friday``, ``2027-01-31T99:99:99Z``), which is never read as that day's midnight; not a
    day that does not exist (``2026-02-30``), and not a number. A leap second (``23:59:60``)
    reads as the second before it. The one reader of times, for the API's values and the CLI's
    options alike (``--until``, ``--at``, ``--since`` refuse what it cannot read).
    Epoch numbers are not guessed at: VOBIZ_API.md documents every time as RFC 3339 in UTC, and
    a bare number could be seconds or milliseconds since 1970 (or something else entirely), so
    ``1767225600`` is None, and the sweep counts it as an unreadable date (see ``DATE_FIELDS``).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        leap = _LEAP_SECOND.sub("59", text, count=1)
        if leap == text:
            return None
        try:
            parsed = datetime.fromisoformat(leap)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        return None


# The item's dates the rules read from its record. A value in one that is not a time is not
# dropped without a word: the record names the field (``NumberRecord.unreadable_dates``) and the
# sweep counts and names such numbers in its outcome, its row, its log and the digest.
DATE_FIELDS = ("next_billing_date", "expires_at")


def _unreadable_dates(item: dict[str, Any], *times: datetime | None) -> tuple[str, ...]:
    """The ``DATE_FIELDS`` of ``item`` (whose parsed ``times`` are given in the same order)
    holding a value that is no time; null, a missing key or a blank string is no value."""
    found = []
    for name, when in zip(DATE_FIELDS, times, strict=True):
        value = item.get(name)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if when is None and not blank:
            found.append(name)
    return tuple(found)


MAX_MONEY = Decimal(10) ** 12  # number_versions.monthly_fee is Numeric(18, 6)


def parse_money(value: Any) -> Decimal | None:
    """Money in major units as an exact Decimal; floats go through their shortest repr. Nothing
    (None) for what is not a finite amount the database column can hold."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return _money(text) if len(text) <= 32 else None  # no amount the column holds is longer


def shared(text: str) -> str:
    """One object for equal short strings that many numbers repeat (an account, a status, a
    currency, a dated message): a sweep holds one per finding until its end, and at 1,000,000
    numbers a copy per finding is tens of MB. A bounded cache, unlike ``sys.intern``, so a
    long-running service never keeps what the API once sent."""
    return _shared(text) if len(text) <= 256 else text


@functools.lru_cache(maxsize=32768)  # more than a big partner's accounts; at most ~10 MB
def _shared(text: str) -> str:
    return text


def _tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """One shared tuple per short tag list: numbers repeat a few, and findings keep them."""
    if len(tags) > 8 or sum(len(t) for t in tags) > 256:
        return tags
    return _tag_tuple(tags)


@functools.lru_cache(maxsize=1024)
def _tag_tuple(tags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(shared(t) for t in tags)


@functools.lru_cache(maxsize=1024)
def _money(text: str) -> Decimal | None:
    """One shared Decimal per amount: an inventory repeats a few prices, and a sweep holds one
    per finding until its end (immutable, so sharing is safe)."""
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and abs(amount) < MAX_MONEY else None


_E164 = re.compile(r"\+?([1-9][0-9]{1,14})")
_E164_PUNCTUATION = re.compile(r"[\s().-]+")


def normalize_e164(text: str) -> str | None:
    """A number as a person types it (``+91 80123-45678``, ``(415) ...`` with its country code,
    digits without ``+``) in the API's E.164 form ``+918012345678``; None if it is not one."""
    found = _E164.fullmatch(_E164_PUNCTUATION.sub("", text))
    return f"+{found[1]}" if found else None


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


def flag(value: Any) -> bool | None:
    """A JSON boolean as the API may spell it (true, "true", 1); None when absent or odd."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    return None


# Built once: json.dumps with options builds a new encoder per call, and this runs per item.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_json(value: Any) -> str:
    """The one form item JSON is kept and hashed in: sorted keys, compact separators, UTF-8
    text unescaped, so a change in the API's key order or spacing is not a change. Numbers that
    JSON cannot hold (infinity, NaN) become null."""
    try:
        return _CANONICAL(value)
    except ValueError:
        return _CANONICAL(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


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


def api_id(value: Any) -> str | None:
    """An id as the API sends it (an account's, a number's, the account a number belongs to),
    as stored: text or a JSON number (``42`` reads as ``"42"``), trimmed, over ``MAX_ID``
    characters a stable hash of itself; None when absent, blank or not a scalar.
    ``parse_number`` reads its ids the same way, inlined (it runs per item)."""
    text = _text(value)
    return _bounded_id(text) if text else None


def parse_number(raw: Any) -> NumberRecord | None:
    """Parse one decoded API item; None when it has neither ``id`` nor ``e164`` (or is no
    object). Never raises: a field of the wrong type is read as absent.

    An item whose ``id`` is present but null, blank or not a scalar is unreadable (None), not
    keyed by its e164: another key would make it a new number and the old one "gone".
    Credential-looking keys (``auth_token``, ``password``, ...) are dropped before the item is
    kept. Text is made storable on every database: NUL characters are dropped (the raw JSON
    too), ids longer than their column become a stable hash, and an over-long e164 is cut. The
    item is kept and hashed as ``canonical_json``; an item holding a lone surrogate, or nested
    deeper than ``redact.MAX_DEPTH`` levels, is unreadable.
    """
    if not isinstance(raw, dict):
        return None
    if "id" in raw and _text(raw["id"]) is None:
        return None  # an id that is null, blank or nested: unreadable, never keyed otherwise
    try:
        raw = without_credentials(raw)  # a customer's auth_token is not ours to keep
    except TooDeep:
        return None
    text = canonical_json(raw)
    if "\\u0000" in text:  # PostgreSQL refuses NUL in text and JSON
        raw = _without_nul(raw)
        text = canonical_json(raw)
    try:
        digest = hashlib.sha256(text.encode()).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate (such as \ud800): no database can store it
        return None
    get = raw.get
    e164 = _text(get("e164")) or _text(get("number"))
    # ids as ``api_id`` reads them, inlined: this runs per item
    number_id = _text(get("id")) or (f"e164:{e164}" if e164 else None)
    if number_id is None:
        return None
    # Values many numbers repeat (account, status, place, currency): one object each (``shared``).
    status = shared((_text(get("status")) or "unknown").lower())
    country, region, currency = _text(get("country")), _text(get("region")), _text(get("currency"))
    tags = get("tags")
    cost = get("monthly_cost")
    due_at, ends_at = get("next_billing_date"), get("expires_at")
    due, ends = parse_time(due_at), parse_time(ends_at)
    return NumberRecord(
        _bounded_id(number_id),
        (e164 or "")[:MAX_E164],
        shared(_bounded_id(_text(get("account_id")) or _text(get("account_auth_id")) or "")),
        status,
        shared(country) if country else None,
        shared(region) if region else None,
        _text(get("application_id")),
        status == "blocked" or flag(get("is_blocked")) is True,
        due,
        ends,
        parse_money(cost if cost is not None else get("monthly_fee")),
        shared(currency[:8]) if currency else None,
        _tags(tuple(str(t) for t in tags if t is not None)) if type(tags) is list else (),
        digest,
        text,
        raw,
        # Only an item with a date that did not parse pays for the check.
        _unreadable_dates(raw, due, ends)
        if (due is None and due_at is not None) or (ends is None and ends_at is not None)
        else (),
    )
