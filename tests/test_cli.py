"""The ``did-monitor`` command end to end as a user runs it: subprocesses, real files, servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor.rules import REGISTRY
from monitor.sandbox import Sandbox
from tests.conftest import FIXED_NOW, HttpReceiver, SmtpSink

TOKEN = "sandbox-token"


def did(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(tmp_path: Path, sandbox: Sandbox, extra: str = "", db: str | None = None) -> Path:
    path = tmp_path / "config.toml"
    db_url = db or f"sqlite:///{tmp_path / 'm.db'}"
    path.write_text(f"""
[vobiz]
base_url = "{sandbox.url}"
auth_id = "{sandbox.auth_id}"
max_requests_per_second = 0
backoff_base_seconds = 0.01
[database]
url = "{db_url}"
{extra}
""")
    path.chmod(0o600)
    return path


def test_demo_runs_with_nothing_configured(tmp_path: Path) -> None:
    result = did("demo", "--numbers", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert len(lines) <= 40, out
    assert "sandbox Partner API on http://127.0.0.1:" in out
    assert "swept 200 numbers" in out
    # a summary first: counts by severity, the most urgent few, the rental per currency
    summary = next(line for line in lines if "open findings:" in line)
    assert "critical" in summary and "warning" in summary
    assert lines.index(summary) < 6
    assert "most urgent first" in out and "more (`did-monitor demo --all` lists them)" in out
    assert "monthly rental of active numbers:" in out and " INR" in out and " USD" in out
    assert "title: did-monitor:" in out and "--all prints all" in out  # the digest, in brief
    # then the dashboard, the exact command and config key, and what to do next
    db = tmp_path / "did-monitor-demo.db"
    assert (
        f"DID_MONITOR__DATABASE__URL=sqlite:///{db} DID_MONITOR__DASHBOARD__LISTEN=127.0.0.1:8080"
        " did-monitor run" in out
    )
    assert '[dashboard] listen = "127.0.0.1:8080"' in out and "http://127.0.0.1:8080/" in out
    assert "[[channels]]" in out and lines[-1].split()[:2] == ["did-monitor", "run"]
    assert db.exists()
    assert "Traceback" not in result.stderr

    every = did("demo", "--numbers", "200", "--all", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert "missing_application" in every.stdout and "New (" in every.stdout
    assert len(every.stdout.splitlines()) > 100
    # a finding about an account names the account once
    account_lines = [line for line in every.stdout.splitlines() if "*no_active_number*" in line]
    assert account_lines and all(line.count("`MA_") == 1 for line in account_lines)
    for line in account_lines:
        name = line.split("`")[1]
        assert line.count(f"`{name}`") == 1, line


def test_sweep_then_findings_json(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver, smtp_server: SmtpSink
) -> None:
    cfg = write_config(
        tmp_path,
        sandbox,
        f"""
[[channels]]
name = "hook"
url = "{http_receiver.url()}"
[[channels]]
name = "mail"
url = "{smtp_server.url()}"
min_severity = "critical"
""",
    )
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    result = did("--config", str(cfg), "sweep", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "sweep 1 complete: 150 numbers" in result.stdout
    assert "digest → hook: sent" in result.stdout and "digest → mail: sent" in result.stdout
    (post,) = http_receiver.posts
    assert "new" in post["body"]["title"]
    (mail,) = smtp_server.messages
    assert "new" in mail["Subject"]
    assert TOKEN not in result.stdout + result.stderr

    found = did("--config", str(cfg), "findings", "--json", cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows and {r["rule"] for r in rows} <= REGISTRY.keys()
    assert {"billing_due", "missing_application", "blocked"} <= {r["rule"] for r in rows}
    for key in (
        "rule",
        "severity",
        "e164",
        "number_id",
        "account_id",
        "state",
        "first_seen",
        "last_seen",
        "resolved_at",
        "message",
    ):
        assert key in rows[0]
    assert rows[0]["first_seen"].endswith("Z") and rows[0]["resolved_at"] is None
    # fees as every output writes them: 300 is "300.00", never "3E+2"
    fees = {r["monthly_fee"] for r in rows} - {None}
    assert "300.00" in fees and all("E" not in fee for fee in fees)
    announced = {n["channel"] for r in rows for n in r["notifications"]}
    assert "hook" in announced
    assert all(n["delivery_status"] == "sent" for r in rows for n in r["notifications"])

    # a second sweep of an unchanged inventory announces nothing
    again = did("--config", str(cfg), "sweep", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "0 digest(s)" in again.stdout
    assert len(http_receiver.posts) == 1

    status = did("--config", str(cfg), "status", cwd=tmp_path, env=env)
    assert "last sweep: #2 complete" in status.stdout and "hook: ok" in status.stdout


def test_wrong_token_exits_1_without_traceback(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    result = did(
        "--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": "wrong-token"}
    )
    assert result.returncode == 1
    assert "401" in result.stderr and "Traceback" not in result.stderr
    assert "wrong-token" not in result.stdout + result.stderr


def test_unreachable_api_exits_1(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox, "")
    text = cfg.read_text().replace(sandbox.url, "http://127.0.0.1:9") + "\n"
    cfg.write_text(
        text.replace("backoff_base_seconds = 0.01", "backoff_base_seconds = 0.01\nmax_retries = 1")
    )
    result = did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN})
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[rules.billing_due]\nwithin_dayz = 1\n", "rules.billing_due.within_dayz"),
        ("[vobiz]\nbase_url = 'http://example.com'\n", "vobiz.base_url"),
        ("[vobiz\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    result = did("--config", str(cfg), "check-config", cwd=tmp_path)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert str(cfg) in first and needle in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_and_bad_usage(tmp_path: Path) -> None:
    result = did("--config", str(tmp_path / "nope.toml"), "sweep", cwd=tmp_path)
    assert result.returncode == 2 and "not found" in result.stderr
    usage = did("no-such-command", cwd=tmp_path)
    assert usage.returncode == 2


def test_check_config_redacts_and_shows_sources(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(
        tmp_path,
        sandbox,
        """
[[channels]]
name = "slack"
url = "slack://TAAAA/BBBBB/SECRETSECRET"
""",
    )
    result = did(
        "--config",
        str(cfg),
        "check-config",
        cwd=tmp_path,
        env={"VOBIZ_AUTH_TOKEN": "tok-123456", "DID_MONITOR__VOBIZ__PER_PAGE": "50"},
    )
    assert result.returncode == 0, result.stderr
    assert "tok-123456" not in result.stdout and "SECRETSECRET" not in result.stdout
    assert 'auth_token = "***"' in result.stdout and "# env VOBIZ_AUTH_TOKEN" in result.stdout
    assert "per_page = 50  # env DID_MONITOR__VOBIZ__PER_PAGE" in result.stdout


def test_db_upgrade_from_any_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"DID_MONITOR__DATABASE__URL": f"sqlite:///{tmp_path / 'x.db'}"}
    first = did("db", "upgrade", cwd=elsewhere, env=env)
    assert first.returncode == 0, first.stderr
    second = did("db", "upgrade", cwd=elsewhere, env=env)
    assert second.returncode == 0 and "latest" in second.stdout


def test_test_alert_reports_per_channel(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    cfg = write_config(
        tmp_path,
        sandbox,
        f"""
[[channels]]
name = "good"
url = "{http_receiver.url()}"
[[channels]]
name = "bad"
url = "json://127.0.0.1:9/x"
""",
    )
    result = did("--config", str(cfg), "test-alert", cwd=tmp_path)
    assert result.returncode == 1
    assert "good: ok" in result.stdout and "bad: FAILED" in result.stdout
    only = did("--config", str(cfg), "test-alert", "--channel", "good", cwd=tmp_path)
    assert only.returncode == 0 and len(http_receiver.posts) == 2


def test_test_alert_sends_nothing_to_a_disabled_channel(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    """``enabled = false``: nothing is sent to it, a test alert neither; named, it says so and
    exits 1, as ``digest --preview --channel`` does."""
    cfg = write_config(
        tmp_path,
        sandbox,
        f"""
[[channels]]
name = "on"
url = "{http_receiver.url("on")}"
[[channels]]
name = "off"
url = "{http_receiver.url("off")}"
enabled = false
""",
    )
    every = did("--config", str(cfg), "test-alert", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert "on: ok" in every.stdout and "off" not in every.stdout
    assert [p["path"] for p in http_receiver.posts] == ["/on"]
    named = did("--config", str(cfg), "test-alert", "--channel", "off", cwd=tmp_path)
    assert named.returncode == 1 and named.stdout == "" and "Traceback" not in named.stderr
    assert "channel 'off' is disabled (enabled = false)" in named.stderr
    assert len(http_receiver.posts) == 1


def test_history_is_in_time_order_after_a_number_id_changes(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """The new id sorts before the old one: still the old (closed) version first, the current
    one last."""
    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    item = sandbox.inventory.update(7, id="00000000-new")
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    hist = did("--config", str(cfg), "history", item["e164"], cwd=tmp_path)
    assert hist.returncode == 0, hist.stderr
    rows = [line for line in hist.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2
    assert "(current)" not in rows[0] and "(current)" in rows[1]


def test_history_and_silences(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    nid = next(iter(sandbox.inventory.ids()))
    item = sandbox.inventory.update(nid, application_id=None)
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    hist = did("--config", str(cfg), "history", item["e164"], cwd=tmp_path)
    assert hist.returncode == 0 and "application_id" in hist.stdout and "first seen" in hist.stdout

    added = did(
        "--config",
        str(cfg),
        "silence",
        "add",
        "--rule",
        "missing_application",
        "--number",
        item["e164"],
        "--until",
        "7d",
        "--reason",
        "porting",
        cwd=tmp_path,
    )
    assert added.returncode == 0 and "silence 1 added" in added.stdout
    found = json.loads(
        did("--config", str(cfg), "findings", "--json", "--all", cwd=tmp_path).stdout
    )
    mine = [f for f in found if f["e164"] == item["e164"] and f["rule"] == "missing_application"]
    assert mine and mine[0]["state"] == "silenced"
    assert "porting" in did("--config", str(cfg), "silence", "list", cwd=tmp_path).stdout
    bad = did(
        "--config",
        str(cfg),
        "silence",
        "add",
        "--rule",
        "nope",
        "--until",
        "1d",
        "--reason",
        "x",
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "unknown rule" in bad.stderr
    assert did("--config", str(cfg), "silence", "remove", "1", cwd=tmp_path).returncode == 0
    assert did("--config", str(cfg), "silence", "remove", "1", cwd=tmp_path).returncode == 2
    for huge in ("2147483648", "99999999999999999999"):  # past any id: refused, no traceback
        for args in (("silence", "remove", huge), ("outbox", "retry", "--id", huge)):
            refused = did("--config", str(cfg), *args, cwd=tmp_path)
            assert refused.returncode == 2 and "Traceback" not in refused.stderr
            assert "is not in the range" in refused.stderr


def test_secrets_stay_out_of_logs_output_and_database(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    secret_hook = f"json://hookuser:hookpass1234@127.0.0.1:{http_receiver.port}/hook"
    cfg = write_config(
        tmp_path,
        sandbox,
        f"""
[logging]
level = "DEBUG"
format = "json"
[[channels]]
name = "hook"
url = "{secret_hook}"
[[channels]]
name = "down"
url = "json://downuser:downpass5678@127.0.0.1:9/x"
""",
    )
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    outputs = []
    for args in (
        ("sweep",),
        ("check-config",),
        ("status",),
        ("findings", "--json", "--all"),
        ("test-alert",),
    ):
        result = did("--config", str(cfg), *args, cwd=tmp_path, env=env)
        outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "digest → hook: sent" in text and "digest → down: failed" in text
    database = b"".join(p.read_bytes() for p in tmp_path.glob("m.db*"))
    for secret in (TOKEN, "hookpass1234", "downpass5678"):
        assert secret not in text, secret
        assert secret.encode() not in database, secret


def test_sandbox_command_serves_the_api(tmp_path: Path) -> None:
    import time

    import httpx

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "sandbox", "--port", str(port), "--numbers", "42"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        headers = {"X-Auth-ID": "PA_SANDBOX", "X-Auth-Token": TOKEN}
        url = f"http://127.0.0.1:{port}/api/v1/partner/numbers"
        deadline = time.monotonic() + 15
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                body = httpx.get(url, headers=headers, timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.1)
        assert body is not None and body["total"] == 42
        # the port is taken now: a second sandbox on it is a usage error, not a traceback
        busy = did("sandbox", "--port", str(port), cwd=tmp_path)
        assert busy.returncode == 2 and "cannot listen" in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_api_strings_cannot_drive_the_terminal(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    nid = next(iter(sandbox.inventory.ids()))
    item = sandbox.inventory.update(
        nid, is_blocked=True, account_id="MA_\x1b[2J\x1b[31mEVIL[/]", status="blocked\x07"
    )
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    for args in (("findings",), ("history", item["e164"])):
        result = did("--config", str(cfg), *args, cwd=tmp_path, env={**env, "COLUMNS": "300"})
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "EVIL[/]" in result.stdout  # shown as text, markup not interpreted


def test_database_problems_are_one_line_errors(tmp_path: Path) -> None:
    unmigrated = {
        "DID_MONITOR__DATABASE__URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "DID_MONITOR__DATABASE__AUTO_MIGRATE": "false",
    }
    # A read command never creates the database: a missing one is an error naming it.
    result = did("findings", cwd=tmp_path, env=unmigrated)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no database at sqlite:///" in result.stderr and "empty.db" in result.stderr
    assert not (tmp_path / "empty.db").exists()
    (tmp_path / "empty.db").touch()
    result = did("findings", cwd=tmp_path, env=unmigrated)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "db upgrade" in result.stderr
    down = {
        "DID_MONITOR__DATABASE__URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        "DID_MONITOR__DATABASE__AUTO_MIGRATE": "false",
    }
    result = did("status", cwd=tmp_path, env=down)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "database error" in result.stderr
    bad = did("findings", cwd=tmp_path, env={"DID_MONITOR__DATABASE__URL": "nonsense://"})
    assert bad.returncode == 2 and "database.url" in bad.stderr


def test_email_digest_end_to_end_and_digest_preview(
    tmp_path: Path, sandbox: Sandbox, smtp_server: SmtpSink
) -> None:
    """A sweep mails every finding (10 rows in the body, all in the CSV); the preview shows the
    email and a Slack channel's Block Kit message without sending anything."""
    import csv
    import io

    extra = f"""
[alerts]
email_max_rows = 10
dashboard_url = "https://monitor.example.com/"
[[channels]]
name = "mail"
url = "{smtp_server.url()}"
"""
    cfg = write_config(tmp_path, sandbox, extra)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    result = did("--config", str(cfg), "sweep", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    findings = json.loads(did("--config", str(cfg), "findings", "--json", cwd=tmp_path).stdout)
    assert len(findings) > 10
    (mail,) = smtp_server.messages
    html_body = mail.get_body(("html",)).get_content()
    assert html_body.count("border-top:1px solid #eaecf0") == 10
    assert f"most urgent of <b>{len(findings)}</b>" in html_body
    (attachment,) = list(mail.iter_attachments())
    content = attachment.get_content()
    text = content if isinstance(content, str) else content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    # Findings about an account (no_active_number) have no number: the digest names the account.
    assert sorted((r["rule"], r["number"]) for r in rows) == sorted(
        (f["rule"], f["e164"] or f"account:{f['account_id']}") for f in findings
    )

    # a Slack channel added later has not been told anything: its next digest has it all
    slack = 'name = "team"\nurl = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"'
    cfg.write_text(cfg.read_text() + f"\n[[channels]]\n{slack}\n")
    shown = did("--config", str(cfg), "digest", "--preview", "--channel", "team", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    blocks = json.loads(shown.stdout)["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks) <= 50
    assert "next digest (Slack Block Kit JSON)" in shown.stderr
    mail_preview = did(
        "--config", str(cfg), "digest", "--preview", "--channel", "mail", cwd=tmp_path
    )
    assert mail_preview.returncode == 0, mail_preview.stderr
    assert "nothing new to announce; its last digest (html" in mail_preview.stderr
    assert mail_preview.stdout.startswith("<!DOCTYPE html>")
    as_text = did("--config", str(cfg), "digest", "--preview", "--format", "text", cwd=tmp_path)
    assert as_text.returncode == 0, as_text.stderr
    assert "🔴 Critical (" in as_text.stdout  # the team channel's next digest, as chat text
    assert len(smtp_server.messages) == 1  # previews send nothing
    no_flag = did("--config", str(cfg), "digest", cwd=tmp_path)
    assert no_flag.returncode == 2 and "--preview" in no_flag.stderr
    unknown = did("--config", str(cfg), "digest", "--preview", "--channel", "x", cwd=tmp_path)
    assert unknown.returncode == 2 and "no channel named 'x'" in unknown.stderr

    # --format is honoured on every path: the mail channel has nothing new, and its last digest
    # was sent as HTML, so asked for Markdown it says so instead of printing HTML
    def preview(*args: str) -> subprocess.CompletedProcess[str]:
        return did("--config", str(cfg), "digest", "--preview", *args, cwd=tmp_path)

    as_md = preview("--channel", "mail", "--format", "markdown")
    assert as_md.returncode == 1 and as_md.stdout == "", as_md.stdout[:200]
    assert "its last digest was sent as html, not markdown" in as_md.stderr
    assert "nothing to preview as markdown" in as_md.stderr and "Traceback" not in as_md.stderr
    as_html = preview("--channel", "mail", "--format", "html")
    assert as_html.returncode == 0 and as_html.stdout.startswith("<!DOCTYPE html>")
    # a disabled channel says so, and exits 1: nothing was rendered
    cfg.write_text(
        cfg.read_text() + '\n[[channels]]\nname = "off"\nurl = "json://localhost/x"\n'
        "enabled = false\n"
    )
    off = preview("--channel", "off")
    assert off.returncode == 1 and off.stdout == ""
    assert "channel 'off' is disabled (enabled = false)" in off.stderr


def test_copy_templates_then_use_them(tmp_path: Path) -> None:
    copied = did("digest", "--copy-templates", "tpl", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "tpl" / "digest.html").is_file()
    (tmp_path / "tpl" / "digest.txt").write_text("mine\n")
    again = did("digest", "--copy-templates", "tpl", cwd=tmp_path)
    assert "exists: left as it is" in again.stdout
    assert (tmp_path / "tpl" / "digest.txt").read_text() == "mine\n"
    cfg = tmp_path / "config.toml"
    cfg.write_text('[alerts]\ntemplates_dir = "tpl"\n')
    assert did("--config", str(cfg), "check-config", cwd=tmp_path).returncode == 0


def test_outbox_retry_makes_a_delivery_held_after_a_permanent_failure_due(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A delivery whose failure was permanent waits "by hand" in `outbox list`; `outbox retry`
    makes it due for the next delivery pass."""
    import sqlalchemy as sa

    from monitor.alerts.outbox import add_delivery, held
    from monitor.store import DELIVERIES, Store

    cfg = write_config(tmp_path, sandbox, '[[channels]]\nname = "a"\nurl = "json://127.0.0.1/a"\n')
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    with store.engine.begin() as conn:
        kept = add_delivery(
            conn, channel="a", kind="digest", title="t", body="b", body_format="text", now=FIXED_NOW
        )
        conn.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id == kept)
            .values(status="failed", attempts=1, next_attempt_at=None, last_error=held(kept))
        )
    listed = did("--config", str(cfg), "outbox", "list", cwd=tmp_path)
    assert "by hand" in listed.stdout and f"outbox retry --id {kept}" in listed.stdout
    vague = did("--config", str(cfg), "outbox", "retry", cwd=tmp_path)
    assert vague.returncode == 2 and "say what to retry" in vague.stderr
    retried = did("--config", str(cfg), "outbox", "retry", "--id", str(kept), cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert f"due now: 1 (id {kept})" in retried.stdout
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(DELIVERIES)).mappings().one()
    assert row["status"] == "failed" and row["next_attempt_at"] is not None
    # Held for a channel now switched off: retrying it would only hold it again, so it is refused.
    off = write_config(
        tmp_path,
        sandbox,
        '[[channels]]\nname = "a"\nurl = "json://127.0.0.1/a"\nenabled = false\n',
    )
    refused = did("--config", str(off), "outbox", "retry", "--channel", "a", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "channel a is disabled or not in the config" in refused.stderr
    store.dispose()


# --- hostile and careless input: clear errors, no tracebacks -----------------------------------


def test_bad_arguments_are_one_line_errors(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    cases = [
        (("silence", "add", "--rule", "*", "--until", "99999999d", "--reason", "x"), 2),
        (("silence", "add", "--rule", "*", "--until", "99999-01-01", "--reason", "x"), 2),
        (("sandbox", "--port", "99999"), 2),
    ]
    for args, code in cases:
        result = did("--config", str(cfg), *args, cwd=tmp_path, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 6
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    unknown = did("--config", str(cfg), "history", "+19999999999", cwd=tmp_path, env=env)
    assert unknown.returncode == 1 and "no number +19999999999" in unknown.stderr


def test_costs_bounds_due_within_and_at_with_one_line_errors(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """--due-within reaches at most 100 years, as silence --until does (a longer one ended in
    a traceback, or silently stopped counting renewals at 1200 per number); an --at date whose
    end of day is past year 9999 in UTC is an error naming --at, not a database error."""
    cfg = write_config(tmp_path, sandbox)
    assert (
        did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN}).returncode
        == 0
    )
    for too_far in ("999999w", "999999d", "36526d"):
        out = did("--config", str(cfg), "costs", "--due-within", too_far, cwd=tmp_path)
        assert out.returncode == 2, (too_far, out.stderr)
        assert out.stderr.strip().splitlines() == [
            f"error: --due-within: {too_far} is too far ahead (at most 100 years)"
        ], out.stderr
    hundred = did(
        "--config", str(cfg), "costs", "--due-within", "36525d", "--format", "json", cwd=tmp_path
    )
    assert hundred.returncode == 0, hundred.stderr
    until = did(
        "--config",
        str(cfg),
        "silence",
        "add",
        "--rule",
        "*",
        "--until",
        "36526d",
        "--reason",
        "x",
        cwd=tmp_path,
    )
    assert (
        until.returncode == 2
        and "--until: 36526d is too far ahead (at most 100 years)" in until.stderr
    )
    west = {"DID_MONITOR__RULES__TIMEZONE": "America/Los_Angeles"}
    out = did("--config", str(cfg), "costs", "--at", "9999-12-31", cwd=tmp_path, env=west)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: --at: ") and "9999-12-31" in out.stderr, out.stderr
    assert "database" not in out.stderr and "Traceback" not in out.stderr
    last = did(
        "--config",
        str(cfg),
        "costs",
        "--at",
        "9999-12-30",
        "--format",
        "json",
        cwd=tmp_path,
        env=west,
    )
    assert last.returncode == 0, last.stderr


def test_times_with_anything_after_the_date_are_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    """A typed time is the whole text or an error: a date followed by nonsense was read as that
    day's midnight UTC (``--until "2027-01-31T99:99:99Z"`` added a silence until 31 January)."""
    cfg = write_config(tmp_path, sandbox)
    assert (
        did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN}).returncode
        == 0
    )
    for until in ("2027-01-31T99:99:99Z", "2027-01-31 next friday"):
        out = did(
            "--config",
            str(cfg),
            "silence",
            "add",
            "--rule",
            "*",
            "--until",
            until,
            "--reason",
            "x",
            "--force",
            cwd=tmp_path,
        )
        assert out.returncode == 2, (until, out.stdout, out.stderr)
        assert f"--until: cannot read {until!r}" in out.stderr and "Traceback" not in out.stderr
    for option, command in (("--at", "costs"), ("--since", "diff")):
        out = did("--config", str(cfg), command, option, "2026-12-06 lol", cwd=tmp_path)
        assert out.returncode == 2, (option, out.stdout, out.stderr)
        assert f"{option}: cannot read '2026-12-06 lol'" in out.stderr
    assert "no silences" in did("--config", str(cfg), "silence", "list", cwd=tmp_path).stdout
    fine = did(
        "--config",
        str(cfg),
        "silence",
        "add",
        "--rule",
        "*",
        "--until",
        "2099-01-31T10:00:00Z",
        "--reason",
        "x",
        "--force",
        cwd=tmp_path,
    )
    assert fine.returncode == 0 and "added until 2099-01-31T10:00:00Z" in fine.stdout, fine.stderr


def test_a_database_from_a_newer_version_is_one_line(tmp_path: Path, sandbox: Sandbox) -> None:
    import sqlite3

    cfg = write_config(tmp_path, sandbox)
    assert did("--config", str(cfg), "db", "upgrade", cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff9999'")
    for command in ("status", "findings", "sweep"):
        result = did("--config", str(cfg), command, cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN})
        assert result.returncode == 1 and "Traceback" not in result.stderr
        first = result.stderr.splitlines()[0]
        assert "ffff9999" in first and "newer did-monitor" in first
        assert len(result.stderr.splitlines()) <= 2


def test_check_config_shows_tables_and_urls_readably(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    url = http_receiver.url("hooks/abcdefsecretpath")
    cfg = write_config(tmp_path, sandbox, f'[[channels]]\nname = "hook"\nurl = "{url}"\n')
    result = did("--config", str(cfg), "check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[[channels]]" in result.stdout
    assert f'"json://127.0.0.1:{http_receiver.port}/…"' in result.stdout
    assert "abcdefsecretpath" not in result.stdout


def test_tables_never_cut_numbers_or_severities(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    listed = json.loads(did("--config", str(cfg), "findings", "--json", cwd=tmp_path).stdout)
    assert listed
    for columns in ("80", "60"):
        table = did("--config", str(cfg), "findings", cwd=tmp_path, env={"COLUMNS": columns})
        assert table.returncode == 0
        for finding in listed:
            who = finding["e164"] or finding["account_id"]  # account findings have no number
            assert who in table.stdout and finding["severity"] in table.stdout
        assert "…" not in table.stdout


def test_every_json_time_is_utc_with_z(tmp_path: Path, sandbox: Sandbox) -> None:
    import re

    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "sweep", cwd=tmp_path, env=env).returncode == 0
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
    for args in (("status", "--json"), ("findings", "--json", "--all")):
        text = did("--config", str(cfg), *args, cwd=tmp_path).stdout
        times = re.findall(r'"(\d{4}-\d\d-\d\d[ T][^"]*)"', text)
        assert times and all(iso.match(t) for t in times), times[:5]


def test_sweep_failure_says_who_was_told(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.faults.add(times=-1, status=401)
    cfg = write_config(tmp_path, sandbox)
    result = did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN})
    assert result.returncode == 1
    assert "queued for every channel" not in result.stderr
    assert "no channel takes service alerts" in result.stderr


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_during_a_sweep_rolls_back_and_exits_143(
    tmp_path: Path, name: str, code: int
) -> None:
    import signal
    import sqlite3
    import time

    box = Sandbox(numbers=20_000, seed=3, latency=0.2, now=FIXED_NOW).start()
    try:
        cfg = write_config(tmp_path, box)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
        env.update(VOBIZ_AUTH_TOKEN=TOKEN)
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "sweep", "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and box.request_count < 10:
            time.sleep(0.05)
        proc.send_signal(signal.Signals[name])
        try:
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        box.stop()
    assert proc.returncode == code, err
    assert name in err and "rolled back" in err and "Traceback" not in err
    with sqlite3.connect(tmp_path / "m.db") as conn:
        rows = conn.execute("SELECT status, error FROM sweeps").fetchall()
        versions = conn.execute("SELECT count(*) FROM number_versions").fetchone()[0]
    assert rows == [("aborted", rows[0][1])] and "rolled back" in rows[0][1]
    assert versions == 0


def test_sweep_against_a_database_another_program_holds_fails_naming_the_file(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Not a did-monitor lease: no "skipped" and exit 0, but a failed sweep, on record."""
    import sqlite3

    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    db = tmp_path / "m.db"
    hold = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('held', flush=True)\n"
        "time.sleep(10)\n"  # past the sweep's start and its lock wait; less than its 30 s
    )
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = did("--config", str(cfg), "sweep", "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(db) in result.stderr and "another program" in result.stderr
    assert "skipped" not in result.stdout and "Traceback" not in result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status FROM sweeps").fetchall()
    assert rows == [("failed",)]


def test_sweep_skips_a_live_lease_naming_its_holder(tmp_path: Path, sandbox: Sandbox) -> None:
    import sqlite3

    cfg = write_config(tmp_path, sandbox)
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    assert did("--config", str(cfg), "db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute(
            "INSERT INTO service_locks (name, owner, acquired_at) "
            "VALUES ('sweep', 'otherhost:7:abc', '2999-01-01 00:00:00.000000')"
        )
    result = did("--config", str(cfg), "sweep", "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "otherhost:7:abc" in result.stdout and "2999-01-01T06:00:00" in result.stdout
    assert "skipped" in result.stdout


def on_terminal(*args: str, cwd: Path, columns: int = 80) -> str:
    """``did-monitor`` with its stdout on a real pty ``columns`` wide; the text, escapes removed."""
    import pty
    import re

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    env |= {"COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", *args], cwd=cwd, env=env, stdout=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closed: the command ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_reports_fit_80_columns_on_a_terminal_and_name_accounts(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    cfg = write_config(tmp_path, sandbox)
    assert (
        did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN}).returncode
        == 0
    )
    listed = json.loads(did("--config", str(cfg), "findings", "--json", cwd=tmp_path).stdout)
    names = {a["auth_id"]: a["name"] for a in sandbox.inventory.accounts()}
    for args in (("findings",), ("costs",), ("inventory",), ("costs", "--due-within", "30d")):
        text = on_terminal("--config", str(cfg), *args, cwd=tmp_path)
        assert max(len(line) for line in text.splitlines()) <= 80, (args, text)
        assert "…" not in text
    findings = on_terminal("--config", str(cfg), "findings", cwd=tmp_path)
    rows = [line for line in findings.splitlines() if line.startswith("│")]
    for finding in listed:  # every number, account id and severity whole, the name beside the id
        who = finding["e164"] or finding["account_id"]
        if who:
            assert any(who in row and finding["severity"] in row for row in rows), finding
        if finding["account_id"]:
            row = next(r for r in rows if finding["account_id"] in r)
            assert names[finding["account_id"]].split()[0] in row
    assert "--wide" in findings
    wide = on_terminal("--config", str(cfg), "findings", "--wide", cwd=tmp_path)
    assert "first seen" in wide and "--wide" not in wide.split("┘")[-1]
    picked = on_terminal(
        "--config", str(cfg), "inventory", "--columns", "e164,status", cwd=tmp_path
    )
    assert "┃ number" in picked and "account" not in picked
    csv_cols = did("--config", str(cfg), "inventory", "--columns", "e164,status", cwd=tmp_path)
    assert csv_cols.stdout.splitlines()[0] == "e164,status"
    piped = did("--config", str(cfg), "inventory", cwd=tmp_path).stdout  # CSV: every column
    assert piped.splitlines()[0].split(",") == list(
        json.loads(did("--config", str(cfg), "inventory", "--format", "json", cwd=tmp_path).stdout)[
            "rows"
        ][0]
    )
    bad = did("--config", str(cfg), "costs", "--columns", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr and "account_id" in bad.stderr


def test_findings_most_urgent_first_and_silenced_apart(tmp_path: Path, sandbox: Sandbox) -> None:
    from monitor.vocab import SEVERITY_RANK

    cfg = write_config(tmp_path, sandbox)
    assert (
        did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN}).returncode
        == 0
    )
    listed = json.loads(did("--config", str(cfg), "findings", "--json", cwd=tmp_path).stdout)

    def urgency(f: dict[str, Any]) -> tuple[Any, ...]:
        return (
            -SEVERITY_RANK[f["severity"]],
            f["due_at"] is not None,
            f["due_at"] or "",
            f["rule"],
        )

    assert [urgency(f) for f in listed] == sorted(urgency(f) for f in listed)
    # dates do order (which severity has them depends on how far the clock is from the sandbox's)
    dated = [f for f in listed if f["due_at"]]
    assert max(len({f["due_at"] for f in dated if f["severity"] == s}) for s in SEVERITY_RANK) > 2
    target = next(f for f in listed if f["e164"])
    added = did(
        "--config", str(cfg), "silence", "add", "--rule", target["rule"],
        "--number", " ".join(target["e164"][i : i + 4] for i in range(0, len(target["e164"]), 4)),
        "--until", "7d", "--reason", "known", cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "matches 1 open finding(s)" in added.stdout
    table = did("--config", str(cfg), "findings", cwd=tmp_path)
    assert f"{len(listed) - 1} open finding(s)" in table.stdout
    assert "and 1 silenced finding(s)" in table.stdout
    status = json.loads(did("--config", str(cfg), "status", "--json", cwd=tmp_path).stdout)
    assert status["open_total"] == len(listed) - 1 and status["silenced_total"] == 1
    text = did("--config", str(cfg), "status", cwd=tmp_path).stdout
    assert f"open findings: {len(listed) - 1} (and 1 silenced)" in text


def test_silence_add_normalises_refuses_and_records_who(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = write_config(tmp_path, sandbox)
    assert (
        did("--config", str(cfg), "sweep", cwd=tmp_path, env={"VOBIZ_AUTH_TOKEN": TOKEN}).returncode
        == 0
    )

    def add(*args: str) -> subprocess.CompletedProcess[str]:
        return did(
            "--config",
            str(cfg),
            "silence",
            "add",
            "--until",
            "7d",
            "--reason",
            "r",
            *args,
            cwd=tmp_path,
        )

    bad = add("--rule", "blocked", "--number", "call me")
    assert bad.returncode == 2 and "E.164" in bad.stderr and "Traceback" not in bad.stderr
    nothing = add("--rule", "blocked", "--number", "+1 999 000 0000")
    assert nothing.returncode == 2 and "matches no open finding" in nothing.stderr
    assert "no silences" in did("--config", str(cfg), "silence", "list", cwd=tmp_path).stdout
    forced = add("--rule", "blocked", "--number", "+1 (999) 000-0000", "--force", "--by", "alice")
    assert forced.returncode == 0 and "matches 0 open finding(s)" in forced.stdout
    assert add("--rule", "*", "--account", "MA_NOBODY").returncode == 2
    mine = add("--rule", "*")
    assert mine.returncode == 0
    listing = did("--config", str(cfg), "silence", "list", cwd=tmp_path).stdout
    (first,) = [line for line in listing.splitlines() if "+19990000000" in line]
    assert "alice" in first and "│       0 │" in first
    import getpass

    (second,) = [line for line in listing.splitlines() if line.startswith("│ 2 ")]
    assert getpass.getuser() in second


# --- the operator's first hour (issue 21): placeholders, url_file, the outbox ------------------

ROOT = Path(__file__).resolve().parent.parent


def test_check_config_passes_on_the_example_and_warns_about_placeholders(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    example = did("--config", str(ROOT / "config.example.toml"), "check-config", cwd=tmp_path)
    assert example.returncode == 0, example.stderr
    assert "warning" not in example.stderr and "[[channels]]" not in example.stdout
    strict = "--config", str(ROOT / "config.example.toml"), "check-config", "--strict"
    assert did(*strict, cwd=tmp_path).returncode == 0

    cfg = tmp_path / "config.toml"
    cfg.write_text(
        (ROOT / "config.example.toml")
        .read_text()
        .replace('# auth_id = "PA_XXXXXXXX"', 'auth_id = "PA_XXXXXXXX"')
        .replace('# [[channels]]\n# name = "ops-slack"', '[[channels]]\nname = "ops-slack"')
        .replace('# url = "slack://T000', 'url = "slack://T000')
    )
    cfg.chmod(0o600)
    result = did("--config", str(cfg), "check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "vobiz.auth_id" in warnings[0] and "PA_XXXXXXXX" in warnings[0]
    assert "(ops-slack): url looks like the example's placeholder (slack://***)" in warnings[1]
    refused = did("--config", str(cfg), "check-config", "--strict", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--strict: 2 placeholder value(s)" in refused.stderr


def test_check_config_masks_a_url_from_url_file(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    secret = tmp_path / "hook_url"
    secret.write_text(http_receiver.url("hooks/abcdefsecretpath") + "\n")
    secret.chmod(0o600)
    cfg = write_config(tmp_path, sandbox, f'[[channels]]\nname = "hook"\nurl_file = "{secret}"\n')
    result = did("--config", str(cfg), "check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f'url = "json://127.0.0.1:{http_receiver.port}/…"  # secret file {secret}' in (
        result.stdout
    )
    assert f'url_file = "{secret}"' in result.stdout
    assert "abcdefsecretpath" not in result.stdout + result.stderr
    sent = did("--config", str(cfg), "test-alert", cwd=tmp_path)
    assert sent.returncode == 0 and http_receiver.posts[0]["path"] == "/hooks/abcdefsecretpath"


def did_with_stdin(*args: str, cwd: Path, stdin: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_outbox_list_and_drop(
    tmp_path: Path, sandbox: Sandbox, http_receiver: HttpReceiver
) -> None:
    """Alerts for two broken channels wait in the outbox; `outbox list` shows them, `outbox drop`
    asks first (refusing without a terminal unless --yes) and marks them dropped: once the URLs
    work, the other channel's alert is retried and the dropped one never goes."""
    import pty

    from tests.conftest import free_port

    dead = f"json://127.0.0.1:{free_port()}"
    channels = '[[channels]]\nname = "a"\nurl = "{}/a"\n[[channels]]\nname = "b"\nurl = "{}/b"\n'
    alerts = "[alerts]\nretry_backoff_seconds = 1\n"
    cfg = write_config(tmp_path, sandbox, alerts + channels.format(dead, dead))
    env = {"VOBIZ_AUTH_TOKEN": TOKEN}
    first = did("--config", str(cfg), "sweep", cwd=tmp_path, env=env)
    assert "Traceback" not in first.stderr
    listed = did("--config", str(cfg), "outbox", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "── a: 1 queued" in listed.stdout and "── b: 1 queued" in listed.stdout
    assert "digest" in listed.stdout and "failed" in listed.stdout and TOKEN not in listed.stdout
    only_a = did("--config", str(cfg), "outbox", "list", "--channel", "a", cwd=tmp_path)
    assert "── a:" in only_a.stdout and "── b:" not in only_a.stdout

    drop_a = ("--config", str(cfg), "outbox", "drop", "--channel", "a")
    refused = did_with_stdin(*drop_a, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "stdin is not a terminal" in refused.stderr and "--yes" in refused.stderr
    unknown = did("--config", str(cfg), "outbox", "drop", "--id", "999", "--yes", cwd=tmp_path)
    assert unknown.returncode == 2 and "--id 999: no queued delivery" in unknown.stderr

    for answer, code, said in ((b"n\n", 1, "nothing dropped"), (b"y\n", 0, "dropped 1")):
        leader, follower = pty.openpty()
        os.write(leader, answer)
        asked = did_with_stdin(*drop_a, cwd=tmp_path, stdin=follower)
        os.close(follower)
        os.close(leader)
        assert asked.returncode == code, asked.stderr
        assert "Drop the 1 shown above" in asked.stdout
        assert said in asked.stdout + asked.stderr
    after = did("--config", str(cfg), "outbox", "list", cwd=tmp_path)
    assert "── a:" not in after.stdout and "── b: 1 queued" in after.stdout

    fixed = http_receiver.url("")[:-1]
    cfg = write_config(tmp_path, sandbox, alerts + channels.format(fixed, fixed))
    import time

    time.sleep(1.5)  # the retry is due
    again = did("--config", str(cfg), "sweep", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    paths = [post["path"] for post in http_receiver.posts]
    assert "/b" in paths and "/a" not in paths
    assert any("(retry 1)" in str(p["body"]) for p in http_receiver.posts if p["path"] == "/b")
    left = did("--config", str(cfg), "outbox", "list", cwd=tmp_path)
    assert left.stdout.strip() == "nothing queued"
