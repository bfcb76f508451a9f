"""The email digest: a document from Jinja2 templates (HTML, or text) with every finding, and
the CSV of the whole list that rides along when the body is capped.

Templates get strings already made one-line and control-free (``_clean``); HTML templates are
autoescaped on top of that, so nothing from the API can add markup, links or lines.
"""

from __future__ import annotations

import csv
import io
import logging
import string
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from monitor import vocab
from monitor.alerts.digest import (
    Digest,
    due_soon_text,
    ordered_items,
    render_title,
    summary,
    template_variables,
)
from monitor.errors import ConfigError
from monitor.findings import FindingView, days_left, number_text
from monitor.vocab import CONTROL_CHARS, SEVERITIES, dashboard_link, money_text, one_line

PACKAGED = Path(__file__).parent / "templates"


# Files a user may override; other files in templates_dir may be included by these.
TEMPLATE_NAMES = ("digest.html", "digest.txt")


TEMPLATE_SUFFIXES = (".html", ".txt")


def _money(value: Decimal | None, currency: str | None = None) -> str:
    """``vocab.money_text``: exact, at least two decimals, then the currency's code if given:
    1.5 → "1.50", ``amount|money("xof")`` → "300.00 XOF"."""
    if value is None:
        return ""
    return money_text(value, currency)


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
    env.filters.update(money=_money, date=vocab.day_text, when=vocab.when_text, plural=_plural)
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


log = logging.getLogger(__name__)


CSV_NAME = "did-monitor-findings.csv"


# Gmail shows "[Message clipped] View entire message" instead of the rest of a message whose
# HTML passes about 102 KB: the body stops adding rows before this many bytes (the rest is in
# the CSV), and the default row cap keeps a typical digest well under it (rows with a
# dashboard link run to about 700 bytes each).
BODY_BUDGET = 95_000


DEFAULT_MAX_ROWS = 100


# The attachment is UTF-8 with a byte-order mark: Excel reads a CSV without one in the
# machine's legacy code page and garbles non-ASCII names. (Apprise's attachments take a bare
# MIME type, so "charset=utf-8" cannot be said in the Content-Type; the BOM says it.)
CSV_BOM = "\ufeff"


CSV_COLUMNS = (
    "change",
    "severity",
    "rule",
    "number",
    "account_id",
    "account_name",
    "message",
    "due_date",
    "days_left",
    "tier",
    "monthly_fee",
    "currency",
    "tags",
)


@dataclass(frozen=True)
class Attachment:
    """A file that rides along with a message (the full list as CSV when the body is capped)."""

    name: str
    mimetype: str
    content: str


@dataclass(frozen=True)
class Document:
    """A rendered digest: its body and whatever must travel with it."""

    body: str
    attachments: tuple[Attachment, ...] = ()


def _clean(value: object) -> str:
    """One line, no control characters, bounded: safe for a template to print as it is."""
    text = CONTROL_CHARS.sub(" ", str(value)).strip()
    return text if len(text) <= 120 else text[:119] + "…"


def _row(item: FindingView, change: str, now: datetime | None) -> dict[str, object]:
    days = days_left(item, now)
    return {
        "change": change,
        "severity": item.severity,
        "number": _clean(number_text(item)),
        "account": _clean(item.account_name or item.account_id),
        "account_id": _clean(item.account_id) if item.account_name else "",
        "rule": _clean(item.rule),
        "what": _clean(item.message),
        "due": vocab.day_text(item.due_at),
        "days_left": days,
        "when": vocab.due_text(days),
        "tier": item.tier,
        "tags": [_clean(t) for t in item.tags],
    }


def _section_key(change: str, item: FindingView) -> str:
    return "resolved" if change == "resolved" else item.severity


def _context(
    digest: Digest, prefix: str, templates: Mapping[str, str], max_rows: int, dashboard_url: str
) -> dict[str, object]:
    def link(item: FindingView) -> str:
        if not dashboard_url or not item.has_number:
            return ""
        return dashboard_link(dashboard_url, "numbers", item.e164)

    items = ordered_items(digest)
    totals: dict[str, int] = defaultdict(int)
    for change, item in items:
        totals[_section_key(change, item)] += 1
    sections: dict[str, dict[str, object]] = {}
    for n, (change, item) in enumerate(items):
        key = _section_key(change, item)
        if key not in sections:
            colour, background = vocab.shade(key).colour, vocab.shade(key).background
            sections[key] = {
                "key": key,
                "label": key.capitalize(),
                "colour": colour,
                "background": background,
                "total": totals[key],
                "rows": [],
            }
        if n < max_rows:
            rows = sections[key]["rows"]
            assert isinstance(rows, list)
            rows.append(_row(item, change, digest.swept_at) | {"link": link(item)})
    announced = [*digest.new, *digest.reminders]
    by_rule: dict[str, int] = defaultdict(int)
    for it in announced:
        by_rule[_clean(it.rule)] += 1
    variables = template_variables(digest, prefix)
    return {
        "title": render_title(digest, prefix, templates),
        "prefix": one_line(prefix),
        "intro": _clean_paragraph(string.Template(templates.get("intro", "")), variables),
        "footer": _clean_paragraph(string.Template(templates.get("footer", "")), variables),
        "swept_at": digest.swept_at,
        "summary": summary(digest),
        "new": len(digest.new),
        "reminders": len(digest.reminders),
        "resolved": len(digest.resolved),
        "still_open": digest.still_open,
        "numbers_swept": digest.numbers_swept,
        "caveat": one_line(digest.caveat),
        "notes": one_line(digest.notes),
        "by_severity": [
            {"key": s, "label": s.capitalize(), "count": n, "colour": vocab.shade(s).colour}
            for s in SEVERITIES
            if (n := sum(1 for i in announced if i.severity == s))
        ],
        "by_rule": sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])),
        "at_risk": [(c, amount) for c, amount in digest.at_risk.items()],
        "due_soon": due_soon_text(digest) if digest.due_soon or digest.due_undated else "",
        "sections": list(sections.values()),
        "total_rows": len(items),
        "shown_rows": min(len(items), max_rows),
        "capped": len(items) > max_rows,
        "attachment": CSV_NAME,
        "dashboard_url": dashboard_url,
        "findings_url": dashboard_link(dashboard_url, "findings") if dashboard_url else "",
    }


def _clean_paragraph(tpl: string.Template, variables: Mapping[str, str]) -> str:
    return CONTROL_CHARS.sub(" ", tpl.safe_substitute(variables)).strip()


def render_document(
    digest: Digest,
    fmt: Literal["html", "text"],
    *,
    prefix: str = "did-monitor",
    templates: Mapping[str, str] | None = None,
    templates_dir: Path | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    dashboard_url: str = "",
    max_bytes: int = BODY_BUDGET,
) -> Document:
    """The email digest from the ``digest.html`` or ``digest.txt`` template: a summary, then a
    table per severity, most urgent first. Every item is in it: past ``max_rows`` rows, or once
    the body would pass ``max_bytes`` (Gmail clips a message at about 100 KB), the body shows
    the most urgent ones, says so, and the whole list rides along as a CSV attachment.

    A user's template (in ``templates_dir``) that fails while rendering is logged and the
    packaged one used instead: a digest is never lost to a template mistake.
    """
    name = "digest.html" if fmt == "html" else "digest.txt"

    def body_with(rows: int) -> tuple[str, int]:
        context = _context(digest, prefix, templates or {}, rows, dashboard_url)
        body = _render(name, context, templates_dir)
        return body, len(body.encode())

    total = len(ordered_items(digest))
    shown = min(total, max_rows)
    body, size = body_with(shown)
    if size > max_bytes:
        # The most rows that fit, by bisection: rows differ in length, so no estimate is exact.
        fits, over = 0, shown
        while over - fits > 1:
            mid = (fits + over) // 2
            if body_with(mid)[1] <= max_bytes:
                fits = mid
            else:
                over = mid
        shown = fits
        body, size = body_with(shown)
    attachments = (
        (Attachment(CSV_NAME, "text/csv", CSV_BOM + findings_csv(digest)),) if shown < total else ()
    )
    return Document(body, attachments)


def _render(name: str, context: dict[str, object], templates_dir: Path | None) -> str:
    try:
        return render(environment(templates_dir), name, context)
    except Exception as exc:  # a user's template may fail in any way; ours must not
        if templates_dir is None:
            raise
        log.warning(
            "template %s in %s failed (%s: %s); using the packaged one",
            name,
            templates_dir,
            type(exc).__name__,
            exc,
        )
        return render(environment(None), name, context)


def findings_csv(digest: Digest) -> str:
    """Every item of ``digest`` as CSV (RFC 4180, header row), in the email's order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    now = digest.swept_at
    for change, item in ordered_items(digest):
        writer.writerow(
            vocab.csv_cell(v)
            for v in (
                change,
                item.severity,
                item.rule,
                item.e164,
                item.account_id,
                item.account_name or "",
                item.message,
                vocab.day_text(item.due_at),
                days_left(item, now),
                item.tier,
                None if item.monthly_fee is None else money_text(item.monthly_fee),
                item.currency,
                "; ".join(item.tags),
            )
        )
    return buf.getvalue()
