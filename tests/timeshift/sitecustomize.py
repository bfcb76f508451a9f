"""Moves the wall clock of every Python process that starts with this folder on ``PYTHONPATH``.

CI runs the whole suite a second time with ``TEST_CLOCK_SHIFT_DAYS=365`` (and once more at
``-7``) and ``PYTHONPATH=tests/timeshift``: Python imports ``sitecustomize`` at start-up, so pytest
and every ``did-monitor`` subprocess it launches start a time-machine travel to the shifted date
and tick on from there. A test that passes today and fails there depends on today's date.
"""

from __future__ import annotations

import os

_shift = os.environ.get("TEST_CLOCK_SHIFT_DAYS", "").strip()
if _shift:
    from datetime import UTC, datetime, timedelta

    import time_machine

    _travel = time_machine.travel(
        datetime.now(UTC) + timedelta(days=float(_shift)),
        tick=True,
    )
    _travel.start()
