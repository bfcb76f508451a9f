"""Rules: pure functions of (item, context) → findings, built-in and user-defined.

``base`` (config tables, context, registry, scope), ``builtin`` (number rules), ``events``
(changes between sweeps, accounts, availability), ``user`` (rules written in the config),
``engine`` (the evaluator). Each built-in rule registers with its ``[rules.<id>]`` table's type
and defaults; ``config.RulesConfig`` derives the ``[rules]`` section from ``REGISTRY``.
"""

from __future__ import annotations

from monitor.rules.base import REGISTRY, RuleContext, event_rules
from monitor.rules.builtin import tier_for
from monitor.rules.engine import Evaluator, evaluate, rule_ids

__all__ = [
    "REGISTRY",
    "Evaluator",
    "RuleContext",
    "evaluate",
    "event_rules",
    "rule_ids",
    "tier_for",
]
