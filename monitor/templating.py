"""Jinja2 templates for digests: the packaged ones, a user's overrides, and their validation.

The packaged templates live in ``monitor/templates/`` (shipped in the wheel). A user copies one
into ``alerts.templates_dir`` and edits it there; a file of the same name in that directory wins.
HTML templates are autoescaped; text templates are given strings already made one-line and free
of control characters, so neither can be broken by a string from the API.
Templates run in Jinja's sandbox: a template can format what it is given, nothing more.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from monitor.errors import ConfigError
from monitor.model import money_text

PACKAGED = Path(__file__).parent / "templates"
# Files a user may override; other files in templates_dir may be included by these.
TEMPLATE_NAMES = ("digest.html", "digest.txt")
TEMPLATE_SUFFIXES = (".html", ".txt")


def _money(value: Decimal | None, currency: str | None = None) -> str:
    """``model.money_text``: exact, at least two decimals, then the currency's code if given:
    1.5 → "1.50", ``amount|money("xof")`` → "300.00 XOF"."""
    if value is None:
        return ""
    return money_text(value, currency)


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else ""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def environment(templates_dir: Path | None) -> SandboxedEnvironment:
    """An environment that finds templates in ``templates_dir`` first, then the packaged ones.

    ``.html`` templates are autoescaped. The caller hands templates only strings it has already
    made one-line and control-free, so ``.txt`` output needs no escaping beyond that.
    """
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(str(PACKAGED)))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(money=_money, date=_date, when=_when, plural=_plural)
    return env


def render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str:
    """Render ``name`` with ``context``; raises ``jinja2.TemplateError`` on a template's fault."""
    return env.get_template(name).render(context)


def check_dir(templates_dir: Path) -> None:
    """Raise ``ConfigError`` unless ``templates_dir`` is a directory whose templates all compile.

    Run when the config loads, so a broken template stops ``check-config``, ``sweep`` and ``run``
    with the file and line named, instead of failing the first digest.
    """
    key = "alerts.templates_dir"
    if not templates_dir.is_dir():
        raise ConfigError(
            f"{key}: {templates_dir} is not a directory",
            hint="create it and copy the templates to override into it "
            f"(the packaged ones are in {PACKAGED})",
        )
    env = environment(templates_dir)
    for path in sorted(templates_dir.iterdir()):
        if not path.is_file() or path.suffix not in TEMPLATE_SUFFIXES:
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: cannot read template {path}: {exc}") from None
        try:
            env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"{key}: template {path} line {exc.lineno}: {exc.message}",
                hint="fix the template, or delete it to use the packaged one",
            ) from None
