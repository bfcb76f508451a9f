"""The README as a path a new operator walks: its "Try it against the sandbox" blocks run as
written (the sandbox, the config, every command, the service with its dashboard); every
``did-monitor`` line in its code blocks names a real command and real options; the config keys
it and ARCHITECTURE.md name exist; ARCHITECTURE.md lists ``monitor/``'s modules exactly and
names real homes for the shared concepts; README, config.example.toml and compose.yaml agree on
file modes, the API timeout and output formats.

The sandbox path's blocks are marked in README.md by an HTML comment on the line before the
fence: ``<!-- sandbox-path: server -->`` (the command that starts the sandbox),
``<!-- sandbox-path: config -->`` (config.toml, as is), ``<!-- sandbox-path -->`` (commands run
one by one, each must exit 0) and ``<!-- sandbox-path: service -->`` (``did-monitor run``,
stopped with SIGTERM once the dashboard answers). Ports the README hard-codes are swapped for
free ones; nothing here depends on today's date."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from monitor.cli import cli
from monitor.config import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")
COMPOSE = (ROOT / "compose.yaml").read_text(encoding="utf-8")

README_API = "127.0.0.1:8765"  # the sandbox's default address, as the README's config names it
README_WEB = "127.0.0.1:9108"  # the dashboard's address in the README's config
MARKED = re.compile(r"<!-- sandbox-path(?:: (\w+))? -->\n```(\w*)\n(.*?)```", re.DOTALL)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def sandbox_blocks() -> dict[str, list[str]]:
    """The marked blocks by kind ("commands" for the unnamed marker), in README order."""
    found: dict[str, list[str]] = {}
    for kind, _lang, body in MARKED.findall(README):
        found.setdefault(kind or "commands", []).append(body)
    return found


def command_lines(body: str) -> list[list[str]]:
    """Each non-blank line of a shell block as argv, comments dropped."""
    return [argv for line in body.splitlines() if (argv := shlex.split(line, comments=True))]


def program(argv: list[str]) -> list[str]:
    """``did-monitor`` as installed, or this interpreter's ``-m monitor`` (the same program)."""
    if argv[0] != "did-monitor":
        return argv
    exe = shutil.which("did-monitor")
    return ([exe] if exe else [sys.executable, "-m", "monitor"]) + argv[1:]


def clean_env() -> dict[str, str]:
    """The environment a new user has: no did-monitor or Vobiz variables, no proxy."""
    drop = ("DID_MONITOR_", "VOBIZ_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and not k.lower().endswith("_proxy")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


# --- the sandbox path, run as written ---------------------------------------------------------


def test_the_sandbox_path_is_marked_in_order() -> None:
    blocks = sandbox_blocks()
    assert [len(blocks.get(k, [])) for k in ("server", "config", "service")] == [1, 1, 1]
    assert blocks.get("commands"), "no <!-- sandbox-path --> command block"
    order = [m.start() for m in MARKED.finditer(README)]
    kinds = [m.group(1) or "commands" for m in MARKED.finditer(README)]
    assert kinds[0] == "server" and kinds[1] == "config" and kinds[-1] == "service", kinds
    assert order == sorted(order)
    section = README.split("## Try it against the sandbox", 1)[1].split("\n## ", 1)[0]
    assert all(m.group(0) in section for m in MARKED.finditer(README)), "a block outside it"


def test_the_config_names_the_sandbox_default_address_and_credentials() -> None:
    """The README's config points at the sandbox as ``did-monitor sandbox`` starts it."""
    config = tomllib.loads(sandbox_blocks()["config"][0])
    sandbox = cli.commands["sandbox"]
    port = next(p for p in sandbox.params if p.name == "port").default
    host = next(p for p in sandbox.params if p.name == "host").default
    assert config["vobiz"]["base_url"] == f"http://{host}:{port}" == f"http://{README_API}"
    from monitor.sandbox import Sandbox

    params = inspect.signature(Sandbox).parameters
    auth_id, token = params["auth_id"].default, params["auth_token"].default
    assert (config["vobiz"]["auth_id"], config["vobiz"]["auth_token"]) == (auth_id, token)
    assert f"`{auth_id}`" in README and f"`{token}`" in README


@pytest.fixture
def sandbox_api(tmp_path: Path) -> Iterator[str]:
    """``did-monitor sandbox`` as the README starts it, on a free port; yields its address."""
    (argv,) = command_lines(sandbox_blocks()["server"][0])
    assert argv == ["did-monitor", "sandbox"], argv
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [*program(argv), "--port", address.rpartition(":")[2]],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("credentials:" in line for line in lines):
            assert proc.poll() is None, f"the sandbox stopped: {''.join(lines)}"
            assert time.monotonic() < deadline, f"the sandbox never started: {''.join(lines)}"
            time.sleep(0.05)
        assert any("VOBIZ_AUTH_ID=PA_SANDBOX VOBIZ_AUTH_TOKEN=sandbox-token" in x for x in lines)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        program(argv),
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, (
        f"`{shlex.join(argv)}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


def test_the_sandbox_path_runs_as_written(tmp_path: Path, sandbox_api: str) -> None:
    blocks = sandbox_blocks()
    web = f"127.0.0.1:{free_port()}"
    config = blocks["config"][0]
    assert README_API in config and README_WEB in config
    (tmp_path / "config.toml").write_text(
        config.replace(README_API, sandbox_api).replace(README_WEB, web), encoding="utf-8"
    )
    outputs: dict[str, str] = {}
    for body in blocks["commands"]:
        for argv in command_lines(body):
            done = run(argv, tmp_path)
            outputs[shlex.join(argv)] = done.stdout + done.stderr
    # What the README says each shows.
    assert outputs["did-monitor check-config"].startswith("config: config.toml is valid")
    assert 'auth_token = "***"' in outputs["did-monitor check-config"]
    assert re.search(r"sweep 1 complete: 500 numbers", outputs["did-monitor sweep"])
    assert "open finding(s)" in outputs["did-monitor findings"]
    assert "next scheduled sweep" in outputs["did-monitor status"]
    assert "amount_due" in outputs["did-monitor costs --due-within 30d"]
    findings = json.loads(run(["did-monitor", "findings", "--json"], tmp_path).stdout)
    assert isinstance(findings, list) and findings, "findings --json is a JSON array"

    (argv,) = command_lines(blocks["service"][0])
    assert argv == ["did-monitor", "run"], argv
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            program(argv), cwd=tmp_path, env=clean_env(), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while get(f"http://{web}/healthz") != 200 or get(f"http://{web}/") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no dashboard at {web}:\n{log.read_text()}"
            time.sleep(0.2)
        assert get(f"http://{web}/metrics") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "web listener on http://" in log.read_text()


# --- every did-monitor line in the README names a real command and real options ----------------


def readme_command_lines() -> Iterator[str]:
    for _lang, body in FENCE.findall(README):
        for line in body.splitlines():
            for part in re.split(r"&&|\|(?!\|)|;", line.split(" #", 1)[0]):
                part = part.strip()
                if part.startswith("did-monitor "):
                    yield part


def resolve(line: str) -> tuple[click.Command, list[str]]:
    """The (sub)command a README line names, and the options it uses."""
    words = line.replace("[", " ").replace("]", " ").split()[1:]
    if words[:1] == ["--config"]:
        words = words[2:]
    command: click.Command = cli
    while isinstance(command, click.Group):
        assert words, f"{line!r}: no command"
        found = command.commands.get(words[0])
        assert found is not None, f"{line!r}: no command {words[0]!r}"
        command, words = found, words[1:]
    return command, [w for w in words if re.fullmatch(r"--[a-z][a-z-]*", w)]


def test_every_readme_command_and_option_exists() -> None:
    lines = list(readme_command_lines())
    assert len(lines) > 30
    for line in lines:
        command, options = resolve(line)
        known = {o for p in command.params for o in p.opts} | {"--help"}
        unknown = [o for o in options if o not in known]
        assert not unknown, f"{line!r}: {unknown} are not options of {command.name}"


# --- config keys and code names in the docs exist ----------------------------------------------

REMOVED_KEYS = {"sweep.fetch_process"}  # named as gone, with what to do


def config_key_exists(section: str, key: str) -> bool:
    model: Any = Settings.model_fields[section].annotation
    return key in getattr(model, "model_fields", {})


def known_name(section: str, key: str) -> bool:
    """A config key, a key named as removed, or (for a section named like a module) code."""
    if config_key_exists(section, key) or f"{section}.{key}" in REMOVED_KEYS or key == "py":
        return True
    return code_exists(section, key)


def code_exists(module: str, name: str) -> bool:
    """``monitor.<module>`` has ``name``, as an attribute or as a submodule."""
    if importlib.util.find_spec(f"monitor.{module}") is None:
        return False
    if hasattr(importlib.import_module(f"monitor.{module}"), name):
        return True
    package = hasattr(importlib.import_module(f"monitor.{module}"), "__path__")
    return package and importlib.util.find_spec(f"monitor.{module}.{name}") is not None


# `module.name`, the module possibly a dotted path inside the package (`alerts.plan.plan_digests`)
CODE_NAME = re.compile(r"`((?:[a-z_]+\.)*[a-z_]+)\.([A-Za-z_]+)`")


@pytest.mark.parametrize("name", ["README.md", "ARCHITECTURE.md", "config.example.toml"])
def test_dotted_config_keys_exist(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    sections = set(Settings.model_fields) - {"channels"}
    named = set(re.findall(r"(?<![\w./-])([a-z]+)\.([a-z_]+)(?![\w(/-])", text))
    wrong = sorted(f"{s}.{k}" for s, k in named if s in sections and not known_name(s, k))
    assert not wrong, f"{name} names config keys that do not exist: {wrong}"


def test_architecture_names_real_code() -> None:
    """Every ``module.name`` ARCHITECTURE.md names (that is not a config key) exists."""
    top = {p.stem for p in (ROOT / "monitor").glob("*.py")}
    top |= {p.parent.name for p in (ROOT / "monitor").glob("*/__init__.py")}
    named = set(CODE_NAME.findall(ARCHITECTURE))
    missing = [
        f"{m}.{n}"
        for m, n in named
        if m.split(".")[0] in top
        and not (m in Settings.model_fields and known_name(m, n))
        and not (n == "py" or code_exists(m, n))
    ]
    assert not missing, missing


def test_each_shared_concept_has_the_home_architecture_names() -> None:
    table = ARCHITECTURE.split("## One home for each shared concept", 1)[1].split("\n## ", 1)[0]
    homes = CODE_NAME.findall(table)
    for module, name in homes:
        assert code_exists(module, name), f"{module}.{name}"
    named = {f"{m}.{n}" for m, n in homes}
    for home in (
        "vocab.money_text",
        "vocab.SEVERITY_RANK",
        "vocab.PALETTE",
        "vocab.when_text",
        "vocab.iso",
        "vocab.due_text",
        "vocab.parse_duration",
        "vocab.escape",
        "vocab.CONTROL_CHARS",
        "store.urgency_order",
        "findings.urgency",
        "findings.view",
        "store.finding_query",
        "store.silenced",
        "model.parse_time",
        "reports.forecast",
        "reports.changed_fields",
        "rules.REGISTRY",
    ):
        assert home in named, home


def test_architecture_lists_every_module_once() -> None:
    section = ARCHITECTURE.split("## The modules, by stage", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`((?:\w+/)?\w+\.py|py\.typed)`", section)
    package = ROOT / "monitor"
    tree = {
        p.relative_to(package).as_posix()
        for p in [*package.rglob("*.py"), package / "py.typed"]
        if "__pycache__" not in p.parts
    }
    assert sorted(listed) == sorted(set(listed)), "a module is listed twice"
    assert set(listed) == tree, (
        f"not listed: {sorted(tree - set(listed))}; not in monitor/: {sorted(set(listed) - tree)}"
    )


# --- one story in the README, the example config and compose.yaml ------------------------------


def test_the_first_lines_are_the_two_commands() -> None:
    assert README.splitlines()[:5] == [
        "# did-monitor",
        "",
        "```sh",
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && did-monitor demo",
        'python3 -m venv .venv && . .venv/bin/activate && pip install ".[test]" && pytest',
    ]
    assert (
        "test"
        in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )


def test_file_modes_agree() -> None:
    """600 for a config in general (it may hold a secret), 644 for compose's (it holds none and
    uid 10001 must read it); chmod before chown, since the owner alone may chmod."""
    for name, text in (("README.md", README), ("config.example.toml", EXAMPLE)):
        assert "chmod 600" in text and "644" in text and "10001" in text, name
    assert "chmod 644 config.toml" in COMPOSE and "uid 10001" in COMPOSE and "600" in COMPOSE
    for name, text in (("README.md", README), ("compose.yaml", COMPOSE)):
        for line in text.splitlines():
            if "chown 10001" in line and "chmod" in line:
                assert line.index("chmod") < line.index("chown"), f"{name}: {line.strip()}"


def test_the_api_timeout_is_told_the_same_way() -> None:
    said = "connecting, each wait for data, and a whole response body from its headers on"
    flat = {
        name: " ".join(re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()).split()
        for name, text in (
            ("README.md", README),
            ("config.example.toml", re.sub(r"^[^#\n]*#", "#", EXAMPLE, flags=re.MULTILINE)),
            ("compose.yaml", COMPOSE),
        )
    }
    for name, words in flat.items():
        text = " ".join(words)
        assert said in text, f"{name} does not say what vobiz.timeout_seconds bounds"
        assert "timeout_seconds" in text, name


def test_output_formats_are_told_the_same_way() -> None:
    assert "table|csv|json" in README and "table|csv|json" in EXAMPLE
    for name, text in (("README.md", README), ("config.example.toml", EXAMPLE)):
        flat = " ".join(text.split())
        assert re.search(r"findings --json`? (is|prints) (one )?a? ?JSON array", flat), name
    assert "--json: a JSON array" in COMPOSE
    assert "one finding per line as" not in README
    help_text = cli.commands["findings"].params
    assert any("JSON array" in (getattr(p, "help", "") or "") for p in help_text)


def test_the_web_listener_is_one_thread_of_the_service() -> None:
    from monitor.web import server

    assert "on a thread of the service's process" in (server.__doc__ or "")
    assert "a thread of the service's own process" in README
    assert "in its own process" not in README
