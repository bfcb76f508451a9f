"""Customer accounts: fetched whole with every sweep, credentials removed before anything else.

``GET /api/v1/partner/accounts`` pages through ``{accounts[], total, page, size}``. Each account
carries that customer's own ``auth_token``: it, and every other field whose name looks like a
credential (``redact.is_credential_key``), is dropped here, as the page is read, so no later
stage (store, logs, rules, reports) ever holds one. An account list that does not add up to its
``total`` fails the sweep, as an incomplete number list does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from monitor.errors import ApiError, IncompleteSweep
from monitor.redact import TooDeep, without_credentials

ACCOUNTS_PATH = "/api/v1/partner/accounts"
MAX_PAGES = 10_000  # 1,000,000 accounts at 100 a page: a stuck total cannot loop forever


@dataclass(frozen=True)
class AccountRecord:
    """One customer account as stored: id (``auth_id``, ``MA_...``), name, status, and the
    API's object without any credential (``raw``, with ``content_hash`` over its JSON)."""

    account_id: str
    name: str | None
    status: str | None
    raw: dict[str, Any]
    content_hash: str

    def as_rule_input(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status}


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip().replace("\x00", "")[:limit]
    return None


def parse_account(item: Any) -> AccountRecord | None:
    """An account from one API object (credentials already dropped or not); None without id,
    or nested deeper than ``redact.MAX_DEPTH`` levels."""
    if not isinstance(item, dict):
        return None
    try:
        clean = without_credentials(item)
    except TooDeep:
        return None
    account_id = _text(clean.get("auth_id"), 64) or _text(clean.get("id"), 64)
    if account_id is None:
        return None
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    text = text.replace("\\u0000", "")  # PostgreSQL refuses NUL in text
    return AccountRecord(
        account_id=account_id,
        name=_text(clean.get("name"), 256),
        status=(_text(clean.get("status"), 32) or "").lower() or None,
        raw=json.loads(text),
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


GetJson = Callable[[str, dict[str, Any]], Any]
# The pages given, fetched (concurrently) and yielded as (body, page) in any order.
GetPages = Callable[[range], Iterable[tuple[Any, int]]]


def fetch_accounts(
    get_json: GetJson, per_page: int = 100, get_pages: GetPages | None = None
) -> list[AccountRecord]:
    """Every customer account; raises ``IncompleteSweep`` when the distinct accounts do not add
    up to the ``total`` the API reports (after two full reads).

    ``get_json(path, params)`` is the API client's GET (retries and errors are its business).
    Page 1 gives the total; the other pages go through ``get_pages`` when given (the client's
    concurrent paging), else one by one. An API that gives no total is read until an empty page.
    """
    problem = ""
    for _ in range(2):
        accounts, problem = _one_pass(get_json, per_page, get_pages)
        if not problem:
            return sorted(accounts.values(), key=lambda a: a.account_id)
    raise IncompleteSweep(
        f"the account list is incomplete: {problem}",
        hint="accounts changed while they were read, or the API misreports its total; "
        "the sweep will be retried",
    )


def _one_pass(
    get_json: GetJson, per_page: int, get_pages: GetPages | None
) -> tuple[dict[str, AccountRecord], str]:
    accounts: dict[str, AccountRecord] = {}
    found_on: dict[str, int] = {}
    totals: list[int] = []

    def fetch(page: int) -> Any:
        return get_json(ACCOUNTS_PATH, {"page": page, "per_page": per_page})

    def read(body: Any, page: int) -> tuple[int, int]:
        """Keep the page's accounts; returns how many items it had and the page size."""
        if not isinstance(body, dict) or not isinstance(body.get("accounts"), list):
            raise ApiError(f"GET {ACCOUNTS_PATH} page {page}: the body has no 'accounts' list")
        total = body.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            totals.append(total)
        for item in body["accounts"]:
            record = parse_account(item)
            # an account on two pages (the list shifted): the later page wins, whatever order
            # the pages arrived in
            if record is not None and page >= found_on.get(record.account_id, 0):
                accounts[record.account_id] = record
                found_on[record.account_id] = page
        size = body.get("size")
        return len(body["accounts"]), size if isinstance(size, int) and size > 0 else per_page

    items, step = read(fetch(1), 1)
    if totals:
        last = math.ceil(totals[0] / step)
        if last > MAX_PAGES:
            return accounts, f"more than {MAX_PAGES} pages"
        rest = range(2, last + 1) if items else range(0)
        bodies = get_pages(rest) if get_pages else ((fetch(p), p) for p in rest)
        for body, page in bodies:
            read(body, page)
    else:
        page = 1
        while items:
            if page >= MAX_PAGES:
                return accounts, f"more than {MAX_PAGES} pages"
            page += 1
            items, _ = read(fetch(page), page)
    if len(set(totals)) > 1:
        seen = ", ".join(str(t) for t in sorted(set(totals)))
        return accounts, f"the total was not the same on every page ({seen})"
    if totals and len(accounts) != totals[0]:
        return accounts, f"{len(accounts)} distinct accounts read, the API reports {totals[0]}"
    return accounts, ""
