"""Alembic environment: runs on the connection did-monitor hands it (no logging.fileConfig)."""

from __future__ import annotations

from alembic import context

from monitor.store.db import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the program always passes a connection
    raise RuntimeError("run migrations through `did-monitor db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
