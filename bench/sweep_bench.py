"""Sweep benchmark: the real sweep (``monitor.pipeline.run_cycle``) against a naive baseline.

The sandbox API runs in its own process (``python -m monitor sandbox``) so its memory is not
counted, and every measured sweep runs in a child process of its own, so the peak RSS reported
(``ru_maxrss``) belongs to that sweep alone. Everything talks to 127.0.0.1 only.

    python bench/sweep_bench.py                      # 100,000 numbers, 20 ms latency, 8 workers
    python bench/sweep_bench.py --quick              # 5,000 numbers: a smoke run
    python bench/sweep_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python bench/sweep_bench.py --numbers 20000 --profile   # add cProfile of both sweeps

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
SANDBOX_AUTH_ID = "PA_SANDBOX"
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the sandbox's fixed, fake default credential
PER_PAGE = 100
QUICK_NUMBERS = 5_000
SANDBOX_START_TIMEOUT = 60.0
SANDBOX_START_ATTEMPTS = 3
# Targets (defined for 100,000 numbers at 20 ms latency).
TARGET_FLOOR_FACTOR = 1.5
TARGET_FLOOR_SLACK = 3.0
TARGET_RSS_MB = 250.0  # at 100,000 numbers
TARGET_RSS_MB_LARGE = 400.0  # at 1,000,000 numbers (any inventory above 100,000 here)
TARGET_RATE_CAP_PCT = 10.0  # with --rate-cap: wall within this of pages / cap
TARGET_RESWEEP_ROWS_PCT = 1.0
TARGET_GROWTH_PCT = 2.0


# --- child side: one sweep per process ------------------------------------------------------------


def maxrss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of another process (Linux /proc), or None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def make_settings(spec: dict[str, Any]) -> Any:
    from monitor.config import DatabaseConfig, Settings, VobizConfig

    return Settings(
        vobiz=VobizConfig(
            base_url=spec["base_url"],
            auth_id=SANDBOX_AUTH_ID,
            auth_token=SANDBOX_TOKEN,
            per_page=PER_PAGE,
            concurrency=spec["concurrency"],
            # unlimited unless --rate-cap: the benchmark measures our code, not a quota
            max_requests_per_second=spec.get("rate_cap", 0),
            timeout_seconds=30.0,
        ),
        database=DatabaseConfig(url=spec["db_url"]),
        channels=(),
    )


class ThreadProfiles:
    """cProfile for every thread started after ``install()`` (the sweep's page workers)."""

    def __init__(self) -> None:
        import threading

        self.profiles: list[Any] = []
        self._lock = threading.Lock()
        self._threading = threading

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        import cProfile

        prof = cProfile.Profile()
        with self._lock:
            self.profiles.append(prof)
        sys.setprofile(None)
        prof.enable()

    def install(self) -> None:
        self._threading.setprofile(self._hook)

    def uninstall(self) -> None:
        self._threading.setprofile(None)


def profiled(fn: Callable[[], Any], out_path: str) -> Any:
    """Run ``fn`` under cProfile (main thread plus threads it starts); write a text report."""
    import cProfile
    import io
    import pstats

    threads = ThreadProfiles()
    main = cProfile.Profile()
    threads.install()
    main.enable()
    try:
        return fn()
    finally:
        main.disable()
        threads.uninstall()
        stats = pstats.Stats(main, stream=io.StringIO())
        for prof in threads.profiles:
            with contextlib.suppress(TypeError, ValueError):
                stats.add(prof)
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.strip_dirs()
        buf.write("--- top 30 by cumulative time (summed over the main and worker threads) ---\n")
        stats.sort_stats("cumulative").print_stats(30)
        buf.write("--- top 25 by own (total) time ---\n")
        stats.sort_stats("tottime").print_stats(25)
        Path(out_path).write_text(buf.getvalue(), encoding="utf-8")


def child_optimised(spec: dict[str, Any]) -> dict[str, Any]:
    """One real cycle: run_cycle with a real client, a real store and a recording notifier."""
    from monitor.clock import system_clock
    from monitor.pipeline import run_cycle
    from monitor.store import Store
    from monitor.testing import RecordingNotifier, row_counts

    settings = make_settings(spec)
    store = Store(spec["db_url"])
    before = row_counts(store.engine)
    # The counts read every table: close that pooled connection (and the page cache it filled,
    # 8 MiB on SQLite) so the benchmark's own bookkeeping is not in the sweep's peak RSS.
    store.engine.dispose()
    rss_ready = maxrss_mb()

    def cycle() -> Any:
        return run_cycle(settings, store, RecordingNotifier(), trigger="manual", clock=system_clock)

    cpu0 = cpu_seconds()
    started = time.perf_counter()
    outcome = profiled(cycle, spec["profile_out"]) if spec.get("profile_out") else cycle()
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu0
    rss_peak = maxrss_mb()
    after = row_counts(store.engine)
    sweep_row = store.last_sweep()
    open_by_rule: dict[str, int] = {}
    for (rule, _severity), n in store.open_counts().items():
        open_by_rule[rule] = open_by_rule.get(rule, 0) + n
    store.dispose()
    counts = outcome.counts
    inserted = {t: after[t] - before.get(t, 0) for t in after}
    return {
        "ok": outcome.ok,
        "error": outcome.error,
        "wall": wall,
        "cpu": cpu,
        "requests": counts.requests,
        "retries": counts.retries,
        "pages": counts.pages,
        "numbers_seen": counts.numbers_seen,
        "rss_ready_mb": rss_ready,
        "rss_peak_mb": rss_peak,
        "versions_written": int(sweep_row["versions_written"]) if sweep_row else None,
        "rows_inserted": {t: n for t, n in inserted.items() if n},
        "rows_inserted_total": sum(n for n in inserted.values() if n > 0),
        # rows changed in place by the sweep (counted by the sweep itself)
        "rows_updated": counts.numbers_gone + counts.findings_resolved,
        "findings_opened": counts.findings_opened,
        "findings_resolved": counts.findings_resolved,
        "findings_open": sum(open_by_rule.values()),
        "findings_open_by_rule": open_by_rule,
        "findings_rows": after.get("findings", 0),
    }


def naive_table(metadata: Any) -> Any:
    """A plain table: every number, every sweep, no change detection, no secondary index."""
    import sqlalchemy as sa

    from monitor.store.db import JSONType, UTCDateTime

    return sa.Table(
        "naive_numbers",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sweep", sa.Integer, nullable=False),
        sa.Column("number_id", sa.String(64)),
        sa.Column("e164", sa.String(32)),
        sa.Column("account_id", sa.String(64)),
        sa.Column("status", sa.String(32)),
        sa.Column("country", sa.String(8)),
        sa.Column("region", sa.String(128)),
        sa.Column("application_id", sa.String(128)),
        sa.Column("is_blocked", sa.Boolean),
        sa.Column("next_billing_date", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("monthly_fee", sa.Numeric(18, 6, asdecimal=True)),
        sa.Column("currency", sa.String(8)),
        sa.Column("tags", JSONType),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("raw", sa.Text),  # the item as sent, like number_versions.raw
    )


def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential paging with the same client, every row inserted every sweep (one transaction)."""
    import sqlalchemy as sa

    from monitor.store.db import make_engine
    from monitor.vobiz import NUMBERS, VobizClient

    settings = make_settings(spec)
    engine = make_engine(spec["db_url"])
    table = naive_table(sa.MetaData())
    last_sweep = sa.select(sa.func.coalesce(sa.func.max(table.c.sweep), 0))
    with engine.begin() as conn:
        sweep_no = int(conn.execute(last_sweep).scalar_one()) + 1
        before = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    rss_ready = maxrss_mb()
    max_pages = spec["numbers"] // PER_PAGE + 10  # a bound, so a misbehaving API cannot loop us
    cpu0 = cpu_seconds()
    started = time.perf_counter()
    pages = seen = 0
    with VobizClient(settings.vobiz) as client, engine.begin() as conn:
        page_no = 1
        while True:
            page = client.read_page(NUMBERS, page_no, PER_PAGE)
            pages += 1
            rows = [
                {
                    "sweep": sweep_no,
                    "number_id": r.id,
                    "e164": r.e164,
                    "account_id": r.account_id,
                    "status": r.status[:32],
                    "country": r.country,
                    "region": r.region,
                    "application_id": r.application_id,
                    "is_blocked": r.is_blocked,
                    "next_billing_date": r.next_billing_date,
                    "expires_at": r.expires_at,
                    "monthly_fee": r.monthly_fee,
                    "currency": r.currency,
                    "tags": list(r.tags),
                    "content_hash": r.content_hash,
                    "raw": r.raw_json,  # as parsed: not decoded and encoded again
                }
                for r in page.records
            ]
            if rows:
                conn.execute(sa.insert(table), rows)
            seen += len(rows)
            if page.total is not None:
                if page_no >= math.ceil(page.total / PER_PAGE):
                    break
            elif page.item_count < PER_PAGE:
                break
            if page_no >= max_pages:
                raise RuntimeError(f"baseline: more than {max_pages} pages; stopping")
            page_no += 1
        requests = client.stats.requests
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu0
    rss_peak = maxrss_mb()
    with engine.connect() as conn:
        after = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    engine.dispose()
    return {
        "ok": True,
        "error": None,
        "wall": wall,
        "cpu": cpu,
        "requests": requests,
        "retries": 0,
        "pages": pages,
        "numbers_seen": seen,
        "rss_ready_mb": rss_ready,
        "rss_peak_mb": rss_peak,
        "versions_written": None,
        "rows_inserted": {"naive_numbers": after - before},
        "rows_inserted_total": after - before,
        "rows_updated": 0,
        "findings_open": None,
    }


def child_fetch_only(spec: dict[str, Any]) -> dict[str, Any]:
    """Diagnostic: the same concurrent paging (``VobizClient.iter_pages``), no DB or rules."""
    from monitor.vobiz import NUMBERS, VobizClient

    settings = make_settings(spec)
    rss_ready = maxrss_mb()
    cpu0 = cpu_seconds()
    started = time.perf_counter()
    pages = seen = 0
    with VobizClient(settings.vobiz) as client:
        for page in client.iter_pages(NUMBERS, PER_PAGE, spec["concurrency"]):
            pages += 1
            seen += len(page.records)
        requests = client.stats.requests
    return {
        "ok": True,
        "error": None,
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu0,
        "requests": requests,
        "pages": pages,
        "numbers_seen": seen,
        "rss_ready_mb": rss_ready,
        "rss_peak_mb": maxrss_mb(),
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "optimised": child_optimised,
    "baseline": child_baseline,
    "fetch-only": child_fetch_only,
}


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    kind = spec["kind"]
    try:
        result = CHILDREN[kind](spec)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(spec["result_path"]).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result.get("ok") else 1


# --- parent side: sandbox, databases, children, the table -----------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def sandbox_answers(base_url: str) -> bool:
    import httpx

    try:
        response = httpx.get(
            f"{base_url}/api/v1/partner/me",
            headers={"X-Auth-ID": SANDBOX_AUTH_ID, "X-Auth-Token": SANDBOX_TOKEN},
            timeout=2.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def sandbox_command(port: int, numbers: int, latency_ms: float) -> list[str]:
    """``did-monitor sandbox`` with every page pre-rendered, so the benchmark measures the
    client: a page generated on demand costs the sandbox milliseconds of CPU, on the same two
    cores as the sweep."""
    return [
        sys.executable,
        "-m",
        "monitor",
        "sandbox",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--numbers",
        str(numbers),
        "--latency-ms",
        str(latency_ms),
        "--warm",
    ]


@contextlib.contextmanager
def sandbox_process(numbers: int, latency_ms: float, workdir: Path) -> Iterator[tuple[str, int]]:
    """The fake API in its own process on a free loopback port; stopped on the way out."""
    log_path = workdir / "sandbox.log"
    for _attempt in range(SANDBOX_START_ATTEMPTS):
        port = free_port()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                sandbox_command(port, numbers, latency_ms),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        base_url = f"http://{LOOPBACK}:{port}"
        try:
            deadline = time.monotonic() + SANDBOX_START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if sandbox_answers(base_url):
                    break
                time.sleep(0.2)
            if proc.poll() is None and sandbox_answers(base_url):
                print(f"sandbox up at {base_url} (separate process, pid {proc.pid})", flush=True)
                yield base_url, proc.pid
                return
        finally:
            stop_process(proc)
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(
        f"the sandbox did not start after {SANDBOX_START_ATTEMPTS} attempts:\n{tail}"
    )


def check_loopback_url(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"--postgres must point at 127.0.0.1 (got host {host!r})")


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Database:
    """A fresh database for one variant: a SQLite file in the temp dir, or a PostgreSQL database."""

    def __init__(self, backend: str, name: str, workdir: Path, pg_admin: str | None) -> None:
        self.backend = backend
        self.pg_admin = pg_admin
        if backend == "sqlite":
            self.path = workdir / f"{name}.db"
            self.url = f"sqlite:///{self.path}"
            self.pg_name = ""
        else:
            assert pg_admin is not None
            self.pg_name = f"didmon_bench_{uuid.uuid4().hex[:10]}_{name}"
            self.url = f"{pg_admin.rsplit('/', 1)[0]}/{self.pg_name}"

    def create(self, migrate: bool) -> None:
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(_psycopg_url(self.pg_admin or ""), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
        if migrate:
            from monitor.store import Store

            store = Store(self.url)
            store.migrate()
            store.dispose()
        else:
            import sqlalchemy as sa

            from monitor.store.db import make_engine

            engine = make_engine(self.url)
            naive_table(sa.MetaData()).metadata.create_all(engine)
            engine.dispose()

    def size_bytes(self) -> int:
        if self.backend == "sqlite":
            lite = sqlite3.connect(self.path)
            try:
                lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                lite.close()
            wal = Path(f"{self.path}-wal")
            return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        import psycopg

        with psycopg.connect(_psycopg_url(self.url)) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0

    def drop(self) -> None:
        if self.backend == "sqlite":
            for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                path.unlink(missing_ok=True)
        if self.backend == "postgresql" and self.pg_name:
            import psycopg

            with psycopg.connect(_psycopg_url(self.pg_admin or ""), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


def run_child(
    spec: dict[str, Any], workdir: Path, timeout: float, sandbox_pid: int | None = None
) -> dict[str, Any]:
    tag = f"{spec['kind']}-{spec['backend']}-{spec['sweep']}-{uuid.uuid4().hex[:6]}"
    spec_path = workdir / f"{tag}.spec.json"
    spec["result_path"] = str(workdir / f"{tag}.result.json")
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]
    sandbox_cpu0 = process_cpu_seconds(sandbox_pid)
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s (child killed)"}
    result_file = Path(spec["result_path"])
    if not result_file.exists():
        err = proc.stderr.decode(errors="replace")[-3000:]
        return {"ok": False, "error": f"child exited {proc.returncode} without a result:\n{err}"}
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    sandbox_cpu1 = process_cpu_seconds(sandbox_pid)
    if sandbox_cpu0 is not None and sandbox_cpu1 is not None:
        result["sandbox_cpu"] = sandbox_cpu1 - sandbox_cpu0  # includes child start-up, ~idle
    return result


def run_variant(
    kind: str,
    backend: str,
    args: argparse.Namespace,
    sandbox: tuple[str, int],
    workdir: Path,
    profile: bool = False,
    run: int = 1,
) -> dict[str, Any]:
    """Two sweeps of one variant on one fresh database; sizes measured between them."""
    base_url, sandbox_pid = sandbox
    name = f"{kind[:3]}{'_prof' if profile else ''}{f'_r{run}' if run > 1 else ''}"
    db = Database(backend, name, workdir, args.postgres)
    out: dict[str, Any] = {"kind": kind, "backend": backend, "sweeps": []}
    try:
        db.create(migrate=kind == "optimised")
        out["size_empty"] = db.size_bytes()
        for sweep in (1, 2):
            spec = {
                "kind": kind,
                "backend": backend,
                "sweep": sweep,
                "db_url": db.url,
                "base_url": base_url,
                "concurrency": args.concurrency,
                "numbers": args.numbers,
                "rate_cap": args.rate_cap,
            }
            if profile:
                spec["profile_out"] = str(workdir / f"profile-{backend}-{sweep}.txt")
            label = f"{kind} {backend} sweep {sweep}{' (profiled)' if profile else ''}"
            if args.repeat > 1 and kind == "optimised" and not profile:
                label += f", run {run} of {args.repeat}"
            print(f"  running {label} ...", flush=True)
            res = run_child(spec, workdir, args.sweep_timeout, sandbox_pid)
            if not res.get("ok"):
                print(f"  {label} FAILED: {res.get('error')}", flush=True)
                out["sweeps"].append(res)
                break
            res["size_after"] = db.size_bytes()
            print(
                f"    {res['wall']:.2f} s, {res['requests']} requests, "
                f"peak RSS {res['rss_peak_mb']:.0f} MB",
                flush=True,
            )
            if profile:
                res["profile"] = Path(spec["profile_out"]).read_text(encoding="utf-8")
            out["sweeps"].append(res)
    finally:
        db.drop()
    return out


def run_fetch_only(
    args: argparse.Namespace, sandbox: tuple[str, int], workdir: Path
) -> dict[str, Any]:
    base_url, sandbox_pid = sandbox
    spec = {
        "kind": "fetch-only",
        "backend": "none",
        "sweep": 1,
        # never opened (no DB in this run), but settings refuse an in-memory database
        "db_url": f"sqlite:///{workdir / 'fetch-only.db'}",
        "base_url": base_url,
        "concurrency": args.concurrency,
        "numbers": args.numbers,
    }
    print("  running fetch-only diagnostic (iter_pages, no DB, no rules) ...", flush=True)
    res = run_child(spec, workdir, args.sweep_timeout, sandbox_pid)
    if res.get("ok"):
        print(f"    {res['wall']:.2f} s, {res['requests']} requests", flush=True)
    return res


# --- the report -----------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, spec or ",.2f")
    if isinstance(value, int):
        return format(value, ",")
    return str(value)


def growth_pct(variant: dict[str, Any]) -> float | None:
    sweeps = variant["sweeps"]
    if len(sweeps) < 2 or not all(s.get("ok") for s in sweeps):
        return None
    first, second = sweeps[0]["size_after"], sweeps[1]["size_after"]
    return (second - first) / first * 100 if first else None


def rows_written(s: dict[str, Any]) -> int:
    return int(s["rows_inserted_total"]) + int(s["rows_updated"])


def print_table(variants: list[dict[str, Any]], numbers: int) -> None:
    """The figures of each variant's first run (with ``--repeat``, the verdicts list every
    run's wall time; ``--json`` keeps every figure of every run)."""
    cols: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
    firsts = {(v["kind"], v["backend"]): v for v in reversed(variants)}
    for v in [v for v in variants if firsts[(v["kind"], v["backend"])] is v]:
        for i in range(2):
            s = v["sweeps"][i] if i < len(v["sweeps"]) else None
            kind = "opt" if v["kind"] == "optimised" else "naive"
            backend = "pg" if v["backend"] == "postgresql" else v["backend"]
            cols.append((f"{kind} {backend} #{i + 1}", s, v))
    mb = 1024 * 1024

    def row(label: str, fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> None:
        cells = []
        for _name, s, v in cols:
            if s is None or not s.get("ok"):
                cells.append("FAILED" if s is not None else "—")
                continue
            try:
                cells.append(_fmt(fn(s, v)))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        print(f"{label:<32}" + "".join(f"{c:>17}" for c in cells))

    print(f"{'':<32}" + "".join(f"{name:>17}" for name, _, _ in cols))
    row("wall time (s)", lambda s, v: s["wall"])
    row("requests made", lambda s, v: s["requests"])
    row("pages", lambda s, v: s["pages"])
    row("pages/s", lambda s, v: s["pages"] / s["wall"])
    row("client CPU, user+sys (s)", lambda s, v: s["cpu"])
    row("sandbox CPU meanwhile (s)", lambda s, v: s.get("sandbox_cpu"))
    row("numbers seen", lambda s, v: s["numbers_seen"])
    row("RSS after imports (MB)", lambda s, v: s["rss_ready_mb"])
    row("peak RSS (MB)", lambda s, v: s["rss_peak_mb"])
    row("sweeps.versions_written", lambda s, v: s["versions_written"])
    row("rows inserted (all tables)", lambda s, v: s["rows_inserted_total"])
    row("rows updated (gone+resolved)", lambda s, v: s["rows_updated"])
    row("rows written", lambda s, v: rows_written(s))
    row("rows written, % of inventory", lambda s, v: rows_written(s) / numbers * 100)
    row("findings opened", lambda s, v: s.get("findings_opened"))
    row("findings open after", lambda s, v: s.get("findings_open"))
    row("DB size after (MB)", lambda s, v: s["size_after"] / mb)
    row(
        "DB growth vs after sweep 1 (%)",
        lambda s, v: None if s is v["sweeps"][0] else growth_pct(v),
    )


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def print_ratios(variants: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    pages = math.ceil(args.numbers / PER_PAGE)
    floor = pages * (args.latency_ms / 1000) / args.concurrency
    limit = TARGET_FLOOR_FACTOR * floor + TARGET_FLOOR_SLACK
    print(
        f"\nlatency floor = {pages:,} pages × {args.latency_ms:g} ms / {args.concurrency} = "
        f"{floor:.2f} s; wall target = 1.5 × floor + 3 s = {limit:.2f} s"
    )
    if (args.numbers, args.latency_ms) != (100_000, 20):
        print("(the wall-time target is defined for 100,000 numbers at 20 ms: shown for reference)")
    naive_by_backend = {v["backend"]: v for v in variants if v["kind"] == "baseline"}
    all_ok = True
    findings: dict[str, int | None] = {}
    for backend in dict.fromkeys(v["backend"] for v in variants):
        runs = [v for v in variants if v["kind"] == "optimised" and v["backend"] == backend]
        naive = naive_by_backend.get(backend)
        print(f"\n[{backend}]")
        if not runs:
            continue
        if any(len([s for s in v["sweeps"] if s.get("ok")]) < 2 for v in runs):
            print("  optimised sweeps did not complete: every target missed")
            all_ok = False
            continue
        opt = runs[0]
        s2 = opt["sweeps"][1]  # the first run: its findings by rule are shown
        checks: list[tuple[str, bool | None]] = []
        # The floor target is defined for 100,000 numbers at 20 ms without a rate cap; for other
        # runs the figure is shown without a verdict. With --repeat, the verdict is on the
        # median of the runs, and the range is shown beside it.
        defined = (args.numbers, args.latency_ms, args.rate_cap) == (100_000, 20, 0)
        medians: dict[int, float] = {}
        for i in (1, 2):
            walls = sorted(v["sweeps"][i - 1]["wall"] for v in runs)
            wall = medians[i] = statistics.median(walls)
            spread = f", runs {', '.join(f'{w:.2f}' for w in walls)} s" if len(walls) > 1 else ""
            ok: bool | None = wall <= limit if defined else None
            label = "median wall" if len(walls) > 1 else "wall"
            checks.append(
                (
                    f"sweep {i} {label} {wall:.2f} s ≤ {limit:.2f} s "
                    f"({wall / floor:.2f}× floor{spread})",
                    ok,
                )
            )
        if naive is not None and len([s for s in naive["sweeps"] if s.get("ok")]) == 2:
            for i, n in enumerate(naive["sweeps"], 1):
                speedup = n["wall"] / medians[i]  # shown, no longer a target
                checks.append((f"sweep {i} vs the naive baseline: {speedup:.1f}× faster", None))
        if args.rate_cap:
            capped = pages / args.rate_cap
            for run, v in enumerate(runs, 1):
                for i, s in enumerate(v["sweeps"], 1):
                    off = (s["wall"] - capped) / capped * 100
                    which = f"run {run} sweep {i}" if len(runs) > 1 else f"sweep {i}"
                    checks.append(
                        (
                            f"{which} wall {s['wall']:.2f} s vs pages ÷ rate cap = "
                            f"{capped:.2f} s ({off:+.1f}%, within ±{TARGET_RATE_CAP_PCT:g}%)",
                            abs(off) <= TARGET_RATE_CAP_PCT,
                        )
                    )
        peak = max(s["rss_peak_mb"] for v in runs for s in v["sweeps"])
        rss_target = TARGET_RSS_MB if args.numbers <= 100_000 else TARGET_RSS_MB_LARGE
        checks.append((f"peak RSS {peak:.0f} MB < {rss_target:g} MB", peak < rss_target))
        written = max(rows_written(v["sweeps"][1]) for v in runs)
        pct = written / args.numbers * 100
        checks.append(
            (
                f"unchanged re-sweep rows written {written:,} = {pct:.3f}% of "
                f"inventory (< {TARGET_RESWEEP_ROWS_PCT:g}%)",
                pct < TARGET_RESWEEP_ROWS_PCT,
            )
        )
        growths = [g for g in (growth_pct(v) for v in runs) if g is not None]
        growth = max(growths) if growths else None
        checks.append(
            (
                f"DB growth on sweep 2 {_fmt(growth, '.3f')}% (< {TARGET_GROWTH_PCT:g}%)",
                None if growth is None else growth < TARGET_GROWTH_PCT,
            )
        )
        if naive is not None and growth_pct(naive) is not None:
            print(
                f"  (baseline DB growth on sweep 2: {growth_pct(naive):.1f}%, "
                f"rows written {rows_written(naive['sweeps'][1]):,})"
            )
        for text, ok in checks:
            print(f"  {verdict(ok):>4}  {text}")
            all_ok = all_ok and ok is not False
        opens = {v["sweeps"][1].get("findings_open") for v in runs}
        findings[backend] = opens.pop() if len(opens) == 1 else None  # runs must agree
        by_rule = s2.get("findings_open_by_rule") or {}
        print(
            f"        findings open after sweep 2: {_fmt(findings[backend])} "
            f"({', '.join(f'{k} {n}' for k, n in sorted(by_rule.items()))})"
        )
    if "postgresql" in findings:
        same = findings.get("postgresql") is not None and findings["postgresql"] == findings.get(
            "sqlite"
        )
        print(
            f"\n  {verdict(same):>4}  PostgreSQL findings {_fmt(findings.get('postgresql'))} "
            f"== SQLite findings {_fmt(findings.get('sqlite'))}"
        )
        all_ok = all_ok and same
    return all_ok


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--numbers", type=int, default=100_000, help="inventory size (100000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="sandbox latency (20)")
    parser.add_argument("--concurrency", type=int, default=8, help="sweep workers (8)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="admin URL of a local PostgreSQL; also run every variant there",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run with {QUICK_NUMBERS:,} numbers"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--rate-cap",
        type=float,
        default=0.0,
        metavar="N",
        help="vobiz.max_requests_per_second for the sweeps (0: unlimited); with a cap, each "
        "sweep's wall time is checked against pages / N",
    )
    parser.add_argument(
        "--no-fetch-only",
        action="store_true",
        help="skip the fetch-only diagnostic (paging without DB or rules)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run both optimised sweeps under cProfile and print the top",
    )
    parser.add_argument(
        "--sweep-timeout",
        type=float,
        default=480.0,
        help="seconds before a sweep's child process is killed (480)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the optimised sweeps N times per database, each on a fresh one; the wall-time "
        "verdict is on the median, the runs are listed beside it (1)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.numbers = QUICK_NUMBERS
    if args.numbers < 1 or args.concurrency < 1 or args.repeat < 1 or args.latency_ms < 0:
        parser.error("--numbers, --concurrency and --repeat must be >= 1, --latency-ms >= 0")
    if args.postgres:
        check_loopback_url(args.postgres)
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill the sandbox


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        return child_main(args.child)
    signal.signal(signal.SIGTERM, _terminate)
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    kinds = ["optimised"] + ([] if args.no_baseline else ["baseline"])
    print(
        f"did-monitor sweep benchmark: {args.numbers:,} numbers, {args.latency_ms:g} ms latency, "
        f"concurrency {args.concurrency}, per_page {PER_PAGE}, "
        f"max_requests_per_second={args.rate_cap:g} (0: unlimited), no channels; "
        f"{os.cpu_count()} CPUs; "
        f"backends: {', '.join(backends)}",
        flush=True,
    )
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other work on this machine skews wall times)",
        flush=True,
    )
    variants: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    fetch: dict[str, Any] | None = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="didmon-bench-") as tmp:
        workdir = Path(tmp)
        with sandbox_process(args.numbers, args.latency_ms, workdir) as sandbox:
            for backend in backends:
                for kind in kinds:
                    for run in range(1, (args.repeat if kind == "optimised" else 1) + 1):
                        variants.append(run_variant(kind, backend, args, sandbox, workdir, run=run))
            if not args.no_fetch_only:
                fetch = run_fetch_only(args, sandbox, workdir)
            if args.profile:
                for backend in backends:
                    profiles.append(
                        run_variant("optimised", backend, args, sandbox, workdir, profile=True)
                    )
    print(
        f"\n=== figures ({args.numbers:,} numbers @ {args.latency_ms:g} ms, "
        f"concurrency {args.concurrency}; "
        f"total bench time {time.monotonic() - started:.0f} s) ===\n"
    )
    print_table(variants, args.numbers)
    all_ok = print_ratios(variants, args)
    if fetch is not None:
        if fetch.get("ok"):
            print(
                "\ndiagnostic, fetch-only ceiling (same iter_pages + VobizClient, no DB or rules): "
                f"{fetch['wall']:.2f} s, {fetch['pages'] / fetch['wall']:.1f} pages/s, client CPU "
                f"{fetch['cpu']:.2f} s, sandbox CPU {_fmt(fetch.get('sandbox_cpu'))} s"
            )
        else:
            print(f"\ndiagnostic fetch-only run failed: {fetch.get('error')}")
    print(f"\nall targets met: {'yes' if all_ok else 'NO'}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for prof in profiles:
        for i, s in enumerate(prof["sweeps"], 1):
            if s.get("profile"):
                print(
                    f"\n=== cProfile, optimised {prof['backend']} sweep {i} "
                    f"(wall under the profiler {s['wall']:.2f} s) ==="
                )
                print(s["profile"])
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "variants": variants, "fetch_only": fetch},
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
