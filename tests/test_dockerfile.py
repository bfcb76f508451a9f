"""Structure checks of the container files (no Docker engine runs here): the Dockerfile is parsed
into instructions, compose.yaml is read with PyYAML (installed as a dependency of apprise), and
the HEALTHCHECK command and the compose environment are exercised for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs here; only safe_load is used

from monitor.config import load, parse_listen
from tests.conftest import serve_probes

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(step)
    return result


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def test_instruction_parser_joins_continuations() -> None:
    text = '# c\nFROM a AS b\nRUN one \\\n  # note\n  && two\nCMD ["x"]\n'
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "one && two"), ("CMD", '["x"]')]


def test_multi_stage_build_with_a_slim_runtime(dockerfile: list[tuple[str, str]]) -> None:
    builder, runtime = stages(dockerfile)
    assert re.fullmatch(r"python:3\.11-slim AS builder", builder[0][1], re.I)
    assert re.fullmatch(r"python:3\.11-slim( AS \w+)?", runtime[0][1], re.I)
    build = " ".join(args_of(builder, "RUN"))
    assert "pip wheel" in build or "--prefix" in build
    assert "--prefix=/install" in build
    assert any("--from=builder" in c and "/usr/local" in c for c in args_of(runtime, "COPY"))
    assert all("pip install" not in r for r in args_of(runtime, "RUN"))  # built, not rebuilt


def test_runtime_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    runtime = stages(dockerfile)[-1]
    users = args_of(runtime, "USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # the USER comes before the process starts, and after anything that needed root
    keywords = [kw for kw, _ in runtime]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw in {"RUN", "COPY"})
    # /data is created and handed to that user, so the volume is writable
    setup = " ".join(args_of(runtime, "RUN"))
    assert (
        "10001" in users[-1] and "--uid 10001" in setup and "chown monitor:monitor /data" in setup
    )


def test_data_volume_config_path_and_entrypoint(dockerfile: list[tuple[str, str]]) -> None:
    runtime = stages(dockerfile)[-1]
    assert args_of(runtime, "WORKDIR")[-1] == "/data"
    assert args_of(runtime, "VOLUME") == ["/data"]
    env = " ".join(args_of(runtime, "ENV"))
    assert "DID_MONITOR_CONFIG=/config/config.toml" in env
    assert "DID_MONITOR__SERVICE__HEALTH_LISTEN=0.0.0.0:9108" in env
    assert json.loads(args_of(runtime, "ENTRYPOINT")[-1]) == ["did-monitor"]
    assert json.loads(args_of(runtime, "CMD")[-1]) == ["run"]
    assert args_of(runtime, "EXPOSE") == ["9108"]


def healthcheck_command(dockerfile: list[tuple[str, str]]) -> list[str]:
    (check,) = args_of(stages(dockerfile)[-1], "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options and "--start-period=" in options
    argv: list[str] = json.loads(command)
    return argv


def test_healthcheck_uses_python_not_curl(dockerfile: list[tuple[str, str]]) -> None:
    argv = healthcheck_command(dockerfile)
    assert argv[:2] == ["python", "-c"]
    assert "urllib" in argv[2] and "/healthz" in argv[2]
    assert "curl" not in " ".join(argv) and "wget" not in " ".join(argv)


class Verdict:
    ok = True

    def probe(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {}


@pytest.fixture
def health_port() -> Iterator[tuple[int, Verdict]]:
    verdict = Verdict()
    server = serve_probes(verdict.probe, verdict.probe)
    try:
        yield server.port, verdict
    finally:
        server.stop()


def test_the_healthcheck_command_really_checks(
    dockerfile: list[tuple[str, str]], health_port: tuple[int, Verdict]
) -> None:
    port, verdict = health_port
    argv = [sys.executable, *healthcheck_command(dockerfile)[1:]]
    env = {
        **os.environ,
        "DID_MONITOR__SERVICE__HEALTH_LISTEN": f"0.0.0.0:{port}",
        "http_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    assert subprocess.run(argv, env=env, capture_output=True, timeout=10).returncode == 0
    verdict.ok = False
    assert subprocess.run(argv, env=env, capture_output=True, timeout=10).returncode != 0


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "config.toml", "*.db", ".env", "secrets"} <= ignored
    assert not ignored & {"monitor", "migrations", "pyproject.toml", "README.md"}


# --- compose.yaml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_postgres_with_a_healthcheck_gates_the_monitor(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert services["monitor"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])


def test_monitor_environment_and_secret(compose: dict[str, Any]) -> None:
    monitor = compose["services"]["monitor"]
    env = monitor["environment"]
    assert env["DID_MONITOR__DATABASE__URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["DID_MONITOR__DATABASE__URL"]
    assert env["DID_MONITOR__SERVICE__HEALTH_LISTEN"] == "0.0.0.0:9108"
    assert parse_listen(env["DID_MONITOR__SERVICE__HEALTH_LISTEN"]) == ("0.0.0.0", 9108)
    assert monitor["secrets"] == ["vobiz_auth_token", "slack_url"]
    assert env["DID_MONITOR__VOBIZ__AUTH_TOKEN_FILE"] == "/run/secrets/vobiz_auth_token"
    assert compose["secrets"]["vobiz_auth_token"]["file"]
    assert compose["secrets"]["slack_url"]["file"] == "./secrets/slack_url"
    assert not any("TOKEN" in k and not k.endswith("_FILE") for k in env)
    assert "./config.toml:/config/config.toml:ro" in monitor["volumes"]
    grace = int(str(monitor["stop_grace_period"]).rstrip("s"))
    assert grace > 30  # longer than the default service.shutdown_timeout_seconds


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR} / ${VAR:?message} substitution, enough for this file."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: variables[m.group(1)], value)


def test_the_compose_environment_loads_as_valid_settings(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "vobiz_auth_token"
    secret.write_text("tok-from-secret\n", encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text('[vobiz]\nauth_id = "PA_X"\n', encoding="utf-8")
    env = {
        key: interpolate(str(value), {"POSTGRES_PASSWORD": "abc123"})
        for key, value in compose["services"]["monitor"]["environment"].items()
    }
    env["DID_MONITOR__VOBIZ__AUTH_TOKEN_FILE"] = str(secret)
    settings = load(str(config), environ=env).settings
    assert settings.vobiz.auth_token == "tok-from-secret"
    assert settings.database.url == "postgresql+psycopg://monitor:abc123@postgres:5432/monitor"
    assert settings.service.health_listen == "0.0.0.0:9108"


def test_the_config_compose_describes_reads_the_slack_url_from_its_secret(tmp_path: Path) -> None:
    """compose.yaml's header: a config with ``url_file = "/run/secrets/slack_url"`` (the mounted
    secret) and no secret in it, so the container's user may read it at 644 without a warning;
    the header and the README agree on that mode."""
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    header = [line.lstrip("# ") for line in text.splitlines() if line.startswith("#")]
    start = header.index("[[channels]]")
    snippet = "\n".join(header[start : start + 3])
    assert 'url_file = "/run/secrets/slack_url"' in snippet
    secret = tmp_path / "slack_url"
    secret.write_text("https://hooks.slack.com/services/TAAAA/BBBBB/CCCCsecret\n")
    secret.chmod(0o400)
    config = tmp_path / "config.toml"
    config.write_text(snippet.replace("/run/secrets/slack_url", str(secret)), encoding="utf-8")
    config.chmod(0o644)
    loaded = load(str(config), environ={})
    assert loaded.settings.channels[0].kind() == "slack" and loaded.warnings == ()
    assert "chmod 644 config.toml" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "644 lets uid 10001 read it" in readme
