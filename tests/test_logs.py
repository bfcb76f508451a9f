from __future__ import annotations

import json
import logging

import pytest

from monitor import logs


def test_json_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "json")
    logging.getLogger("monitor.test").info("sweep %d complete", 3, extra={"numbers": 10})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    data = json.loads(line)
    assert data["message"] == "sweep 3 complete" and data["numbers"] == 10
    assert data["level"] == "info" and data["time"].endswith("Z")


def test_noisy_libraries_stay_quiet_even_at_debug() -> None:
    logs.setup("DEBUG", "text")
    assert logging.getLogger("apprise").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    logs.setup("INFO", "text")
