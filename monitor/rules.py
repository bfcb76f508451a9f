"""Built-in rules and their registry: pure functions of (number, context) → a finding or None.

A rule reads no clock, database or network: ``RuleContext.now`` and the rule's own config are all
it knows. Rules are registered by id; an id in config that is not registered is a config error
(pydantic's ``extra="forbid"`` on ``[rules]`` enforces that at load time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from monitor.config import SEVERITY_RANK, DateRuleConfig, RuleConfig, RulesConfig
from monitor.model import FindingDraft, NumberRecord

# Numbers in these states are on their way out or already gone; flagging their billing date or
# routing would be noise.
INACTIVE_STATUSES = frozenset({"released", "pending_release", "expired", "inactive"})


@dataclass(frozen=True)
class RuleContext:
    """What every rule may know: the sweep's "now" and the rules configuration."""

    now: datetime
    config: RulesConfig
    today: date = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "today", self.now.date())  # computed once, not per number


RuleFn = Callable[[NumberRecord, RuleContext], FindingDraft | None]
REGISTRY: dict[str, RuleFn] = {}
DESCRIPTIONS: dict[str, str] = {}


def rule(rule_id: str, description: str) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        REGISTRY[rule_id] = fn
        DESCRIPTIONS[rule_id] = description
        return fn

    return register


def _draft(
    rule_id: str, cfg: RuleConfig, num: NumberRecord, message: str, **extra: object
) -> FindingDraft:
    severity = extra.pop("severity", cfg.severity)
    return FindingDraft(
        rule=rule_id,
        subject=num.id,
        severity=str(severity),
        message=message,
        number_id=num.id,
        e164=num.e164,
        account_id=num.account_id,
        monthly_fee=num.monthly_fee,
        currency=num.currency,
        tags=num.tags,
        **extra,  # type: ignore[arg-type]
    )


def tier_for(days: int, cfg: DateRuleConfig) -> int | None:
    """The most urgent reminder tier that ``days`` has crossed (e.g. 7 of 30/14/7/1), if any."""
    crossed = [t for t in cfg.reminders if days <= t]
    return min(crossed) if crossed else None


def tier_severity(base: str, tier: int | None, cfg: DateRuleConfig, days: int) -> str:
    """Severity rises as the date nears: past due or the last tier is critical."""
    if days < 0 or (cfg.reminders and tier is not None and tier == min(cfg.reminders)):
        return max(base, "critical", key=SEVERITY_RANK.__getitem__)
    return base


def _date_rule(
    rule_id: str,
    when: datetime | None,
    label: str,
    cfg: DateRuleConfig,
    num: NumberRecord,
    ctx: RuleContext,
) -> FindingDraft | None:
    if when is None or num.status in INACTIVE_STATUSES:
        return None
    days = (when.date() - ctx.today).days
    if days > cfg.within_days:
        return None
    tier = tier_for(days, cfg)
    if days < 0:
        text = f"{label} {when.date().isoformat()} passed {-days} day(s) ago"
    elif days == 0:
        text = f"{label} is today ({when.date().isoformat()})"
    else:
        text = f"{label} in {days} day(s), on {when.date().isoformat()}"
    return _draft(
        rule_id,
        cfg,
        num,
        text,
        due_at=when,
        tier=tier,
        severity=tier_severity(cfg.severity, tier, cfg, days),
    )


@rule("billing_due", "next billing date within N days (or already past)")
def billing_due(num: NumberRecord, ctx: RuleContext) -> FindingDraft | None:
    cfg = ctx.config.billing_due
    return _date_rule("billing_due", num.next_billing_date, "next billing", cfg, num, ctx)


@rule("expiring", "expires_at within N days (or already past); nothing when the API gives none")
def expiring(num: NumberRecord, ctx: RuleContext) -> FindingDraft | None:
    return _date_rule("expiring", num.expires_at, "expires", ctx.config.expiring, num, ctx)


@rule("missing_application", "no application_id: calls arrive and are hung up")
def missing_application(num: NumberRecord, ctx: RuleContext) -> FindingDraft | None:
    if num.application_id is None and num.status not in INACTIVE_STATUSES:
        cfg = ctx.config.missing_application
        return _draft(
            "missing_application", cfg, num, "no application attached: inbound calls are hung up"
        )
    return None


@rule("blocked", "the number is blocked")
def blocked(num: NumberRecord, ctx: RuleContext) -> FindingDraft | None:
    if num.is_blocked:
        return _draft("blocked", ctx.config.blocked, num, "number is blocked")
    return None


def enabled_rules(config: RulesConfig) -> list[tuple[str, RuleFn]]:
    return [(rid, fn) for rid, fn in REGISTRY.items() if getattr(config, rid).enabled]


class Evaluator:
    """Runs every enabled rule over a stream of numbers and keeps the drafts by (rule, subject)."""

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self._rules = enabled_rules(ctx.config)
        self._fns = [fn for _, fn in self._rules]
        self._rule_ids = [rid for rid, _ in self._rules]
        self.drafts: dict[tuple[str, str], FindingDraft] = {}

    def feed(self, numbers: Iterable[NumberRecord]) -> None:
        """Evaluate ``numbers``; a number fed again replaces what its earlier reading produced."""
        # No index by subject: a number's drafts are keyed (rule, number id), so re-feeding it
        # pops them directly, and the index cost ~20 MB at 1,000,000 numbers.
        for num in numbers:
            for rule_id in self._rule_ids:
                self.drafts.pop((rule_id, num.id), None)
            for fn in self._fns:
                draft = fn(num, self.ctx)
                if draft is not None:
                    self.drafts[(draft.rule, draft.subject)] = draft

    def keep_only(self, subjects: set[str]) -> None:
        """Forget drafts about numbers the authoritative pass did not see (gone mid-sweep)."""
        for key in [k for k in self.drafts if k[1] not in subjects]:
            del self.drafts[key]

    @property
    def rule_ids(self) -> list[str]:
        return [rid for rid, _ in self._rules]


def evaluate(numbers: Iterable[NumberRecord], ctx: RuleContext) -> list[FindingDraft]:
    """Every finding the enabled rules raise about ``numbers`` (one per rule and number)."""
    ev = Evaluator(ctx)
    ev.feed(numbers)
    return list(ev.drafts.values())
