"""The sandbox's inventory: numbers and accounts generated on demand from (seed, index),
plus the patches (updates, additions, removals) that tests and the demo apply."""

from __future__ import annotations

import enum
import random
import string
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

_MASK: Final = (1 << 64) - 1
# Version 4 and RFC 4122 variant bits, set the way uuid.UUID(int=..., version=4) sets them.
_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)
_ALNUM: Final = string.ascii_uppercase + string.digits
_TOKEN_CHARS: Final = string.ascii_letters + string.digits
# Cumulative thresholds, so one uniform draw picks the status.
_STATUSES: Final = (
    ("active", 0.895),
    ("pending_purchase", 0.915),
    ("pending_release", 0.935),
    ("inactive", 0.96),
    ("blocked", 0.975),
    ("expired", 0.995),
    ("quarantined", 1.0),  # a value the client has never seen must not crash it
)
_REGIONS_IN: Final = ("Maharashtra", "Karnataka", "Delhi", "Tamil Nadu", "Gujarat", "West Bengal")
_REGIONS_US: Final = ("CA", "NY", "TX", "WA", "IL")
_TAGS: Final = ("support", "sales", "ivr", "campaign-q3", "toll-free", "backup")
_HOSTILE_TAGS: Final = ("<script>alert(1)</script>", "line1\nline2", "*bold*", "@channel")
_NAME_A: Final = ("Acme", "Bharat", "Coastal", "Delta", "Everest", "Falcon", "Ganga", "Horizon")
_NAME_B: Final = ("Telecom", "Support", "Logistics", "Health", "Retail", "Finance", "Travel")
_NAME_C: Final = ("Pvt Ltd", "Inc", "LLP", "& Sons")


class _Sentinel(enum.Enum):
    DELETE = "DELETE"


DELETE: Final = _Sentinel.DELETE  # an override value that removes the key from the item


def _mix(seed: int, index: int, salt: int) -> int:
    """Spread (seed, index, salt) over 64 bits (splitmix64) without building a Random."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Inventory:
    """Numbers generated on demand from (seed, index), plus patches; thread-safe."""

    def __init__(self, count: int, seed: int, now: datetime) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        self.count = count
        self.seed = seed
        self.now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        self._epoch = self.now.timestamp()
        self._dates: dict[int, str] = {}  # day number -> "YYYY-MM-DD"; a few thousand at most
        self.overrides: dict[int, dict[str, Any]] = {}
        self.removed: set[int] = set()
        self._front: list[int] = []  # indexes added with front=True, in page order
        self._next = count
        self._lock = threading.RLock()
        # A range until the first front-add or removal, so 100k numbers cost no memory.
        self._live: Sequence[int] = range(count)
        self._by_account: dict[str, list[int]] | None = None
        self.version = 0  # bumped by every change, so cached page bodies know they are stale
        pool = max(3, count // 50)
        self._accounts = [self._make_account(k) for k in range(pool + 2)]
        self._pool = [str(a["auth_id"]) for a in self._accounts[:pool]]
        # The last two accounts never receive a number: "customer with no active number".
        self.empty_account_ids = tuple(str(a["auth_id"]) for a in self._accounts[pool:])
        self.for_sale: dict[tuple[str, str | None], int] = {}  # see ``availability``

    @property
    def total(self) -> int:
        with self._lock:
            return len(self._live)

    def item(self, index: int) -> dict[str, Any]:
        with self._lock:
            if not (0 <= index < self._next) or index in self.removed:
                raise KeyError(index)
            return self._item(index)

    def ids(self) -> Iterator[str]:
        with self._lock:
            live = self._live  # never mutated in place, only replaced
        for index in live:
            with self._lock:
                number_id = self._id_of(index)
            yield number_id  # outside the lock: the consumer may pause here indefinitely

    def index_of(self, number_id: str) -> int:
        with self._lock:
            return self._resolve([number_id])[0]

    def accounts(self, search: str | None = None) -> list[dict[str, Any]]:
        needle = (search or "").lower()
        return [
            dict(a)
            for a in self._accounts
            if needle in str(a["name"]).lower() or needle in str(a["auth_id"]).lower()
        ]

    def availability(self, country: str, region: str | None) -> list[dict[str, Any]]:
        """Numbers for sale in (country, region): a count set in ``for_sale`` (by upper-case
        country and region, or None for the whole country), else 0-12 drawn from the seed."""
        key = (country.upper(), region or None)
        with self._lock:
            count = self.for_sale.get(key)
        if count is None:
            salt = sum(ord(c) for c in f"{key[0]}/{key[1] or ''}")
            count = _mix(self.seed, salt, 11) % 13
        us = key[0] == "US"
        prefix = "+1" if us else "+91"
        return [
            {
                "e164": f"{prefix}{8_000_000_000 + _mix(self.seed, i, 12) % 10**9}",
                "country": key[0],
                "region": key[1],
                "setup_fee": "0.00",
                "monthly_fee": "1.00" if us else "300.00",
                "currency": "USD" if us else "INR",
            }
            for i in range(count)
        ]

    def page(
        self, page: int, per_page: int, account: str | None = None, search: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page must be >= 1")
        with self._lock:
            indexes = self._live if account is None else self._account_index().get(account, [])
            if search:
                indexes = [i for i in indexes if search in self._e164_of(i)]
            start = (page - 1) * per_page
            return [self._item(i) for i in indexes[start : start + per_page]], len(indexes)

    def add(self, n: int = 1, front: bool = False) -> list[str]:
        """Append n numbers (or put them before all others), returning their ids."""
        with self._lock:
            new = list(range(self._next, self._next + n))
            self._next += n
            if front:
                self._front = new + self._front
            self._rebuild()
            return [self._id_of(i) for i in new]

    def remove(self, ids: Iterable[str | int]) -> int:
        """Remove numbers by id (or index); raises KeyError naming any that are not live."""
        with self._lock:
            targets = self._resolve(ids)
            self.removed.update(targets)
            self._rebuild()
            return len(targets)

    def update(self, id_or_index: str | int, /, **fields: Any) -> dict[str, Any]:
        """Patch fields of one number (DELETE drops a key); returns the patched item."""
        with self._lock:
            index = self._resolve([id_or_index])[0]
            self.overrides.setdefault(index, {}).update(fields)
            self.version += 1
            if "account_id" in fields:
                self._by_account = None
            return self._item(index)

    def _resolve(self, keys: Iterable[str | int]) -> list[int]:
        keys = list(keys)
        wanted = {k for k in keys if isinstance(k, str)}
        found: dict[str, int] = {}
        if wanted:  # ids are not invertible, so one scan serves the whole batch
            for index in self._live:
                number_id = self._id_of(index)
                if number_id in wanted:
                    found[number_id] = index
                    if len(found) == len(wanted):
                        break
        out: list[int] = []
        missing: list[str | int] = []
        for k in keys:
            index = found.get(k, -1) if isinstance(k, str) else k
            if 0 <= index < self._next and index not in self.removed:
                out.append(index)
            else:
                missing.append(k)
        if missing:
            raise KeyError(f"unknown numbers: {missing!r}")
        return out

    def _rebuild(self) -> None:
        self.version += 1
        if not self._front and not self.removed:
            self._live = range(self._next)
        else:
            skip = self.removed.union(self._front)
            front = [i for i in self._front if i not in self.removed]
            self._live = front + [i for i in range(self._next) if i not in skip]
        self._by_account = None

    def _account_index(self) -> dict[str, list[int]]:
        if self._by_account is None:
            by_account: dict[str, list[int]] = {}
            for index in self._live:
                by_account.setdefault(self._account_of(index), []).append(index)
            self._by_account = by_account
        return self._by_account

    def _patched(self, index: int, key: str) -> Any:
        patch = self.overrides.get(index)
        return DELETE if patch is None else patch.get(key, DELETE)

    def _id_of(self, index: int) -> str:
        value = self._patched(index, "id")
        if value is not DELETE:
            return str(value)
        # Built by hand: uuid.UUID() costs more than the rest of the id lookup scan.
        bits = ((_mix(self.seed, index, 3) << 64) | _mix(self.seed, index, 4)) & _UUID_CLEAR
        h = f"{bits | _UUID_SET:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _account_of(self, index: int) -> str:
        value = self._patched(index, "account_id")
        if value is not DELETE:
            return str(value)
        return self._pool[_mix(self.seed, index, 2) % len(self._pool)]

    def _is_us(self, index: int) -> bool:
        return _mix(self.seed, index, 1) % 100 < 15

    def _e164_of(self, index: int, us: bool | None = None) -> str:
        value = self._patched(index, "e164")
        if value is not DELETE:
            return str(value)
        # index * prime mod M is a bijection below M, so every index gets its own number.
        scrambled = index * 2_654_435_761 + self.seed
        if self._is_us(index) if us is None else us:
            return f"+1{2_000_000_000 + scrambled % 8_000_000_000}"
        return f"+91{6_000_000_000 + scrambled % 4_000_000_000}"

    def _item(self, index: int) -> dict[str, Any]:
        item = self._generate(index)
        for key, value in self.overrides.get(index, {}).items():
            if value is DELETE:
                item.pop(key, None)
            else:
                item[key] = value
        return item

    def _make_account(self, k: int) -> dict[str, Any]:
        rng = random.Random(_mix(self.seed, k, 7))
        return {
            "auth_id": "MA_" + "".join(rng.choices(_ALNUM, k=8)),
            "name": f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {rng.choice(_NAME_C)}",
            "status": "active",
            "auth_token": "".join(rng.choices(_TOKEN_CHARS, k=40)),
            "created_at": self._stamp(-rng.uniform(60, 1500), 0),
        }

    def _stamp(self, days: float, style: int) -> str:
        """RFC 3339, `days` from now, in the three spellings the real API mixes."""
        day, secs = divmod(self._epoch + days * 86400.0, 86400.0)
        date = self._dates.get(int(day))
        if date is None:  # strftime per field would dominate item generation
            date = f"{datetime.fromtimestamp(day * 86400.0, UTC):%Y-%m-%d}"
            self._dates[int(day)] = date
        whole = int(secs)
        hms = f"{date}T{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        if style == 0:
            return hms + "Z"
        if style == 1:
            return f"{hms}.{int((secs - whole) * 1e6):06d}Z"
        return hms + "+00:00"

    def _generate(self, index: int) -> dict[str, Any]:
        r = random.Random(_mix(self.seed, index, 0)).random

        def stamp(days: float) -> str:
            return self._stamp(days, 0 if r() < 0.6 else 1 if r() < 0.6 else 2)

        def pick(options: Sequence[Any]) -> Any:
            return options[int(r() * len(options))]  # Random.choice is several times slower

        def between(low: float, high: float) -> float:
            return low + (high - low) * r()

        us = self._is_us(index)
        u = r()
        status = next(name for name, edge in _STATUSES if u < edge)
        age = between(20, 900)
        u = r()
        if u < 0.04:
            app_id: Any = None
        elif u < 0.05:
            app_id = ""
        elif u < 0.06:
            app_id = DELETE
        else:
            app_id = str(10**7 + int(r() * 99 * 10**7))
        u = r()
        if u < 0.06:
            next_days: float | None = between(0.05, 7)
        elif u < 0.08:
            next_days = -between(1, 20)
        elif u < 0.09:
            next_days = None
        else:
            next_days = between(8, 60)
        voice = r() < 0.97
        u = r()
        tags = [] if u < 0.35 else [pick(_TAGS)] if u < 0.8 else [pick(_TAGS), "vip"]
        if r() < 0.01:
            tags.append(pick(_HOSTILE_TAGS))
        monthly_fee = pick((1.5, "1.00", 2)) if us else pick((300, "300.00", 450.5))
        item: dict[str, Any] = {
            "id": self._id_of(index),
            "account_id": self._account_of(index),
            "e164": self._e164_of(index, us),
            "country": "US" if us else "IN",
            "region": None if r() < 0.12 else pick(_REGIONS_US if us else _REGIONS_IN),
            "capabilities": {
                "voice": voice,
                "sms": r() < 0.6,
                "mms": us and r() < 0.4,
                "fax": r() < 0.05,
            },
            "status": status,
            "provider": "" if r() < 0.6 else pick(("vobiz", "tata", "airtel")),
            "setup_fee": pick((0, "0.00", 500)),
            "monthly_fee": monthly_fee,
            "currency": "USD" if us else "INR",
            "application_id": app_id,
            "voice_enabled": voice and r() > 0.02,
            "tags": tags,
            "purchased_at": stamp(-age + 0.01),
            "is_blocked": status == "blocked" or r() < 0.005,
            "created_at": stamp(-age),
            "updated_at": stamp(-age * r()),
            "is_trial_number": r() < 0.03,
            "last_billing_date": stamp(-between(0.5, 30)),
            "next_billing_date": DELETE if next_days is None else stamp(next_days),
            "minimum_commitment_months": pick((0, 0, 1, 3, 12)),
            "aadhaar_verification_required": (required := not us and r() < 0.25),
            "aadhaar_verified": required and r() < 0.85,
            "source": "purchased" if r() < 0.7 else "inventory",
        }
        if r() < 0.05:  # legacy fields some old numbers still carry
            item["expires_at"] = stamp(between(0.5, 14) if r() < 0.5 else between(15, 365))
            item["monthly_cost"] = str(monthly_fee)
        for key in ("application_id", "next_billing_date"):
            if item[key] is DELETE:
                del item[key]
        return item
