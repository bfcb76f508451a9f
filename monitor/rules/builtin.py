"""The built-in number rules: pure functions of (number, its effective config, context), each
registered with its ``[rules.<id>]`` table's type and defaults.

Each returns a ``FindingDraft`` or None. A field the item lacks, or holds in an odd type, means
"nothing to say", never an error. Dates are compared as calendar days in the rules' time zone.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime

from pydantic import Field, field_validator

from monitor.conditions import as_decimal
from monitor.model import FindingDraft, flag, parse_time
from monitor.rules.base import (
    INACTIVE_STATUSES,
    KNOWN_STATUSES,
    RuleConfig,
    RuleContext,
    Subject,
    draft,
    rule,
    show,
)


class DateRuleConfig(RuleConfig):
    """The table of a rule about a date: how many days ahead it looks, and the reminder tiers
    (days before the date) at which a finding is announced again."""

    within_days: int = Field(default=7, ge=0, le=3650)
    reminders: tuple[int, ...] = ()

    @field_validator("reminders")
    @classmethod
    def _sorted_tiers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= day <= 3650 for day in value):
            raise ValueError("reminder tiers are days before the date, from 0 to 3650")
        return tuple(sorted(set(value), reverse=True))


def tier_for(days: int, cfg: DateRuleConfig) -> int | None:
    """The most urgent reminder tier that ``days`` has crossed (e.g. 7 of 30/14/7/1), if any."""
    return min((t for t in cfg.reminders if days <= t), default=None)


def _date_finding(
    rule_id: str,
    when: datetime | None,
    label: str,
    cfg: DateRuleConfig,
    s: Subject,
    ctx: RuleContext,
) -> FindingDraft | None:
    if when is None or s.rec.status in INACTIVE_STATUSES:
        return None
    day = ctx.local_date(when)
    days = (day - ctx.today).days
    if days > cfg.within_days:
        return None
    tier = tier_for(days, cfg)
    if days < 0:
        text = f"{label} {day.isoformat()} passed {-days} day(s) ago"
    elif days == 0:
        text = f"{label} is today ({day.isoformat()})"
    else:
        text = f"{label} in {days} day(s), on {day.isoformat()}"
    # Severity rises as the date nears: past due or the last reminder tier is critical.
    last_tier = tier is not None and tier == min(cfg.reminders)
    severity = "critical" if days < 0 or last_tier else cfg.severity
    return draft(rule_id, cfg, s.rec, text, due_at=when, tier=tier, severity=severity)


@rule("billing_due", defaults=DateRuleConfig(within_days=7, severity="warning"))
def billing_due(s: Subject, cfg: DateRuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """next billing date within N days (or already past)"""
    return _date_finding("billing_due", s.rec.next_billing_date, "next billing", cfg, s, ctx)


@rule("expiring", defaults=DateRuleConfig(within_days=14, severity="warning"))
def expiring(s: Subject, cfg: DateRuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """expires_at within N days (or already past); nothing when the API gives none"""
    return _date_finding("expiring", s.rec.expires_at, "expires", cfg, s, ctx)


@rule("missing_application", defaults=RuleConfig(severity="critical"))
def missing_application(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """no application_id: calls arrive and are hung up"""
    if s.rec.application_id is None and s.rec.status not in INACTIVE_STATUSES:
        text = "no application attached: inbound calls are hung up"
        return draft("missing_application", cfg, s.rec, text)
    return None


@rule("blocked", defaults=RuleConfig(severity="critical"))
def blocked(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """the number is blocked"""
    if s.rec.is_blocked:
        return draft("blocked", cfg, s.rec, "number is blocked")
    return None


@rule("not_active", defaults=RuleConfig(severity="warning"))
def not_active(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """status is not active (pending, released, inactive, expired or unknown)"""
    status = s.rec.status
    if status in ("active", "blocked"):  # blocked numbers are the blocked rule's
        return None
    if status in KNOWN_STATUSES:
        text = f"status is {show(status)}, not active"
    elif status == "unknown":
        text = "the API gave no status: the number may not be in service"
    else:
        text = f"status is {show(status)}, a status the monitor does not know"
    return draft("not_active", cfg, s.rec, text)


@rule("kyc_pending", defaults=RuleConfig(severity="warning"))
def kyc_pending(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """Aadhaar verification required and not done"""
    if s.rec.status in INACTIVE_STATUSES:
        return None
    raw = s.raw
    if flag(raw.get("aadhaar_verification_required")) and not flag(raw.get("aadhaar_verified")):
        return draft("kyc_pending", cfg, s.rec, "Aadhaar verification is required and not done")
    return None


@rule("voice_disabled", defaults=RuleConfig(severity="critical"))
def voice_disabled(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """voice off on a number with an application: it cannot take calls"""
    if s.rec.application_id is None or s.rec.status in INACTIVE_STATUSES:
        return None
    raw = s.raw
    caps = raw.get("capabilities")
    why = []
    if flag(raw.get("voice_enabled")) is False:
        why.append("voice_enabled is false")
    if isinstance(caps, dict) and flag(caps.get("voice")) is False:
        why.append("the number has no voice capability")
    if not why:
        return None
    text = f"{' and '.join(why)}, yet application {show(s.rec.application_id)} expects calls"
    return draft("voice_disabled", cfg, s.rec, text)


@rule("trial_number", defaults=RuleConfig(severity="info"))
def trial_number(s: Subject, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """a trial number"""
    if s.rec.status not in INACTIVE_STATUSES and flag(s.raw.get("is_trial_number")):
        return draft("trial_number", cfg, s.rec, "trial number")
    return None


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day when it has no such day."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    if year > 9999:
        return date.max
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@rule("commitment_ends", defaults=DateRuleConfig(within_days=30, severity="info"))
def commitment_ends(s: Subject, cfg: DateRuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """the minimum commitment ends within N days"""
    if s.rec.status in INACTIVE_STATUSES:
        return None
    raw = s.raw
    months = as_decimal(raw.get("minimum_commitment_months"))
    if months is None or months <= 0 or months != months.to_integral() or months > 1200:
        return None
    start = parse_time(raw.get("purchased_at")) or parse_time(raw.get("created_at"))
    if start is None:
        return None
    end = add_months(ctx.local_date(start), int(months))
    days = (end - ctx.today).days
    if days < 0 or days > cfg.within_days:
        return None
    when = f"today ({end.isoformat()})" if days == 0 else f"in {days} day(s), on {end.isoformat()}"
    text = f"minimum commitment of {int(months)} month(s) ends {when}"
    due = datetime.combine(end, datetime.min.time(), ctx.tz)
    return draft("commitment_ends", cfg, s.rec, text, due_at=due, tier=tier_for(days, cfg))
