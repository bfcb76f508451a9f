"""Dashboard page times at scale: a database with 100,000 numbers and a year of weekly sweeps.

Fills a fresh database (SQLite file by default, or PostgreSQL with --postgres) through the
project's own schema and migrations: 52 complete sweeps, the sandbox's generated numbers as the
first inventory, then every week some numbers changed, added and gone, and findings opened and
resolved. Then serves the dashboard on a loopback uvicorn listener, as ``did-monitor run`` does,
and times each page over HTTP: the first request (cold: caches empty) and the median and worst of
the following ones. The target is under 200 ms per page.

    python bench/dashboard_bench.py                  # 100,000 numbers, 52 sweeps, SQLite
    python bench/dashboard_bench.py --quick          # 10,000 numbers, a smoke run
    python bench/dashboard_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import DashboardConfig, DatabaseConfig, Settings
from monitor.sandbox import Inventory
from monitor.store import FINDINGS, SWEEPS, VERSIONS, Store
from monitor.testing import row_counts
from monitor.web.app import build_app
from monitor.web.server import WebServer
from monitor.web.views import Dashboard

TARGET_MS = 200.0
RULES = (
    ("billing_due", "warning"),
    ("billing_due", "critical"),
    ("expiring", "warning"),
    ("missing_application", "critical"),
    ("blocked", "critical"),
)
CHUNK = 5_000


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def version_row(item: dict[str, Any], sweep_id: int) -> dict[str, Any]:
    fee = item.get("monthly_fee")
    return {
        "number_id": item["id"],
        "e164": item["e164"],
        "account_id": item["account_id"],
        "status": item["status"],
        "country": item.get("country"),
        "region": item.get("region"),
        "application_id": item.get("application_id"),
        "is_blocked": bool(item.get("is_blocked")),
        "next_billing_date": _time(item.get("next_billing_date")),
        "expires_at": _time(item.get("expires_at")),
        "monthly_fee": Decimal(str(fee)) if fee is not None else None,
        "currency": item.get("currency"),
        "tags": item.get("tags") or [],
        "content_hash": hashlib.sha256(repr(sorted(item.items())).encode()).hexdigest(),
        "raw": item,
        "valid_from": sweep_id,
        "valid_to": None,
    }


def finding_row(item: dict[str, Any], sweep_id: int, at: datetime, rng: random.Random) -> dict:
    rule, severity = rng.choice(RULES)
    return {
        "rule": rule,
        "subject": item["id"],
        "number_id": item["id"],
        "e164": item["e164"],
        "account_id": item["account_id"],
        "severity": severity,
        "state": "open",
        "message": f"{rule} for {item['e164']}",
        "tags": item.get("tags") or [],
        "first_seen": at,
        "last_seen": at,
        "opened_sweep_id": sweep_id,
    }


def fill(store: Store, numbers: int, sweeps: int, seed: int = 5) -> dict[str, Any]:
    """The history; returns facts the timing needs (a number with history, an account)."""
    rng = random.Random(seed)
    start = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
    inventory = Inventory(numbers, seed=seed, now=start + timedelta(weeks=sweeps))
    live: dict[str, dict[str, Any]] = {}
    open_findings: dict[str, int] = {}  # number id -> finding id
    next_index = numbers
    with store.engine.begin() as conn:
        for week in range(sweeps):
            at = start + timedelta(weeks=week)
            sweep_id = int(
                conn.execute(
                    sa.insert(SWEEPS).values(
                        started_at=at, status="running", trigger="schedule", owner="bench"
                    )
                ).inserted_primary_key[0]
            )
            new_rows: list[dict[str, Any]] = []
            closed: list[str] = []
            opened: list[dict[str, Any]] = []
            resolved: list[str] = []
            gone = 0
            if week == 0:
                for index in range(numbers):
                    item = inventory.item(index)
                    live[item["id"]] = item
                    new_rows.append(version_row(item, sweep_id))
                    if rng.random() < 0.15:
                        opened.append(finding_row(item, sweep_id, at, rng))
            else:
                ids = list(live)
                for number_id in rng.sample(ids, len(ids) // 200):  # 0.5 % change
                    item = dict(live[number_id])
                    item["status"] = rng.choice(("active", "active", "inactive", "blocked"))
                    item["monthly_fee"] = rng.choice((300, 450.5, 1.5, 2))
                    live[number_id] = item
                    closed.append(number_id)
                    new_rows.append(version_row(item, sweep_id))
                for number_id in rng.sample(ids, 50):  # gone
                    if number_id in closed:
                        continue
                    closed.append(number_id)
                    del live[number_id]
                    gone += 1
                for _ in range(100):  # new
                    inventory.add(1)
                    item = inventory.item(next_index)
                    next_index += 1
                    live[item["id"]] = item
                    new_rows.append(version_row(item, sweep_id))
                for number_id in rng.sample(list(live), 200):
                    if number_id not in open_findings:
                        opened.append(finding_row(live[number_id], sweep_id, at, rng))
                resolved = rng.sample(list(open_findings), min(150, len(open_findings)))
            if closed:
                for i in range(0, len(closed), CHUNK):
                    conn.execute(
                        sa.update(VERSIONS)
                        .where(
                            VERSIONS.c.number_id.in_(closed[i : i + CHUNK]),
                            VERSIONS.c.valid_to.is_(None),
                        )
                        .values(valid_to=sweep_id)
                    )
            for i in range(0, len(new_rows), CHUNK):
                conn.execute(sa.insert(VERSIONS), new_rows[i : i + CHUNK])
            for i in range(0, len(opened), CHUNK):
                conn.execute(sa.insert(FINDINGS), opened[i : i + CHUNK])
            if opened:
                subjects = [f["subject"] for f in opened]
                for i in range(0, len(subjects), CHUNK):
                    rows = conn.execute(
                        sa.select(FINDINGS.c.subject, FINDINGS.c.id).where(
                            FINDINGS.c.state == "open",
                            FINDINGS.c.subject.in_(subjects[i : i + CHUNK]),
                        )
                    )
                    open_findings.update({str(s): int(fid) for s, fid in rows})
            if resolved:
                ids_ = [open_findings.pop(n) for n in resolved]
                conn.execute(
                    sa.update(FINDINGS)
                    .where(FINDINGS.c.id.in_(ids_))
                    .values(state="resolved", resolved_at=at, resolved_sweep_id=sweep_id)
                )
            conn.execute(
                sa.update(SWEEPS)
                .where(SWEEPS.c.id == sweep_id)
                .values(
                    status="complete",
                    finished_at=at + timedelta(seconds=rng.uniform(8, 30)),
                    total_reported=len(live),
                    numbers_seen=len(live),
                    pages=-(-len(live) // 100),
                    requests=-(-len(live) // 100),
                    versions_written=len(new_rows),
                    numbers_gone=gone,
                    findings_opened=len(opened),
                    findings_resolved=len(resolved),
                )
            )
    changed = conn_first_changed(store)
    some = next(iter(live.values()))
    return {"e164": changed or some["e164"], "account": some["account_id"]}


def conn_first_changed(store: Store) -> str | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(VERSIONS.c.e164).where(VERSIONS.c.valid_to.is_not(None)).limit(1)
        ).first()
    return str(row[0]) if row else None


def time_pages(
    store: Store, facts: dict[str, Any], repeat: int
) -> list[tuple[str, float, float, float]]:
    settings = Settings(database=DatabaseConfig(url=store.url), dashboard=DashboardConfig())
    dashboard = Dashboard(store, settings, clock=lambda: datetime.now(UTC))
    app = build_app(
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        registry=CollectorRegistry(),
        dashboard=dashboard,
    )
    server = WebServer(("127.0.0.1", 0), app).start()
    pages = [
        "/",
        "/findings",
        "/findings?page=100",
        "/findings?rule=billing_due&severity=warning",
        f"/findings?account={facts['account']}&state=all",
        "/findings?state=resolved",
        "/findings?state=silenced",
        "/numbers/" + facts["e164"],
        "/accounts",
        "/accounts?page=30",
        f"/accounts/{facts['account']}",
        "/findings?number=%2B9180",
        "/silences",
        "/sweeps",
        "/charts/inventory.svg",
        "/charts/rental-0.svg",
        "/charts/findings.svg",
        "/charts/status.svg",
        "/healthz",
        "/metrics",
    ]
    out = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
            for path in pages:
                t0 = time.perf_counter()
                first = client.get(path)
                cold = (time.perf_counter() - t0) * 1000
                if first.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {first.status_code}")
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                out.append((path, cold, statistics.median(times), max(times)))
    finally:
        server.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=100_000)
    parser.add_argument("--sweeps", type=int, default=52)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 numbers")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="a PostgreSQL server to use")
    parser.add_argument("--keep", metavar="SQLITE_PATH", help="fill (or reuse) this SQLite file")
    args = parser.parse_args()
    numbers = 10_000 if args.quick else args.numbers
    dropper = None
    if args.postgres:
        name = f"didmon_dash_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = str(sa.engine.make_url(args.postgres).set(database=name))

        def dropper() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    else:
        path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "dashboard.db"
        url = f"sqlite:///{path}"
    store = Store(url)
    try:
        store.migrate()
        t0 = time.perf_counter()
        if store.last_sweep() is None:
            facts = fill(store, numbers, args.sweeps)
            print(
                f"filled {store.engine.dialect.name}: {numbers:,} numbers, {args.sweeps} sweeps "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        else:
            some = conn_first_changed(store)
            with store.engine.connect() as conn:
                account = conn.execute(sa.select(VERSIONS.c.account_id).limit(1)).scalar_one()
            facts = {"e164": some, "account": account}
            print(f"reusing {url}")
        if store.engine.dialect.name == "postgresql":
            # What autovacuum does soon after a sweep's load in production: planner statistics
            # and the visibility map that lets the covering indexes answer without the rows.
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        counts = row_counts(store.engine)
        print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        results = time_pages(store, facts, args.repeat)
    finally:
        store.dispose()
        if dropper is not None:
            dropper()
    print(f"\n{'page':<52} {'cold ms':>9} {'median ms':>10} {'worst ms':>9}")
    ok = True
    for path, cold, median, worst in results:
        flag = "" if median < TARGET_MS else "  OVER TARGET"
        ok = ok and median < TARGET_MS
        print(f"{path[:52]:<52} {cold:>9.1f} {median:>10.1f} {worst:>9.1f}{flag}")
    print(f"\nevery page's median under {TARGET_MS:.0f} ms: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
