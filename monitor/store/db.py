"""SQLAlchemy tables and their handles, the engine, and the Alembic migration runner.

The bottom of the store layer: the ``Store`` (``store/__init__.py``), ``writer.py``, ``locks.py``
and ``accounts.py`` take their table handles and helpers from here, and never from each other.
The engine made here raises every failure of the database as ``DatabaseError``
(``database_error``), so no module outside the store handles SQLAlchemy's exceptions.

Over 400 lines because it is the schema (one class a table) plus the engine and migration
helpers that every store module shares; splitting them would bring back the import cycles this
layout removed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Final, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine, ExceptionContext, RowMapping
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from monitor import __version__
from monitor.errors import ConfigError, DatabaseBusy, DatabaseError


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class JSONText(sa.types.TypeDecorator[Any]):
    """A JSON column written from text that is already JSON (``NumberRecord.raw_json``, in its
    canonical form), stored as it is, and read back decoded."""

    impl = sa.JSON
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> None:
        return None  # the value is JSON text already: encoding it again would nest it


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def _partial_index(
    name: str, *columns: str, unique: bool = False, where: str = "valid_to IS NULL"
) -> sa.Index:
    """An index of the rows ``where`` holds (by default the current versions), on both databases."""
    clause = sa.text(where)
    return sa.Index(name, *columns, unique=unique, sqlite_where=clause, postgresql_where=clause)


FINISHED_SWEEP_STATES: Final = ("complete", "partial", "failed", "aborted")


class Sweep(Base):
    """One attempt to read the whole inventory; only a ``complete`` one may resolve anything."""

    __tablename__ = "sweeps"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # running, or one of FINISHED_SWEEP_STATES
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    trigger: Mapped[str] = mapped_column(sa.String(16), default="manual")
    owner: Mapped[str] = mapped_column(sa.String(128), default="")
    total_reported: Mapped[int | None]
    numbers_seen: Mapped[int] = mapped_column(default=0)
    pages: Mapped[int] = mapped_column(default=0)
    requests: Mapped[int] = mapped_column(default=0)
    retries: Mapped[int] = mapped_column(default=0)
    versions_written: Mapped[int] = mapped_column(default=0)
    numbers_gone: Mapped[int] = mapped_column(default=0)
    findings_opened: Mapped[int] = mapped_column(default=0)
    findings_resolved: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # What the sweep read but could not check (numbers with an unreadable date): a note, not an
    # error; the next sweep announces it again only when it changed.
    notes: Mapped[str | None] = mapped_column(sa.Text)


class NumberVersion(Base):
    """A number's state, valid from sweep ``valid_from`` until (excluding) ``valid_to``.

    A re-sweep that finds a number unchanged writes nothing; a change closes the current row and
    opens a new one; a number gone from a complete sweep has its row closed.
    """

    __tablename__ = "number_versions"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    number_id: Mapped[str] = mapped_column(sa.String(64))
    e164: Mapped[str] = mapped_column(sa.String(32), index=True)
    account_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(32))
    country: Mapped[str | None] = mapped_column(sa.String(8))
    region: Mapped[str | None] = mapped_column(sa.String(128))
    application_id: Mapped[str | None] = mapped_column(sa.String(128))
    is_blocked: Mapped[bool]
    next_billing_date: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    monthly_fee: Mapped[Any | None] = mapped_column(sa.Numeric(18, 6, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(sa.String(8))
    tags: Mapped[Any] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    # The item as the API sent it: plain JSON (text, kept verbatim), not JSONB, which would
    # re-encode it and costs PostgreSQL more to ingest than the rest of the row.
    raw: Mapped[Any] = mapped_column(JSONText)
    # Always the writing sweep's own id, set by the writer; not a foreign key, whose per-row
    # check doubled the time PostgreSQL took to load a first sweep of 100,000 numbers.
    valid_from: Mapped[int] = mapped_column(sa.Integer)
    valid_to: Mapped[int | None] = mapped_column(sa.ForeignKey("sweeps.id"))

    __table_args__ = (
        _partial_index("uq_number_versions_current", "number_id", unique=True),
        # Covering indexes for the dashboard: the current inventory per account and status
        # (accounts, numbers by status) and the versions' opening and closing sweeps (rental per
        # sweep), read without touching the wide rows.
        _partial_index(
            "ix_number_versions_current_account", "account_id", "status", "currency", "monthly_fee"
        ),
        sa.Index(
            "ix_number_versions_status_span",
            "status",
            "valid_from",
            "valid_to",
            "currency",
            "monthly_fee",
        ),
    )


class AccountVersion(Base):
    """A customer account's state, valid from sweep ``valid_from`` until (excluding) ``valid_to``,
    stored change-only like numbers. ``raw`` is the API's object without any credential (the
    customer's ``auth_token`` never reaches the database)."""

    __tablename__ = "account_versions"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str | None] = mapped_column(sa.String(256))
    status: Mapped[str | None] = mapped_column(sa.String(32))
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    raw: Mapped[Any] = mapped_column(JSONType)
    valid_from: Mapped[int] = mapped_column(sa.ForeignKey("sweeps.id"))
    valid_to: Mapped[int | None] = mapped_column(sa.ForeignKey("sweeps.id"))

    __table_args__ = (_partial_index("uq_account_versions_current", "account_id", unique=True),)


class Finding(Base):
    """One episode of a (rule, subject) problem: opened by a sweep, resolved by a later one."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(128))
    number_id: Mapped[str | None] = mapped_column(sa.String(64))
    e164: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    account_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    severity: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)  # open|resolved
    message: Mapped[str] = mapped_column(sa.Text)
    due_at: Mapped[datetime | None]
    tier: Mapped[int | None]
    monthly_fee: Mapped[Any | None] = mapped_column(sa.Numeric(18, 6, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(sa.String(8))
    tags: Mapped[Any] = mapped_column(JSONType)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # Set when the due date moves later: reminder tiers announced before it count no more.
    rearmed_at: Mapped[datetime | None]
    opened_sweep_id: Mapped[int] = mapped_column(sa.ForeignKey("sweeps.id"))
    resolved_sweep_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sweeps.id"))

    __table_args__ = (
        _partial_index("uq_findings_open", "rule", "subject", unique=True, where="state = 'open'"),
    )


class Silence(Base):
    """Findings matching (rule, number or account) are tracked but not announced until ``until``."""

    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(sa.String(64))
    e164: Mapped[str | None] = mapped_column(sa.String(32))
    account_id: Mapped[str | None] = mapped_column(sa.String(64))
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(sa.String(128))  # who; none before 0006


class Delivery(Base):
    """The outbox: a rendered message for one channel, stored before it is sent."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    sweep_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sweeps.id"))
    channel: Mapped[str] = mapped_column(sa.String(64), index=True)
    # digest | sweep_failed | sweep_partial | unreadable_dates | channel_failing | test
    kind: Mapped[str] = mapped_column(sa.String(32))
    title: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    body_format: Mapped[str] = mapped_column(sa.String(16))
    # Attachments (name, mimetype, content) and a Slack Block Kit message, as JSON; or null.
    parts: Mapped[Any | None] = mapped_column(sa.JSON)
    # pending|sending|sent|failed|orphaned
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[datetime | None]


class DeliveryAttempt(Base):
    """One try at sending a delivery, with its outcome."""

    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("deliveries.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(sa.String(16))  # sent|failed
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int] = mapped_column(default=0)


class Notification(Base):
    """That a finding was announced (opened, reminded at a tier, resolved) in a delivery."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    finding_id: Mapped[int] = mapped_column(sa.ForeignKey("findings.id"))
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("deliveries.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(64))
    event: Mapped[str] = mapped_column(sa.String(16))  # opened|reminded|resolved
    tier: Mapped[int | None]
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_notifications_finding_channel", "finding_id", "channel"),)


class ServiceLock(Base):
    """Lease rows that stand in for PostgreSQL advisory locks on SQLite."""

    __tablename__ = "service_locks"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(sa.String(128))
    acquired_at: Mapped[datetime | None]


metadata = Base.metadata

# Row ids are INTEGER: 32 bits on PostgreSQL, which refuses a larger value in a query (SQLite's
# driver refuses one over 64 bits); no row has a larger id.
MAX_ROW_ID = 2**31 - 1
SWEEPS = cast(sa.Table, Sweep.__table__)
VERSIONS = cast(sa.Table, NumberVersion.__table__)
ACCOUNTS = cast(sa.Table, AccountVersion.__table__)
FINDINGS = cast(sa.Table, Finding.__table__)
SILENCES = cast(sa.Table, Silence.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)
NOTIFICATIONS = cast(sa.Table, Notification.__table__)
LOCKS = cast(sa.Table, ServiceLock.__table__)
CHUNK = 500  # parameters per IN (...) list: well under SQLite's and PostgreSQL's limits


def current(table: sa.FromClause, at: int | None = None) -> sa.ColumnElement[bool]:
    """The one test of "the version in force", over ``table``'s versions (``VERSIONS`` or
    ``ACCOUNTS``, or an alias): the version valid at sweep ``at`` (from it or before, and not
    closed by it); with ``at`` None the current one, spelt ``valid_to IS NULL`` exactly as the
    partial indexes on current rows are, so that they serve it."""
    if at is None:
        return table.c.valid_to.is_(None)
    return sa.and_(
        table.c.valid_from <= at, sa.or_(table.c.valid_to.is_(None), table.c.valid_to > at)
    )


def inventory_sweep(conn: Connection) -> int | None:
    """``current``'s ``at`` for the inventory as the reports state it: the last complete sweep's,
    since a partial sweep's versions are never a state of the inventory. None (the current rows,
    which the partial indexes serve) when no partial sweep stored versions after it; 0 (no
    version) when only partial sweeps have."""
    newest = latest_sweeps(conn, ("complete", "partial"))
    if not newest or newest[0]["status"] == "complete":
        return None
    complete = latest_sweeps(conn, "complete")
    return int(complete[0]["id"]) if complete else 0


def tally(conn: Connection, *by: str, at: int | None = None) -> dict[tuple[Any, ...], int]:
    """How many numbers are current (or in force at sweep ``at``, as ``current`` reads it), per
    value of the ``VERSIONS`` columns named ``by`` (e.g. ``"status"``); with none, the one total
    under ``()``."""
    columns = [VERSIONS.c[name] for name in by]
    stmt = sa.select(*columns, sa.func.count()).where(current(VERSIONS, at)).group_by(*columns)
    return {tuple(row[:-1]): int(row[-1]) for row in conn.execute(stmt)}


def current_count(conn: Connection) -> int:
    """How many numbers are current: one current version each."""
    return tally(conn)[()]


def latest_sweeps(
    conn: Connection,
    status: str | Collection[str] | None = None,
    *,
    before: int | None = None,
    limit: int = 1,
) -> list[RowMapping]:
    """Up to ``limit`` sweeps, newest first: only those of ``status`` (one, or any of several)
    when given, and only those before sweep ``before`` when given."""
    stmt = sa.select(SWEEPS).order_by(SWEEPS.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(SWEEPS.c.status.in_([status] if isinstance(status, str) else status))
    if before is not None:
        stmt = stmt.where(SWEEPS.c.id < before)
    return list(conn.execute(stmt).mappings())


def insert_row(conn: Connection, table: sa.Table, **values: Any) -> int:
    """Insert one row of ``values`` into ``table``; its new id."""
    return int(conn.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one())


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_INSTANCE = uuid.uuid4().hex[:12]  # tells this process from an earlier one with the same pid


def owner_id() -> str:
    """``host:pid:instance``: a container restarted as PID 1 is not mistaken for its past self."""
    return f"{socket.gethostname()}:{os.getpid()}:{_INSTANCE}"


# --- engine ---------------------------------------------------------------------------------


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    try:
        engine = sa.create_engine(
            url,
            pool_pre_ping=not url.startswith("sqlite"),
            json_serializer=json_text,
            json_deserializer=json.loads,
        )
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"database.url is not usable: {exc}",
            hint="e.g. sqlite:///did-monitor.db or postgresql+psycopg://user@host/db",
        ) from None
    event.listen(engine, "handle_error", _raise_database_error)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # executemany of an INSERT as multi-row INSERTs ("insertmanyvalues", SQLAlchemy's own
        # batching): the sqlite3 driver lets go of the GIL around every statement it steps, so
        # one statement per row hands the interpreter to the sweep's fetch threads 100,000
        # times, and the sweep's thread waits to get it back each time.
        engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


# Compact JSON for the JSON columns; a value JSON has no type for is stored as its text.
json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout = 30000")
    dbapi_conn.execute("PRAGMA foreign_keys = ON")
    dbapi_conn.execute("PRAGMA journal_mode = WAL")
    dbapi_conn.execute("PRAGMA synchronous = NORMAL")
    # 8 MiB: the page cache is part of a sweep's peak memory, and neither 16 nor 64 MiB bought
    # measurable speed (the database of 100,000 numbers is ~120 MB, larger than any of them).
    dbapi_conn.execute("PRAGMA cache_size = -8192")


def database_error(exc: BaseException) -> DatabaseError:
    """``exc`` (SQLAlchemy's, or the driver's own) as the error callers handle: "database error:"
    and the database's first line (``detail``), with a hint (``db upgrade`` when a table is
    missing); ``DatabaseBusy`` when SQLite stayed locked by another connection."""
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip() or type(orig).__name__).splitlines()[0]
    missing = "no such table" in detail or "does not exist" in detail
    busy = isinstance(orig, sqlite3.OperationalError) and ("locked" in detail or "busy" in detail)
    return (DatabaseBusy if busy else DatabaseError)(
        f"database error: {detail}",
        hint="run `did-monitor db upgrade` (database.auto_migrate is off)"
        if missing
        else "check database.url and that the database server is running",
        detail=detail,
    )


def _raise_database_error(ctx: ExceptionContext) -> None:
    """The engine's ``handle_error``: a statement or connection the database refused raises
    ``database_error`` in place of SQLAlchemy's exception (the connection is still invalidated
    as SQLAlchemy decided). A failed pre-ping is left to SQLAlchemy, which reconnects: any
    failure counts as a lost connection. psycopg may report the server's hang-up as a refusal
    to restore autocommit on the broken connection, which SQLAlchemy reads as no disconnect."""
    if ctx.is_pre_ping:
        ctx.is_disconnect = True
    elif ctx.sqlalchemy_exception is not None:
        raise database_error(ctx.sqlalchemy_exception)


@contextmanager
def translated() -> Iterator[None]:
    """Whatever SQLAlchemy raises in the block that the engine did not translate (a pool
    timeout, a transaction to roll back first) leaves it as ``database_error``."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise database_error(exc) from None


# --- migrations -----------------------------------------------------------------------------


def migrations_dir() -> Path:
    """Alembic's script directory: inside the installed package, or the repo's top-level folder."""
    packaged = resources.files("monitor") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[2] / "migrations"
    if repo.is_dir():
        return repo
    raise DatabaseError("the Alembic migrations are missing from this installation")


def alembic_config(connection: Connection | None = None) -> Any:
    """Alembic's configuration: the shipped migrations, to run on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK_KEY = zlib.crc32(b"did-monitor:migrate")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; idempotent; replicas serialise on an advisory lock."""
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            command.upgrade(alembic_config(conn), revision)
    except CommandError:
        raise unknown_revision(engine) from None
    except DatabaseError as exc:
        if exc.detail is None:
            raise
        raise DatabaseError(
            f"cannot migrate the database: {exc.detail}",
            hint="check database.url and that the server is running",
            detail=exc.detail,
        ) from None


def unknown_revision(engine: Engine) -> DatabaseError:
    """The error for a schema this version cannot read: a newer did-monitor migrated it."""
    try:
        found = current_revision(engine)
    except DatabaseError:
        found = None
    return DatabaseError(
        f"the database's schema (revision {found or 'unknown'}) was written by a newer "
        f"did-monitor than this one ({__version__}, which knows up to revision "
        f"{head_revision()})",
        hint="upgrade did-monitor to the version that wrote it, or point database.url elsewhere",
    )


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
