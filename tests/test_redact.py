"""The scrubber: no secret leaves the process, whatever text carries it and whoever wrote it.

End to end against a hostile fake API on loopback: the API token is set to a recognisable value
and searched for in stdout, stderr, every table of the database (SQLite and PostgreSQL) and every
message the SMTP and webhook sinks received.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor import logs, redact
from tests.conftest import Hostile, HttpReceiver, SmtpSink
from tests.test_cli import did

SECRET = "TOKSECRET-7f3a9c2e41"
HOOK_SECRET = "hookpathsecret-55aa77"


def test_remembered_values_are_masked_in_every_spelling() -> None:
    redact.remember(['p@ss w/rd"x', "tiny"])
    text = 'a p@ss w/rd"x b p%40ss%20w%2Frd%22x c p%40ss+w%2Frd%22x d "p@ss w/rd\\"x" tiny'
    assert redact.scrub(text) == 'a *** b *** c *** d "***" ***'
    redact.remember(["abc"])  # too short to mask without garbling ordinary words
    assert redact.scrub("abc") == "abc"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET https://bob:hunter2@api.example.com/x failed", "hunter2"),
        ("db postgresql+psycopg://app:s3cr3t@db:5432/m down", "s3cr3t"),
        ("see https://example.com/cb?user=1&password=pw-123&x=1", "pw-123"),
        ("url http://h/x?api_key=K-999&access_token=T-888", "K-999"),
        ("Unsupported URL: slak://T0AAAA/B0BBBB/cccccccccc)", "cccccccccc"),
        ("posting to slack://T0AAAA/B0BBBB/cccccccccc", "B0BBBB"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8qBe7bk2ZwO5U711o3dV_js"),
        ("POST https://hooks.slack.com/services/T0/B0/XyZsecret", "XyZsecret"),
        ("POST https://discord.com/api/webhooks/123/tok-abc", "tok-abc"),
    ],
)
def test_credential_shaped_url_parts_are_masked_whoever_wrote_them(text: str, hidden: str) -> None:
    scrubbed = redact.scrub(text)
    assert hidden not in scrubbed and "***" in scrubbed


def test_channel_url_tokens_are_learned_from_the_config() -> None:
    redact.remember(redact.url_secrets(f"json://127.0.0.1:9/{HOOK_SECRET}/x?token=q-77777"))
    line = f'HTTP Request: POST http://127.0.0.1:9/{HOOK_SECRET}/x "200 OK"'
    assert HOOK_SECRET not in redact.scrub(line)
    # hosts and plain words stay readable
    assert redact.url_secrets("postgresql+psycopg://postgres@127.0.0.1/db") == []
    assert redact.url_secrets("mailto://smtp.example.com?from=a@b&to=c@d") == []


def test_credential_keys_are_removed_from_item_json_at_any_depth() -> None:
    item = {
        "id": "n1",
        "auth_token": "cust-token",
        "sip": {"username": "u", "password": "pw", "nested": [{"api-key": "k", "ok": 1}]},
        "monkey": "stays",
        "key_count": 2,
        "sessionId": "s-1",
        "otp": "123456",
    }
    assert redact.strip_credentials(item) == {
        "id": "n1",
        "sip": {"username": "u", "nested": [{"ok": 1}]},
        "monkey": "stays",
        "key_count": 2,
    }
    assert redact.has_credentials(item) and not redact.has_credentials({"monkey": [{"ok": 1}]})
    with pytest.raises(redact.TooDeep):
        redact.has_credentials(json.loads("[" * 70 + "]" * 70))


def test_a_hostile_api_s_long_keys_are_judged_but_never_cached() -> None:
    """Real keys are short and cached; a megabyte key (or a key set holding one) is checked
    each time and never kept in the long-running service's memory."""
    long_plain, long_secret = "k" * 1_000_000, "x" * 1_000_000 + "_token"
    redact._KEY_SETS.clear()  # other tests' random items may have filled it
    cached_keys = redact._is_credential_key.cache_info().currsize
    assert redact.has_credentials({long_secret: 1, "id": 2})
    assert not redact.has_credentials({long_plain: 1, "id": 2})
    assert redact.is_credential_key(long_secret) and not redact.is_credential_key(long_plain)
    assert all(len(k) <= redact.MAX_CACHED_KEY for keys in redact._KEY_SETS for k in keys)
    # "id" may be new to the key cache; the two long keys never are
    assert redact._is_credential_key.cache_info().currsize <= cached_keys + 1
    assert redact.has_credentials({"auth_token": 1}) and ("auth_token",) in redact._KEY_SETS


def test_log_records_of_any_library_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    redact.remember([SECRET])
    logs.setup("DEBUG", "text")
    try:
        logging.getLogger("httpx").warning("HTTP Request: GET %s", f"https://x/?token={SECRET}")
        logging.getLogger("apprise").error("Unsupported URL: slack://%s/abc/def", SECRET)
        try:
            raise ValueError(f"Invalid header value b'{SECRET}\\r'")
        except ValueError:
            logging.getLogger("monitor.x").exception("boom %s", SECRET)
        logs.setup("DEBUG", "json")
        logging.getLogger("urllib3").warning("x", extra={"url": f"https://u:{SECRET}@h"})
        # raised to WARNING whatever the level: request lines are never logged
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert SECRET not in err and err.count("***") >= 4


def test_database_url_and_base_url_show_masked() -> None:
    def shown(url: str) -> str:
        return redact.mask_url(url, keep_path=True)

    assert shown("postgresql://app:pw1234@db/m") == "postgresql://app:***@db/m"
    masked = shown("postgresql://db/m?user=app&password=pw1234")
    assert "pw1234" not in masked and "user=app" in masked
    assert shown("sqlite:////abs/path.db") == "sqlite:////abs/path.db"
    # the same query keys as the scrubber's, and the credential keys besides
    masked = shown("postgresql://db/m?auth=a1b2c3&sig=d4e5f6&sessionid=g7h8i9&x=1")
    assert all(v not in masked for v in ("a1b2c3", "d4e5f6", "g7h8i9")) and "x=1" in masked
    assert shown("postgresql://u:p@host:notaport/db") == "postgresql://u:***@host:notaport/db"
    assert redact.mask_url("https://[::1") == "***"  # unparsable: nothing of it shown


# --- end to end: a hostile API that echoes the token ------------------------------------------


def every_stored_text(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(
                repr(row) for table in meta.sorted_tables for row in conn.execute(table.select())
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("body_kind", ["error_echo", "item_token"])
def test_the_token_never_leaves_the_process(
    tmp_path: Path,
    db_url: str,
    hostile: Hostile,
    http_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    body_kind: str,
) -> None:
    if body_kind == "error_echo":
        message = f"your token {SECRET} is invalid (try %s)" % SECRET.replace("-", "%2D")
        hostile.respond = lambda h: (400, json.dumps({"error": {"message": message}}).encode())
    else:
        item = {
            "id": "n1",
            "e164": "+14155550100",
            "account_id": "MA_1",
            "status": "active",
            "application_id": None,
            "auth_token": SECRET,
            "sip": {"password": SECRET},
        }
        page = {"items": [item], "total": 1, "page": 1, "per_page": 100}
        # The customer's own token arrives with its account, too.
        account = {"auth_id": "MA_1", "name": "C", "auth_token": SECRET, "api_key": SECRET}
        accounts = {"accounts": [account], "total": 1, "page": 1, "size": 100}
        hostile.respond = lambda h: (
            200,
            json.dumps(accounts if "/partner/accounts" in h.path else page).encode(),
        )
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[vobiz]
base_url = "{hostile.url}"
auth_id = "PA_TEST"
max_requests_per_second = 0
max_retries = 0
[database]
url = "{db_url}"
[logging]
level = "debug"
[[channels]]
name = "hook"
url = "{http_receiver.url(HOOK_SECRET)}"
[[channels]]
name = "mail"
url = "{smtp_server.url()}"
""")
    cfg.chmod(0o600)
    env = {"VOBIZ_AUTH_TOKEN": SECRET}
    runs = [did("--config", str(cfg), "sweep", "--no-progress", cwd=tmp_path, env=env)]
    runs.append(did("--config", str(cfg), "status", "--json", cwd=tmp_path, env=env))
    runs.append(did("--config", str(cfg), "findings", "--json", cwd=tmp_path, env=env))
    runs.append(did("--config", str(cfg), "check-config", cwd=tmp_path, env=env))
    for run in runs:
        assert "Traceback" not in run.stderr
        assert SECRET not in run.stdout + run.stderr
        assert HOOK_SECRET not in run.stdout + run.stderr
    if body_kind == "error_echo":
        assert runs[0].returncode == 1 and "***" in runs[0].stderr
    else:
        assert runs[0].returncode == 0, runs[0].stderr
    stored = every_stored_text(db_url)
    assert SECRET not in stored and HOOK_SECRET not in stored
    assert http_receiver.posts and smtp_server.messages
    assert SECRET not in json.dumps([p["body"] for p in http_receiver.posts])
    assert SECRET not in "".join(str(m) for m in smtp_server.messages)
