from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from monitor.model import canonical_json, parse_money, parse_number, parse_time
from monitor.redact import MAX_DEPTH


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-25T06:58:38Z",
        "2026-03-25T06:58:38.000Z",
        "2026-03-25T06:58:38+00:00",
        "2026-03-25T12:28:38+05:30",
        "2026-03-25T06:58:38.123456z",
    ],
)
def test_rfc3339_variants(text: str) -> None:
    parsed = parse_time(text)
    assert parsed is not None
    assert parsed.tzinfo is UTC
    assert parsed.replace(microsecond=0) == datetime(2026, 3, 25, 6, 58, 38, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, "", "soon", 12345, [], {"a": 1}])
def test_bad_times_are_none(value: object) -> None:
    assert parse_time(value) is None


def test_bare_date_is_midnight_utc() -> None:
    assert parse_time("2026-04-25") == datetime(2026, 4, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-31T99:99:99Z",  # no such time of day
        "2027-01-31 next friday",
        "2026-12-06 lol",
        "2026-12-06T10:00:00Z and then some",
        "2026-12-06T",
        "2026-12-06garbage",
    ],
)
def test_a_date_followed_by_anything_else_is_no_time(text: str) -> None:
    """The whole text is a time or a date, or it is none: a date with more after it was read as
    that day's midnight UTC (``--until "2027-01-31 next friday"``, an API date with junk)."""
    assert parse_time(text) is None


def test_a_leap_second_reads_as_the_second_before_it() -> None:
    """RFC 3339 allows second 60 (a leap second), which Python's datetime cannot hold."""
    want = datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_time("2016-12-31T23:59:60Z") == want
    assert parse_time("2016-12-31T23:59:60.5Z") == want.replace(microsecond=500000)
    assert parse_time("2017-01-01T05:29:60+05:30") == want


@pytest.mark.parametrize(
    ("value", "unreadable"),
    [
        ("2026-02-30", True),  # no such day
        ("2026-02-30T00:00:00Z", True),
        (1767225600, True),  # epoch seconds: not guessed at (parse_time says why)
        (1767225600000, True),  # or milliseconds
        ("1767225600", True),
        ("soon", True),
        ({"at": "2026-12-01"}, True),
        (False, True),
        (None, False),  # no date is no unreadable date
        ("", False),
        ("  ", False),
        ("2026-03-01T00:00:00Z", False),
    ],
)
def test_a_date_the_rules_read_that_is_no_time_is_named_on_the_record(
    value: object, unreadable: bool
) -> None:
    rec = parse_number({"id": "n1", "e164": "+1", "next_billing_date": value, "expires_at": value})
    assert rec is not None
    assert rec.next_billing_date is None or not unreadable
    expected = ("next_billing_date", "expires_at") if unreadable else ()
    assert rec.unreadable_dates == expected
    absent = parse_number({"id": "n1", "e164": "+1"})
    assert absent is not None and absent.unreadable_dates == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (300, Decimal(300)),
        (1.5, Decimal("1.5")),
        ("1.00", Decimal("1.00")),
        (0.1, Decimal("0.1")),
        (None, None),
        ("abc", None),
        (True, None),
        ("NaN", None),
    ],
)
def test_money_is_decimal(value: object, expected: Decimal | None) -> None:
    assert parse_money(value) == expected


def test_seed_item_parses() -> None:
    raw = {
        "id": "aabbccdd-1234-5678-90ab-cdef12345678",
        "account_id": "MA_XXXXXXXX",
        "e164": "+918012345678",
        "country": "IN",
        "region": "Karnataka",
        "status": "active",
        "monthly_fee": 300,
        "currency": "INR",
        "application_id": "20577609616603585",
        "is_blocked": False,
        "tags": [],
        "next_billing_date": "2026-04-25T06:58:38Z",
    }
    rec = parse_number(raw)
    assert rec is not None
    assert rec.id == raw["id"]
    assert rec.monthly_fee == Decimal(300)
    assert rec.next_billing_date == datetime(2026, 4, 25, 6, 58, 38, tzinfo=UTC)
    assert rec.raw == raw
    assert rec.content_hash == hashlib.sha256(canonical_json(dict(raw)).encode()).hexdigest()


@pytest.mark.parametrize("app", [None, "", "   "])
def test_missing_application_variants(app: object) -> None:
    rec = parse_number({"id": "x", "e164": "+1", "application_id": app})
    assert rec is not None
    assert rec.application_id is None
    absent = parse_number({"id": "x", "e164": "+1"})
    assert absent is not None and absent.application_id is None


def test_tolerates_wrong_types_and_legacy_fields() -> None:
    rec = parse_number(
        {
            "id": "n1",
            "number": "+15550001",
            "account_auth_id": "MA_OLD",
            "status": None,
            "tags": "not-a-list",
            "is_blocked": "true",
            "monthly_cost": "2.50",
            "monthly_fee": 9,
            "expires_at": "2026-12-01T00:00:00Z",
            "capabilities": None,
            "region": 7,
        }
    )
    assert rec is not None
    assert rec.e164 == "+15550001"
    assert rec.account_id == "MA_OLD"
    assert rec.status == "unknown"
    assert rec.tags == ()
    assert rec.is_blocked is True
    assert rec.monthly_fee == Decimal("2.50")  # monthly_cost wins when present
    assert rec.expires_at == datetime(2026, 12, 1, tzinfo=UTC)


def test_unkeyable_items_are_none() -> None:
    assert parse_number({"status": "active"}) is None
    assert parse_number("garbage") is None
    fallback = parse_number({"e164": "+15550002"})
    assert fallback is not None and fallback.id == "e164:+15550002"


def test_an_item_nested_too_deep_is_unreadable_and_a_shallow_one_keeps_its_decoded_form() -> None:
    deep: object = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    assert parse_number({"id": "n1", "x": deep}) is None
    # a credential key found first must not let the deep branch through
    assert parse_number({"id": "n1", "auth_token": "s", "x": deep}) is None
    rec = parse_number({"id": "n1", "x": [[1]]})
    assert rec is not None and rec.raw == {"id": "n1", "x": [[1]]} == rec.item


def test_hash_changes_with_any_field() -> None:
    a = {"id": "1", "e164": "+1", "unknown_future_field": 1}
    b = {"id": "1", "e164": "+1", "unknown_future_field": 2}

    def digest(item: dict[str, object]) -> str:
        rec = parse_number(item)  # a decoded item without its bytes: hashed as sorted-key JSON
        assert rec is not None
        return rec.content_hash

    assert digest(a) != digest(b)
    assert digest(a) == digest(dict(reversed(list(a.items()))))


def test_canonical_json_keeps_integers_beyond_64_bits_exact() -> None:
    import json

    big = 123456789012345678901234567890
    assert json.loads('{"a": 123456789012345678901234567890}') == {"a": big}
    assert canonical_json({"b": 1, "a": big}) == '{"a":123456789012345678901234567890,"b":1}'
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert canonical_json({"x": float("inf"), "y": [float("nan")]}) == '{"x":null,"y":[null]}'
    assert canonical_json({"name": "Zürich"}) == '{"name":"Zürich"}'


SEED_ITEM = {
    "id": "aabbccdd-1234-5678-90ab-cdef12345678",
    "account_id": "MA_XXXXXXXX",
    "e164": "+918012345678",
    "country": "IN",
    "region": "Karnataka",
    "capabilities": {"voice": True, "sms": False},
    "status": "active",
    "monthly_fee": 300,
    "currency": "INR",
    "application_id": "20577609616603585",
    "is_blocked": False,
    "tags": ["toll-free"],
    "next_billing_date": "2026-04-25T06:58:38Z",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"e164": None, "number": "+15550001", "account_id": None, "account_auth_id": "MA_OLD"},
        {"status": " Blocked ", "application_id": "   ", "region": None, "tags": []},
        {"is_blocked": True, "monthly_fee": "1.00", "currency": "USD"},
        {"monthly_cost": 2.5, "monthly_fee": 9, "expires_at": "2026-12-01T00:00:00+05:30"},
        {"next_billing_date": "2026-04-25T06:58:38.123456", "id": "x" * 80},
        {"monthly_fee": "NaN"},
        {"is_blocked": "true", "region": 7, "tags": "not-a-list"},
        {"next_billing_date": "2026-04-25", "expires_at": "", "monthly_fee": "abc"},
        {"id": 12345, "tags": ["a", None, 3], "is_blocked": 1},
        {"region": "Kar\x00nataka"},
        {"id": None, "e164": None},
        {"next_billing_date": "2026-01-31T23:59:59.9999996Z"},
        {"monthly_fee": 0.12345678901234567891},
        {"monthly_fee": "1e400"},
        {"monthly_fee": float("inf"), "capabilities": {"voice": float("nan")}},
        {"expires_at": "0001-01-01T00:00:00+01:00"},  # overflows once made UTC: no date
    ],
)
def test_odd_items_parse_into_storable_records(changes: dict[str, object]) -> None:
    """Whatever the fields hold, an item gives a record (or None without a key), never an
    error, and its kept JSON is canonical and storable (no NUL, finite numbers)."""
    import json

    item = SEED_ITEM | changes
    rec = parse_number(json.loads(json.dumps(item)))
    if rec is None:
        assert item.get("id") is None and item.get("e164") is None
        return
    assert "\x00" not in rec.raw_json and "\x00" not in (rec.region or "")
    assert rec.raw_json == canonical_json(rec.raw)
    assert rec.content_hash == hashlib.sha256(rec.raw_json.encode()).hexdigest()
    assert ":NaN" not in rec.raw_json and ":Infinity" not in rec.raw_json  # not JSON


def test_key_order_and_spacing_are_not_a_change() -> None:
    import json

    from monitor.vobiz import NUMBERS

    sent = [
        '{"id": "n1", "e164": "+1",  "zeta": 1, "alpha": [1, 2]}',
        '{"alpha":[1,2],"zeta":1,"e164":"+1","id":"n1"}',
    ]
    records = [NUMBERS.parse(json.loads(f'{{"items": [{s}]}}'), 1).records[0] for s in sent]
    assert records[0] == records[1]
    assert records[0].raw_json == '{"alpha":[1,2],"e164":"+1","id":"n1","zeta":1}'
    # PostgreSQL refuses NUL: such an item is stored cleaned
    nul = parse_number(json.loads('{"id": "n1", "e164": "+1", "note": "a\\u0000b"}'))
    assert nul is not None and nul.raw_json == '{"e164":"+1","id":"n1","note":"ab"}'
    # a lone surrogate cannot be stored anywhere: the item is unreadable, not fatal
    assert parse_number(json.loads('{"id": "n1", "e164": "+1", "note": "\\ud800"}')) is None


def test_money_the_database_cannot_hold_is_no_amount() -> None:
    assert parse_money("1e400") is None
    assert parse_money(10**12) is None
    assert parse_money("999999999999.999999") == Decimal("999999999999.999999")
