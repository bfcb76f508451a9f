"""The pure decisions about time: catch-up after downtime, and when data is overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import ScheduleConfig
from monitor.schedule import (
    CatchUp,
    build_trigger,
    fire_at_or_after,
    retry_at,
    sweep_deadline,
)
from monitor.schedule import catch_up as _catch_up


def needs_catch_up(*args: Any) -> bool:
    return _catch_up(*args) is not None


def is_overdue(*args: Any) -> bool:
    """Past the deadline (the strict comparison ``catch_up`` and ``health.assess`` make)."""
    trig, last, now, started, grace = args
    deadline = sweep_deadline(trig, last, started, grace)
    return deadline is not None and now > deadline


WEEKLY = "0 6 * * mon"  # 2026-11-23 is a Monday
DAY = timedelta(days=1)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def trigger(cron: str = WEEKLY, tz: str = "UTC", jitter: int = 0) -> Any:
    return build_trigger(ScheduleConfig(cron=cron, timezone=tz, jitter_seconds=jitter))


# --- needs_catch_up ---------------------------------------------------------------------------


def test_never_swept_needs_a_sweep() -> None:
    assert needs_catch_up(trigger(), None, at(23, 12), DAY)


def test_no_fire_time_since_the_last_sweep_needs_none() -> None:
    last = at(16, 6, 0, 5)  # the sweep of last Monday's window
    assert not needs_catch_up(trigger(), last, at(23, 5, 59), DAY)


def test_a_missed_fire_time_within_the_grace_needs_one() -> None:
    last = at(16, 6, 0, 5)
    assert needs_catch_up(trigger(), last, at(23, 7), DAY)
    assert _catch_up(trigger(), last, at(23, 7), DAY) == CatchUp("missed", at(23, 6))


def test_asked_for_or_an_unreadable_history_sweeps_at_start_whatever_the_record() -> None:
    """``--once-now`` / ``run_on_start`` win over everything (trigger ``start``); a history that
    cannot be read sweeps now to be safe (``catch-up``), as a missing one does."""
    fresh = at(23, 6, 0, 5)  # just swept: nothing else would sweep now
    assert _catch_up(trigger(), fresh, at(23, 7), DAY) is None
    asked = _catch_up(trigger(), fresh, at(23, 7), DAY, asked=True, unreadable=True)
    assert asked == CatchUp("asked") and asked.trigger == "start"
    unreadable = _catch_up(trigger(), None, at(23, 7), DAY, unreadable=True)
    assert unreadable == CatchUp("unreadable") and unreadable.trigger == "catch-up"
    never = _catch_up(trigger(), None, at(23, 7), DAY)
    assert never == CatchUp("never") and never.trigger == "catch-up"


def test_a_missed_fire_time_beyond_the_grace_is_an_overdue_catch_up() -> None:
    """Beyond the grace the window is not made up as "missed", but the data is overdue: the
    service sweeps once anyway (as it always did; the decision now lives here alone)."""
    last = at(16, 6, 0, 5)
    assert _catch_up(trigger(), last, at(23, 7), timedelta(minutes=30)) == CatchUp("overdue")
    assert _catch_up(trigger(), last, at(23, 6, 29), timedelta(minutes=30)) == CatchUp(
        "missed", at(23, 6)
    )
    assert _catch_up(trigger(), None, at(23, 7), DAY) == CatchUp("never")


def test_a_sweep_started_at_the_fire_time_covers_it() -> None:
    assert not needs_catch_up(trigger(), at(23, 6), at(23, 6, 30), DAY)


def test_years_of_missed_windows_are_one_decision() -> None:
    # speed is not asserted here (timing belongs in bench/): the look-up is one trigger call
    last = datetime(2020, 1, 1, tzinfo=UTC)
    now = at(23, 12, 0, 30)
    assert needs_catch_up(trigger("* * * * *"), last, now, timedelta(hours=1))
    # the earliest fire time inside the grace window is the one reported
    missed = _catch_up(trigger("* * * * *"), last, now, timedelta(hours=1))
    assert missed == CatchUp("missed", at(23, 11, 1))


def test_a_last_sweep_in_the_future_clock_skew_needs_none() -> None:
    assert not needs_catch_up(trigger("* * * * *"), at(23, 12, 5), at(23, 12), DAY)


def test_the_schedule_time_zone_is_honoured() -> None:
    kolkata = trigger("0 9 * * *", tz="Asia/Kolkata")  # 09:00 IST is 03:30 UTC
    last = at(22, 4)
    assert not needs_catch_up(kolkata, last, at(23, 3, 29), DAY)
    assert _catch_up(kolkata, last, at(23, 3, 31), DAY) == CatchUp("missed", at(23, 3, 30))


def test_jitter_does_not_move_the_decision() -> None:
    jittery = trigger(jitter=3600)
    for _ in range(20):
        missed = _catch_up(jittery, at(16, 6, 0, 5), at(23, 7), DAY)
        assert missed == CatchUp("missed", at(23, 6))
    assert jittery.jitter == 3600  # the scheduler's trigger keeps its jitter


# --- overdue ----------------------------------------------------------------------------------


def test_before_any_sweep_the_service_gets_one_grace_period() -> None:
    started = at(23, 12)
    assert sweep_deadline(trigger(), None, started, timedelta(hours=2)) == at(23, 14)
    assert not is_overdue(trigger(), None, at(23, 14), started, timedelta(hours=2))
    assert is_overdue(trigger(), None, at(23, 14, 0, 1), started, timedelta(hours=2))


def test_overdue_is_the_next_fire_time_after_the_last_sweep_plus_grace() -> None:
    last = at(16, 6, 0, 3)
    started = at(23, 12)
    assert sweep_deadline(trigger(), last, started, DAY) == at(24, 6)
    assert not is_overdue(trigger(), last, at(24, 6), started, DAY)
    assert is_overdue(trigger(), last, at(24, 6, 0, 1), started, DAY)
    # a sweep on time resets it to the following week
    assert not is_overdue(trigger(), at(23, 6, 0, 2), at(24, 6, 0, 1), started, DAY)


def test_jitter_is_slack_on_the_deadline() -> None:
    last = at(16, 6, 0, 3)
    assert sweep_deadline(trigger(), last, at(23, 12), DAY, slack=timedelta(seconds=600)) == at(
        24, 6, 10
    )


def test_a_failed_sweep_is_retried_in_minutes_then_hours() -> None:
    t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    delays = [retry_at(n, t, None) for n in range(1, 9)]
    assert [d - t for d in delays if d] == [
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(hours=4),
        timedelta(hours=4),
        timedelta(hours=4),
    ]
    # the next cron time comes first: no separate retry
    assert retry_at(4, t, t + timedelta(minutes=30)) is None


def test_a_weekday_field_mixing_names_and_numbers_fires_on_crontabs_days() -> None:
    """'sat,0' fired on Saturdays and Mondays, 'mon-5' on Mondays only (APScheduler reads
    numbers from Monday = 0): crontab means Saturday and Sunday, Monday to Friday."""

    def days(cron: str) -> list[str]:
        trig, moment, out = trigger(cron), at(22, 7), []  # Sunday 22 November 2026, after 06:00
        for _ in range(7):
            fire = fire_at_or_after(trig, moment)
            assert fire is not None
            out.append(fire.strftime("%a"))
            moment = fire + timedelta(seconds=1)
        return out

    assert days("0 6 * * sat,0") == ["Sat", "Sun", "Sat", "Sun", "Sat", "Sun", "Sat"]
    assert days("0 6 * * 1,sun")[:4] == ["Mon", "Sun", "Mon", "Sun"]
    assert days("0 6 * * mon-5") == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]
