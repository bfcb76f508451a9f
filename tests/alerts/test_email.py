"""Digest templates: the packaged ones ship, a user's copy overrides them, a broken one is a
config error naming the file, and a template that fails while rendering falls back."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.digest import Digest
from monitor.alerts.email import (
    PACKAGED,
    TEMPLATE_NAMES,
    findings_csv,
    render_document,
    render_texts,
)
from monitor.config import load
from monitor.errors import ConfigError
from monitor.findings import FindingView

DIGEST = Digest(
    new=[
        FindingView(
            rule="blocked", severity="critical", e164="+911", account_id="MA_A", message="m"
        )
    ],
    swept_at=datetime(2026, 11, 23, tzinfo=UTC),
)


def config(tmp_path: Path, templates_dir: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[alerts]\ntemplates_dir = "{templates_dir}"\n')
    return path


def test_packaged_templates_exist() -> None:
    for name in TEMPLATE_NAMES:
        assert (PACKAGED / name).is_file()


def test_a_copied_template_overrides_the_packaged_one(tmp_path: Path) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    source = (PACKAGED / "digest.txt").read_text()
    (folder / "digest.txt").write_text("OUR OWN HEADER\n" + source)
    settings = load(str(config(tmp_path, "tpl"))).settings
    assert settings.alerts.templates_dir == str(folder)  # relative to the config file
    body = render_document(DIGEST, "text", templates_dir=folder).body
    assert body.startswith("OUR OWN HEADER") and "+911" in body
    # the HTML one was not copied: the packaged one is used
    assert "+911" in render_document(DIGEST, "html", templates_dir=folder).body


def test_a_template_that_does_not_parse_is_a_config_error_naming_the_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "digest.html").write_text("<p>\n{% for x in %}\n</p>")
    with pytest.raises(ConfigError) as exc:
        load(str(config(tmp_path, str(folder))))
    assert "alerts.templates_dir" in exc.value.message
    assert f"{folder / 'digest.html'} line 2" in exc.value.message
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(tmp_path / "config.toml"),
            "check-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "digest.html line 2" in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_templates_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load(str(config(tmp_path, "nowhere")))


def test_a_template_failing_at_render_time_falls_back_to_the_packaged_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "digest.html").write_text("{{ 1 / 0 }}")
    body = render_document(DIGEST, "html", templates_dir=tmp_path).body
    assert "+911" in body and "<table" in body
    assert "digest.html" in caplog.text and "packaged" in caplog.text


def test_due_days_and_the_date_filter_count_in_the_rules_time_zone(tmp_path: Path) -> None:
    """The bug: with ``rules.timezone = "Asia/Kolkata"`` a billing at 20:00 UTC on the 24th
    (01:30 on the 25th there) read "in 2 day(s), on 2026-11-25" in the finding's message, and
    "2026-11-24, 1 day left" in the email's row and its CSV."""
    due = datetime(2026, 11, 24, 20, tzinfo=UTC)
    message = "next billing in 2 day(s), on 2026-11-25"
    finding = FindingView("billing_due", "warning", "+911", "MA_A", message, due_at=due)
    swept = datetime(2026, 11, 23, 20, tzinfo=UTC)  # 01:30 on the 24th in Kolkata
    digest = Digest(new=[finding], swept_at=swept, tz=ZoneInfo("Asia/Kolkata"))
    for fmt in ("html", "text"):
        body = render_document(digest, fmt).body  # type: ignore[arg-type]
        assert "2026-11-25, 1 day left" in body and "2026-11-24," not in body, fmt
    (row,) = csv.DictReader(io.StringIO(findings_csv(digest)))
    assert row["due_date"] == "2026-11-25" and row["days_left"] == "1"
    # A user's template: the ``date`` filter gives a time's day in the rules' time zone too.
    rows = "{% for s in sections %}{% for r in s.rows %}{{ r.due }} {{ r.when }}{% endfor %}"
    (tmp_path / "digest.txt").write_text("{{ swept_at|date }}: " + rows + "{% endfor %}")
    body = render_document(digest, "text", templates_dir=tmp_path).body
    assert body == "2026-11-24: 2026-11-25 1 day left"


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("{{ ''.__class__.__mro__ }}")
    body = render_document(DIGEST, "text", templates_dir=tmp_path).body
    assert "object" not in body and "+911" in body  # refused, so the packaged one rendered


# --- title, intro and footer: Jinja templates too; the old keys still read, with a warning ---


def test_title_intro_and_footer_come_from_the_templates_dir_for_every_channel(
    tmp_path: Path,
) -> None:
    from monitor.alerts.compose import compose
    from monitor.config import AlertsConfig, ChannelConfig

    (tmp_path / "title.txt").write_text("{# ours #}\n{{ new|plural('problem') }}\nof {{ swept }}\n")
    (tmp_path / "footer.txt").write_text("Runbook: <b>https://wiki.example.com/dids</b>\n")
    alerts = AlertsConfig(templates_dir=str(tmp_path))
    digest = Digest(new=DIGEST.new, numbers_swept=7, swept_at=DIGEST.swept_at)
    channels = {
        "email": ChannelConfig(name="m", url="mailto://user:pw@example.com"),
        "chat": ChannelConfig(name="c", url="json://h/x"),
        "slack": ChannelConfig(name="s", url="slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"),
    }
    sent = {kind: compose(digest, chan, alerts) for kind, chan in channels.items()}
    assert {m.title for m in sent.values()} == {"1 problem of 7"}  # made one line
    assert "Runbook: &lt;b&gt;https://wiki.example.com/dids&lt;/b&gt;" in sent["email"].body
    assert sent["chat"].body.rstrip().endswith("Runbook: ‹b›https://wiki.example.com/dids‹/b›")
    assert sent["slack"].parts["slack"]["blocks"][0]["text"]["text"] == "1 problem of 7"
    (tmp_path / "title.txt").write_text("{{ summary }} " * 100)
    title = render_texts(digest, templates_dir=tmp_path).title
    assert title.startswith("1 new 1 new") and len(title) == 200


def test_a_failing_title_template_falls_back_to_the_packaged_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "title.txt").write_text("{{ new / 0 }}")
    assert render_texts(DIGEST, "dm", tmp_path).title == "dm: 1 new"
    assert "title.txt" in caplog.text and "packaged" in caplog.text


def test_the_old_keys_render_through_jinja_exactly_as_string_template_did() -> None:
    """The deprecated ``$name`` strings become Jinja templates that print what string.Template
    printed: known names filled in, ``$$`` a dollar, everything else (``{{``, ``{%``, unknown
    names, a lone ``$``) as written."""
    import random
    import string

    digest = Digest(new=DIGEST.new * 2, resolved=DIGEST.new, still_open=4, numbers_swept=9)
    values = {
        "prefix": "dm",
        "summary": "2 new, 1 resolved",
        "new": "2",
        "reminders": "0",
        "resolved": "1",
        "open": "4",
        "swept": "9",
    }
    pieces = [*(f"${n}" for n in values), "${open}", "$$", "$", "$nope", "${nope}", "$New"]
    pieces += ["{{ 7 * 7 }}", "{% if 1 %}x{% endif %}", "{#", "#}", "}}", "{", "}", " ", "ab"]
    rng = random.Random(20261123)
    cases = ["".join(rng.choices(pieces, k=rng.randint(1, 12))) for _ in range(300)]
    cases += ["$prefix: $summary", "Weekly DID check ($open still open)", "$$new costs $5"]
    for text in cases:
        want = string.Template(text).safe_substitute(values).strip()
        got = render_texts(digest, "dm", legacy={"intro": text, "title": text})
        assert got.intro == want, text
        assert got.title == want[:200], text


def test_an_old_key_wins_over_the_file_while_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "title.txt").write_text("from the file")
    texts = render_texts(DIGEST, "dm", tmp_path, {"title": "$prefix from the key"})
    assert texts.title == "dm from the key"
    assert render_texts(DIGEST, "dm", tmp_path, {"intro": "hi"}).title == "from the file"


def test_the_old_keys_are_deprecated_with_a_warning_at_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[alerts.templates]\ntitle = "$prefix: $new new {x}"\nfooter = "Runbook: wiki"\n'
    )
    loaded = load(str(path))
    assert loaded.settings.alerts.templates["title"] == "$prefix: $new new {x}"  # still read
    title, footer = loaded.warnings
    for key, warning in (("title", title), ("footer", footer)):
        assert f"alerts.templates.{key} is deprecated" in warning
        assert "removed in the next release" in warning
        assert f"{key}.txt in the folder named by alerts.templates_dir" in warning
        assert "--copy-templates" in warning
    assert title.endswith("yours reads: {{ prefix }}: {{ new }} new {{ '{' }}x}")
    assert footer.endswith("yours reads: Runbook: wiki")
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(path), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: alerts.templates.title is deprecated" in proc.stderr
    assert "warning: alerts.templates.footer is deprecated" in proc.stderr
