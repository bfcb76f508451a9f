"""Rules over a sweep as a whole: changes between two complete sweeps, and customer accounts.

Change rules get a number's stored version in the previous complete sweep (``before``) and in
this one (``after``); either is None when the number was added or is gone. They run only on a
complete sweep that has a complete predecessor, so a failed or partial read never reports a
number as gone. Their findings are events: told once, resolved silently by the next sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from monitor.conditions import as_decimal
from monitor.model import FindingDraft
from monitor.rules.base import RuleConfig, RuleContext, Table, money, row_draft, rule, show

Row = Mapping[Any, Any]  # RowMapping or dict


@rule("disappeared", "change", defaults=RuleConfig(severity="warning"), event=True)
def disappeared(
    before: Row | None, after: Row | None, cfg: RuleConfig, ctx: RuleContext
) -> list[FindingDraft]:
    """in the last complete sweep, absent from this one"""
    if before is None or after is not None:
        return []
    text = (
        f"no longer in the inventory (was {show(before.get('status'))} "
        f"on account {show(before.get('account_id'))})"
    )
    return [row_draft("disappeared", cfg, before, text, str(before.get("number_id")))]


ChangeKind = Literal["application", "blocked", "monthly_fee", "account"]


class ChangedConfig(RuleConfig):
    """``changed``'s table: which kinds of change it tells."""

    changes: tuple[ChangeKind, ...] = ("application", "blocked", "monthly_fee", "account")


@rule("changed", "change", defaults=ChangedConfig(severity="info"), event=True)
def changed(
    before: Row | None, after: Row | None, cfg: ChangedConfig, ctx: RuleContext
) -> list[FindingDraft]:
    """application, blocked, monthly fee or account changed"""
    if before is None or after is None:
        return []
    out = []

    def tell(what: str, text: str) -> None:
        # The sweep's id keeps each change its own finding: a second change to the same field
        # next week is news again, not an update of last week's.
        if what in cfg.changes:
            subject = f"{after.get('number_id')}:{what}@{ctx.sweep_id or 0}"
            out.append(row_draft("changed", cfg, after, text, subject))

    old_app, new_app = before.get("application_id"), after.get("application_id")
    if old_app != new_app:
        if new_app is None:
            tell("application", f"application {show(old_app)} was removed: calls are hung up")
        elif old_app is None:
            tell("application", f"application {show(new_app)} was attached")
        else:
            tell("application", f"application changed from {show(old_app)} to {show(new_app)}")
    if bool(before.get("is_blocked")) != bool(after.get("is_blocked")):
        tell("blocked", "number was blocked" if after.get("is_blocked") else "number was unblocked")
    old_fee, old_currency = as_decimal(before.get("monthly_fee")), before.get("currency")
    new_fee, new_currency = as_decimal(after.get("monthly_fee")), after.get("currency")
    if old_fee != new_fee or (old_fee is not None and old_currency != new_currency):
        old, new = money(old_fee, old_currency), money(new_fee, new_currency)
        tell("monthly_fee", f"monthly fee changed from {old} to {new}")
    old_account, new_account = before.get("account_id"), after.get("account_id")
    if old_account != new_account:
        tell("account", f"moved from account {show(old_account)} to {show(new_account)}")
    return out


# --- accounts ---------------------------------------------------------------------------------

# Account states in which a customer is expected to take calls; others (suspended, closed...)
# are left alone by the account rules.
LIVE_ACCOUNT_STATUSES = frozenset({"", "active"})


@dataclass
class AccountView:
    """A customer account as the account rules see it: the API's fields (none when the account
    is known from its numbers only) and how many of its numbers are in each status."""

    account_id: str
    name: str | None = None
    status: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


@rule("no_active_number", "account", defaults=RuleConfig(severity="critical"))
def no_active_number(acct: AccountView, cfg: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
    """a customer account with no active number"""
    if (acct.status or "").casefold() not in LIVE_ACCOUNT_STATUSES or acct.counts.get("active"):
        return None
    label = show(acct.account_id) + (f" ({show(acct.name)})" if acct.name else "")
    if sum(acct.counts.values()):
        detail = ", ".join(f"{n} {show(s)}" for s, n in sorted(acct.counts.items()))
        text = f"account {label} has no active number ({detail}): its inbound calls fail"
    else:
        text = f"account {label} has no number at all: it cannot receive inbound calls"
    return FindingDraft(
        rule="no_active_number",
        subject=f"account:{acct.account_id}",
        severity=cfg.severity,
        message=text,
        account_id=acct.account_id,
    )


# --- availability -----------------------------------------------------------------------------


class AvailabilityWatch(Table):
    """One watched place: a country (ISO-2), optionally a region, and the fewest numbers for
    sale there that are not worth a finding."""

    country: str = Field(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    region: str | None = Field(default=None, min_length=1, max_length=128)
    min_available: int = Field(default=5, ge=1, le=100_000)

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class AvailabilityConfig(RuleConfig):
    """The optional availability watch: nothing is requested until ``watch`` lists a pair."""

    watch: tuple[AvailabilityWatch, ...] = ()

    @model_validator(mode="after")
    def _checked(self) -> AvailabilityConfig:
        if not (self.include.is_empty and self.exclude.is_empty) or self.override:
            raise ValueError(
                "include, exclude and override do not apply to a watched place (it has no "
                "account, tags or status): list the places to watch in watch"
            )
        pairs = [(w.country, (w.region or "").casefold()) for w in self.watch]
        if len(pairs) != len(set(pairs)):
            raise ValueError("watch: each country/region pair may be listed once")
        return self


@rule("low_availability", "availability", defaults=AvailabilityConfig(severity="warning"))
def low_availability(
    watch: AvailabilityWatch, available: int, cfg: RuleConfig, ctx: RuleContext
) -> FindingDraft | None:
    """fewer than N WhatsApp-capable numbers for sale in a watched place"""
    if available >= watch.min_available:
        return None
    place = watch.country + (f"/{show(watch.region)}" if watch.region else "")
    return FindingDraft(
        rule="low_availability",
        subject=f"availability:{watch.country}:{(watch.region or '*').casefold()}"[:128],
        severity=cfg.severity,
        message=(
            f"only {available} WhatsApp-capable number(s) for sale in {place} "
            f"(watching for at least {watch.min_available})"
        ),
    )
