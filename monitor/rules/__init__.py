"""Rules: pure functions of (item, context) → findings, built-in and user-defined.

``base`` (context, registry, scope), ``builtin`` (number rules), ``events`` (changes between
sweeps, accounts), ``user`` (rules written in the config), ``engine`` (the evaluator).
"""

from __future__ import annotations

from monitor.rules.base import REGISTRY, RuleContext, RuleSpec, Subject, event_rules
from monitor.rules.builtin import tier_for
from monitor.rules.engine import Evaluator, RuleFailure, evaluate, rule_ids

__all__ = [
    "REGISTRY",
    "Evaluator",
    "RuleContext",
    "RuleFailure",
    "RuleSpec",
    "Subject",
    "evaluate",
    "event_rules",
    "rule_ids",
    "tier_for",
]
