"""One sweep's writes: every value survives the fast insert path, on both databases."""

from __future__ import annotations

from monitor.store import Store
from tests.conftest import FakeClock


def test_versions_round_trip_every_value(store: Store, clock: FakeClock) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from monitor.model import parse_number

    raw = {
        "id": "n-1",
        "e164": "+911234",
        "account_id": "MA_A",
        "status": "active",
        "next_billing_date": "2026-12-01T10:20:30.123456Z",
        "monthly_fee": "1.25",
        "tags": ["vip", "<x>"],
        "nested": {"a": [1, 2.5, None, True]},
        "application_id": "",
    }
    rec = parse_number(raw)
    assert rec is not None
    sid = store.start_sweep(clock(), "test")
    with store.writer(sid, clock()) as writer:
        assert writer.write_page([rec]) == 1
        assert writer.write_page([rec]) == 0  # read again in the same sweep: unchanged
        writer.commit()
    (row,) = store.history("+911234")
    assert row["next_billing_date"] == datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC)
    assert row["monthly_fee"] == Decimal("1.25")
    assert row["tags"] == ["vip", "<x>"]
    assert row["raw"] == raw
    assert row["application_id"] is None and row["valid_to"] is None


def test_hostile_text_is_storable_on_both_databases(store: Store, clock: FakeClock) -> None:
    from monitor.model import parse_number

    raw = {
        "id": "x" * 100,
        "e164": "+1" * 40,
        "account_id": "MA_" + "Z" * 90,
        "region": "Mum\u0000bai",
        "tags": ["a\u0000b"],
        "currency": "DOLLARS!!!",
        "status": "s" * 50,
        "application_id": None,
    }
    rec = parse_number(raw)
    assert rec is not None
    sid = store.start_sweep(clock(), "test")
    with store.writer(sid, clock()) as writer:
        assert writer.write_page([rec]) == 1
        writer.commit()
    (row,) = store.history(rec.e164)
    assert row["region"] == "Mumbai" and row["tags"] == ["ab"]
    assert row["number_id"] == rec.id and len(rec.id) <= 64


def test_fast_value_conversion_matches_sqlalchemy_on_sqlite() -> None:
    """The driver-level insert stores exactly what the columns' SQLAlchemy types would."""
    from datetime import UTC, datetime, timedelta, timezone
    from decimal import Decimal

    from sqlalchemy.dialects import sqlite

    from monitor.store import VERSIONS
    from monitor.writer import _sqlite_money, _sqlite_time

    dialect = sqlite.dialect()
    as_time = VERSIONS.c.next_billing_date.type._cached_bind_processor(dialect)
    as_money = VERSIONS.c.monthly_fee.type._cached_bind_processor(dialect)
    ist = timezone(timedelta(hours=5, minutes=30))
    for value in (
        datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 3, 4, 5, tzinfo=ist),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ):
        assert _sqlite_time(value) == as_time(value)
    assert _sqlite_time(None) is None
    for money in (Decimal("1.25"), Decimal(300), Decimal("0.000001"), None):
        assert _sqlite_money(money) == as_money(money)
