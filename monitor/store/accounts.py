"""Account versions: one sweep's account writes (change-only, like numbers) and their names.

Writes run on the sweep writer's connection, inside the sweep's transaction: a failed sweep
stores no account either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.accounts import AccountRecord
from monitor.store.db import ACCOUNTS, chunks, current


def write_accounts(
    conn: Connection,
    sweep_id: int,
    accounts: Sequence[AccountRecord],
    close_missing: bool = True,
) -> int:
    """Store the accounts that are new or changed, close those gone (not when
    ``close_missing`` is false: the list was read only in part); returns versions written."""
    stmt = sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.content_hash).where(current(ACCOUNTS))
    hashes: dict[str, str] = {aid: digest for aid, digest in conn.execute(stmt)}
    seen = {a.account_id for a in accounts}
    fresh = [a for a in accounts if hashes.get(a.account_id) != a.content_hash]
    to_close = [aid for aid in hashes if aid not in seen] if close_missing else []
    to_close += [a.account_id for a in fresh if a.account_id in hashes]
    for part in chunks(to_close):
        conn.execute(
            sa.update(ACCOUNTS)
            .where(current(ACCOUNTS), ACCOUNTS.c.account_id.in_(part))
            .values(valid_to=sweep_id)
        )
    if fresh:
        conn.execute(
            sa.insert(ACCOUNTS),
            [{**asdict(a), "valid_from": sweep_id, "valid_to": None} for a in fresh],
        )
    return len(fresh)


def account_names(
    conn: Connection, at: int | None = None, ids: Iterable[str | None] | None = None
) -> dict[str, str | None]:
    """The one home of customer account names: as the sweep ``at`` read them, or as the current
    account list has them (``at`` None); every account, or only those in ``ids``. An account
    the list does not know is missing (so is every one before accounts were swept)."""
    stmt = sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.name).where(current(ACCOUNTS, at))
    if ids is not None:
        wanted = {a for a in ids if a}
        if not wanted:
            return {}
        stmt = stmt.where(ACCOUNTS.c.account_id.in_(wanted))
    return {str(r.account_id): r.name for r in conn.execute(stmt)}
