"""The one wall-clock edge, and the CI guard that moves every process's clock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.clock import system_clock

TIMESHIFT = Path(__file__).parent / "timeshift"


def test_system_clock_is_aware_utc() -> None:
    now = system_clock()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_timeshift_guard_moves_a_subprocess_clock() -> None:
    env = {**os.environ, "PYTHONPATH": str(TIMESHIFT), "TEST_CLOCK_SHIFT_DAYS": "365"}
    code = "from monitor.clock import system_clock; print(system_clock().isoformat())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    moved = datetime.fromisoformat(out.strip())
    # Relative to this process's clock, which the guard may have moved already (CI's shifted runs).
    ours = float(os.environ.get("TEST_CLOCK_SHIFT_DAYS") or 0)
    expected = timedelta(days=365 - ours)
    assert abs(moved - datetime.now(UTC) - expected) < timedelta(hours=1)
