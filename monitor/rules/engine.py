"""The evaluator: runs every enabled rule, built-in and user-defined, over one sweep.

Each rule's scope (``include``/``exclude``) and per-account overrides come from the config,
where they were resolved once at load. A rule that raises on an odd item is recorded in
``errors`` (and logged once per rule) and the sweep goes on: one bad item never fails a sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import monitor.rules.builtin  # noqa: F401  (registers the built-in rules)
from monitor.conditions import RegexTimeout
from monitor.model import FindingDraft, NumberRecord
from monitor.rules.base import (
    REGISTRY,
    Kind,
    RuleConfig,
    RuleContext,
    RuleTables,
    ScopeKey,
    Subject,
)
from monitor.rules.events import AccountView, AvailabilityConfig, AvailabilityWatch, Row
from monitor.rules.user import user_rule

log = logging.getLogger(__name__)


@dataclass
class RuleFailure:
    """How often a rule raised in one sweep, and the first case."""

    count: int
    subject: str
    error: str


@dataclass(frozen=True)
class _Active:
    rule_id: str
    cfg: RuleConfig
    fn: Callable[..., Any]
    scoped: bool  # has include/exclude tables (most rules do not: skip the check)
    overridden: bool  # has per-account overrides
    timed: bool = False  # a user rule: its time over the sweep is bounded (USER_RULE_BUDGET)


def _enabled(cfg: RuleConfig) -> bool:
    """On for someone: enabled, or an override turns it on for some accounts."""
    return cfg.enabled or any(bool(o.get("enabled")) for o in cfg.override)


def _rules(config: RuleTables) -> Iterator[tuple[str, Kind, RuleConfig, Callable[..., Any]]]:
    """Every rule as (id, kind, its table, its function): the built-in ones (``REGISTRY``), then
    the user-defined ones (``[[rules.custom]]``)."""
    for rule_id, spec in REGISTRY.items():
        yield rule_id, spec.kind, config.rule(rule_id), spec.fn
    for user in config.custom:
        yield user.id, "number", user, user_rule(user)


USER_RULE_BUDGET = 60.0  # seconds a user rule may take over one sweep (built-in ones: ~µs each)


def rule_ids(config: RuleTables, *, enabled_only: bool = False) -> list[str]:
    """The ids of every rule, built-in and user-defined (or of those on for someone): the one
    list that ``silence add`` checks ``--rule`` against and the dashboard's filter offers."""
    return [rid for rid, _, cfg, _ in _rules(config) if _enabled(cfg) or not enabled_only]


class Evaluator:
    """Runs every enabled rule over a stream of numbers and keeps the drafts by (rule, subject).

    ``feed`` takes the numbers page by page; ``keep_only`` forgets numbers a later pass did not
    see; ``feed_changes`` takes (before, after) version pairs; ``finish`` runs the account rules.
    """

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self._active: dict[Kind, list[_Active]] = {kind: [] for kind in get_args(Kind)}
        for rid, kind, cfg, fn in _rules(ctx.config):
            if _enabled(cfg):
                unscoped = cfg.include.is_empty and cfg.exclude.is_empty
                scoped = not unscoped and kind != "availability"  # a place has no account or tags
                timed = rid not in REGISTRY  # a user rule
                self._active[kind].append(_Active(rid, cfg, fn, scoped, bool(cfg.override), timed))
        # rule → subject → draft: the writer takes (and frees) one rule's drafts at a time
        self.by_rule: dict[str, dict[str, FindingDraft]] = {}
        self.errors: dict[str, RuleFailure] = {}
        self._skipped: set[str] = set()
        self._spent: dict[str, float] = {}  # seconds each user rule took so far (timed ones)

    @property
    def rule_ids(self) -> list[str]:
        """The rules this evaluation ran: only their findings may be resolved by it."""
        every = (a for kind in self._active.values() for a in kind)
        return [a.rule_id for a in every if a.rule_id not in self._skipped]

    def _run(self, kind: Kind, item: tuple[Any, ...], scope: ScopeKey, subject: str) -> None:
        """Run each ``kind`` rule that is on and in ``scope`` over ``item`` and keep what it
        finds (a draft or None; a list of drafts from a change rule); one that raises is
        recorded instead. (``feed``, the hot path, has its own loop.)"""
        for active in self._active[kind]:
            cfg = active.cfg.for_account(scope[0]) if active.overridden else active.cfg
            if not cfg.enabled or (active.scoped and not active.cfg.in_scope(scope)):
                continue
            try:
                found = active.fn(*item, cfg, self.ctx)
            except Exception as exc:  # an odd item must not fail the sweep
                self._fail(active.rule_id, subject, exc)
                continue
            for draft in found if isinstance(found, list) else (found,):
                if draft is not None:
                    self.by_rule.setdefault(draft.rule, {})[draft.subject] = draft

    def _fail(self, rule_id: str, subject: str, exc: Exception) -> None:
        failure = self.errors.get(rule_id)
        if failure is None:
            self.errors[rule_id] = RuleFailure(1, subject, f"{type(exc).__name__}: {exc}")
            log.warning(
                "rule %s failed on %s (%s: %s); it goes on with the other items",
                rule_id,
                subject,
                type(exc).__name__,
                exc,
            )
        else:
            failure.count += 1

    def _too_slow(self, active: _Active, subject: str, exc: RegexTimeout) -> None:
        """A user rule's regex gave up on ``subject``: the rule is left out of the rest of this
        sweep, so its open findings stay as they are (none is resolved or opened on a partial
        reading) and the sweep pays the time bound once, not once per number."""
        failure = self.errors.setdefault(
            active.rule_id, RuleFailure(0, subject, f"{type(exc).__name__}: {exc}")
        )
        failure.count += 1
        self.skip(active.rule_id)
        self._active["number"].remove(active)
        log.warning(
            "rule %s is left out of this sweep (its findings stay as they are): %s on %s",
            active.rule_id,
            exc,
            subject,
        )

    def _timed_call(self, active: _Active, subject: Subject, cfg: RuleConfig) -> Any:
        """A user rule's evaluation, its time added to the rule's spend over this sweep; past
        ``USER_RULE_BUDGET`` it is too slow, as a regex that times out on one value is (a
        pattern at 0.5 s a value never times out, but would take days over 1,000,000)."""
        started = time.perf_counter()
        try:
            return active.fn(subject, cfg, self.ctx)
        finally:
            spent = self._spent.get(active.rule_id, 0.0) + time.perf_counter() - started
            self._spent[active.rule_id] = spent
            if spent > USER_RULE_BUDGET:
                raise RegexTimeout(
                    f"rules.custom {active.rule_id} took {spent:.0f} s over this sweep, more "
                    f"than {USER_RULE_BUDGET:g} s: simplify its conditions"
                )

    def feed(self, numbers: Iterable[NumberRecord]) -> None:
        """Evaluate ``numbers``; a number fed again replaces what its earlier reading produced."""
        ctx = self.ctx
        # Each rule's drafts are keyed by number id (a rule's draft is about the number it was
        # given), so re-feeding a number pops them directly: no index by subject, which cost
        # ~20 MB at 1,000,000 numbers.
        rules = [(a, self.by_rule.setdefault(a.rule_id, {})) for a in self._active["number"]]
        for num in numbers:
            subject = Subject(num)
            for active, drafts in rules:
                drafts.pop(num.id, None)
                cfg = active.cfg.for_account(num.account_id) if active.overridden else active.cfg
                if not cfg.enabled:
                    continue
                if active.scoped and not active.cfg.in_scope(
                    (num.account_id, num.country, num.region, num.tags, num.status)
                ):
                    continue
                try:
                    if active.timed:
                        found = self._timed_call(active, subject, cfg)
                    else:
                        found = active.fn(subject, cfg, ctx)
                except RegexTimeout as exc:  # a regex too slow to trust: see _too_slow
                    self._too_slow(active, num.e164 or num.id, exc)
                    rules = [r for r in rules if r[0] is not active]  # from the next number
                    continue
                except Exception as exc:  # an odd item must not fail the sweep
                    self._fail(active.rule_id, num.e164 or num.id, exc)
                    continue
                if found is not None:
                    drafts[found.subject] = found

    @property
    def drafts(self) -> dict[tuple[str, str], FindingDraft]:
        """Every draft, by (rule, subject)."""
        return {(d.rule, d.subject): d for ds in self.by_rule.values() for d in ds.values()}

    def keep_only(self, subjects: set[str]) -> None:
        """Forget drafts about numbers the authoritative pass did not see (gone mid-sweep)."""
        for drafts in self.by_rule.values():
            for subject in [s for s in drafts if s not in subjects]:
                del drafts[subject]

    @property
    def wants_accounts(self) -> bool:
        return bool(self._active["account"])

    @property
    def wants_changes(self) -> bool:
        return bool(self._active["change"])

    def feed_changes(self, changes: Iterable[tuple[Row | None, Row | None]]) -> None:
        """Run the change rules over (before, after) pairs of one number's versions."""
        for before, after in changes:
            row = after if after is not None else before
            if row is None:
                continue
            get = row.get
            scope = (get("account_id"), get("country"), get("region"), get("tags"), get("status"))
            subject = str(get("e164") or get("number_id"))
            self._run("change", (before, after), scope, subject)

    def finish(
        self,
        accounts: Mapping[str, Row] | None = None,
        statuses: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Run the account rules over every account: those the API listed (``accounts``, by
        id) and those known from their numbers (``statuses``: how many numbers each account
        has in each status, from the store after the sweep's writes)."""
        if not self._active["account"]:
            return
        views: dict[str, AccountView] = {}
        for account_id, info in (accounts or {}).items():
            name, status = info.get("name"), info.get("status")
            views[account_id] = AccountView(
                account_id,
                name if isinstance(name, str) else None,
                status if isinstance(status, str) else None,
            )
        for (account_id, status), n in (statuses or {}).items():
            if account_id:
                view = views.setdefault(account_id, AccountView(account_id))
                view.counts[status] = view.counts.get(status, 0) + n
        for view in views.values():
            scope = (view.account_id, None, None, (), view.status)
            self._run("account", (view,), scope, view.account_id)

    @property
    def watches(self) -> tuple[AvailabilityWatch, ...]:
        """The country/region pairs the availability rules want counted (none: no request)."""
        cfg = self.ctx.config.rule("low_availability")
        if self._active["availability"] and isinstance(cfg, AvailabilityConfig):
            return cfg.watch
        return ()

    def skip(self, rule_id: str) -> None:
        """Leave ``rule_id`` out of this evaluation (its input could not be read): its open
        findings stay as they are rather than resolving."""
        self._skipped.add(rule_id)

    def feed_availability(self, counts: Iterable[tuple[AvailabilityWatch, int]]) -> None:
        """Run the availability rules over (watched place, numbers for sale there)."""
        for watch, available in counts:
            place = (None,) * 5  # no account, and availability rules are never scoped
            self._run("availability", (watch, available), place, watch.country)


def evaluate(numbers: Iterable[NumberRecord], ctx: RuleContext) -> list[FindingDraft]:
    """Every finding the enabled number rules raise about ``numbers`` (one per rule and
    number); the change and account rules need a sweep (see ``Evaluator``)."""
    ev = Evaluator(ctx)
    ev.feed(numbers)
    return list(ev.drafts.values())
