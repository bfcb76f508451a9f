"""What every rule shares: its config tables, context, registry, scoping, drafts and safe
message values.

Rules are pure: a rule reads the item it is given, ``RuleContext`` (the sweep's "now", the day
in the rules' time zone, the configuration) and nothing else: no clock, database or network.
There are four kinds, by what they look at:

- ``number`` rules: one number of this sweep (``Subject``);
- ``change`` rules: one number's state in the previous complete sweep and in this one;
- ``account`` rules: one customer account and the statuses of its numbers;
- ``availability`` rules: one watched country/region and the numbers for sale there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.conditions import ConditionError, Today, compile_condition, compile_template
from monitor.model import FindingDraft, NumberRecord, shared
from monitor.vocab import money_text

# Numbers in these states are on their way out or already gone; flagging their billing date or
# routing would be noise.
INACTIVE_STATUSES = frozenset({"released", "pending_release", "expired", "inactive"})
KNOWN_STATUSES = frozenset(
    {"active", "pending_purchase", "pending_release", "released", "blocked", "inactive", "expired"}
)

Kind = Literal["number", "change", "account", "availability"]

Severity = Literal["info", "warning", "critical"]


class Table(BaseModel):
    """A config table: frozen, and unknown keys are refused (a typo must not disable a rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def error_text(err: Mapping[str, Any]) -> str:
    """One of pydantic's errors about a config table, in the config's words."""
    if err["type"] == "extra_forbidden":
        return (
            "unknown key (check the spelling; unknown keys are refused so a typo "
            "cannot disable a rule)"
        )
    return str(err["msg"]).removeprefix("Value error, ")


# A subject as a rule's scope sees it: (account, country, region, tags, status).
ScopeKey = tuple[str | None, str | None, str | None, tuple[str, ...] | list[str] | None, str | None]


class Scope(Table):
    """Which numbers a rule looks at: each list that is set must match (an empty list matches
    everything). ``countries``, ``regions`` and ``statuses`` compare case-insensitively."""

    accounts: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    @field_validator("countries")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.upper() for v in value)

    @field_validator("statuses", "regions")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.casefold() for v in value)

    @property
    def is_empty(self) -> bool:
        return not (self.accounts or self.countries or self.regions or self.tags or self.statuses)

    def checks(self, subject: ScopeKey) -> Iterator[bool]:
        """Whether the subject matches, for each list that is set."""
        account, country, region, tags, status = subject
        if self.accounts:
            yield account in self.accounts
        if self.countries:
            yield (country or "").upper() in self.countries
        if self.regions:
            yield (region or "").casefold() in self.regions
        if self.tags:
            yield any(t in self.tags for t in tags or ())
        if self.statuses:
            yield (status or "").casefold() in self.statuses


# Keys of a rule's table that an ``[[rules.<id>.override]]`` cannot set.
_FIXED_KEYS = frozenset({"include", "exclude", "override", "id", "message", "when", "description"})


class RuleConfig(Table):
    """Every rule's table: on/off, severity, scope, and per-account overrides. A rule with keys
    of its own subclasses it beside its function (``DateRuleConfig`` in ``builtin``).

    ``override`` entries are resolved once, when the config loads, into one effective config per
    account (``for_account``); an unknown key in one is a config error naming it.
    """

    enabled: bool = True
    severity: Severity = "warning"
    include: Scope = Scope()
    exclude: Scope = Scope()
    override: tuple[dict[str, Any], ...] = ()
    _by_account: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_overrides(self) -> RuleConfig:
        if not self.override:
            return self
        settable = set(type(self).model_fields) - _FIXED_KEYS
        base = self.model_dump(exclude={"override"})
        resolved: dict[str, Any] = {}
        for i, entry in enumerate(self.override):
            where = f"override[{i}]"
            accounts = entry.get("accounts")
            if (
                not isinstance(accounts, list)
                or not accounts
                or not all(isinstance(a, str) and a for a in accounts)
            ):
                raise ValueError(f"{where}.accounts: must be a non-empty list of account ids")
            unknown = sorted(set(entry) - settable - {"accounts"})
            if unknown:
                raise ValueError(
                    f"{where}: unknown key {unknown[0]!r} for this rule "
                    f"(an override sets: {', '.join(sorted(settable))})"
                )
            values = {k: v for k, v in entry.items() if k != "accounts"}
            try:
                effective = type(self).model_validate(base | values)
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{where}.{key}: {error_text(first)}") from None
            for account in accounts:
                if account in resolved:
                    raise ValueError(f"{where}: account {account!r} is already in an override")
                resolved[account] = effective
        self._by_account = resolved
        return self

    def in_scope(self, subject: ScopeKey) -> bool:
        """Whether the ``include``/``exclude`` tables let the rule look at this subject."""
        return all(self.include.checks(subject)) and not any(self.exclude.checks(subject))

    def for_account(self, account_id: str | None) -> Any:
        """The effective config for ``account_id``: its override, or this table."""
        return self._by_account.get(account_id, self) if account_id is not None else self


class UserRuleConfig(RuleConfig):
    """A rule written in the config (``[[rules.custom]]``): conditions over the item's JSON and
    a message template, compiled when the config loads (``user.user_rule`` runs them)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    message: str
    when: Any
    _test: Any = PrivateAttr(default=None)
    _render: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> UserRuleConfig:
        try:
            self._test = compile_condition(self.when, "when")
            self._render = compile_template(self.message, "message")
        except ConditionError as exc:
            raise ValueError(f"rule {self.id!r}: {exc}") from None
        return self

    def compiled(self) -> tuple[Callable[[Any, Today], bool], Callable[[Any, Any], str]]:
        """(condition, message renderer), compiled when the config loaded."""
        return self._test, self._render


class RuleTables(Table):
    """``[rules]`` as the rules see it: the user-defined rules, and ``rule(id)`` for any rule's
    table. ``config.RulesConfig`` adds one ``[rules.<id>]`` table per built-in rule in
    ``REGISTRY``, of the type and defaults the rule declares."""

    custom: tuple[UserRuleConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _rule_defaults(cls, data: Any) -> Any:
        """A table that sets some keys keeps the rule's own defaults for the others (a bare
        ``[rules.expiring]`` still means 14 days, ``[rules.blocked]`` still critical)."""
        if not isinstance(data, dict):
            return data
        return data | {
            rule_id: REGISTRY[rule_id].defaults.model_dump(exclude={"override"}) | given
            for rule_id, given in data.items()
            if rule_id in REGISTRY and isinstance(given, dict)
        }

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleTables:
        seen: set[str] = set()
        for i, rule in enumerate(self.custom):
            if rule.id in REGISTRY:
                raise ValueError(f"custom[{i}].id: {rule.id!r} is a built-in rule's id")
            if rule.id in seen:
                raise ValueError(f"custom[{i}].id: rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    def rule(self, rule_id: str) -> RuleConfig:
        """The table of a built-in or user-defined rule; ``KeyError`` for an unknown id."""
        if rule_id in REGISTRY:
            table: RuleConfig = getattr(self, rule_id)
            return table
        for rule in self.custom:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


@dataclass(frozen=True)
class RuleContext:
    """What every rule may know: the sweep's "now", its id, the rules' configuration, and the
    time zone days are counted in (``today`` is the date there)."""

    now: datetime
    config: RuleTables
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
    """A registered built-in rule. ``defaults`` is its ``[rules.<id>]`` table when the config
    does not set it: the table's type (its keys) and every default, declared beside the rule's
    function. ``event`` rules report something that happened once: their finding resolves itself
    on the next sweep and no "resolved" notice is sent for it."""

    kind: Kind
    fn: Callable[..., Any]
    defaults: RuleConfig
    event: bool = False


REGISTRY: dict[str, RuleSpec] = {}  # the one list of built-in rules, in the README's order


def rule(
    rule_id: str, kind: Kind = "number", *, defaults: RuleConfig, event: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the built-in rule ``rule_id``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[rule_id] = RuleSpec(kind, fn, defaults, event)
        return fn

    return register


def event_rules() -> frozenset[str]:
    """Ids of the rules whose findings resolve themselves (no "resolved" notice)."""
    return frozenset(rid for rid, spec in REGISTRY.items() if spec.event)


# --- drafts and messages ----------------------------------------------------------------------


def draft(
    rule_id: str,
    cfg: RuleConfig,
    rec: NumberRecord,
    message: str,
    *,
    severity: str | None = None,
    due_at: datetime | None = None,
    tier: int | None = None,
) -> FindingDraft:
    return FindingDraft(
        rule=rule_id,
        subject=rec.id,
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
    return "none" if amount is None else money_text(amount, currency)
