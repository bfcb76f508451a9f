from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from monitor import redact
from monitor.config import Secret, Settings, load, parse_listen, redacted, secret_settings
from monitor.errors import ConfigError


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(None, {})
    s = loaded.settings
    assert loaded.path is None
    assert s.vobiz.base_url == "https://api.vobiz.ai"
    assert s.vobiz.per_page == 100
    assert s.database.url == "sqlite:///did-monitor.db"
    assert s.schedule.cron == "0 6 * * mon"
    assert s.rules.billing_due.within_days == 7
    assert s.rules.expiring.within_days == 14


def test_contract_example_is_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[vobiz]
base_url = "https://api.vobiz.ai"
auth_id = "PA_XXXXXXXX"
auth_token = "secret-token"
per_page = 100
[database]
url = "sqlite:///did-monitor.db"
[schedule]
cron = "0 6 * * mon"
timezone = "UTC"
[rules.billing_due]
within_days = 7
severity = "warning"
[rules.expiring]
within_days = 14
[rules.missing_application]
[rules.blocked]
enabled = false
[[channels]]
name = "ops-slack"
url = "slack://T000/B000/XXXX"
min_severity = "info"
""",
    )
    s = load(str(path), {}).settings
    assert s.vobiz.auth_token == "secret-token"
    assert s.rules.blocked.enabled is False
    assert s.channels[0].name == "ops-slack"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[rules.billing_due]\nwithin_dayz = 3\n")
    with pytest.raises(ConfigError) as exc:
        load(str(path), {})
    text = str(exc.value)
    assert str(path) in text.splitlines()[0]
    assert "rules.billing_due.within_dayz" in text
    assert "unknown key" in text
    assert exc.value.exit_code == 2


def test_the_removed_fetch_process_setting_is_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[sweep]\nfetch_process = true\n")
    with pytest.raises(ConfigError) as exc:
        load(str(path), {})
    assert "sweep.fetch_process" in str(exc.value) and "unknown key" in str(exc.value)
    assert exc.value.exit_code == 2


def test_unknown_rule_is_an_error(tmp_path: Path) -> None:
    from monitor.rules import REGISTRY

    path = write(tmp_path, "[rules.no_such_rule]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"rules\.no_such_rule") as exc:
        load(str(path), {})
    assert f"unknown rule 'no_such_rule' (built-in rules: {', '.join(REGISTRY)};" in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("[vobiz]\nper_page = 500\n", "vobiz.per_page"),
        ('[vobiz]\nbase_url = "http://api.vobiz.ai"\n', "vobiz.base_url"),
        ('[schedule]\ntimezone = "Mars/Olympus"\n', "schedule.timezone"),
        ('[schedule]\ncron = "every monday"\n', "schedule.cron"),
        ('[rules.blocked]\nseverity = "urgent"\n', "rules.blocked.severity"),
        (
            '[[channels]]\nname = "a"\nurl = "json://x"\n[[channels]]\nname = "a"\nurl = "json://y"\n',
            "unique",
        ),
    ],
)
def test_bad_values_are_named(tmp_path: Path, snippet: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load(str(write(tmp_path, snippet)), {})


@pytest.mark.parametrize(
    "snippet",
    [
        'include = { countries = ["IN"] }',
        'exclude = { accounts = ["MA_1"] }',
        '[[rules.low_availability.override]]\naccounts = ["MA_1"]\nseverity = "critical"',
    ],
)
def test_a_scope_or_override_on_low_availability_is_refused(tmp_path: Path, snippet: str) -> None:
    """They used to be accepted and did nothing: a watched place has no account, tags or status."""
    path = write(tmp_path, f"[rules.low_availability]\n{snippet}\n")
    with pytest.raises(ConfigError, match=r"rules\.low_availability") as exc:
        load(str(path), {})
    assert "list the places to watch in watch" in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ('[sweep]\nmax_duration = "²h"', "give seconds, or a duration such as 90m"),
        ('[schedule]\ncron = "0 6 * * 1/²"', "not a valid 5-field crontab expression"),
        ('[service]\nhealth_listen = "²"', "expected host:port or a port number"),
        ('[service]\nhealth_listen = "127.0.0.1:８０"', "the port must be a number from 1 to"),
    ],
)
def test_digits_of_other_scripts_get_the_keys_own_reason(
    tmp_path: Path, snippet: str, reason: str
) -> None:
    """str.isdigit() takes "²", which int() refuses: the error was int()'s "invalid literal"."""
    with pytest.raises(ConfigError, match=reason) as exc:
        load(str(write(tmp_path, snippet)), {})
    assert "invalid literal" not in str(exc.value)


def test_plain_http_allowed_only_for_loopback(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:80"):
        path = write(tmp_path, f'[vobiz]\nbase_url = "{url}"\n')
        assert load(str(path), {}).settings.vobiz.base_url == url
    with pytest.raises(ConfigError, match="https"):
        load(str(write(tmp_path, '[vobiz]\nbase_url = "http://10.0.0.5"\n')), {})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(write(tmp_path, "[vobiz\n")), {})
    with pytest.raises(ConfigError, match="not found"):
        load(str(tmp_path / "nope.toml"), {})


def test_env_precedence_and_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[vobiz]\nauth_id = "PA_FILE"\nauth_token = "from-file"\nper_page = 50\n'
    )
    env = {
        "VOBIZ_AUTH_TOKEN": "from-env",
        "DID_MONITOR__VOBIZ__PER_PAGE": "25",
        "DID_MONITOR__CHANNELS__0__NAME": "mail",
        "DID_MONITOR__CHANNELS__0__URL": "mailto://localhost?to=a@b",
        "DID_MONITOR__RULES__EXPIRING__ENABLED": "false",
    }
    loaded = load(str(path), env)
    s = loaded.settings
    assert s.vobiz.auth_token == "from-env"
    assert s.vobiz.auth_id == "PA_FILE"
    assert s.vobiz.per_page == 25
    assert s.channels[0].name == "mail"
    assert s.rules.expiring.enabled is False
    assert loaded.sources["vobiz.auth_token"] == "env VOBIZ_AUTH_TOKEN"
    assert loaded.sources["vobiz.per_page"] == "env DID_MONITOR__VOBIZ__PER_PAGE"
    assert loaded.sources["vobiz.auth_id"].startswith("file ")


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[vobiz]\nper_page = 10\n")
    assert load(None, {"DID_MONITOR_CONFIG": str(path)}).settings.vobiz.per_page == 10


def test_token_from_secret_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("file-secret\n")
    path = write(tmp_path, '[vobiz]\nauth_id = "PA_1"\nauth_token_file = "token"\n')
    loaded = load(str(path), {})
    assert loaded.settings.vobiz.auth_token == "file-secret"
    assert loaded.sources["vobiz.auth_token"].startswith("secret file")
    bad = write(tmp_path, '[vobiz]\nauth_token_file = "missing"\n')
    with pytest.raises(ConfigError, match="auth_token_file"):
        load(str(bad), {})


def test_world_readable_secret_warns(tmp_path: Path) -> None:
    path = write(tmp_path, '[vobiz]\nauth_token = "s3cret"\n', mode=0o644)
    loaded = load(str(path), {})
    assert any(str(path) in w and "chmod 600" in w for w in loaded.warnings)
    private = write(tmp_path, '[vobiz]\nauth_token = "s3cret"\n', mode=0o600)
    assert load(str(private), {}).warnings == ()


def test_redaction_hides_every_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[vobiz]
auth_token = "tok-abcdef-123"
[database]
url = "postgresql+psycopg://mon:dbpass99@db/mon"
[service]
heartbeat_url = "https://hc-ping.com/5f3c2a1b-uuid-secret"
[[channels]]
name = "slack"
url = "slack://TAAAA1111/BBBBB2222/CCCCCC3333secret"
[[channels]]
name = "mail"
url = "mailtos://user:mailpass77@smtp.example.com?to=ops@example.com"
""",
    )
    text = repr(redacted(load(str(path), {}).settings))
    for secret in (
        "tok-abcdef-123",
        "dbpass99",
        "5f3c2a1b",
        "CCCCCC3333secret",
        "BBBBB2222",
        "mailpass77",
    ):
        assert secret not in text
    assert "smtp.example.com" in text


def test_mask_url_keeps_host() -> None:
    assert redact.mask_url("json://user:pw@host:8080/path") == "json://***@host:8080/…"
    assert redact.mask_url("slack://a/b/c") == "slack://***"


@pytest.mark.parametrize(
    ("cron", "normal"),
    [
        ("0 6 * * 1", "0 6 * * mon"),
        ("0 6 * * 0", "0 6 * * sun"),
        ("0 6 * * 7", "0 6 * * sun"),
        ("0 6 * * 1-5", "0 6 * * mon,tue,wed,thu,fri"),
        ("0 6 * * 0-6", "0 6 * * *"),
        ("0 6 * * */2", "0 6 * * tue,thu,sat,sun"),
        ("0 6 * * mon", "0 6 * * mon"),
        ("0 6 * * mon-fri", "0 6 * * mon-fri"),
        # names and numbers mixed: each item read as crontab reads it (a name is a name)
        ("0 6 * * sat,0", "0 6 * * sat,sun"),
        ("0 6 * * 1,sun", "0 6 * * mon,sun"),
        ("0 6 * * mon-5", "0 6 * * mon,tue,wed,thu,fri"),
        ("0 6 * * 1-fri", "0 6 * * mon,tue,wed,thu,fri"),
        ("0 6 * * sun-2", "0 6 * * mon,tue,sun"),
        ("0 6 * * 4-sun", "0 6 * * thu,fri,sat,sun"),
        ("0 6 * * Sat,7", "0 6 * * sat,sun"),
        ("0 6 * * 0-sat", "0 6 * * *"),
        ("0 6 * * */2,mon", "0 6 * * mon,tue,thu,sat,sun"),
        # a step on names: crontab steps through the range (APScheduler dropped the step)
        ("0 6 * * mon-fri/2", "0 6 * * mon,wed,fri"),
        ("0 6 * * sun-sat/3", "0 6 * * wed,sat,sun"),
        ("0 6 * * sun-tue", "0 6 * * mon,tue,sun"),
        ("0 6 * * SUN-sat", "0 6 * * *"),
        ("0 6 * * fri-sun", "0 6 * * fri-sun"),
    ],
)
def test_numeric_weekdays_mean_what_crontab_means(tmp_path: Path, cron: str, normal: str) -> None:
    path = write(tmp_path, f'[schedule]\ncron = "{cron}"\n')
    assert load(str(path), {}).settings.schedule.cron == normal


@pytest.mark.parametrize(
    ("cron", "needle"),
    [
        ("0 6 * * mon-9", "day of week 'mon-9'"),
        ("0 6 * * 5-mon", "day of week '5-mon'"),
        ("0 6 * * monday,1", "day of week 'monday'"),
        ("0 6 * * mon-fri/0,1", "day of week 'mon-fri/0'"),
        ("0 6 * * 8", "day of week '8'"),
        ("0 6 * * 5-0", "day of week '5-0'"),
    ],
)
def test_a_weekday_item_crontab_would_not_read_is_refused(
    tmp_path: Path, cron: str, needle: str
) -> None:
    """Names mixed with numbers used to reach APScheduler as they were (Monday = 0 there)."""
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, f'[schedule]\ncron = "{cron}"\n')), {})
    text = str(exc.value)
    assert "schedule.cron" in text and needle in text and "\n" not in text
    assert "0 or 7 is Sunday" in text and "e.g. 'mon-fri' or '1-5'" in text


@pytest.mark.parametrize("cron", ["0 6 1 * mon", "0 6 1-7 * 1", "0 6 15 * 0-6", "0 6 1,15 * fri"])
def test_day_of_month_and_day_of_week_together_are_refused(tmp_path: Path, cron: str) -> None:
    """Crontab fires when either matches, APScheduler only when both do: '0 6 1 * mon' fired
    on Mondays that are the 1st, about twice a year."""
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, f'[schedule]\ncron = "{cron}"\n')), {})
    text = str(exc.value)
    minute, hour, dom, month, dow = cron.split()
    assert "schedule.cron" in text and "\n" not in text
    assert "restricts both day of month and day of week" in text
    assert f"'{minute} {hour} {dom} {month} *' or '{minute} {hour} * {month} {dow}'" in text


@pytest.mark.parametrize(
    ("cron", "normal"),
    [
        ("0 6 1 * *", "0 6 1 * *"),
        ("0 6 * * mon", "0 6 * * mon"),
        # a field starting with '*' does not count: crontab then needs both, as APScheduler does
        ("0 6 */2 * mon", "0 6 */2 * mon"),
        ("0 6 1 * */2", "0 6 1 * tue,thu,sat,sun"),
    ],
)
def test_one_day_field_or_a_starred_one_is_kept(tmp_path: Path, cron: str, normal: str) -> None:
    path = write(tmp_path, f'[schedule]\ncron = "{cron}"\n')
    assert load(str(path), {}).settings.schedule.cron == normal


def test_monday_in_numbers_fires_on_monday() -> None:
    from datetime import UTC, datetime

    from monitor.config import ScheduleConfig, Settings
    from monitor.health import next_run

    s = Settings(schedule=ScheduleConfig(cron="0 6 * * 1"))
    fire = next_run(s, datetime(2026, 11, 24, tzinfo=UTC))  # a Tuesday
    assert fire is not None and fire.weekday() == 0 and fire.day == 30


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        ('[service]\nhealth_listen = "http://x:1"\n', "service.health_listen"),
        ('[service]\nhealth_listen = "127.0.0.1:99999"\n', "service.health_listen"),
        ('[service]\nheartbeat_url = "http://hc.example.com/ping"\n', "service.heartbeat_url"),
        ('[service]\nfail_url = "ftp://x"\n', "service.fail_url"),
    ],
)
def test_service_keys_are_checked_at_load(tmp_path: Path, snippet: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load(str(write(tmp_path, snippet)), {})


def test_environment_strings_stay_strings_and_errors_name_the_variable(tmp_path: Path) -> None:
    env = {"DID_MONITOR__VOBIZ__AUTH_TOKEN": "123456789012", "DID_MONITOR__VOBIZ__AUTH_ID": "1e5"}
    s = load(None, env | {"DID_MONITOR_CONFIG": str(write(tmp_path, ""))}).settings
    assert s.vobiz.auth_token == "123456789012" and s.vobiz.auth_id == "1e5"
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, "")), {"DID_MONITOR__VOBIZ__PER_PAGE": "500"})
    assert "environment variable DID_MONITOR__VOBIZ__PER_PAGE" in str(exc.value)


@pytest.mark.parametrize(
    "snippet",
    [
        '[database]\nurl = "postgresql+psycopg://mon:pw@db/mon"\n',
        '[service]\nheartbeat_url = "https://hc-ping.com/uuid"\n',
        '[[channels]]\nname = "tg"\nurl = "tgram://123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQr/12345"\n',
    ],
)
def test_every_kind_of_secret_triggers_the_permission_warning(tmp_path: Path, snippet: str) -> None:
    path = write(tmp_path, snippet, mode=0o644)
    assert load(str(path), {}).warnings


def test_digest_keys_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[alerts]\ndashboard_url = "javascript:alert(1)"\n')
    with pytest.raises(ConfigError, match=r"alerts\.dashboard_url"):
        load(str(path))
    path.write_text("[alerts]\nemail_max_rows = 1\n")
    with pytest.raises(ConfigError, match=r"alerts\.email_max_rows"):
        load(str(path))


# --- parse_listen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("  ", None),
        ("9108", ("127.0.0.1", 9108)),
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:9108", ("0.0.0.0", 9108)),
        ("localhost:80", ("localhost", 80)),
        ("monitor.internal:65535", ("monitor.internal", 65535)),
        ("[::]:9108", ("::", 9108)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_parse_listen_accepts(value: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("here", "expected host:port"),
        (":9108", "host is missing"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:0", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:http", "port must be a number"),
        ("::1:9108", "IPv6 address in brackets"),
        ("[::1]9108", "followed by :port"),
        ("[nope]:9108", "not an IPv6 address"),
        ("bad_host!:9108", "not a host name"),
        ("http://0.0.0.0:9108", "not a URL"),
        ("0.0.0.0:9108/healthz", "not a URL"),
    ],
)
def test_parse_listen_refuses_with_the_key_named(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listen(value)
    assert info.value.message.startswith(f"service.health_listen = {value!r}: ")
    assert why in info.value.message
    assert info.value.hint and "host:port" in info.value.hint
    assert info.value.exit_code == 2


def test_a_listen_value_holding_a_colon_and_space_is_refused_with_the_whole_reason(
    tmp_path: Path,
) -> None:
    """The reason used to be cut at the value's own ': ' ("dashboard.listen: b': the port...")."""
    with pytest.raises(ConfigError) as info:
        load(str(write(tmp_path, '[dashboard]\nlisten = "a: b"\n')), {})
    assert "dashboard.listen: the port must be a number from 1 to 65535, not ' b'" in str(
        info.value
    )


# --- [dashboard] ---------------------------------------------------------------------------------


def test_dashboard_listen_and_health_listen_name_one_listener(tmp_path: Path) -> None:
    off = ("service.health_listen", None)
    assert load(str(write(tmp_path, ""))).settings.listen_address() == off
    legacy = write(tmp_path, '[service]\nhealth_listen = "9108"\n')
    assert load(str(legacy)).settings.listen_address() == (off[0], ("127.0.0.1", 9108))
    new = write(tmp_path, '[dashboard]\nlisten = "0.0.0.0:8080"\n')
    assert load(str(new)).settings.listen_address() == ("dashboard.listen", ("0.0.0.0", 8080))
    same = write(
        tmp_path, '[service]\nhealth_listen = "9108"\n[dashboard]\nlisten = "127.0.0.1:9108"\n'
    )
    assert load(str(same)).settings.listen_address() == ("dashboard.listen", ("127.0.0.1", 9108))
    two = write(tmp_path, '[service]\nhealth_listen = "9108"\n[dashboard]\nlisten = "9109"\n')
    with pytest.raises(ConfigError, match="one listener"):
        load(str(two))
    bad = write(tmp_path, '[dashboard]\nlisten = "http://x:1"\n')
    with pytest.raises(ConfigError, match=r"dashboard\.listen.*not a URL"):
        load(str(bad))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('username = "ops"', "both username and password"),
        ('password = "x"', "both username and password"),
        ('token = "short"', "at least 16"),
        ('token = "has spaces in it, too many"', "without spaces"),
        ('username = "a:b"\npassword = "x"', "cannot hold ':'"),
        ("page_size = 5", "page_size"),
    ],
)
def test_dashboard_access_settings_are_checked(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        load(str(write(tmp_path, f"[dashboard]\n{text}\n")))
    assert "dashboard" in info.value.message


def test_dashboard_secrets_from_files_are_masked(tmp_path: Path) -> None:
    (tmp_path / "web-password").write_text("correct horse\n")
    (tmp_path / "web-token").write_text("0123456789abcdef0123\n")
    path = write(
        tmp_path,
        '[dashboard]\nlisten = "9108"\nusername = "ops"\npassword_file = "web-password"\n'
        'token_file = "web-token"\n',
    )
    loaded = load(str(path))
    dashboard = loaded.settings.dashboard
    assert dashboard.password == "correct horse" and dashboard.token == "0123456789abcdef0123"
    shown = redacted(loaded.settings)["dashboard"]
    assert shown["password"] == "***" and shown["token"] == "***"
    assert "correct horse" not in repr(loaded.settings)
    assert loaded.sources["dashboard.password"].startswith("secret file")
    missing = write(tmp_path, '[dashboard]\nusername = "ops"\npassword_file = "nope"\n')
    with pytest.raises(ConfigError, match=r"^dashboard\.password_file: .*nope: cannot read"):
        load(str(missing))


def test_a_config_with_a_dashboard_password_must_be_private(tmp_path: Path) -> None:
    path = write(tmp_path, '[dashboard]\nusername = "ops"\npassword = "pw"\n', mode=0o644)
    assert any("readable by other users" in w for w in load(str(path)).warnings)


# --- hostile and careless input --------------------------------------------------------------

TOKEN = "TOKSECRET-7f3a9c2e41"


@pytest.mark.parametrize(
    ("value", "needle"),
    [(TOKEN + "\r", "control character"), (TOKEN + "\n", "control"), ("tök€n-x", "Latin-1")],
)
def test_header_invalid_token_is_a_config_error_naming_the_key(
    tmp_path: Path, value: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, "")), {"VOBIZ_AUTH_TOKEN": value})
    assert exc.value.exit_code == 2
    text = str(exc.value)
    assert "VOBIZ_AUTH_TOKEN" in text and needle in text
    assert value.strip() not in text and TOKEN not in text


def test_binary_files_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(ConfigError, match="not a text file"):
        load(str(path), {})
    path.write_bytes(b"\xef\xbb\xbf[vobiz]\nauth_id = 'PA_1'\n")
    assert load(str(path), {}).settings.vobiz.auth_id == "PA_1"
    secret = tmp_path / "token"
    secret.write_bytes(b"\xff\xfe\x00binary")
    path.write_text(f"[vobiz]\nauth_token_file = '{secret}'\n")
    with pytest.raises(ConfigError, match=r"auth_token_file.*not a text file"):
        load(str(path), {})


def test_world_readable_token_file_warns_naming_it(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\r\n")  # saved on Windows: the line ending is not the token
    secret.chmod(0o644)
    loaded = load(str(write(tmp_path, f"[vobiz]\nauth_token_file = '{secret}'\n")), {})
    assert loaded.settings.vobiz.auth_token == TOKEN
    assert any(str(secret) in w and "chmod 600" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        ('[schedule]\ncron = "0 6 31 2 *"', "never fires"),
        ('[database]\nurl = "sqlite:///:memory:"', "in-memory"),
        ('[database]\nurl = "sqlite://"', "in-memory"),
        ("[alerts]\nretry_backoff_seconds = 99999999999999", "alerts.retry_backoff_seconds"),
        ('[[channels]]\nname = "a"\nurl = "notaurl"', "channel 'a'"),
        ('[[channels]]\nname = "b"\nurl = "slack://"', "channel 'b'"),
        ('[[channels]]\nname = "c"\nurl = "slak://T0AAAA/B0BBBB/cccccccccccc"', "channel 'c'"),
    ],
)
def test_config_errors_at_load(tmp_path: Path, snippet: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, snippet)), {})
    assert needle in str(exc.value) and exc.value.exit_code == 2
    assert "cccccccccccc" not in str(exc.value)


def test_apprise_does_not_log_a_mistyped_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError):
        load(str(write(tmp_path, '[[channels]]\nname = "c"\nurl = "slak://T0/B0/cccccccccc"')), {})
    assert "cccccccccc" not in caplog.text


def test_log_level_names_in_any_case(tmp_path: Path) -> None:
    loaded = load(str(write(tmp_path, '[logging]\nlevel = "debug"\nformat = "JSON"')), {})
    assert loaded.settings.logging.level == "DEBUG" and loaded.settings.logging.format == "json"


def test_environment_channel_index_past_the_end(tmp_path: Path) -> None:
    path = write(tmp_path, '[[channels]]\nname = "a"\nurl = "json://localhost/a"\n')
    with pytest.raises(ConfigError) as exc:
        load(str(path), {"DID_MONITOR__CHANNELS__3__URL": "json://localhost/x"})
    assert "DID_MONITOR__CHANNELS__3__URL" in str(exc.value) and "past the end" in str(exc.value)
    with pytest.raises(ConfigError, match="DID_MONITOR__CHANNELS__2000000__URL"):
        load(str(path), {"DID_MONITOR__CHANNELS__2000000__URL": "json://localhost/x"})
    # the next index adds a channel; indices sort as numbers
    env = {
        f"DID_MONITOR__CHANNELS__{i}__{key}": value
        for i in range(1, 12)
        for key, value in (("NAME", f"c{i}"), ("URL", f"json://localhost/{i}"))
    }
    loaded = load(str(path), env)
    assert [c.name for c in loaded.settings.channels] == ["a", *(f"c{i}" for i in range(1, 12))]


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(str(write(tmp_path, "")), {"DID_MONITOR__ALERTS__RETRY_BACKOFF_SECONDS": "9" * 14})
    assert "DID_MONITOR__ALERTS__RETRY_BACKOFF_SECONDS" in str(exc.value)
    with pytest.raises(ConfigError, match="DID_MONITOR__VOBIZ__PER_PAGE__X"):
        load(str(write(tmp_path, "")), {"DID_MONITOR__VOBIZ__PER_PAGE__X": "1"})


def test_base_url_and_database_password_are_shown_masked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[vobiz]
base_url = "https://user:pw-secret-1@api.example.com/v1"
[database]
url = "postgresql+psycopg://app@db.example.com/m?password=pw-secret-2&sslmode=require"
""",
    )
    shown = str(redacted(load(str(path), {}).settings))
    assert "pw-secret" not in shown
    assert "api.example.com/v1" in shown and "sslmode=require" in shown


# --- fuzz: the loader never raises anything but ConfigError ----------------------------------

_SEGMENTS = [
    "vobiz", "database", "schedule", "sweep", "channels", "alerts", "service", "logging",
    "rules", "blocked", "expiring", "auth_token", "auth_id", "base_url", "per_page", "url",
    "cron", "timezone", "level", "name", "retry_backoff_seconds", "reminders", "0", "1", "2",
    "99999999", "auth_token_file", "health_listen", "enabled", "format", "max_length",
]  # fmt: skip


def _load_quietly(text: bytes, env: dict[str, str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_bytes(text)
        with contextlib.suppress(ConfigError):
            load(str(path), env)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_config_file_bytes(text: bytes) -> None:
    _load_quietly(text, {})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(
        st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4).map(
            lambda parts: "DID_MONITOR__" + "__".join(p.upper() for p in parts)
        ),
        st.text(max_size=40) | st.sampled_from(["[1, 2]", "true", "1e999", "-1", "{a = 1}"]),
        max_size=5,
    )
)
def test_fuzz_environment_overrides(env: dict[str, str]) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items()}
    _load_quietly(b'[[channels]]\nname = "a"\nurl = "json://localhost/a"\n', env)


# --- what the config and secret files may be, and numbers the config may hold ------------------


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``did-monitor --config PATH check-config`` as a user runs it, under a 2 GiB memory limit
    and a timeout, so a loader that reads /dev/zero whole or waits on a FIFO fails the test."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DID_MONITOR", "VOBIZ_"))}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(path), "check-config"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limit_memory,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2 with one ``error:`` line (and its hint) naming every needle, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: ") and all(n in first for n in needles), first
    assert all(line.startswith("  hint: ") for line in rest), result.stderr


def _special_file(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":  # no writer: opening it for reading would block for ever
        os.mkfifo(tmp_path / "fifo")
        return tmp_path / "fifo"
    if kind == "directory":
        (tmp_path / "folder").mkdir()
        return tmp_path / "folder"
    if kind == "huge":
        (tmp_path / "huge").write_bytes(b"a" * (1024 * 1024 + 1))
        return tmp_path / "huge"
    return Path(kind)


SPECIAL_FILES = [
    ("/dev/zero", "character device"),
    ("/dev/urandom", "character device"),
    ("fifo", "FIFO"),
    ("directory", "directory"),
    ("huge", "larger than"),
]


@pytest.mark.parametrize(("kind", "why"), SPECIAL_FILES)
@pytest.mark.parametrize("key", ["vobiz.auth_token_file", "dashboard.token_file"])
def test_secret_files_are_small_regular_files(
    tmp_path: Path, key: str, kind: str, why: str
) -> None:
    """/dev/zero read whole grew memory until a MemoryError traceback; a FIFO with no writer
    hung for ever. Both, a directory and a file over 64 KiB are exit 2 naming key and path."""
    special = _special_file(tmp_path, kind)
    section, name = key.split(".")
    config = write(tmp_path, f'[{section}]\n{name} = "{special}"\n')
    assert_refused(check_config(config), f"{key}: {special}", why)


def test_a_secret_file_of_64_kib_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("t" * 64 * 1024)
    secret.chmod(0o600)
    config = write(tmp_path, f'[vobiz]\nauth_token_file = "{secret}"\n')
    assert load(str(config), {}).settings.vobiz.auth_token == "t" * 64 * 1024
    secret.write_text("t" * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"vobiz\.auth_token_file: .*larger than 64 KiB"):
        load(str(config), {})


@pytest.mark.parametrize(("kind", "why"), SPECIAL_FILES)
def test_the_config_file_is_a_small_regular_file(tmp_path: Path, kind: str, why: str) -> None:
    special = _special_file(tmp_path, kind)
    assert_refused(check_config(special), str(special), why)


def _nested_nots(depth: int) -> str:
    inner = "{ path = 'region', eq = 'x' }"
    when = "{ not = " * depth + inner + " }" * depth
    return f'[[rules.custom]]\nid = "deep"\nmessage = "m"\nwhen = {when}\n'


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param(
            "[vobiz]\nper_page = " + "9" * 5000 + "\n", ("line 2 (per_page)", "digits"), id="int"
        ),
        pytest.param("[vobiz]\nx = [\n  " + "1" * 4400 + "]\n", ("line 3", "digits"), id="item"),
        pytest.param(_nested_nots(500), ("nested too deeply",), id="500-nots"),
        pytest.param(_nested_nots(40), ("when.not", "deeper than 12 levels"), id="40-nots"),
        pytest.param(
            "[schedule]\njitter_seconds = 100000000000000000000\n",
            ("schedule.jitter_seconds",),
            id="jitter-int",
        ),
        pytest.param(
            "[schedule]\njitter_seconds = 1e20\n", ("schedule.jitter_seconds",), id="jitter-float"
        ),
        pytest.param(
            "[schedule]\njitter_seconds = 86401\n",
            ("schedule.jitter_seconds", "86400"),
            id="jitter-day",
        ),
        pytest.param("[vobiz]\ntimeout_seconds = inf\n", ("vobiz.timeout_seconds",), id="inf"),
        pytest.param(
            "[vobiz]\nbackoff_max_seconds = nan\n", ("vobiz.backoff_max_seconds",), id="nan"
        ),
        pytest.param(
            "[schedule]\nmisfire_grace_seconds = 10000000000000\n",
            ("misfire_grace_seconds",),
            id="grace",
        ),
        pytest.param(
            "[rules.expiring]\nreminders = [100000000000]\n",
            ("rules.expiring.reminders",),
            id="reminder",
        ),
        pytest.param(
            "[service]\nretry_interval_seconds = 10000000000\n",
            ("retry_interval_seconds",),
            id="retry-interval",
        ),
    ],
)
def test_numbers_and_nesting_past_their_bounds_are_config_errors(
    tmp_path: Path, text: str, needles: tuple[str, ...]
) -> None:
    """A 5,000-digit integer and 500 nested tables were tracebacks; a jitter of 1e20 seconds
    passed check-config and then crashed ``run``."""
    config = write(tmp_path, text)
    assert_refused(check_config(config), str(config), *needles)


def test_every_numeric_setting_has_an_upper_bound() -> None:
    """Every table reachable from ``Settings``: the sections and the rules' own tables."""
    import annotated_types

    models = _models()
    assert {"DateRuleConfig", "AvailabilityWatch"} <= {m.__name__ for m in models}
    unbounded = [
        f"{model.__name__}.{name}"
        for model in models
        for name, info in model.model_fields.items()
        if info.annotation in (int, float, int | None, float | None)
        and not any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in info.metadata)
    ]
    assert not unbounded


# --- the example config, placeholders and channel URLs from files (issue 21) -------------------

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_loads_with_no_channel_and_no_placeholder() -> None:
    """config.example.toml as shipped: valid, no channel on (a placeholder URL would collect
    alerts for weeks), nothing ``check-config`` would call a placeholder."""
    from monitor.config import placeholder_warnings

    loaded = load(str(ROOT / "config.example.toml"), {})
    assert loaded.settings.channels == ()
    assert placeholder_warnings(loaded.settings) == []


def test_placeholders_from_the_example_are_named_never_quoting_a_secret(tmp_path: Path) -> None:
    from monitor.config import placeholder_warnings

    path = write(
        tmp_path,
        """
[vobiz]
auth_id = "PA_XXXXXXXX"
auth_token = "..."
[service]
heartbeat_url = "https://hc.example.org/ping/abc"
[alerts]
dashboard_url = "https://monitor.example.com/"
[[channels]]
name = "ops-slack"
url = "slack://T000/B000/XXXX"
[[channels]]
name = "hook"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
[[channels]]
name = "ops-email"
url = "mailtos://user:password@smtp.example.com?from=monitor@example.com&to=ops@example.com"
[[channels]]
name = "off"
url = "slack://T000/B000/XXXX"
enabled = false
[[channels]]
name = "real"
url = "slack://TAAAA1111/BBBBB2222/CCCCCC3333secret"
""",
    )
    warnings = placeholder_warnings(load(str(path), {}).settings)
    text = "\n".join(warnings)
    assert len(warnings) == 7, text
    assert "vobiz.auth_id" in text and "PA_XXXXXXXX" in text and "vobiz.auth_token" in text
    assert "service.heartbeat_url" in text and "alerts.dashboard_url" in text
    for name in ("ops-slack", "hook", "ops-email"):
        assert f"({name}): url looks like the example's placeholder" in text
        assert f"outbox drop --channel {name}" in text
    assert "(off)" not in text and "(real)" not in text  # disabled, or a real URL
    assert "password" not in text and "abc" not in text  # URLs masked


def test_channel_url_from_a_file(tmp_path: Path) -> None:
    """``url_file``: the URL from a (secret) file, its trailing newline dropped, masked like
    ``url``, relative to the config; exactly one of the two; the environment still wins."""
    secret = tmp_path / "slack_url"
    secret.write_text("slack://TAAAA1111/BBBBB2222/CCCCfromfile\r\n")
    secret.chmod(0o600)
    path = write(tmp_path, '[[channels]]\nname = "s"\nurl_file = "slack_url"\n')
    loaded = load(str(path), {})
    chan = loaded.settings.channels[0]
    assert chan.url == "slack://TAAAA1111/BBBBB2222/CCCCfromfile" and chan.kind() == "slack"
    assert loaded.sources["channels[0].url"] == f"secret file {secret}"
    assert loaded.warnings == ()  # the config holds no secret, the file is private
    shown = redacted(loaded.settings)["channels"][0]
    assert shown["url"] == "slack://***" and shown["url_file"] == "slack_url"
    assert "CCCCfromfile" not in repr(redacted(loaded.settings))

    env = {"DID_MONITOR__CHANNELS__0__URL": "json://127.0.0.1:9/hook"}
    assert load(str(path), env).settings.channels[0].url == "json://127.0.0.1:9/hook"

    secret.chmod(0o644)
    assert any(str(secret) in w and "chmod 600" in w for w in load(str(path), {}).warnings)

    both = write(tmp_path, '[[channels]]\nname = "s"\nurl = "json://h/x"\nurl_file = "slack_url"\n')
    with pytest.raises(ConfigError, match=r"channels\[0\]\.url: set url or url_file, not both"):
        load(str(both), {})
    neither = write(tmp_path, '[[channels]]\nname = "s"\n')
    with pytest.raises(ConfigError, match=r"channels\.0: .*set url .* or url_file"):
        load(str(neither), {})
    missing = write(tmp_path, '[[channels]]\nname = "s"\nurl_file = "/run/secrets/nope"\n')
    with pytest.raises(ConfigError, match=r"^channels\[0\]\.url_file: /run/secrets/nope: cannot"):
        load(str(missing), {})
    (tmp_path / "empty").write_text("\n")
    empty = write(tmp_path, '[[channels]]\nname = "s"\nurl_file = "empty"\n')
    with pytest.raises(ConfigError, match=r"url_file: .*empty: is empty"):
        load(str(empty), {})
    # A token or password file that is empty (a mount gone wrong) is refused too: read as "",
    # it would have turned the dashboard's access control off.
    for table, key in (("dashboard", "token"), ("dashboard", "password"), ("vobiz", "auth_token")):
        extra = 'username = "ops"\n' if key == "password" else ""
        cfg = write(tmp_path, f'[{table}]\n{extra}{key}_file = "empty"\n')
        with pytest.raises(ConfigError, match=rf"^{table}\.{key}_file: .*empty: is empty"):
            load(str(cfg), {})


# --- secrets are marked on the fields, and everything else follows the marks (issue 20) ----------


def _models() -> list[type[BaseModel]]:
    """Every settings model reachable from ``Settings``."""
    found: list[type[BaseModel]] = []
    todo: list[Any] = [Settings]
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for info in model.model_fields.values():
            for inner in (info.annotation, *get_args(info.annotation)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    todo.append(inner)
    return found


# URLs that hold no credential: shown as they are.
PUBLIC_URLS = {"AlertsConfig.dashboard_url"}


def test_every_secret_looking_setting_is_marked_secret() -> None:
    """A setting named like a credential (token, password, secret, key...) or a URL is marked
    ``Secret``, and a ``*_file`` key reads a marked one, so no new secret can be left out of
    the masking, the scrubber and the permission warning."""
    unmarked, orphan_files = [], []
    for model in _models():
        fields = model.model_fields
        marked = {n for n, i in fields.items() if any(isinstance(m, Secret) for m in i.metadata)}
        for name in fields:
            qualified = f"{model.__name__}.{name}"
            if name.endswith("_file"):
                if name.removesuffix("_file") not in marked:
                    orphan_files.append(qualified)
                continue
            looks_secret = redact.is_credential_key(name) or name == "url" or name.endswith("_url")
            if looks_secret and name not in marked and qualified not in PUBLIC_URLS:
                unmarked.append(qualified)
    assert not unmarked, "mark these Secret (SecretText, SecretURL or ServerURL)"
    assert not orphan_files


def _skeleton(model: type[BaseModel]) -> dict[str, Any]:
    """Empty tables for every table of ``model``, one item in every list of tables."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        inner, args = info.annotation, get_args(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out[name] = _skeleton(inner)
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out[name] = [_skeleton(args[0])]
    return out


def _sample(kind: str, n: int) -> tuple[str, str]:
    """(a valid value of a secret of ``kind``, its secret part)."""
    part = {"text": f"Sekrit-{n}-0123456789abcdef", "url": f"Sekrit{n}x0123456789"}.get(
        kind, f"Sekrit-{n}-pw"
    )
    if kind == "url":
        return f"https://hooks.slack.com/services/TAAAA1111/BBBBB2222/{part}", part
    if kind == "server":
        return f"https://user:{part}@host.test/path", part
    return part, part


def _toml(values: dict[str, str]) -> str:
    """A config setting ``values`` (labels such as vobiz.auth_token or channels[0].url), with
    what their tables need besides (a channel's name, the dashboard's user name)."""
    tables: dict[str, dict[str, str]] = {}
    for label, value in values.items():
        table, key = label.rsplit(".", 1)
        tables.setdefault(table, {})[key] = value
        if label.startswith("dashboard.password"):
            tables[table]["username"] = "ops"
    lines = []
    for table, keys in tables.items():
        if table.endswith("]"):  # one item of a list of tables
            lines += [f"[[{table.partition('[')[0]}]]", 'name = "c"']
        else:
            lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def test_every_secret_setting_is_masked_scrubbed_and_warned_about(tmp_path: Path) -> None:
    """Each ``Secret`` setting, found from the marks alone (a new one is covered unasked): never
    shown by check-config, taught to the scrubber, a readable config holding it is warned about,
    and it may come from its ``*_file``."""
    settings = list(secret_settings(_skeleton(Settings)))
    assert {"vobiz.auth_token", "channels[0].url", "dashboard.token"} <= {s.label for s in settings}
    for n, setting in enumerate(settings):
        value, part = _sample(setting.secret.kind, n)
        path = write(tmp_path, _toml({setting.label: value}), mode=0o644)
        loaded = load(str(path), {})
        assert any("holds secrets" in w for w in loaded.warnings), setting.label
        shown = json.dumps(redacted(loaded.settings))
        assert part not in shown and part not in repr(loaded.settings), setting.label
        assert part not in redact.scrub(f"echo {part}"), setting.label
        if setting.from_file:
            (tmp_path / "secret").write_text(value + "\n")
            (tmp_path / "secret").chmod(0o600)
            path = write(tmp_path, _toml({f"{setting.label}_file": "secret"}))
            loaded = load(str(path), {})
            assert loaded.sources[setting.label].startswith("secret file"), setting.label
            assert part not in json.dumps(redacted(loaded.settings)), setting.label


def test_environment_values_of_text_settings_stay_text(tmp_path: Path) -> None:
    """Which environment values are taken verbatim follows the fields' types, at any depth."""
    path = write(tmp_path, '[[channels]]\nname = "a"\nurl = "json://localhost/a"\n')
    env = {
        "DID_MONITOR__CHANNELS__0__NAME": "2026",
        "DID_MONITOR__CHANNELS__0__RULES": '["billing_due"]',
        "DID_MONITOR__ALERTS__TEMPLATES__TITLE": "42",
        "DID_MONITOR__DASHBOARD__USERNAME": "1e5",
        "DID_MONITOR__DASHBOARD__PASSWORD": "007",
        "DID_MONITOR__SWEEP__MAX_DURATION": "4h",
        "DID_MONITOR__SCHEDULE__JITTER_SECONDS": "60",
    }
    s = load(str(path), env).settings
    assert s.channels[0].name == "2026" and s.channels[0].rules == ("billing_due",)
    assert s.alerts.templates == {"title": "42"}
    assert (s.dashboard.username, s.dashboard.password) == ("1e5", "007")
    assert s.sweep.max_duration == 4 * 3600 and s.schedule.jitter_seconds == 60
