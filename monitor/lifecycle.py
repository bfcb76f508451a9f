"""The finding lifecycle, decided in one place and without I/O: this sweep's drafts and the open
findings → which findings open, which are updated (and whether their reminders re-arm), and
which resolve (``decide``); and a finding's notifications → what each channel has already been
told of it (``told``). The writer reads the open rows and writes the decision; the outbox reads
the notifications; ``alerts.plan_digests`` tells each channel what it has not been told yet."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from monitor.model import FindingDraft

Key = tuple[str, str]  # (rule, subject)


@dataclass(frozen=True, slots=True)
class OpenFinding:
    """What the lifecycle needs of an open finding row."""

    id: int
    rule: str
    subject: str
    severity: str
    message: str
    due_at: datetime | None
    tier: int | None
    e164: str | None
    account_id: str | None
    tags: tuple[str, ...]
    monthly_fee: Decimal | None
    currency: str | None
    rearmed_at: datetime | None


@dataclass
class FindingChanges:
    """The decision: drafts to open, ``(id, values)`` updates, ids to resolve."""

    opened: list[FindingDraft] = field(default_factory=list)
    updated: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


# What a finding shows: a change in any of it updates the open finding.
_SHOWN = ("severity", "message", "due_at", "tier", "e164", "tags", "monthly_fee", "currency")
_shown = operator.attrgetter(*_SHOWN)


def decide(
    drafts: Mapping[Key, FindingDraft],
    open_findings: Iterable[OpenFinding],
    evaluated_rules: Iterable[str],
    now: datetime,
    *,
    complete: bool = True,
) -> FindingChanges:
    """The lifecycle of one sweep; ``complete=False`` for a partial one.

    - A draft with no open finding opens one.
    - An open finding of an evaluated rule with no draft resolves, after a complete sweep only:
      a partial sweep cannot vouch that a problem is gone. Findings of rules not evaluated
      (switched off in config) are left as they were, not announced as fixed.
    - A draft whose number changed hands (another ``account_id``) resolves the old customer's
      finding and opens the new one's, so each customer hears about their own numbers only.
      After a complete sweep only: a partial one resolves nothing, so the old customer's
      finding stays open as it was (one open finding per rule and subject) and the next complete
      sweep hands it over.
    - Otherwise a draft that shows something new updates its finding; a due date moved back out
      of its reminder tier re-arms it (``rearmed_at = now``): reminder tiers announced before
      count no more, and each is announced again as it is crossed again (the tier it now stands
      at included: it was left and is entered anew). A date moved later within its tier (the
      same day, or a day later still short of the next tier) re-arms nothing.
    """
    rules = set(evaluated_rules)
    current = {(f.rule, f.subject): f for f in open_findings if f.rule in rules}
    changes = FindingChanges()
    if complete:
        changes.resolved.extend(f.id for key, f in current.items() if key not in drafts)
    for key, draft in drafts.items():
        found = current.get(key)
        if found is not None and found.account_id != draft.account_id:
            if not complete:
                continue  # the hand-over resolves the old finding: a complete sweep's to make
            changes.resolved.append(found.id)
            found = None
        if found is None:
            changes.opened.append(draft)
            continue
        shown = _shown(draft)
        if shown == _shown(found):
            continue
        values = dict(zip(_SHOWN, shown, strict=True), tags=list(draft.tags))
        values["rearmed_at"] = now if _left_its_tier(found, draft) else found.rearmed_at
        changes.updated.append((found.id, values))
    return changes


def _left_its_tier(found: OpenFinding, draft: FindingDraft) -> bool:
    """Whether the due date moved later and out of the reminder tier the finding stood at (to a
    less urgent one, or past every tier). The tier is the rule's count of days left, made in
    ``rules.timezone``: a date moved within its day, or within its tier, has crossed nothing."""
    later = draft.due_at is not None and found.due_at is not None and draft.due_at > found.due_at
    if not later or found.tier is None:
        return False  # no tier reached yet: nothing announced that could count again
    return draft.tier is None or draft.tier > found.tier


@dataclass
class Announced:
    """What a channel has already been told about one finding."""

    opened: bool = False
    resolved: bool = False
    tier: int | None = None  # the most urgent reminder tier announced since the last re-arm


Notification = tuple[int, str, str, int | None, datetime, datetime | None]
"""(finding id, channel, event, tier, sent at, the finding's ``rearmed_at``)"""


def told(notifications: Iterable[Notification]) -> dict[tuple[int, str], Announced]:
    """What each channel has been told of each finding, by (finding id, channel). A reminder
    tier announced before the finding re-armed (its due date moved out) no longer counts."""
    out: dict[tuple[int, str], Announced] = {}
    for fid, channel, event, tier, at, rearmed_at in notifications:
        state = out.setdefault((fid, channel), Announced())
        if event == "resolved":
            state.resolved = True
            continue
        state.opened = True
        stale = rearmed_at is not None and at < rearmed_at  # announced for an earlier due date
        if tier is not None and not stale and (state.tier is None or tier < state.tier):
            state.tier = tier
    return out
