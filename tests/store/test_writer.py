"""One sweep's writes: every value survives the insert, on both databases."""

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
        changed = parse_number(raw | {"status": "released"})
        assert changed is not None
        assert writer.write_page([rec, changed]) == 1  # one number twice: its last reading
        assert writer.write_page([rec]) == 1
        writer.commit()
    rows = store.history("+911234")
    assert [r["status"] for r in rows] == ["active", "released", "active"]
    row = rows[-1]
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


def test_open_findings_are_read_in_the_lifecycle_s_field_order() -> None:
    from monitor.lifecycle import OpenFinding
    from monitor.store.writer import _OPEN_COLUMNS

    assert [c.name for c in _OPEN_COLUMNS] == list(OpenFinding.__dataclass_fields__)
