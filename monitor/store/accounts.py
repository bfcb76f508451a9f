"""Account versions: one sweep's account writes (change-only, like numbers) and their names.

Runs on the sweep writer's connection, inside the sweep's transaction: a failed sweep stores no
account either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.accounts import AccountRecord
from monitor.store.db import AccountVersion, NumberVersion

ACCOUNTS = cast(sa.Table, AccountVersion.__table__)
_CHUNK = 500


def write_accounts(conn: Connection, sweep_id: int, accounts: Sequence[AccountRecord]) -> int:
    """Store the accounts that are new or changed, close those gone; returns versions written."""
    current = {
        r.account_id: r.content_hash
        for r in conn.execute(
            sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.content_hash).where(
                ACCOUNTS.c.valid_to.is_(None)
            )
        )
    }
    seen = {a.account_id for a in accounts}
    fresh = [a for a in accounts if current.get(a.account_id) != a.content_hash]
    to_close = [aid for aid in current if aid not in seen]
    to_close += [a.account_id for a in fresh if a.account_id in current]
    for start in range(0, len(to_close), _CHUNK):
        conn.execute(
            sa.update(ACCOUNTS)
            .where(
                ACCOUNTS.c.valid_to.is_(None),
                ACCOUNTS.c.account_id.in_(to_close[start : start + _CHUNK]),
            )
            .values(valid_to=sweep_id)
        )
    if fresh:
        conn.execute(
            sa.insert(ACCOUNTS),
            [
                {
                    "account_id": a.account_id,
                    "name": a.name,
                    "status": a.status,
                    "content_hash": a.content_hash,
                    "raw": a.raw,
                    "valid_from": sweep_id,
                    "valid_to": None,
                }
                for a in fresh
            ],
        )
    return len(fresh)


def status_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """How many current numbers each account has in each status: (account, status) → count."""
    versions = cast(sa.Table, NumberVersion.__table__)
    stmt = (
        sa.select(versions.c.account_id, versions.c.status, sa.func.count())
        .where(versions.c.valid_to.is_(None))
        .group_by(versions.c.account_id, versions.c.status)
    )
    return {(a, s): int(n) for a, s, n in conn.execute(stmt)}


def account_names(conn: Connection, sweep_id: int) -> dict[str, str | None]:
    """Customer account names as the sweep ``sweep_id`` read them (empty before accounts were
    swept)."""
    stmt = sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.name).where(
        ACCOUNTS.c.valid_from <= sweep_id,
        sa.or_(ACCOUNTS.c.valid_to.is_(None), ACCOUNTS.c.valid_to > sweep_id),
    )
    return {r.account_id: r.name for r in conn.execute(stmt)}
