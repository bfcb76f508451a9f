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

Linux only (see ``_context`` for how the helper is started); elsewhere, and when
``sweep.fetch_process`` is false, pages are fetched by threads of the sweep's process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Generator
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from monitor import errors
from monitor.errors import ApiError, MonitorError, SweepCancelled
from monitor.vobiz import Page, RetryBudget, VobizClient, parse_page

SWITCH_INTERVAL = 0.0005  # seconds; the helper's own, see _serve
CANCEL_CHECK_SECONDS = 0.2  # how often a sweep waiting for a page looks at its cancel flag
HELPERS = 2  # helper processes per pass, at most (see fetch_pages)
# Fewer pages than this are fetched by threads: starting helpers (up to half a second for a
# fork server) costs more than they save on a small inventory.
MIN_PAGES = 20
_PAGE, _DONE, _FAILED = b"P", b"D", b"F"  # first byte of each message: what follows
_PAGE_DECODER = msgspec.msgpack.Decoder(Page)
_END_DECODER = msgspec.msgpack.Decoder(tuple[int, int, str, str, int | None, str | None])
_REBUILT: dict[str, type[ApiError]] = {
    cls.__name__: cls
    for cls in (errors.ApiError, errors.AuthError, errors.RetryableApiError, errors.ApiGaveUp)
}


def available() -> bool:
    """Whether a helper process can be started here (Linux, where fork and forkserver exist)."""
    methods = multiprocessing.get_all_start_methods()
    return sys.platform == "linux" and "fork" in methods and "forkserver" in methods


def _context() -> Any:
    """``fork`` from a process with no other thread (the CLI's ``sweep``): instant, and nothing
    can hold a lock at fork time. ``forkserver`` otherwise (the service, with its scheduler,
    health and delivery threads): helpers are forked from a clean single-threaded server that
    inherits none of our sockets; ``prepare()`` starts that server early."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")


def prepare() -> None:
    """Start the fork server now (it imports this module once, about half a second) if helpers
    will come from it, so that the first pass does not wait for it."""
    if available() and threading.active_count() > 1:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["monitor.fetcher"])
        from multiprocessing import forkserver

        forkserver.ensure_running()


def fetch_pages(
    client: VobizClient,
    first: int,
    last: int,
    per_page: int,
    concurrency: int,
    cancel: threading.Event | None = None,
) -> Generator[Page, None, None]:
    """Pages ``first``..``last``, parsed, in arrival order, fetched by helper processes. Their
    requests and retries are added to ``client``'s figures and budget. Closing the iterator
    early, or setting ``cancel`` (``SweepCancelled`` is raised), stops the helpers.

    With ``concurrency`` 2 or more, two helpers share the pages (every other page) and the
    requests in flight, the rate cap and the remaining retry budget: one helper's fetch threads
    and parser took turns at its GIL, and pages came slower than the sweep could store them.
    """
    ctx = _context()
    pages = range(first, last + 1)
    count = max(1, min(HELPERS, concurrency, len(pages)))
    helpers: dict[Connection, Any] = {}
    receivers: list[Connection] = []
    for stream in (sys.stdout, sys.stderr):  # a forked helper would write our buffers again
        stream.flush()
    try:
        for index in range(count):
            receive, send = ctx.Pipe(duplex=False)
            receivers.append(receive)
            job = (
                client.config.model_copy(
                    update={
                        "max_requests_per_second": client.config.max_requests_per_second / count
                    }
                ),
                pages[index::count],
                per_page,
                _share(concurrency, count, index),
                _share(client.budget.left, count, index),
            )
            helper = ctx.Process(
                target=_serve,
                args=(job, send, list(receivers)),
                name="did-monitor-fetch",
                daemon=True,
            )
            helper.start()
            send.close()  # the helper holds the only writing end: its exit ends our reads
            helpers[receive] = helper
        running = set(helpers)
        while running:
            ready = multiprocessing.connection.wait(list(running), CANCEL_CHECK_SECONDS)
            if cancel is not None and cancel.is_set():
                raise SweepCancelled()
            for receive in ready:
                assert isinstance(receive, Connection)
                message = _receive(receive, helpers[receive], cancel)
                if message[:1] == _PAGE:
                    yield _PAGE_DECODER.decode(memoryview(message)[1:])
                    continue
                requests, retries, name, text, status, hint = _END_DECODER.decode(message[1:])
                client.stats.add(requests=requests, retries=retries)
                client.budget.spend(retries)
                if message[:1] == _DONE:
                    running.discard(receive)
                    continue
                raise _REBUILT.get(name, errors.ApiGaveUp)(text, status=status, hint=hint)
    finally:
        for receive in receivers:
            receive.close()
        for helper in helpers.values():
            if helper.is_alive():
                helper.kill()  # SIGKILL: helpers ignore a SIGTERM sent to the whole group
        for helper in helpers.values():
            helper.join(timeout=5)


def _share(total: int, parts: int, index: int) -> int:
    """``index``'s part of ``total`` split as evenly as whole numbers allow."""
    return total // parts + (1 if index < total % parts else 0)


def _receive(receive: Connection, helper: Any, cancel: threading.Event | None) -> bytes:
    try:
        return receive.recv_bytes()
    except EOFError:
        helper.join(timeout=5)
        if cancel is not None and cancel.is_set():  # the whole group was told to stop
            raise SweepCancelled() from None
        raise errors.ApiGaveUp(
            f"the page-fetching helper process ended unexpectedly (exit code {helper.exitcode})",
            hint="see the log; set sweep.fetch_process = false to fetch in threads",
        ) from None


def _serve(job: tuple[Any, ...], send: Connection, receivers: list[Connection]) -> None:
    """The helper's whole life: fetch the pages with a bounded pool, send each parsed page back."""
    # A process-group SIGTERM or ^C is the sweep's to handle: it then stops the helper itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for receive in receivers:  # a forked helper inherits our reading ends: only we may hold them
        with contextlib.suppress(OSError):
            receive.close()
    _exit_with_parent()
    # Fetch threads wake for a few hundred microseconds of Python per response; the parsing
    # thread would make each of them wait up to the default 5 ms switch interval for the GIL,
    # which throttled the requests in flight (measured: 4.1 s for a pass whose floor is 2.5 s).
    sys.setswitchinterval(SWITCH_INTERVAL)
    config, pages, per_page, concurrency, retries_left = job
    client = VobizClient(config, budget=RetryBudget(retries_left))
    bodies = client.numbers_bodies(pages, per_page, concurrency)
    encode = msgspec.msgpack.Encoder().encode
    try:
        for body in bodies:
            send.send_bytes(_PAGE + encode(parse_page(*body)))
        end = _DONE + encode((*_figures(client), "", "", None, None))
    except Exception as exc:  # a page's own error, a bug, or the sweep no longer listening
        end = _FAILED + encode((*_figures(client), *_describe(exc)))
    with contextlib.suppress(OSError):
        send.send_bytes(end)
    bodies.close()
    client.close()
    send.close()
    os._exit(0)  # do not wait for requests still in flight: nobody will read them


def _exit_with_parent() -> None:
    """End the helper as soon as the sweep's process is gone (even killed with SIGKILL)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - always set in a multiprocessing child
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _figures(client: VobizClient) -> tuple[int, int]:
    return client.stats.requests, client.stats.retries


def _describe(exc: BaseException) -> tuple[str, str, int | None, str | None]:
    if isinstance(exc, MonitorError):
        return type(exc).__name__, exc.message, getattr(exc, "status", None), exc.hint
    return "ApiGaveUp", f"the page-fetching helper failed: {type(exc).__name__}: {exc}", None, None
