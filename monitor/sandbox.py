"""A fake Vobiz Partner API served over real HTTP for the demo, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import enum
import json
import random
import re
import socket
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

NUMBERS_PATH: Final = "/api/v1/partner/numbers"
ACCOUNTS_PATH: Final = "/api/v1/partner/accounts"
ME_PATH: Final = "/api/v1/partner/me"
_ACCOUNT_NUMBERS: Final = re.compile(r"/api/v1/partner/accounts/([^/]+)/numbers")
_INT: Final = re.compile(r"[+-]?\d{1,9}")  # int() would also accept "1_0" and " 5"
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
_ERROR_CODES: Final = {
    400: "invalid_parameter",
    401: "unauthorized",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

FaultKind = Literal["status", "garbage", "timeout", "close"]
PAGE_CACHE_SIZE: Final = 2_000  # encoded pages kept (about 100 MB at 100 numbers a page)


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


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int  # 0 when the connection was closed without a response


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


def _paging(query: dict[str, str], size_key: str = "per_page") -> tuple[int, int]:
    raw_page, raw_size = query.get("page", "1"), query.get(size_key, "20")
    if not _INT.fullmatch(raw_page) or int(raw_page) < 1:
        raise ValueError("page must be an integer >= 1")
    if not _INT.fullmatch(raw_size):
        raise ValueError(f"{size_key} must be an integer")
    return int(raw_page), min(100, max(1, int(raw_size)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # eight keep-alive clients plus bursts of reconnects

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so every response carries Content-Length
    server_version = "VobizSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 60  # idle keep-alive connections must not pin a thread forever
    _sandbox: Sandbox
    _status = 0  # what was answered, recorded even if the client hung up mid-write

    def setup(self) -> None:
        super().setup()
        self._sandbox = cast(_Server, self.server).sandbox
        self._sandbox._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # per-request stderr lines would drown test and benchmark output

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:  # an unread body would corrupt the next request on this connection
            self.rfile.read(length)
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self._status = 0
        self._record: RequestRecord | None = RequestRecord("GET", path, query, 0)
        try:
            self._route(path, query)
        finally:
            if self._record is not None:  # closed without an answer
                self._log(0)

    def _route(self, path: str, query: dict[str, str]) -> int:
        sb = self._sandbox
        if sb.latency > 0:
            time.sleep(sb.latency)
        headers = self.headers
        if headers.get("X-Auth-ID") != sb.auth_id or headers.get("X-Auth-Token") != sb.auth_token:
            return self._error(401, "invalid X-Auth-ID or X-Auth-Token")
        match = _ACCOUNT_NUMBERS.fullmatch(path)
        numbers = path == NUMBERS_PATH or match is not None
        if not numbers and path not in (ACCOUNTS_PATH, ME_PATH):
            message = f"no route for GET {path}"
            return self._json(
                404, {"api_id": str(uuid.uuid4()), "error": "not_found", "message": message}
            )
        raw_page = query.get("page", "1")
        fault = sb.faults.take(path, int(raw_page) if _INT.fullmatch(raw_page) else None)
        if fault is not None:
            time.sleep(fault.delay)
            if fault.kind == "close":
                self.close_connection = True
                return 0
            if fault.kind == "garbage":
                return self._send(200, b"<html><body>502 Bad Gateway</body></html>")
            if fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._error(fault.status, "injected fault", extra)
            # "timeout": the delay has passed, now answer as if nothing happened
        if numbers and (sb.error_rate > 0 or sb.rate_limit_rate > 0):
            with sb._lock:
                roll = sb._rng.random()
            if roll < sb.error_rate:
                return self._error(503, "upstream temporarily unavailable")
            if roll < sb.error_rate + sb.rate_limit_rate:
                return self._error(429, "too many requests", {"Retry-After": "1"})
        if path == ME_PATH:
            return self._json(
                200, {"auth_id": sb.auth_id, "name": "Sandbox Partner", "balance": "1234.50"}
            )
        try:
            alias = path == ACCOUNTS_PATH and "size" in query  # size echoes back, so accept it
            page, per_page = _paging(query, "size" if alias else "per_page")
        except ValueError as exc:
            return self._error(400, str(exc))
        if path == ACCOUNTS_PATH:
            accounts = sb.inventory.accounts(query.get("search"))
            chunk = accounts[(page - 1) * per_page : page * per_page]
            body: dict[str, Any] = {
                "accounts": chunk,
                "total": len(accounts),
                "page": page,
                "size": per_page,
            }
            return self._json(200, body)
        if sb.on_request is not None:
            try:
                sb.on_request(path, query)
            except Exception as exc:  # a broken test hook should surface as a 500, not a hang
                return self._error(500, f"on_request hook failed: {exc!r}")
        account = unquote(match.group(1)) if match else None
        search = query.get("search") if match else None
        if account is None:
            return self._send(200, sb.global_page(page, per_page))
        items, total = sb.inventory.page(page, per_page, account, search)
        return self._json(
            200,
            {
                "data" if sb.legacy_envelope else "items": items,
                "page": page,
                "per_page": per_page,
                "total": total,
                "account_auth_id": account,
            },
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> int:
        error = {"code": _ERROR_CODES.get(status, "error"), "message": message, "details": None}
        body = {"status": "error", "error": error, "requestId": str(uuid.uuid4())}
        return self._json(status, body, headers)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(body, separators=(",", ":")).encode(), headers)

    def _log(self, status: int) -> None:
        record, self._record = self._record, None
        if record is not None:
            with self._sandbox._lock:
                self._sandbox.requests.append(
                    RequestRecord(record.method, record.path, record.query, status)
                )

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> int:
        self._status = status
        self._log(status)  # before answering, so a client that has its answer sees the record
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status


class Sandbox:
    """The fake API server; start() runs it on a daemon thread, stop() tears it down."""

    def __init__(
        self,
        numbers: int = 200,
        seed: int = 1,
        *,
        now: datetime,
        auth_id: str = "PA_SANDBOX",
        auth_token: str = "sandbox-token",  # noqa: S107 - a fixed fake credential
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        legacy_envelope: bool = False,
        error_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
    ) -> None:
        self.inventory = Inventory(numbers, seed, now)
        self.faults = FaultPlan()
        self.auth_id, self.auth_token = auth_id, auth_token
        self.host, self.port = host, port
        self.latency = latency
        self.legacy_envelope = legacy_envelope
        self.error_rate, self.rate_limit_rate = error_rate, rate_limit_rate
        self.on_request: Callable[[str, dict[str, str]], None] | None = None
        self.requests: list[RequestRecord] = []
        self.connections = 0  # accepted TCP connections, to check that clients keep them alive
        self._rng = random.Random(_mix(seed, 0, 99))
        self._page_cache: dict[tuple[int, int, int, bool], bytes] = {}
        self._cache_version = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def global_page(self, page: int, per_page: int) -> bytes:
        """The encoded body of one global numbers page, cached until the inventory changes.

        Generating and encoding a page costs milliseconds of CPU; caching keeps the sandbox from
        being the bottleneck of the benchmarks that measure the client.
        """
        key = (self.inventory.version, page, per_page, self.legacy_envelope)
        body = self._page_cache.get(key)
        if body is None:
            items, total = self.inventory.page(page, per_page)
            envelope = {
                "data" if self.legacy_envelope else "items": items,
                "page": page,
                "per_page": per_page,
                "total": total,
                "account_auth_id": self.auth_id,
            }
            body = json.dumps(envelope, separators=(",", ":")).encode()
            with self._lock:
                if len(self._page_cache) >= PAGE_CACHE_SIZE or self._cache_version != key[0]:
                    self._page_cache.clear()
                    self._cache_version = key[0]
                self._page_cache[key] = body
        return body

    def warm(self, per_page: int = 100) -> int:
        """Render every global page of ``per_page`` ahead of time; returns how many."""
        pages = max(1, -(-self.inventory.total // per_page))
        for page in range(1, min(pages, PAGE_CACHE_SIZE) + 1):
            self.global_page(page, per_page)
        return pages

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox is not bound; call start() or bind() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-ID": self.auth_id, "X-Auth-Token": self.auth_token}

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def bind(self) -> Sandbox:
        """Open the listening socket now, so .url is known before serving."""
        self._bound()
        return self

    def start(self) -> Sandbox:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._bound().serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        server = self._bound()
        try:
            server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._close()

    def _bound(self) -> _Server:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            # Keep the port the OS picked, so a stop()/start() "restart" comes back on it.
            self.port = int(self._server.server_address[1])
        return self._server

    def _close(self) -> None:
        server, self._server, self._thread = self._server, None, None
        with self._lock:
            conns = list(self._open)
        for conn in conns:  # wake keep-alive handler threads blocked on reading
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if server is not None:
            server.server_close()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(conn)
                self.connections += 1
            else:
                self._open.discard(conn)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
