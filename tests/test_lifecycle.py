"""The finding lifecycle as pure functions: what opens, updates, re-arms and resolves (``decide``),
and what each channel has already been told (``told``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from monitor.lifecycle import Announced, OpenFinding, decide, told
from monitor.model import FindingDraft

NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)
DUE = NOW + timedelta(days=5)


def draft(subject: str, **kw: object) -> FindingDraft:
    fields: dict[str, object] = {"account_id": "A", "due_at": DUE, "tier": 7, **kw}
    message = "next billing in 5 day(s)"
    return FindingDraft("billing_due", subject, "warning", message, **fields)  # type: ignore[arg-type]


def open_row(fid: int, subject: str, **kw: object) -> OpenFinding:
    d = draft(subject)
    row = OpenFinding(
        fid,
        d.rule,
        subject,
        d.severity,
        d.message,
        d.due_at,
        d.tier,
        None,
        "A",
        (),
        None,
        None,
        None,
    )
    return replace(row, **kw)  # type: ignore[arg-type]


def test_a_complete_sweep_opens_updates_rearms_and_resolves() -> None:
    drafts = {
        ("billing_due", "new"): draft("new"),
        ("billing_due", "same"): draft("same"),
        ("billing_due", "later"): draft("later", due_at=DUE + timedelta(days=30), tier=None),
        ("billing_due", "moved"): draft("moved", account_id="B"),
    }
    rows = [
        open_row(1, "same"),
        open_row(2, "later"),
        open_row(3, "moved"),
        open_row(4, "fixed"),
        open_row(5, "off", rule="expiring"),  # a rule this sweep did not evaluate
    ]
    changes = decide(drafts, rows, ["billing_due"], NOW)
    assert [d.subject for d in changes.opened] == ["new", "moved"]
    assert [(fid, values["rearmed_at"]) for fid, values in changes.updated] == [(2, NOW)]
    assert sorted(changes.resolved) == [3, 4]  # changed hands, and no longer flagged


def test_a_due_date_moved_later_rearms_only_the_tiers_it_left() -> None:
    """A tier is announced again only once it is crossed again: a date moved later in its tier
    (the same day, or a later one) re-arms nothing; one moved back past a tier re-arms."""
    drafts = {
        ("billing_due", "hours"): draft("hours", due_at=DUE + timedelta(hours=9)),  # same day
        ("billing_due", "day"): draft("day", due_at=DUE + timedelta(days=1)),  # 6 days: tier 7
        ("billing_due", "tier"): draft("tier", due_at=DUE + timedelta(days=5), tier=14),
        ("billing_due", "out"): draft("out", due_at=DUE + timedelta(days=30), tier=None),
        ("billing_due", "nearer"): draft("nearer", due_at=DUE - timedelta(days=4), tier=1),
    }
    earlier = NOW - timedelta(days=20)
    rows = [
        open_row(1, "hours"),
        open_row(2, "day", rearmed_at=earlier),  # a re-arm of before is kept as it was
        open_row(3, "tier"),
        open_row(4, "out"),
        open_row(5, "nearer"),
    ]
    changes = decide(drafts, rows, ["billing_due"], NOW)
    rearmed = {fid: values["rearmed_at"] for fid, values in changes.updated}
    assert rearmed == {1: None, 2: earlier, 3: NOW, 4: NOW, 5: None}


def test_a_partial_sweep_resolves_nothing_not_even_a_number_that_changed_hands() -> None:
    """It cannot vouch that a problem is gone, and resolves nothing at all: a number that changed
    hands keeps its old customer's finding, untouched, until a complete sweep moves it."""
    drafts = {
        ("billing_due", "moved"): draft("moved", account_id="B", due_at=DUE + timedelta(days=1)),
        ("billing_due", "shown"): draft("shown", due_at=DUE + timedelta(days=1)),
    }
    rows = [open_row(3, "moved"), open_row(4, "unseen"), open_row(5, "shown")]
    changes = decide(drafts, rows, ["billing_due"], NOW, complete=False)
    assert changes.resolved == [] and changes.opened == []
    assert [fid for fid, _ in changes.updated] == [5]  # what it did read still updates


def test_told_folds_notifications_and_forgets_tiers_from_before_a_rearm() -> None:
    rearmed = NOW - timedelta(days=1)
    notes = [
        (1, "ops", "opened", 14, NOW - timedelta(days=9), None),
        (1, "ops", "reminded", 7, NOW - timedelta(days=2), None),
        (2, "ops", "opened", 14, NOW - timedelta(days=9), rearmed),
        (2, "ops", "reminded", 7, NOW - timedelta(days=2), rearmed),  # before the re-arm
        (2, "mail", "opened", 3, NOW, rearmed),
        (3, "ops", "opened", None, NOW - timedelta(days=9), None),
        (3, "ops", "resolved", None, NOW, None),
    ]
    assert told(notes) == {
        (1, "ops"): Announced(opened=True, tier=7),
        (2, "ops"): Announced(opened=True, tier=None),
        (2, "mail"): Announced(opened=True, tier=3),
        (3, "ops"): Announced(opened=True, resolved=True),
    }
