"""The schema, the engine, migrations and the predicates every query shares."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.errors import DatabaseBusy, DatabaseError
from monitor.store import ACCOUNTS, SWEEPS, VERSIONS, Store, current
from monitor.store.db import (
    current_revision,
    head_revision,
    make_engine,
    metadata,
    migrations_dir,
    upgrade,
)
from tests.conftest import sweep_row


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(store.engine) == head_revision()


def test_upgrade_is_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()
    assert current_revision(store.engine) == head_revision()


def test_downgrade_and_upgrade_round_trip(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine, "head")
    from alembic import command

    from monitor.store.db import alembic_config

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert sa.inspect(engine).get_table_names() in ([], ["alembic_version"])
    upgrade(engine)
    assert "number_versions" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    sid = store.start_sweep(when, "test")
    row = sweep_row(store, sid)
    assert row["started_at"] == when and row["started_at"].tzinfo is not None
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SWEEPS)).scalar_one() == 1


def test_migrations_ship_with_the_package() -> None:
    path = migrations_dir()
    assert (path / "env.py").is_file()
    assert (path / "script.py.mako").is_file()
    assert any(path.glob("versions/*.py"))


def _where(store: Store, table: sa.Table, at: int | None) -> str:
    """The WHERE clause ``current(table, at)`` compiles to on ``store``'s database."""
    stmt = sa.select(table.c.id).where(current(table, at))
    text = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    return " ".join(text.split("WHERE", 1)[1].split())


def test_current_is_the_partial_indexes_own_predicate(store: Store) -> None:
    """``current(t)`` is ``valid_to IS NULL``, the predicate the partial indexes on current rows
    were made with, so the database may answer from them; ``current(t, at)`` is the version in
    force at sweep ``at``."""
    for table in (VERSIONS, ACCOUNTS):
        name = table.name
        assert _where(store, table, None) == f"{name}.valid_to IS NULL"
        assert _where(store, table, 7) == (
            f"{name}.valid_from <= 7 AND ({name}.valid_to IS NULL OR {name}.valid_to > 7)"
        )
    count = sa.select(sa.func.count(VERSIONS.c.number_id)).where(current(VERSIONS))
    query = str(count.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: show it can
            plan = conn.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
        else:
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
    # one of the partial indexes (uq_number_versions_current, ix_number_versions_current_account)
    assert any("number_versions_current" in line for line in plan), plan


def test_current_picks_the_version_in_force(store: Store) -> None:
    """Versions of one account valid over sweeps [1, 3) and [3, ...): which one each sweep saw."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    sweeps = [store.start_sweep(when, "test") for _ in range(3)]
    first, _, third = sweeps
    common = {"account_id": "MA_A", "status": "active", "content_hash": "h", "raw": {}}
    with store.begin() as conn:
        conn.execute(
            sa.insert(ACCOUNTS),
            [
                {**common, "name": "old", "valid_from": first, "valid_to": third},
                {**common, "name": "new", "valid_from": third, "valid_to": None},
            ],
        )
    names = {at: store.account_names(at=at) for at in (first, first + 1, third, None)}
    assert names == {
        first: {"MA_A": "old"},
        first + 1: {"MA_A": "old"},
        third: {"MA_A": "new"},
        None: {"MA_A": "new"},
    }
    assert store.account_names(["MA_B", None]) == {}
    assert store.account_names(["MA_A", "MA_B"], at=first) == {"MA_A": "old"}


def test_the_database_refusing_is_a_database_error(tmp_path: Path) -> None:
    """Whatever the database refuses leaves the store, and its engine, as ``DatabaseError``
    with the database's own words as ``detail``: callers never see SQLAlchemy's exceptions."""
    store = Store(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    try:
        with pytest.raises(DatabaseError) as missing:
            store.last_sweep()
        assert missing.value.detail == "no such table: sweeps"
        assert missing.value.message == "database error: no such table: sweeps"
        assert "did-monitor db upgrade" in (missing.value.hint or "")
        with pytest.raises(DatabaseError), store.engine.connect() as conn:
            conn.execute(sa.select(SWEEPS))  # the engine itself, used directly
        store.migrate()
        holder = store.engine.connect()
        holder.exec_driver_sql("BEGIN EXCLUSIVE")
        try:
            with store.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout = 0")
                with pytest.raises(DatabaseBusy) as busy:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # a write waits for the holder
        finally:
            holder.rollback()
            holder.close()
        assert busy.value.detail == "database is locked"
        assert "check database.url" in (busy.value.hint or "")
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_the_server_ended_is_replaced_quietly(pg_url: str) -> None:
    """The translation into ``DatabaseError`` leaves the pool's pre-ping alone: a pooled
    connection whose session the server ended is replaced, not reported."""
    store, admin = Store(pg_url), Store(pg_url)
    try:
        store.migrate()
        with store.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            for _ in range(100):  # it only signals: wait for the session to end
                if not conn.execute(alive, {"p": pid}).scalar_one():
                    break
                conn.rollback()
                time.sleep(0.05)
        assert store.last_sweep() is None
    finally:
        store.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_whose_ping_fails_in_any_way_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server hangs up mid-ping, psycopg may raise "can't change 'autocommit' now" (a
    ProgrammingError, not a disconnect to SQLAlchemy) from the ping's clean-up; the connection
    is still replaced. The race is rare, so the driver's error is raised here on purpose."""
    import psycopg

    store = Store(pg_url)
    try:
        store.migrate()
        pinged: list[object] = []
        real_ping = store.engine.dialect.do_ping

        def ping_once_broken(dbapi_connection: object) -> bool:
            pinged.append(dbapi_connection)
            if len(pinged) == 1:
                raise psycopg.ProgrammingError(
                    "can't change 'autocommit' now: connection in transaction status ACTIVE"
                )
            return real_ping(dbapi_connection)

        monkeypatch.setattr(store.engine.dialect, "do_ping", ping_once_broken)
        assert store.last_sweep() is None
        assert len(pinged) == 1  # a fresh connection is not pinged
    finally:
        store.dispose()
