"""``did-monitor status``: what the service last did and what it will do next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console

from monitor.config import Settings
from monitor.outbox import Outbox
from monitor.render import tty
from monitor.schedule import build_trigger, fire_at_or_after
from monitor.store import Store


def next_run(settings: Settings, now: datetime) -> datetime | None:
    return fire_at_or_after(build_trigger(settings.schedule, jitter=False), now)


def collect(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:

    def sweep_info(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            k: row[k]
            for k in (
                "id",
                "status",
                "started_at",
                "finished_at",
                "numbers_seen",
                "findings_opened",
                "findings_resolved",
                "error",
            )
        }

    counts = store.open_counts(now)
    quiet = store.silenced_counts(now)
    health = Outbox(store).channel_health(c.name for c in settings.channels)
    for name, info in health.items():
        # Failing from the first failed attempt; alerts.failing_after only decides when the
        # other channels are told (``others_told``).
        info["failing"] = info["consecutive_failures"] > 0
        info["others_told"] = info["consecutive_failures"] >= settings.alerts.failing_after
        info["enabled"] = settings.channel(name).enabled
    return {
        "last_sweep": sweep_info(store.last_sweep()),
        "last_complete_sweep": sweep_info(store.last_sweep("complete")),
        # "open" is what `findings` lists: open and not silenced; silenced ones are counted apart
        "open_findings": [
            {
                "rule": r,
                "severity": s,
                "count": counts.get((r, s), 0),
                "silenced": quiet.get((r, s), 0),
            }
            for r, s in sorted(counts.keys() | quiet.keys())
        ],
        "open_total": sum(counts.values()),
        "silenced_total": sum(quiet.values()),
        "channels": health,
        "next_sweep": next_run(settings, now),
    }


def print_status(info: dict[str, Any], out: Console) -> None:
    last = info["last_sweep"]
    if last is None:
        out.print("no sweep yet")
    else:
        colour = "green" if last["status"] == "complete" else "red"
        out.print(
            f"last sweep: #{last['id']} [{colour}]{last['status']}[/] at "
            f"{last['started_at']:%Y-%m-%d %H:%M} UTC, {last['numbers_seen']} numbers"
            + (f" — {tty(last['error'])}" if last["error"] else "")
        )
        ok = info["last_complete_sweep"]
        if ok and ok["id"] != last["id"]:
            out.print(f"last complete sweep: #{ok['id']} at {ok['started_at']:%Y-%m-%d %H:%M} UTC")
    silenced = info["silenced_total"]
    out.print(
        f"open findings: {info['open_total']}" + (f" (and {silenced} silenced)" if silenced else "")
    )
    for item in info["open_findings"]:
        quiet = f"  ({item['silenced']} silenced)" if item["silenced"] else ""
        out.print(f"  {tty(item['rule']):<22} {item['severity']:<9} {item['count']:>6}{quiet}")
    out.print("channels:")
    if not info["channels"]:
        out.print("  (none configured)")
    for name, ch in info["channels"].items():
        state = "[green]ok[/]"
        if ch["failing"]:
            told = ", other channels told" if ch["others_told"] else ""
            state = f"[red]failing[/] ({ch['consecutive_failures']} in a row{told})"
        if not ch["enabled"]:
            state = "disabled"
        extra = (
            f", last error: {tty(ch['last_error'])}" if ch["failing"] and ch["last_error"] else ""
        )
        out.print(f"  {tty(name)}: {state}, {ch['pending']} waiting to be sent{extra}")
    if info["next_sweep"]:
        out.print(f"next scheduled sweep: {info['next_sweep']:%Y-%m-%d %H:%M} UTC")
