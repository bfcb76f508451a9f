"""Digest templates: the packaged ones ship, a user's copy overrides them, a broken one is a
config error naming the file, and a template that fails while rendering falls back."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.alerts.digest import Digest
from monitor.alerts.email import PACKAGED, TEMPLATE_NAMES, render_document
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


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("{{ ''.__class__.__mro__ }}")
    body = render_document(DIGEST, "text", templates_dir=tmp_path).body
    assert "object" not in body and "+911" in body  # refused, so the packaged one rendered
