from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.store import SWEEPS, Store
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
