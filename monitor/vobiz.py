"""The Vobiz Partner API client: auth, paged lists, retries with backoff, error bodies.

HTTP goes through one ``httpx.Client`` (``http_client``), which the service shares with the
heartbeat pings. Every failure leaves here as an ``ApiError`` subclass that says whether
retrying can help.

Every paged list (numbers, accounts) is read the one way: ``VobizClient.iter_pages`` over a
``Listing`` (its path, envelope key and item parser), with the same paging bounds and errors.

Over 400 lines because the client's retry, rate-limit and concurrent-paging rules share its
state (budget, limiter, requests in flight); the page parsing at the end is kept beside the
envelope it reads.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any, Generic, Protocol, TypeVar

import httpx

from monitor import __version__
from monitor.config import VobizConfig
from monitor.errors import (
    ApiError,
    ApiGaveUp,
    AuthError,
    ConfigError,
    IncompleteSweep,
    RetryableApiError,
)
from monitor.model import NumberRecord, parse_number

NUMBERS_PATH = "/api/v1/partner/numbers"
# A page of 100 numbers is about 50 KB: a body this large (after decompression) is a fault or
# a gzip bomb, and is refused before it can take the memory.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# One number's JSON as stored; a larger item is unreadable, not a 50 MB row.
MAX_ITEM_CHARS = 64 * 1024
MAX_RETRY_AFTER = 60.0  # a longer ask is honoured up to this, then the retry budget decides
USER_AGENT = f"did-monitor/{__version__}"


class Identified(Protocol):
    """A record of a paged list; ``id`` tells the records of one page from another's."""

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=Identified)


@dataclass
class Page(Generic[R]):
    """One page of a paged list: parsed records plus what the envelope claimed."""

    page: int
    total: int | None
    records: list[R]
    item_count: int
    # 1-based positions on the page of items that could not be read (or had no usable id)
    unreadable: list[int] = field(default_factory=list)


@dataclass
class RequestStats:
    """Counters shared by every request of one sweep (thread-safe)."""

    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, requests: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart across threads (0 = unlimited)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None]) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            sleep(start - now)


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date header as an aware datetime, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_retry_after(value: str | None, server_now: datetime | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped.

    An HTTP date is measured against ``server_now``, the response's own ``Date`` header, so the
    wait is right whatever our clock says; without one, a date gives None (our own backoff)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        when = _http_date(value)
        if when is None or server_now is None:
            return None
        seconds = (when - server_now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_text(body: Any) -> str:
    """The message of either documented error body shape, or a short excerpt of anything else."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return ": ".join(str(p) for p in (err.get("code"), err.get("message")) if p) or "error"
        if parts := [str(p) for p in (err, body.get("message")) if p]:
            return ": ".join(parts)
    return str(body)[:200]


def http_client(concurrency: int = 1, timeout: float = 30.0) -> httpx.Client:
    """The one kind of HTTP client the monitor uses: keep-alive connections for ``concurrency``
    requests in flight, ``timeout`` seconds per phase, no redirects unless a request asks, and
    proxies and CA bundle from the environment through httpx's own ``trust_env``
    (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``).

    Raises ``ConfigError`` for a proxy httpx cannot use (a SOCKS proxy needs ``socksio``)."""
    try:
        return httpx.Client(
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            trust_env=True,
        )
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"the proxy named in the environment is not usable: {type(exc).__name__}",
            hint="use an http:// or https:// proxy in HTTPS_PROXY / HTTP_PROXY / ALL_PROXY",
        ) from None


class VobizClient(AbstractContextManager["VobizClient"]):
    """Read-only access to the partner endpoints; thread-safe, one instance per sweep or command.

    ``http`` is a client from ``http_client`` to share (the service keeps one for its lifetime);
    without it the client makes its own and closes it on ``close()``.
    """

    def __init__(
        self,
        config: VobizConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        http: httpx.Client | None = None,
    ) -> None:
        if not config.auth_id or not config.auth_token:
            raise ConfigError(
                "vobiz.auth_id and vobiz.auth_token are required",
                hint="set them in [vobiz] or the VOBIZ_AUTH_ID / VOBIZ_AUTH_TOKEN environment "
                "variables",
            )
        self.config = config
        self._sleep = sleep
        # The sweep's allowance of retries, so a dying API fails the sweep in bounded time.
        self.budget = threading.Semaphore(config.retry_budget)
        self.stats = RequestStats()
        self._limiter = RateLimiter(config.max_requests_per_second)
        self._base = config.base_url.rstrip("/")
        self._own_http = http is None
        self._http = http or http_client(config.concurrency, config.timeout_seconds)
        # Sent with each request, not set on the client: a shared client also pings other hosts.
        self._headers = {
            "X-Auth-ID": config.auth_id,
            "X-Auth-Token": config.auth_token,
            "Accept": "application/json",
        }
        self._timeout = httpx.Timeout(config.timeout_seconds)
        # Requests in flight and whether ``close`` was called: fetch threads of an iterator
        # closed early may still be in a request (or wake from a backoff) after the sweep ends.
        self._state_lock = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._batch = threading.local()  # a fetch thread's ``fetch_pages`` stop flag

    def close(self) -> None:
        """Refuse new requests and close the client's own HTTP client once no request is in
        flight: now, or when the last one ends. Closing the pool under a request that is still
        connecting would leave that connection outside the pool, its socket never closed."""
        self._release(0, close=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET with retries on 429/5xx/timeouts (exponential backoff, jitter, Retry-After)."""
        for attempt in count(1):
            try:
                return self._get_once(path, params)
            except RetryableApiError as exc:
                if attempt > self.config.max_retries:
                    raise ApiGaveUp(
                        f"{exc.message} (gave up after {attempt} attempts)",
                        status=exc.status,
                        hint="the Vobiz API keeps failing; the sweep will be retried on schedule",
                    ) from None
                if not self.budget.acquire(blocking=False):
                    raise ApiGaveUp(
                        f"{exc.message} (the sweep's retry budget of "
                        f"{self.config.retry_budget} retries is spent)",
                        status=exc.status,
                    ) from None
                self.stats.add(retries=1)
                self._sleep(self._backoff(attempt, exc.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.config
        expo = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * (2 ** (attempt - 1)))
        delay = random.uniform(expo / 2, expo)  # "equal jitter": never zero, never synchronised
        # retry_after is parse_retry_after's, capped at MAX_RETRY_AFTER already
        return delay if retry_after is None else max(delay, retry_after)

    def _get_once(self, path: str, params: dict[str, Any] | None) -> Any:
        self._limiter.wait(self._sleep)
        stop: threading.Event | None = getattr(self._batch, "stop", None)
        with self._state_lock:
            if self._closed or (stop is not None and stop.is_set()):
                # an abandoned fetch thread waking from its backoff: the sweep is over
                raise ApiError(f"GET {path}: not sent, the client is closed or the pages dropped")
            self._in_flight += 1
        try:
            return self._request(path, params)
        finally:
            self._release(1)

    def _release(self, requests: int, close: bool = False) -> None:
        """``requests`` ended (and ``close`` was called, if ``close``), under one hold of the
        lock, so exactly one caller finds the client closed and idle and closes its HTTP client."""
        with self._state_lock:
            self._closed |= close
            self._in_flight -= requests
            last = self._closed and self._in_flight == 0
            self._state_lock.notify_all()
        if last and self._own_http:
            self._http.close()

    def _request(self, path: str, params: dict[str, Any] | None) -> Any:
        self.stats.add(requests=1)
        try:
            with self._http.stream(
                "GET",
                f"{self._base}{path}",
                params=params,
                headers=self._headers,
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                content = self._read_body(response, path)
        except httpx.TimeoutException:
            raise RetryableApiError(f"GET {path}: timed out") from None
        except httpx.HTTPError as exc:
            raise RetryableApiError(
                f"GET {path}: cannot reach {self.config.base_url}: {type(exc).__name__}",
                hint="check vobiz.base_url and the network",
            ) from None
        status = response.status_code
        if status < 400:
            return decode_json(content, f"GET {path}: {status}")
        failed = f"GET {path}: {status} {_message(response, content)}"
        if status in (401, 403):
            raise AuthError(
                failed,
                status=status,
                hint="check vobiz.auth_id / vobiz.auth_token (partner credentials, PA_...) "
                "and that vobiz.base_url is the API root",
            )
        if status == 429 or status >= 500:
            raise RetryableApiError(
                failed,
                status=status,
                retry_after=parse_retry_after(
                    response.headers.get("Retry-After"), _http_date(response.headers.get("Date"))
                ),
            )
        raise ApiError(failed, status=status)

    def _read_body(self, response: httpx.Response, path: str) -> bytes:
        """The body, decompressed, within ``timeout_seconds`` for the whole response (httpx's
        timeout is per read: a body trickling a byte a second would never end) and within
        ``MAX_RESPONSE_BYTES``."""
        deadline = time.monotonic() + self.config.timeout_seconds
        body = bytearray()
        for chunk in response.iter_bytes():
            if len(body) + len(chunk) > MAX_RESPONSE_BYTES:
                raise RetryableApiError(
                    f"GET {path}: the response is larger than "
                    f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB (decompressed); refused",
                    hint="a page of 100 numbers is about 50 KB: check vobiz.base_url",
                )
            if time.monotonic() > deadline:
                raise RetryableApiError(
                    f"GET {path}: timed out: the response took longer than "
                    f"vobiz.timeout_seconds = {self.config.timeout_seconds:g} to arrive"
                )
            body += chunk
        return bytes(body)

    # --- endpoints ----------------------------------------------------------------------------

    def read_page(self, listing: Listing[R], page: int, per_page: int | None = None) -> Page[R]:
        """One page of a paged list, read by ``listing``; ``per_page`` is clamped to 1-100."""
        size = max(1, min(per_page or self.config.per_page, 100))
        body = self.get_json(listing.path, {"page": page, "per_page": size})
        return listing.parse(body, page)

    def iter_pages(self, listing: Listing[R], per_page: int, concurrency: int) -> Iterator[Page[R]]:
        """Every page of a paged list (the numbers, the accounts): page 1 first, the rest as
        they complete, bounded by what page 1 promised.

        Worker threads fetch, decode and parse each page (``fetch_pages``); the caller's thread
        stores them. The list is paged by the size the API uses, page 1's item count, whatever
        ``per_page`` asked for: more (so no page is fetched twice) or fewer (an API that caps
        its pages, so none is skipped). Page 1 alone is the whole list when it holds the total;
        an API that gives no total is read until an empty page or one shorter than page 1 (a
        short page 1 may be capped: the page after it is read too). An empty page before the
        promised end, or a page that repeats an earlier one (an API that ignores ``?page=``),
        raises ``IncompleteSweep`` rather than paging on forever. Whether the pages add up is
        the caller's to judge, from their ``total`` and records."""
        first = self.read_page(listing, 1, per_page)
        seen: dict[int, int] = {}
        _check_repeat(seen, first, listing.path)
        yield first
        # An empty page 1 ends a list without total; with one, page 2 tells (it comes back empty).
        size = first.item_count or per_page
        if first.total is None:
            page = first
            while page.item_count >= size:
                page = self.read_page(listing, page.page + 1, per_page)
                _check_repeat(seen, page, listing.path)
                yield page
            return
        last_page = max(1, math.ceil(first.total / size))
        if last_page == 1 or first.item_count >= first.total:
            return
        with closing(
            self.fetch_pages(listing, range(2, last_page + 1), per_page, concurrency)
        ) as pages:
            for page in pages:
                if page.item_count == 0:
                    raise IncompleteSweep(
                        f"GET {listing.path} page {page.page} came back empty, but page 1 "
                        f"promised {first.total} items ({last_page} pages of {size}): the "
                        "API's total cannot be trusted",
                        hint="the sweep is failed rather than read on; it will be retried",
                    )
                _check_repeat(seen, page, listing.path)
                yield page

    def fetch_pages(
        self, listing: Listing[R], pages: Iterable[int], per_page: int, concurrency: int
    ) -> Generator[Page[R], None, None]:
        """``read_page`` of each page, run by ``concurrency`` threads (as many more queued) and
        yielded as they complete; a page's error is raised when its turn comes.

        The threads fetch, decode and parse: while the sweep's thread waits on the database,
        which lets go of the GIL, they can run. Pages still in flight when the iterator is
        closed early are abandoned, not waited for: the sweep has failed or stopped, and their
        retries would only delay it. They send nothing more, and the requests they have on the
        wire are waited out (bounded by ``timeout_seconds``), so a shared HTTP client closed
        next is not closed under them."""
        todo = iter(pages)
        pending: set[Future[Page[R]]] = set()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")
        stop = threading.Event()

        def fetch(page: int) -> Page[R]:
            self._batch.stop = stop
            return self.read_page(listing, page, per_page)

        try:
            while True:
                while len(pending) < concurrency * 2 and (page := next(todo, None)) is not None:
                    pending.add(pool.submit(fetch, page))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: f.result().page if not f.exception() else 0):
                    yield fut.result()  # re-raises the page's error
        finally:
            stop.set()
            pool.shutdown(wait=not pending, cancel_futures=True)
            if pending:
                with self._state_lock:
                    self._state_lock.wait_for(
                        lambda: self._in_flight == 0, timeout=self.config.timeout_seconds * 2
                    )


def _message(response: httpx.Response, content: bytes) -> str:
    try:
        return error_text(decode_json(content, ""))
    except ApiError:
        return response.reason_phrase or ""


def decode_json(content: bytes, what: str) -> Any:
    """A response body as JSON. Invalid UTF-8 inside a string is kept as lone surrogates, so
    one bad item is unreadable on its own instead of failing its whole page. Nesting deeper
    than the interpreter's recursion limit (about 1,000 levels) is refused by the parser itself
    (``RecursionError``, a clean error in the C decoder); an item nested deeper than
    ``redact.MAX_DEPTH`` is unreadable on its own."""
    try:
        return json.loads(content.decode("utf-8", "surrogateescape"))
    except RecursionError:
        raise RetryableApiError(f"{what}: the JSON is nested deeper than can be read") from None
    except ValueError:
        raise RetryableApiError(f"{what} with a body that is not JSON") from None


def _check_repeat(seen: dict[int, int], page: Page[Any], path: str) -> None:
    """Notices an API that serves the same page again: ``seen`` maps the hash of each page's ids
    to the page that had them."""
    if not page.records:
        return
    earlier = seen.setdefault(hash(tuple(rec.id for rec in page.records)), page.page)
    if earlier != page.page:
        raise IncompleteSweep(
            f"GET {path} page {page.page} repeats page {earlier}: the API seems to "
            "ignore ?page=, so the sweep cannot see the whole list",
            hint="check vobiz.base_url; the sweep is failed rather than paged on forever",
        )


@dataclass(frozen=True)
class Listing(Generic[R]):
    """A paged list of the API: its path, the envelope keys that may hold its items (the first
    one present wins) and how one item is read (None: unreadable)."""

    path: str
    keys: tuple[str, ...]
    parse_item: Callable[[Any], R | None]

    def parse(self, body: Any, page: int) -> Page[R]:
        """One page's envelope as a ``Page``; a body of the wrong shape is a retryable fault.
        Items that cannot be read are listed in ``unreadable``: they never fail the page."""
        where = f"GET {self.path} page {page}"
        if not isinstance(body, dict):
            raise RetryableApiError(f"{where}: expected a JSON object, got {type(body).__name__}")
        items = next((body[key] for key in self.keys if body.get(key) is not None), None)
        if not isinstance(items, list):
            raise RetryableApiError(f"{where}: the envelope has no {self.keys[0]!r} list")
        total = body.get("total")
        if isinstance(total, bool) or not isinstance(total, int):
            total = None
        records: list[R] = []
        unreadable: list[int] = []
        parse_item = self.parse_item
        for position, item in enumerate(items, 1):
            rec = parse_item(item)
            if rec is None:
                unreadable.append(position)
            else:
                records.append(rec)
        return Page(page, total, records, len(items), unreadable)


def _number(item: Any) -> NumberRecord | None:
    """A number, or None when it cannot be read or its JSON is over ``MAX_ITEM_CHARS``."""
    rec = parse_number(item)
    return rec if rec is not None and len(rec.raw_json) <= MAX_ITEM_CHARS else None


NUMBERS = Listing(NUMBERS_PATH, ("items", "data"), _number)
