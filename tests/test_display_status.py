from __future__ import annotations

from datetime import UTC, datetime

from monitor.config import ChannelConfig, ScheduleConfig, Settings
from monitor.health import collect, next_run
from monitor.pipeline import run_cycle
from monitor.sandbox import Sandbox
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


def test_a_channel_is_failing_from_its_first_failure(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    import io

    from rich.console import Console

    from monitor.display import print_status

    chan = ChannelConfig(name="c", url="json://x")
    settings = make_settings(sandbox, sqlite_store.url, (chan,))  # failing_after: 3
    run_cycle(settings, sqlite_store, RecordingNotifier(failing={"c"}), clock=clock)
    info = collect(settings, sqlite_store, clock())
    assert info["channels"]["c"]["failing"] and not info["channels"]["c"]["others_told"]
    buf = io.StringIO()
    print_status(info, Console(file=buf, width=80, color_system=None))
    assert "c: failing (1 in a row)" in buf.getvalue()


def test_silenced_findings_are_counted_apart(
    sandbox: Sandbox, sqlite_store: Store, clock: FakeClock
) -> None:
    from datetime import timedelta

    settings = make_settings(sandbox, sqlite_store.url)
    run_cycle(settings, sqlite_store, RecordingNotifier(), clock=clock)
    before = collect(settings, sqlite_store, clock())
    rule = before["open_findings"][0]["rule"]
    held = sum(i["count"] for i in before["open_findings"] if i["rule"] == rule)
    sqlite_store.add_silence(rule, clock() + timedelta(days=1), "known", clock())
    info = collect(settings, sqlite_store, clock())
    assert info["silenced_total"] == held
    assert info["open_total"] == before["open_total"] - held
    for item in info["open_findings"]:
        if item["rule"] == rule:
            assert item["count"] == 0 and item["silenced"] > 0
