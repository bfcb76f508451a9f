"""The Jinja2 templates, the one template engine of the alerts: the email digest (HTML, or text)
with every finding and the CSV of the whole list that rides along when the body is capped; and
the digest's title, intro and footer (``title.txt``, ``intro.txt``, ``footer.txt``), the same
for every channel.

Templates get strings already made one-line and control-free (``_clean``); HTML templates are
autoescaped on top of that, so nothing from the API can add markup, links or lines.
"""

from __future__ import annotations

import bisect
import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.runtime
from jinja2.sandbox import SandboxedEnvironment

from monitor import vocab
from monitor.alerts.digest import Digest, due_soon_text, ordered_items, section, summary
from monitor.errors import ConfigError
from monitor.findings import FindingView, days_left, due_day, number_text
from monitor.redact import scrub
from monitor.vocab import SEVERITIES, dashboard_link, money_text, one_line

PACKAGED = Path(__file__).parent / "templates"
# Files a user may override; other files in templates_dir may be included by these.
TEMPLATE_NAMES = ("digest.html", "digest.txt", "title.txt", "intro.txt", "footer.txt")
TEXTS = ("title", "intro", "footer")  # title.txt ...: our own words, for every channel
# What those are given (the names the deprecated [alerts.templates] keys had).
TEXT_VARIABLES = ("prefix", "summary", "new", "reminders", "resolved", "open", "swept")
TITLE_MAX = 200
TEMPLATE_SUFFIXES = (".html", ".txt")  # what check_dir compiles in templates_dir


def _money(value: Decimal | None, currency: str | None = None) -> str:
    """``vocab.money_text``: exact, at least two decimals, then the currency's code if given:
    1.5 → "1.50", ``amount|money("xof")`` → "300.00 XOF"."""
    return "" if value is None else money_text(value, currency)


@jinja2.pass_context
def _date(context: jinja2.runtime.Context, value: date | datetime | None) -> str:
    """``vocab.day_text``: a day as ``2026-12-05``; a time's day in the rules' time zone (the
    digest's ``tz``), the day a finding's message names."""
    tz = context.get("tz")
    return vocab.day_text(value, tz if isinstance(tz, tzinfo) else UTC)


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def environment(
    templates_dir: Path | None, legacy: Mapping[str, str] | None = None
) -> SandboxedEnvironment:
    """An environment that finds templates in ``templates_dir`` first, then the packaged ones;
    before both, the deprecated ``[alerts.templates]`` keys (``legacy``) set, as Jinja templates
    (``jinja_from_dollars``), so an old key wins over a copied ``title.txt`` while it is read.
    Only ``.html`` templates are autoescaped (the module's docstring says why that suffices)."""
    loaders: list[jinja2.BaseLoader] = []
    if legacy:
        old = {f"{key}.txt": jinja_from_dollars(text) for key, text in legacy.items() if text}
        loaders.append(jinja2.DictLoader(old))
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
    env.filters.update(money=_money, date=_date, when=vocab.when_text, plural=_plural)
    return env


# string.Template's placeholders, as the deprecated [alerts.templates] keys were written: "$$", a
# "$name" or "${name}"; and any "{", which Jinja might read as the start of its own syntax.
_DOLLARS = re.compile(r"\$(?:(\$)|([_a-z][_a-z0-9]*)|\{([_a-z][_a-z0-9]*)\})|\{", re.I | re.A)


def jinja_from_dollars(text: str) -> str:
    """A deprecated ``[alerts.templates]`` value (``$summary``) as the Jinja template that renders
    it as before: a name the texts are given becomes ``{{ summary }}``, ``$$`` a dollar sign;
    any other ``$name`` (left as it was) and every ``{`` stay text."""

    def swap(found: re.Match[str]) -> str:
        name = found[2] or found[3]
        if name in TEXT_VARIABLES:
            return f"{{{{ {name} }}}}"
        return ("$" if found[1] else found[0]).replace("{", "{{ '{' }}")

    return _DOLLARS.sub(swap, text)


def legacy_warnings(templates: Mapping[str, str]) -> list[str]:
    """One warning for each ``[alerts.templates]`` key set: what to write instead, and where."""
    return [
        f"alerts.templates.{key} is deprecated and will be removed in the next release: write "
        f"it as {key}.txt in the folder named by alerts.templates_dir (`did-monitor digest "
        "--copy-templates DIR` copies the packaged ones there to start from), in Jinja2 like "
        f"the email templates; yours reads: {scrub(jinja_from_dollars(text))}"
        for key, text in templates.items()
    ]


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
    text = one_line(str(value))
    return text if len(text) <= 120 else text[:119] + "…"


def _row(item: FindingView, change: str, digest: Digest, dashboard_url: str) -> dict[str, object]:
    days = days_left(item, digest.swept_at, digest.tz)
    linked = dashboard_url and item.has_number
    return {
        "change": change,
        "severity": item.severity,
        "number": _clean(number_text(item)),
        "account": _clean(item.account_name or item.account_id),
        "account_id": _clean(item.account_id) if item.account_name else "",
        "rule": _clean(item.rule),
        "what": _clean(item.message),
        "due": due_day(item, digest.tz),
        "days_left": days,
        "when": vocab.due_text(days),
        "tier": item.tier,
        "tags": [_clean(t) for t in item.tags],
        "link": dashboard_link(dashboard_url, "numbers", item.e164) if linked else "",
    }


@dataclass(frozen=True)
class Texts:
    """The digest's own words around its findings, the same for every channel: ``title`` (one
    line of at most ``TITLE_MAX`` characters: an email's subject, a chat message's headline),
    ``intro`` and ``footer`` (a one-line paragraph each, or empty)."""

    title: str
    intro: str = ""
    footer: str = ""


def render_texts(
    digest: Digest,
    prefix: str = "did-monitor",
    templates_dir: Path | None = None,
    legacy: Mapping[str, str] | None = None,
) -> Texts:
    """Title, intro and footer of ``digest`` from ``title.txt``, ``intro.txt`` and ``footer.txt``
    (a user's copy in ``templates_dir`` first; a deprecated ``[alerts.templates]`` key in
    ``legacy`` before that), each made one line."""
    context = _counts(digest, prefix) | {"open": digest.still_open, "swept": digest.numbers_swept}
    text = {key: one_line(_render(f"{key}.txt", context, templates_dir, legacy)) for key in TEXTS}
    return Texts(text["title"][:TITLE_MAX], text["intro"], text["footer"])


def _counts(digest: Digest, prefix: str) -> dict[str, object]:
    """What every template is given: the prefix, the summary and its counts."""
    return {
        "prefix": one_line(prefix),
        "tz": digest.tz,  # the rules' time zone: the one the ``date`` filter counts days in
        "summary": summary(digest),
        "new": len(digest.new),
        "reminders": len(digest.reminders),
        "resolved": len(digest.resolved),
    }


def _context(
    digest: Digest, prefix: str, texts: Texts, max_rows: int, dashboard_url: str
) -> dict[str, object]:
    items = ordered_items(digest)
    # In reading order: a Counter keeps its keys in the order they first came.
    sections: dict[str, dict[str, Any]] = {
        key: {
            "key": key,
            "label": key.capitalize(),
            "colour": vocab.shade(key).colour,
            "background": vocab.shade(key).background,
            "total": total,
            "rows": [],
        }
        for key, total in Counter(section(change, item) for change, item in items).items()
    }
    for change, item in items[:max_rows]:
        row = _row(item, change, digest, dashboard_url)
        sections[section(change, item)]["rows"].append(row)
    announced = digest.announced
    by_rule = Counter(_clean(it.rule) for it in announced)
    return _counts(digest, prefix) | {
        **asdict(texts),
        "swept_at": digest.swept_at,
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
        "at_risk": list(digest.at_risk.items()),
        "due_soon": due_soon_text(digest) if digest.due_soon or digest.due_undated else "",
        "sections": list(sections.values()),
        "total_rows": len(items),
        "shown_rows": min(len(items), max_rows),
        "capped": len(items) > max_rows,
        "attachment": CSV_NAME,
        "dashboard_url": dashboard_url,
        "findings_url": dashboard_link(dashboard_url, "findings") if dashboard_url else "",
    }


def render_document(
    digest: Digest,
    fmt: Literal["html", "text"],
    *,
    prefix: str = "did-monitor",
    texts: Texts | None = None,
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
    packaged one used instead: a digest is never lost to a template mistake. ``texts`` are the
    title, intro and footer (``render_texts``, rendered here when not given).
    """
    name = "digest.html" if fmt == "html" else "digest.txt"
    texts = texts or render_texts(digest, prefix, templates_dir)

    def body_with(rows: int) -> str:
        return _render(name, _context(digest, prefix, texts, rows, dashboard_url), templates_dir)

    def size(rows: int) -> int:
        return len(body_with(rows).encode())

    total = len(ordered_items(digest))
    shown = min(total, max_rows)
    body = body_with(shown)
    if len(body.encode()) > max_bytes:
        # The most rows that fit, by bisection: rows differ in length, so no estimate is exact.
        shown = bisect.bisect_right(range(1, shown), max_bytes, key=size)
        body = body_with(shown)
    attachments = (
        (Attachment(CSV_NAME, "text/csv", CSV_BOM + findings_csv(digest)),) if shown < total else ()
    )
    return Document(body, attachments)


def _render(
    name: str,
    context: dict[str, object],
    templates_dir: Path | None,
    legacy: Mapping[str, str] | None = None,
) -> str:
    try:
        return environment(templates_dir, legacy).get_template(name).render(context)
    except Exception as exc:  # a user's template may fail in any way; ours must not
        if templates_dir is None and not legacy:
            raise
        log.warning(
            "template %s in %s failed (%s: %s); using the packaged one",
            name,
            templates_dir or "[alerts.templates]",
            type(exc).__name__,
            exc,
        )
        return environment(None).get_template(name).render(context)


def findings_csv(digest: Digest) -> str:
    """Every item of ``digest`` as CSV (RFC 4180, header row), in the email's order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    now, tz = digest.swept_at, digest.tz
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
                due_day(item, tz),
                days_left(item, now, tz),
                item.tier,
                None if item.monthly_fee is None else money_text(item.monthly_fee),
                item.currency,
                "; ".join(item.tags),
            )
        )
    return buf.getvalue()
