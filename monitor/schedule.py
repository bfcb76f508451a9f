"""When to sweep: the cron trigger, catch-up after downtime, when data is overdue, retry delays.

Pure functions of the times they are given (no clock reads), tested with fixed datetimes;
``service.py`` applies them to APScheduler 3. Each drops the trigger's jitter where it decides.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from monitor.config import ScheduleConfig

_TICK = timedelta(microseconds=1)


def build_trigger(schedule: ScheduleConfig) -> CronTrigger:
    """The sweep's cron trigger in the configured IANA zone (crontab weekday names and numbers)."""
    trigger = CronTrigger.from_crontab(schedule.cron, timezone=ZoneInfo(schedule.timezone))
    trigger.jitter = schedule.jitter_seconds or None
    return trigger


class StartNowThen(BaseTrigger):  # type: ignore[misc]
    """Fires at once when the scheduler first asks, then as ``then`` does.

    APScheduler reads its own wall clock to run jobs; this asks it for "now" in its terms, so
    the service never passes a time it read itself (a test's clock may be days away from it).
    """

    def __init__(self, then: CronTrigger) -> None:
        self.then = then

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return now
        fire: datetime | None = self.then.get_next_fire_time(previous_fire_time, now)
        return fire


def fire_at_or_after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    """The trigger's first fire time at or after ``moment`` (to the second, UTC), no jitter."""
    if getattr(trigger, "jitter", None):
        trigger = copy.copy(trigger)
        trigger.jitter = None
    fire: datetime | None = trigger.get_next_fire_time(None, moment.astimezone(trigger.timezone))
    return fire.astimezone(UTC) if fire is not None else None


def sweep_deadline(
    trigger: CronTrigger,
    last_complete_at: datetime | None,
    started_at: datetime,
    grace: timedelta,
    slack: timedelta = timedelta(0),
) -> datetime | None:
    """The time after which the data is overdue: the first fire time after the last complete
    sweep's start plus the misfire grace (plus ``slack``, the configured jitter). Before any
    complete sweep, the service gets one grace period from ``started_at``. None: never due."""
    if last_complete_at is None:
        return started_at + grace
    fire = fire_at_or_after(trigger, last_complete_at + _TICK)
    return None if fire is None else fire + grace + slack


@dataclass(frozen=True)
class CatchUp:
    """Why the service sweeps once at start: ``asked`` (``--once-now`` or
    ``schedule.run_on_start``), ``unreadable`` (the sweep history could not be read: sweeping is
    the safe side), ``never`` (no complete sweep on record), ``missed`` (the fire time
    ``missed`` fell due since the last complete sweep's start, within the misfire grace) or
    ``overdue`` (down past the grace over a window: waiting for the next would prolong that)."""

    why: Literal["asked", "unreadable", "never", "missed", "overdue"]
    missed: datetime | None = None

    @property
    def trigger(self) -> Literal["start", "catch-up"]:
        return "start" if self.why == "asked" else "catch-up"


def catch_up(
    trigger: CronTrigger,
    last_complete_at: datetime | None,
    now: datetime,
    grace: timedelta,
    *,
    asked: bool = False,
    unreadable: bool = False,
) -> CatchUp | None:
    """The start-up decision, all of it (the service only gathers its inputs): sweep now, and
    why, or None to wait for the schedule. ``last_complete_at``: when the last complete sweep
    started."""
    if asked:
        return CatchUp("asked")
    if unreadable:
        return CatchUp("unreadable")
    if last_complete_at is None:
        return CatchUp("never")
    # The earliest fire time after the last start, not after now and within the grace: one
    # trigger lookup whatever the downtime, since one is enough to decide and coalescing makes
    # up any number of missed windows with one sweep.
    missed = fire_at_or_after(trigger, max(last_complete_at + _TICK, now - grace))
    if missed is not None and missed <= now:
        return CatchUp("missed", missed)
    deadline = sweep_deadline(trigger, last_complete_at, now, grace)
    return CatchUp("overdue") if deadline is not None and now > deadline else None


# A failed sweep is retried soon, then less often: minutes while a glitch may pass, hours when
# the API or database is down for longer, until one completes (the next cron time also sweeps).
RETRY_DELAYS = tuple(timedelta(minutes=m) for m in (5, 15, 30, 60, 120, 240))


def retry_at(failures: int, failed_at: datetime, next_fire: datetime | None) -> datetime | None:
    """When to retry after ``failures`` consecutive failed sweeps (1 = the first), or None when
    the next scheduled sweep comes sooner anyway."""
    when = failed_at + RETRY_DELAYS[min(max(failures, 1), len(RETRY_DELAYS)) - 1]
    return None if next_fire is not None and next_fire <= when else when
