"""Terminal tables: key columns (numbers, ids, amounts) are never cut, free text folds."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from monitor.display import REPORTS, Column, Spec, print_table
from monitor.sandbox import Sandbox
from tests.test_cli import TOKEN, did, write_config


def test_report_table_keeps_ids_and_amounts_whole_at_80_columns() -> None:
    rows = [
        {
            "account_id": f"MA_{i:08d}LONGID",
            "account_name": "A customer with a rather long trading name " * 2,
            "currency": "INR",
            "monthly_rental": Decimal("123456789.50"),
        }
        for i in range(3)
    ]
    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
        print_table(
            REPORTS["costs"],
            rows,
            title="costs [bold]x[/]",
            footer=[
                {"account_id": "*", "currency": "INR", "monthly_rental": Decimal("370370368.50")}
            ],
            console=console,
        )
        text = buf.getvalue()
        for row in rows:
            assert row["account_id"] in text
        assert "123456789.50" in text and "370370368.50" in text
        assert "costs [bold]x[/]" in text  # markup in a title is shown, not applied


LONG_ID = "MA_" + "7" * 52  # 55 characters, as one customer's id came from the API
LONG_MESSAGE = "renewal pending with the carrier, please check the invoice " * 3
FINDING_COLUMNS = Spec(
    (
        *(Column(n) for n in ("rule", "severity", "number", "account", "state", "first seen")),
        Column("message", free_text=True),
    )
)
FINDING_ROW = ["blocked", "critical", "+918012345678", LONG_ID, "open", "2026-11-23"]


def finding_row(message: str) -> dict[str, str]:
    return dict(zip(FINDING_COLUMNS.names, [*FINDING_ROW, message], strict=True))


def test_piped_table_keeps_every_column_whole() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False, color_system=None)
    print_table(FINDING_COLUMNS, [finding_row(LONG_MESSAGE.strip())], console=console)
    (line,) = [ln for ln in buf.getvalue().splitlines() if LONG_ID in ln]
    for value in [*FINDING_ROW, LONG_MESSAGE.strip()]:
        assert f"│ {value} " in line
    assert "┃┃" not in buf.getvalue()  # no zero-width column


def test_terminal_table_folds_only_free_text() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    print_table(FINDING_COLUMNS, [finding_row(LONG_MESSAGE.strip())], console=console)
    lines = buf.getvalue().splitlines()
    first = next(ln for ln in lines if LONG_ID in ln)
    for value in ("blocked", "critical", "+918012345678", LONG_ID, "open", "2026-11-23"):
        assert f"│ {value} " in first
    message = " ".join(ln.split("│")[-2].strip() for ln in lines if ln.startswith("│"))
    assert " ".join(message.split()) == " ".join(LONG_MESSAGE.split())  # folded, all there
    assert max(len(ln) for ln in lines) < len(first) + 1 and "┃┃" not in buf.getvalue()


def test_findings_piped_and_to_a_file_keep_every_column(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(
        tmp_path,
        sandbox,
        f"""
[[rules.custom]]
id = "blocked_long"
severity = "critical"
message = "{LONG_MESSAGE.strip()}"
when = {{ path = "is_blocked", eq = true }}
""",
    )
    nid = next(iter(sandbox.inventory.ids()))
    item = sandbox.inventory.update(nid, is_blocked=True, account_id=LONG_ID)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    env.pop("COLUMNS", None)
    command = [sys.executable, "-m", "monitor", "--config", str(cfg), "findings"]
    piped = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    with (tmp_path / "f.txt").open("w") as file:
        subprocess.run(command, env=env, stdout=file, check=True)
    for text in (piped, (tmp_path / "f.txt").read_text()):
        line = next(ln for ln in text.splitlines() if "blocked_long" in ln)
        for value in (item["e164"], LONG_ID, "critical", "open", LONG_MESSAGE):
            assert f"│ {value.strip()} " in line
        assert re.search(r"│ \d{4}-\d\d-\d\d │", line)  # first seen
        assert "┃┃" not in text


def test_report_table_never_folds_a_number_id() -> None:
    rows = [{"e164": "+918012345678", "number_id": LONG_ID, "region": "Maharashtra " * 6}]
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    only = ["e164", "number_id", "region"]
    print_table(REPORTS["inventory"], rows, title="inventory", only=only, console=console)
    assert f"│ {LONG_ID} │" in buf.getvalue()


def test_a_digest_preview_is_scrubbed_like_every_other_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The next digest is composed fresh for a preview (the outbox scrubs what it stores, not
    this): its body and Block Kit JSON pass the scrubber on their way to stdout."""
    from monitor import redact
    from monitor.alerts.compose import Message
    from monitor.alerts.plan import Preview
    from monitor.config import ChannelConfig
    from monitor.display import print_previews

    secret = "tok-8d1e5b3a7c"
    redact.remember([secret])
    chat = ChannelConfig(name="chat", url="json://127.0.0.1/x")
    slack = ChannelConfig(name="slack", url="slack://T000A/B000B/abcdefghijklmnop")
    body = Message("t", f"a tag {secret}", "markdown")
    blocks = Message("t", "b", "markdown", {"slack": [{"text": secret}]})
    previews = [Preview(chat, message=body), Preview(slack, message=blocks)]
    assert print_previews(previews, None, None) == 2
    shown = capsys.readouterr().out
    assert secret not in shown and shown.count("***") == 2
