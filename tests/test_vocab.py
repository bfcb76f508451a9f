"""The vocabulary's small readers; its formatters are drawn through every renderer in
``test_findings.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.config import RulesConfig
from monitor.rules import RuleContext
from monitor.vocab import ascii_digits, day_text, days_left


@pytest.mark.parametrize(
    ("text", "digits"),
    [("0", True), ("0123456789", True), ("", False), ("²", False), ("١", False), ("８", False)],
)
def test_ascii_digits_are_0_to_9_only(text: str, digits: bool) -> None:
    assert ascii_digits(text) is digits


KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)  # 17:30 on the 23rd in Kolkata


def test_due_days_are_counted_and_shown_in_the_zone_given() -> None:
    """The bug: 20:00 UTC on the 24th is 01:30 on the 25th in Kolkata, where the rule said "in 2
    day(s), on 2026-11-25"; the digests said "2026-11-24, 1 day left" (UTC's day)."""
    due = datetime(2026, 11, 24, 20, tzinfo=UTC)
    assert day_text(due) == "2026-11-24" and days_left(due, NOW, UTC) == 1
    assert day_text(due, KOLKATA) == "2026-11-25" and days_left(due, NOW, KOLKATA) == 2
    # "now" is counted in the zone too: 20:00 UTC on the 23rd is already the 24th in Kolkata
    assert days_left(due, datetime(2026, 11, 23, 20, tzinfo=UTC), KOLKATA) == 1
    assert day_text(date(2026, 11, 24), KOLKATA) == "2026-11-24"  # a date is no time: as it is


YEARS = {"min_value": datetime(1970, 1, 1), "max_value": datetime(2200, 1, 1)}


@given(
    due=st.datetimes(**YEARS, timezones=st.just(UTC)),
    now=st.datetimes(**YEARS, timezones=st.just(UTC)),
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "America/Los_Angeles", "Pacific/Kiritimati"]),
)
def test_days_left_counts_as_the_rules_count(due: datetime, now: datetime, zone: str) -> None:
    """Days left and the due day are the rules' own: ``RuleContext.today`` and ``local_date``."""
    tz = ZoneInfo(zone)
    ctx = RuleContext(now=now, config=RulesConfig(), tz=tz)
    day = ctx.local_date(due)
    assert days_left(due, now, tz) == (day - ctx.today).days
    assert day_text(due, tz) == day.isoformat()
