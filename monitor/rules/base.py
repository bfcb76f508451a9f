"""What every rule shares: its context, the registry, scoping, drafts and safe message values.

Rules are pure: a rule reads the item it is given, ``RuleContext`` (the sweep's "now", the day
in the rules' time zone, the configuration) and nothing else: no clock, database or network.
There are three kinds, by what they look at:

- ``number`` rules: one number of this sweep (``Subject``);
- ``change`` rules: one number's state in the previous complete sweep and in this one;
- ``account`` rules: one customer account and the statuses of its numbers;
- ``availability`` rules: one watched country/region and the numbers for sale there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal

from monitor.conditions import Today
from monitor.config import RuleConfig, RulesConfig, Scope
from monitor.model import FindingDraft, NumberRecord, shared
from monitor.vocab import money_text

# Numbers in these states are on their way out or already gone; flagging their billing date or
# routing would be noise.
INACTIVE_STATUSES = frozenset({"released", "pending_release", "expired", "inactive"})
KNOWN_STATUSES = frozenset(
    {"active", "pending_purchase", "pending_release", "released", "blocked", "inactive", "expired"}
)

Kind = Literal["number", "change", "account", "availability"]


@dataclass(frozen=True)
class RuleContext:
    """What every rule may know: the sweep's "now", its id, the rules' configuration, and the
    time zone days are counted in (``today`` is the date there)."""

    now: datetime
    config: RulesConfig
    tz: tzinfo = UTC
    sweep_id: int | None = None
    today: date = field(init=False)
    day: Today = field(init=False)

    def __post_init__(self) -> None:
        today = self.now.astimezone(self.tz).date()  # computed once, not per number
        object.__setattr__(self, "today", today)
        object.__setattr__(self, "day", Today(today, self.tz))

    def local_date(self, when: datetime) -> date:
        """The calendar day ``when`` falls on in the rules' time zone."""
        return when.astimezone(self.tz).date()


class Subject:
    """One number as a rule sees it: the parsed record, and its JSON decoded on first use."""

    __slots__ = ("_raw", "rec")

    def __init__(self, rec: NumberRecord) -> None:
        self.rec = rec
        self._raw: dict[str, Any] | None = None

    @property
    def raw(self) -> dict[str, Any]:
        if self._raw is None:
            try:
                value = self.rec.raw
            except ValueError:  # stored text that is not JSON: nothing to read from it
                value = None
            self._raw = value if isinstance(value, dict) else {}
        return self._raw


@dataclass(frozen=True)
class RuleSpec:
    """A registered built-in rule. ``event`` rules report something that happened once: their
    finding resolves itself on the next sweep and no "resolved" notice is sent for it."""

    id: str
    description: str
    kind: Kind
    fn: Callable[..., Any]
    event: bool = False


REGISTRY: dict[str, RuleSpec] = {}


def rule(
    rule_id: str, description: str, kind: Kind = "number", *, event: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[rule_id] = RuleSpec(rule_id, description, kind, fn, event)
        return fn

    return register


def event_rules() -> frozenset[str]:
    """Ids of the rules whose findings resolve themselves (no "resolved" notice)."""
    return frozenset(rid for rid, spec in REGISTRY.items() if spec.event)


# --- scope ------------------------------------------------------------------------------------


def _hits(
    scope: Scope,
    account: str | None,
    country: str | None,
    region: str | None,
    tags: tuple[str, ...] | list[str],
    status: str | None,
    *,
    every: bool,
) -> bool:
    """With ``every``: each list that is set matches (include). Without: any list matches."""
    checks = []
    if scope.accounts:
        checks.append(account in scope.accounts)
    if scope.countries:
        checks.append((country or "").upper() in scope.countries)
    if scope.regions:
        checks.append((region or "").casefold() in scope.regions)
    if scope.tags:
        checks.append(any(t in scope.tags for t in tags))
    if scope.statuses:
        checks.append((status or "").casefold() in scope.statuses)
    return all(checks) if every else any(checks)


def in_scope(
    cfg: RuleConfig,
    account: str | None,
    country: str | None = None,
    region: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    status: str | None = None,
) -> bool:
    """Whether a rule's ``include``/``exclude`` tables let it look at this subject."""
    args = (account, country, region, tags, status)
    if not cfg.include.is_empty and not _hits(cfg.include, *args, every=True):
        return False
    return cfg.exclude.is_empty or not _hits(cfg.exclude, *args, every=False)


# --- drafts and messages ----------------------------------------------------------------------


def draft(
    rule_id: str,
    cfg: RuleConfig,
    rec: NumberRecord,
    message: str,
    *,
    subject: str | None = None,
    severity: str | None = None,
    due_at: datetime | None = None,
    tier: int | None = None,
) -> FindingDraft:
    return FindingDraft(
        rule=rule_id,
        subject=subject or rec.id,
        severity=severity or cfg.severity,
        message=shared(message),  # dated messages repeat: a sweep holds one per finding
        number_id=rec.id,
        e164=rec.e164,
        account_id=rec.account_id,
        due_at=due_at,
        tier=tier,
        monthly_fee=rec.monthly_fee,
        currency=rec.currency,
        tags=rec.tags,
    )


def row_draft(
    rule_id: str, cfg: RuleConfig, row: Mapping[str, Any], message: str, subject: str
) -> FindingDraft:
    """A draft about a stored number version (change rules read rows, not records)."""
    return FindingDraft(
        rule=rule_id,
        subject=subject,
        severity=cfg.severity,
        message=message,
        number_id=row.get("number_id"),
        e164=row.get("e164"),
        account_id=row.get("account_id"),
        monthly_fee=row.get("monthly_fee"),
        currency=row.get("currency"),
        tags=tuple(str(t) for t in row.get("tags") or ()),
    )


# Characters an API value keeps inside a finding's message. Messages are the monitor's own
# words in every alert format, so a value from outside must not carry markup, links or mentions.
_UNSAFE = re.compile(r"[^\w .,:;+@/#'()%&-]")
MAX_VALUE = 80


def show(value: Any) -> str:
    """An API value as inert text for a message: no markup characters, one line, bounded."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, list):
        text = ", ".join(show(v) for v in value[:10])
    elif isinstance(value, dict):
        text = "{…}"
    else:
        text = str(value)
    text = _UNSAFE.sub("?", " ".join(text.split()))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "none"
    return money_text(amount, currency)


def flag(value: Any) -> bool | None:
    """A JSON boolean as the API may spell it (true, "true", 1); None when absent or odd."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    return None
