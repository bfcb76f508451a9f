from __future__ import annotations

from datetime import UTC, datetime

from monitor.config import ChannelConfig, ScheduleConfig, Settings
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
from monitor.status import collect, next_run
from monitor.store import Store
from monitor.testing import RecordingNotifier
from tests.conftest import FakeClock, make_settings


def test_next_run_uses_cron_and_timezone() -> None:
    s = Settings(schedule=ScheduleConfig(cron="0 6 * * mon", timezone="Asia/Kolkata"))
    monday = next_run(s, datetime(2026, 11, 23, 12, tzinfo=UTC))  # a Monday, after 06:00 IST
    assert monday == datetime(2026, 11, 30, 0, 30, tzinfo=UTC)


def test_collect_after_a_sweep(sandbox: Sandbox, sqlite_store: Store, clock: FakeClock) -> None:
    chan = ChannelConfig(name="c", url="json://x")
    settings = make_settings(sandbox, sqlite_store.url, (chan,))
    run_cycle(settings, sqlite_store, RecordingNotifier(failing={"c"}), clock=clock)
    info = collect(settings, sqlite_store, clock())
    assert info["last_sweep"]["status"] == "complete"
    assert info["open_total"] == sum(i["count"] for i in info["open_findings"]) > 0
    assert info["channels"]["c"]["consecutive_failures"] == 1
    assert info["channels"]["c"]["pending"] == 1
    assert info["next_sweep"] > clock()
