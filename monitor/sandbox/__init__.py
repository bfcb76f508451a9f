"""A fake Vobiz Partner API served over real HTTP for the demo, the tests and the benchmarks.

Split by reason to change: ``inventory`` (the generated numbers and accounts), ``faults``
(injected failures and the API paths), ``server`` (HTTP serving and the ``Sandbox`` itself).
"""

from __future__ import annotations

from monitor.sandbox.faults import (
    ACCOUNTS_PATH,
    AVAILABILITY_PATH,
    ME_PATH,
    NUMBERS_PATH,
    Fault,
    FaultKind,
    FaultPlan,
)
from monitor.sandbox.inventory import DELETE, Inventory
from monitor.sandbox.server import RequestRecord, Sandbox

__all__ = [
    "ACCOUNTS_PATH",
    "AVAILABILITY_PATH",
    "DELETE",
    "ME_PATH",
    "NUMBERS_PATH",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Inventory",
    "RequestRecord",
    "Sandbox",
]
