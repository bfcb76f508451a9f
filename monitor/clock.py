"""The one place the wall clock is read.

A process's entry point (a CLI command, the service) creates the clock and passes it down; every
module below takes ``now`` or a ``Clock`` from its caller. ruff's banned-API rule (TID251, see
``pyproject.toml``) rejects ``datetime.now``, ``time.time`` and ``date.today`` anywhere else, so a
test can pin time by passing its own clock and nothing silently reads the real date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def system_clock() -> datetime:
    """The real time, in UTC: the clock entry points hand down."""
    return datetime.now(UTC)
