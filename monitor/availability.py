"""The optional availability watch: how many WhatsApp-capable numbers are for sale per
country/region, from the messaging API's read-only listing.

Read-only by design: this module only lists. The monitor has no code that orders, verifies or
buys a number, and must never have any: a monitor must not spend money.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monitor.errors import ApiError
from monitor.rules.events import AvailabilityWatch

AVAILABILITY_PATH = "/api/v1/messaging/numbers/whatsapp/availability"


def count_available(body: Any) -> int:
    """The numbers a listing body offers: its ``total`` when it gives one, else its items."""
    if not isinstance(body, dict):
        raise ApiError(f"GET {AVAILABILITY_PATH}: the body is not a JSON object")
    items = body.get("items", body.get("data"))
    if not isinstance(items, list):
        raise ApiError(f"GET {AVAILABILITY_PATH}: the body has no 'items' list")
    total = body.get("total")
    if isinstance(total, int) and not isinstance(total, bool) and total >= len(items):
        return total
    return len(items)


def fetch_availability(
    get_json: Callable[[str, dict[str, Any]], Any], watches: Sequence[AvailabilityWatch]
) -> list[tuple[AvailabilityWatch, int]]:
    """Each watched country/region pair with the count of numbers for sale there."""
    out = []
    for watch in watches:
        params = {"country": watch.country}
        if watch.region:
            params["region"] = watch.region
        out.append((watch, count_available(get_json(AVAILABILITY_PATH, params))))
    return out
