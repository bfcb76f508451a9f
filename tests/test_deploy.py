"""The files in deploy/ against the running service: every metric the Prometheus rules and the
Grafana dashboard name is exported by ``/metrics`` after a real sweep of the sandbox, so neither
can drift from the code; promtool accepts the rules and the scraped exposition."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.health import SWEEP_OUTCOMES
from monitor.sandbox import Sandbox
from monitor.store.db import FINISHED_SWEEP_STATES
from tests.test_service import (  # the running-service fixture and its helpers
    COMPLETE,
    Running,
    base_config,
    free_port,
    launch,
    wait_for,
)

__all__ = ["launch"]  # a fixture, used by name

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "did-monitor.rules.yml"
BOARD = ROOT / "deploy" / "grafana" / "did-monitor.json"
METRIC = re.compile(r"\bdid_monitor_[a-z0-9_]+")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def rule_expressions() -> list[str]:
    """Every ``expr:`` of the rules file (folded or on one line)."""
    exprs: list[str] = []
    lines = RULES.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        key, _, rest = line.strip().partition(":")
        if key != "expr":
            continue
        if rest.strip() not in (">-", "|", ">"):
            exprs.append(rest)
            continue
        indent = len(line) - len(line.lstrip()) + 2
        body = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) < indent:
                break
            body.append(nxt.strip())
        exprs.append(" ".join(body))
    return exprs


def board_expressions() -> list[str]:
    board = json.loads(BOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in board["panels"] for t in p.get("targets", ())]


def named_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)}


def test_the_rules_and_the_board_name_metrics() -> None:
    rules, board = named_metrics(rule_expressions()), named_metrics(board_expressions())
    assert len(rule_expressions()) >= 7 and len(rules) >= 5
    assert {"did_monitor_rental_due", "did_monitor_monthly_rental"} <= board
    assert (
        "did_monitor_channel_consecutive_failures" in rules
        and "did_monitor_last_sweep_outcome" in rules
    )


OUTCOME_MATCHER = re.compile(r'\b(did_monitor_[a-z0-9_]+)\{[^}]*\boutcome=~?"([^"]*)"')


def test_the_outcomes_the_rules_and_board_name_are_exported() -> None:
    """An outcome named in deploy/ that the code never exports would be a rule that never fires
    (a sweep outcome the service renamed, or one it does not count)."""
    exported = {
        "did_monitor_sweeps_total": set(SWEEP_OUTCOMES),
        "did_monitor_last_sweep_outcome": set(FINISHED_SWEEP_STATES),
    }
    named = 0
    for metric, values in OUTCOME_MATCHER.findall(" ".join(rule_expressions())):
        assert metric in exported, metric
        assert set(values.split("|")) <= exported[metric], (metric, values)
        named += 1
    assert named >= 2  # the failed/aborted and the partial alerts
    # the board's panels over an outcome label say which outcomes there are: all of them
    board = json.loads(BOARD.read_text(encoding="utf-8"))
    for panel in board["panels"]:
        metrics = named_metrics([t["expr"] for t in panel.get("targets", ())])
        for metric in metrics & exported.keys():
            missing = {o for o in exported[metric] if o not in panel["description"]}
            assert not missing, f"panel {panel['title']!r} does not name {missing}"


def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_metric_the_rules_and_board_use_is_exported(
    sandbox: Sandbox, tmp_path: Path, launch: Callable[[str, dict[str, Any]], Running]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = base_config(sandbox, db_url, free_port(), run_on_start=True)
    config["channels"] = [{"name": "ops", "url": "json://127.0.0.1:9/hook"}]  # nobody listens
    service = launch("monitor", config)
    wait_for(
        lambda: (service.metric(COMPLETE) or 0) >= 1, what=f"a complete sweep; log:\n{service.log}"
    )
    response = service.get("/metrics")
    assert response is not None and response.status_code == 200
    exposition = response.text
    exported = {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    wanted = named_metrics(rule_expressions()) | named_metrics(board_expressions())
    assert wanted - exported == set(), f"named in deploy/ but not exported: {wanted - exported}"
    # figures the sandbox's inventory must give: rental per currency and what falls due
    assert any(m.startswith("did_monitor_monthly_rental{") for m in exposition.splitlines())
    assert 'within="30d"' in exposition and 'within="7d"' in exposition
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    service.terminate()
