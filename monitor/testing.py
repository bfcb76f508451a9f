"""Fakes shipped with the package for tests, benchmarks and the demo: a notifier that records,
not sends, and row counts of the sweep's tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.alerts.notify import Channel
from monitor.errors import DeliveryError
from monitor.store.db import ATTEMPTS, DELIVERIES, FINDINGS, NOTIFICATIONS, SWEEPS, VERSIONS


@dataclass
class SentMessage:
    channel: str
    title: str
    body: str
    body_format: str
    level: str
    parts: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordingNotifier:
    """Keeps every message; channels named in ``failing`` raise ``DeliveryError`` instead."""

    sent: list[SentMessage] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def send(
        self,
        channel: Channel,
        title: str,
        body: str,
        body_format: str,
        level: str = "info",
        parts: dict[str, Any] | None = None,
    ) -> None:
        if channel.name in self.failing:
            raise DeliveryError(f"channel {channel.name}: simulated failure")
        self.sent.append(SentMessage(channel.name, title, body, body_format, level, parts or {}))


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each table a sweep writes to, by table name (what a sweep wrote is the change)."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (SWEEPS, VERSIONS, FINDINGS, DELIVERIES, NOTIFICATIONS, ATTEMPTS)
        }
