"""Fakes shipped with the package for tests and the demo: a notifier that records, not sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.errors import DeliveryError
from monitor.notify import Channel


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
