"""Customer accounts: fetched whole with every sweep, credentials removed before anything else.

``GET /api/v1/partner/accounts`` pages through ``{accounts[], total, page, size}``. Each account
carries that customer's own ``auth_token``: it, and every other field whose name looks like a
credential (``redact.is_credential_key``), is dropped here, as the page is read, so no later
stage (store, logs, rules, reports) ever holds one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from monitor.errors import IncompleteSweep
from monitor.model import api_id
from monitor.redact import TooDeep, without_credentials
from monitor.sweep import where_unreadable
from monitor.vobiz import Listing, VobizClient

ACCOUNTS_PATH = "/api/v1/partner/accounts"


@dataclass(frozen=True)
class AccountRecord:
    """One customer account as stored: id (``auth_id``, ``MA_...``), name, status, and the
    API's object without any credential (``raw``, with ``content_hash`` over its JSON)."""

    account_id: str
    name: str | None
    status: str | None
    raw: dict[str, Any]
    content_hash: str

    @property
    def id(self) -> str:
        return self.account_id


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip().replace("\x00", "")[:limit]
    return None


def parse_account(item: Any) -> AccountRecord | None:
    """An account from one API object (credentials already dropped or not); None without id
    (``auth_id``, else ``id``, read as every API id is: ``model.api_id``), or nested deeper
    than ``redact.MAX_DEPTH`` levels."""
    if not isinstance(item, dict):
        return None
    try:
        clean = without_credentials(item)
    except TooDeep:
        return None
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    text = text.replace("\\u0000", "")  # PostgreSQL refuses NUL in text
    raw = json.loads(text)
    account_id = api_id(raw.get("auth_id")) or api_id(raw.get("id"))
    if account_id is None:
        return None
    return AccountRecord(
        account_id=account_id,
        name=_text(clean.get("name"), 256),
        status=(_text(clean.get("status"), 32) or "").lower() or None,
        raw=raw,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


ACCOUNTS = Listing(ACCOUNTS_PATH, ("accounts",), parse_account)


@dataclass(frozen=True)
class AccountList:
    """The accounts of one read, by id, and the items that could not be read (page, position):
    like an unreadable number, one makes the sweep partial."""

    accounts: list[AccountRecord]
    unreadable: list[tuple[int, int]]

    def describe_unreadable(self) -> str | None:
        """``2 account(s) could not be read (accounts page 1 position 3, ...)``, or None."""
        if not self.unreadable:
            return None
        where = where_unreadable(self.unreadable, len(self.unreadable))
        return f"{len(self.unreadable)} account(s) could not be read (accounts {where})"


def fetch_accounts(client: VobizClient, per_page: int, concurrency: int) -> AccountList:
    """Every customer account, its pages read as the numbers' are (``VobizClient.iter_pages``,
    which also refuses a repeated page or one empty before the promised end), and, as for the
    numbers, the distinct accounts plus the unreadable items must add up to the total. Raises
    ``IncompleteSweep`` when two reads in a row cannot vouch for the list: the total changed
    between pages, the accounts do not add up to it, or, from an API that gives no total, the
    two reads disagree."""
    previous: set[str] | None = None
    for _ in range(2):
        pages = sorted(client.iter_pages(ACCOUNTS, per_page, concurrency), key=attrgetter("page"))
        totals = {page.total for page in pages if page.total is not None}
        # an account on two pages (the list shifted): the later page wins, whatever order the
        # pages arrived in
        accounts = {record.id: record for page in pages for record in page.records}
        unreadable = [(page.page, position) for page in pages for position in page.unreadable]
        if len(totals) > 1:
            seen = ", ".join(str(t) for t in sorted(totals))
            problem = f"the total was not the same on every page ({seen})"
        elif totals and len(accounts) + len(unreadable) != min(totals):
            problem = (
                f"{len(accounts)} distinct accounts read ({len(unreadable)} unreadable), "
                f"the API reports {min(totals)}"
                if unreadable
                else f"{len(accounts)} distinct accounts read, the API reports {min(totals)}"
            )
        elif not totals and set(accounts) != previous:
            problem = "the API gives no total, and two reads did not agree"
        else:
            return AccountList(sorted(accounts.values(), key=lambda a: a.id), unreadable)
        previous = set(accounts)
    raise IncompleteSweep(
        f"the account list is incomplete: {problem}",
        hint="accounts changed while they were read, or the API misreports its total; "
        "the sweep will be retried",
    )
