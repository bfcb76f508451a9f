"""User-defined rules from ``[[rules.custom]]``: the config compiled their conditions and
message template at load time (``monitor.conditions``); here they meet a number."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.model import FindingDraft
from monitor.rules.base import RuleConfig, RuleContext, Subject, UserRuleConfig, draft, show


def user_rule(cfg: UserRuleConfig) -> Callable[[Subject, RuleConfig, RuleContext], Any]:
    """The rule function of ``cfg``: a draft when its conditions hold for the number's JSON as
    the API sent it, with the severity of the account's override, if any."""
    test, render = cfg.compiled()

    def run(s: Subject, effective: RuleConfig, ctx: RuleContext) -> FindingDraft | None:
        raw = s.raw
        if not test(raw, ctx.day):
            return None
        return draft(cfg.id, effective, s.rec, render(raw, show))

    return run
