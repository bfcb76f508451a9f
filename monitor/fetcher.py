"""Numbers pages fetched and parsed by a helper process, so the sweep's process has a core to
itself for the rules and the database.

A large sweep is CPU-bound, and one Python process runs Python on one core at a time: fetch
threads (HTTP, retries, JSON checks) and the sweep's thread (parsing, rules, storing) took turns
at the GIL. The helper is forked for one pass, runs the same ``VobizClient`` with the same
bounded concurrency, rate cap, retries and retry budget and the same ``parse_page``, and sends
each parsed page back, in arrival order, as MessagePack (msgspec encodes and decodes the records
in C, several times cheaper than parsing them, where pickling them cost more than it saved). The
sweep's process stores them as they come, exactly as pages fetched by threads. Errors travel back
as what they were (an ``ApiGaveUp`` stays an ``ApiGaveUp``), with the requests and retries spent,
and the helper is stopped whenever the consumer stops: on failure, cancellation or the end of the
pass.

Only where ``fork`` is safe to use (Linux, Python before 3.12 or a process without threads it
could deadlock on); elsewhere, and when ``sweep.fetch_process`` is false, pages are fetched by
threads of the sweep's process.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from monitor import errors
from monitor.errors import ApiError, MonitorError
from monitor.vobiz import Page, RetryBudget, VobizClient, parse_page

SWITCH_INTERVAL = 0.0005  # seconds; the helper's own, see _serve
_PAGE, _DONE, _FAILED = b"P", b"D", b"F"  # first byte of each message: what follows
_PAGE_DECODER = msgspec.msgpack.Decoder(Page)
_END_DECODER = msgspec.msgpack.Decoder(tuple[int, int, str, str, int | None, str | None])
_REBUILT: dict[str, type[ApiError]] = {
    cls.__name__: cls
    for cls in (errors.ApiError, errors.AuthError, errors.RetryableApiError, errors.ApiGaveUp)
}


def available() -> bool:
    """Whether a helper process can be forked safely here: on Linux, and, from Python 3.12 on
    (which warns about forking threads that may hold locks), only from a single-threaded process.
    """
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return False
    return sys.version_info < (3, 12) or threading.active_count() == 1


def fetch_pages(
    client: VobizClient, first: int, last: int, per_page: int, concurrency: int
) -> Generator[Page, None, None]:
    """Pages ``first``..``last``, parsed, in arrival order, fetched by a forked helper. The
    helper's requests and retries are added to ``client``'s figures and budget. Closing the
    iterator early stops the helper."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    job = (client, first, last, per_page, concurrency, client.budget.left)
    helper = ctx.Process(target=_serve, args=(job, send), name="did-monitor-fetch", daemon=True)
    for stream in (sys.stdout, sys.stderr):  # else the helper would write our buffers again
        stream.flush()
    helper.start()
    send.close()  # the helper holds the only writing end: its exit ends our reads
    try:
        while True:
            try:
                message = receive.recv_bytes()
            except EOFError:
                helper.join(timeout=5)
                raise errors.ApiGaveUp(
                    f"the page-fetching helper process ended unexpectedly "
                    f"(exit code {helper.exitcode})",
                    hint="see the log; set sweep.fetch_process = false to fetch in threads",
                ) from None
            if message[:1] == _PAGE:
                yield _PAGE_DECODER.decode(memoryview(message)[1:])
                continue
            requests, retries, name, text, status, hint = _END_DECODER.decode(message[1:])
            client.stats.add(requests=requests, retries=retries)
            client.budget.spend(retries)
            if message[:1] == _DONE:
                return
            raise _REBUILT.get(name, errors.ApiGaveUp)(text, status=status, hint=hint)
    finally:
        receive.close()
        if helper.is_alive():
            helper.terminate()
        helper.join(timeout=5)
        if helper.is_alive():  # pragma: no cover - SIGTERM ignored: should not happen
            helper.kill()
            helper.join()


def _serve(job: tuple[Any, ...], send: Connection) -> None:
    """The helper's whole life: fetch the pages with a bounded pool, send each body back."""
    # Handlers inherited from the service would keep the helper alive: SIGTERM ends it, and
    # ^C is the sweep's to handle (it stops the helper).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Fetch threads wake for a few hundred microseconds of Python per response; the parsing
    # thread would make each of them wait up to the default 5 ms switch interval for the GIL,
    # which throttled the requests in flight (measured: 4.1 s for a pass whose floor is 2.5 s).
    sys.setswitchinterval(SWITCH_INTERVAL)
    parent, first, last, per_page, concurrency, retries_left = job
    client = VobizClient(parent.config, budget=RetryBudget(retries_left))
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")
    pending: set[Future[tuple[Any, int, int]]] = set()
    encode = msgspec.msgpack.Encoder().encode
    next_page = first
    try:
        while next_page <= last or pending:
            while next_page <= last and len(pending) < concurrency * 2:
                pending.add(pool.submit(client.numbers_body, next_page, per_page))
                next_page += 1
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    parsed = parse_page(*fut.result())
                except Exception as exc:  # the page's own error, or a bug: sent as an ApiError
                    send.send_bytes(_FAILED + encode((*_figures(client), *_describe(exc))))
                    return
                send.send_bytes(_PAGE + encode(parsed))
        send.send_bytes(_DONE + encode((*_figures(client), "", "", None, None)))
    except (BrokenPipeError, OSError):
        pass  # the sweep stopped listening: it failed or was cancelled
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()
        send.close()


def _figures(client: VobizClient) -> tuple[int, int]:
    return client.stats.requests, client.stats.retries


def _describe(exc: BaseException) -> tuple[str, str, int | None, str | None]:
    if isinstance(exc, MonitorError):
        return type(exc).__name__, exc.message, getattr(exc, "status", None), exc.hint
    return "ApiGaveUp", f"the page-fetching helper failed: {type(exc).__name__}: {exc}", None, None
