"""Fakes shipped with the package for tests, benchmarks and the demo: a notifier that records,
not sends, and row counts of the sweep's tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.alerts.notify import Notifier, Outgoing
from monitor.config import ChannelConfig
from monitor.errors import DeliveryError
from monitor.store.db import ATTEMPTS, DELIVERIES, FINDINGS, NOTIFICATIONS, SWEEPS, VERSIONS


@dataclass
class RecordingNotifier(Notifier):
    """Keeps every message; channels named in ``failing`` raise ``DeliveryError`` instead."""

    sent: list[Outgoing] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def deliver(self, channel: ChannelConfig, message: Outgoing) -> None:
        if channel.name in self.failing:
            raise DeliveryError(f"channel {channel.name}: simulated failure")
        self.sent.append(message)


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each table a sweep writes to, by table name (what a sweep wrote is the change)."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (SWEEPS, VERSIONS, FINDINGS, DELIVERIES, NOTIFICATIONS, ATTEMPTS)
        }
