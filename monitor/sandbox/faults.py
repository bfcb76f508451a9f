"""Faults the sandbox injects into its answers (status codes, garbage, timeouts, closed
connections), queued per path and page; and the API paths it serves."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final, Literal

NUMBERS_PATH: Final = "/api/v1/partner/numbers"
ACCOUNTS_PATH: Final = "/api/v1/partner/accounts"
ME_PATH: Final = "/api/v1/partner/me"
# The messaging API's read-only listing of WhatsApp-capable numbers for sale (seed 003). The
# sandbox serves no order or verification endpoint: the monitor must never call one.
AVAILABILITY_PATH: Final = "/api/v1/messaging/numbers/whatsapp/availability"
FaultKind = Literal["status", "garbage", "timeout", "close"]


@dataclass
class Fault:
    path: str | None  # None matches every path
    page: int | None  # None matches every page; an absent ?page= counts as 1
    times: int  # remaining; -1 means forever
    status: int = 503
    retry_after: str | None = None
    kind: FaultKind = "status"
    delay: float = 0.0
    hits: int = 0


class FaultPlan:
    """Queued faults handed to the next matching requests, first added first served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path: str | None = NUMBERS_PATH,
        page: int | None = None,
        times: int = 1,
        status: int = 503,
        retry_after: str | None = None,
        kind: FaultKind = "status",
        delay: float = 0.0,
    ) -> Fault:
        if kind not in ("status", "garbage", "timeout", "close"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1")
        fault = Fault(path, page, times, status, retry_after, kind, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, path: str, page: int | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path not in (None, path) or fault.page not in (None, page):
                    continue
                fault.hits += 1
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
