"""The shared words of every output: severities (order, label, mark, colour), money, times, days
left, durations, and escaping for each target. No other module formats these.

Every output (the terminal, ``--json``, CSV, email, Slack, chat and the dashboard) draws the one
finding view (``findings.FindingView``) through these functions, so a fee, a date or a severity
reads the same wherever it is shown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from monitor.errors import ConfigError

# --- severities -------------------------------------------------------------------------------

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
# Most urgent first: the order of every digest's sections and every list.
SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True))


@dataclass(frozen=True)
class Shade:
    """How a severity (or "resolved") looks: text and background colours readable with images
    and colours off alike (email, Slack's bar, the dashboard's CSS), the terminal's colour name
    (Rich) and the chat mark."""

    colour: str
    background: str
    terminal: str
    mark: str


PALETTE: dict[str, Shade] = {
    "critical": Shade("#b42318", "#fef3f2", "red", "🔴"),
    "warning": Shade("#b54708", "#fffaeb", "yellow", "🟠"),
    "info": Shade("#175cd3", "#eff8ff", "blue", "🔵"),
    "resolved": Shade("#067647", "#ecfdf3", "green", "✅"),
}
SEVERITY_MARK = {name: shade.mark for name, shade in PALETTE.items() if name in SEVERITY_RANK}


def shade(severity: str) -> Shade:
    return PALETTE.get(severity, PALETTE["info"])


def palette_css() -> str:
    """The palette as CSS custom properties (``--critical``, ``--critical-bg``, ...), served as
    the dashboard's ``/static/palette.css``."""
    props = " ".join(
        f"--{name}: {s.colour}; --{name}-bg: {s.background};" for name, s in PALETTE.items()
    )
    return f":root {{ {props} }}\n"


# --- money ------------------------------------------------------------------------------------


def money_text(amount: Decimal, currency: str | None = None) -> str:
    """An exact amount as plain text with at least two decimals: ``1`` → ``1.00``,
    ``1.000000`` → ``1.00``, ``0.125`` → ``0.125`` (never rounded, never an exponent); with a
    ``currency``, its code after it (``currency_code``): ``123.00 XOF``."""
    normal = amount.normalize()
    if normal.as_tuple().exponent >= -2:  # type: ignore[operator]
        normal = normal.quantize(Decimal("0.01"))
    code = currency_code(currency)
    return f"{normal:f} {code}" if code else format(normal, "f")


def currency_code(currency: str | None) -> str:
    """How a currency is shown: by the code the API gives, upper-cased, whether or not the
    monitor knows it ("xof" → "XOF"; ISO 4217's numeric codes too); "" without one. Text that
    is not a code (1-8 ASCII letters or digits) is "?", so it can carry no markup."""
    code = (currency or "").strip().upper()
    if not code:
        return ""
    return code if code.isascii() and code.isalnum() and len(code) <= 8 else "?"


def money_list(totals: Mapping[str, Decimal]) -> str:
    """Amounts per currency, e.g. ``"12.00 EUR, 4.50 USD"`` (``"nothing"`` when empty)."""
    return ", ".join(money_text(amount, cur) for cur, amount in totals.items()) or "nothing"


# --- times ------------------------------------------------------------------------------------


def when_text(value: datetime | None) -> str:
    """A moment as every output shows it to a person: ``2026-12-05 14:03 UTC`` ("" for none)."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if value is not None else ""


def day_text(value: date | datetime | None, tz: tzinfo = UTC) -> str:
    """A calendar day: ``2026-12-05`` ("" for none); a time's day in ``tz``. A due day is shown
    in the rules' time zone (``settings.rules_zone``), the day the rule's message names."""
    if isinstance(value, datetime):
        value = value.astimezone(tz)
    return f"{value:%Y-%m-%d}" if value is not None else ""


def iso(value: datetime | None) -> str | None:
    """A moment for machines (JSON, CSV, logs): RFC 3339 in UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def days_left(due: datetime | None, now: datetime | None, tz: tzinfo) -> int | None:
    """Whole days from ``now`` to ``due`` (negative once past), both read as calendar days in
    ``tz``: the rules' time zone (``settings.rules_zone``), counted as the rules count them
    (``RuleContext.today`` and ``local_date``); None without both."""
    if due is None or now is None:
        return None
    return (due.astimezone(tz).date() - now.astimezone(tz).date()).days


def due_text(days: int | None, *, short: bool = False) -> str:
    """ "3 days left", "today", "2 days overdue" (``short``: "3d left", "2d overdue")."""
    if days is None:
        return ""
    if days == 0:
        return "today" if short else "due today"
    n = abs(days)
    amount = f"{n}d" if short else f"{n} day{'s' if n != 1 else ''}"
    return f"{amount} left" if days > 0 else f"{amount} overdue"


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is digits 0-9 only: ``str.isdigit()`` also takes superscripts and other
    scripts' digits, which ``int()`` then refuses (superscripts) or reads (Arabic-Indic)."""
    return text.isascii() and text.isdigit()


# --- durations --------------------------------------------------------------------------------

_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]{1,6})([mhdw])")  # ASCII digits only: int() takes any script's


def parse_duration(text: str, option: str) -> timedelta | None:
    """A duration the CLI accepts (``90m``, ``12h``, ``7d``, ``2w``), or ``None`` if ``text`` is
    not one; ``ConfigError`` naming ``option`` for a zero one."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        return None
    span = timedelta(seconds=int(found[1]) * _UNIT_SECONDS[found[2]])
    if not span:
        raise ConfigError(f"{option}: {text} is no time at all", hint="use e.g. 7d or 12h")
    return span


def duration_text(span: timedelta | None) -> str:
    """How long something took: ``12.3 s``, ``4 min 5 s`` ("—" for none)."""
    if span is None:
        return "—"
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s"


# --- escaping ---------------------------------------------------------------------------------

Format = Literal["markdown", "text", "html"]
Target = Literal["text", "markdown", "slack", "html", "terminal", "csv"]

# The one filter of control characters for every output (terminal, text, Markdown, HTML, Slack,
# CSV, and the dashboard and /metrics): C0 and C1 controls (an 8-bit CSI drives some terminals),
# bidi marks, embeddings, overrides and isolates that reorder what a reader sees (U+061C, U+200E,
# U+200F, U+202A-U+202E, U+2066-U+2069), line separators, and invisible characters that hide text
# or split a word a reader sees whole (zero-width space, non-joiner and joiner, word joiner,
# invisible operators U+2060-U+2064, the Mongolian vowel separator, the BOM).
CONTROL_CHARS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+"
)

# An "@" in a chat message can ping: Discord reads "@everyone", "@here", "<@123>" and "<@&123>"
# even inside a code span, and Apprise's plugin then allows the mentions it found. Every "@" of
# an API string is shown as the fullwidth at sign U+FF20: it reads the same, no chat service takes
# it for a mention, and unlike "@" + an invisible character it survives any control filter.
MENTION = "\uff20"


def esc(value: object, fmt: Format) -> str:
    """Make an API string inert for ``fmt``: one line, no markup, bounded length.

    Markdown gets a code span rather than backslash escapes: Slack shows backslashes literally,
    while every Markdown dialect (Slack's included) leaves a code span's content uninterpreted.
    Angle brackets become look-alikes so no dialect can read a ``<!channel>`` or a tag, and in
    every format an "@" becomes ``MENTION``, so no string can ping a channel or a role.
    """
    text = plain(str(value), "text")
    if len(text) > 120:
        text = text[:119] + "…"
    if fmt == "markdown":
        return f"`{plain(text, fmt)}`" if text else "—"
    return plain(text, fmt)


def plain(text: str, fmt: Format) -> str:
    """Our own words (rule messages, headings) made safe for ``fmt`` without code spans. A rule's
    message quotes API values, so its "@" become ``MENTION`` too: a channel that should ping
    says so in its Apprise URL (Discord's ``?ping=@here``), not in a message."""
    text = CONTROL_CHARS.sub(" ", text).strip().replace("@", MENTION)
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        return text.replace("<", "‹").replace(">", "›").replace("`", "ʹ")
    return text


def tty(value: object) -> str:
    """Text for the terminal: no control characters (no escape sequences), no Rich markup."""
    from rich.markup import escape

    return escape(CONTROL_CHARS.sub(" ", str(value)))


def one_line(text: str) -> str:
    """Header-safe text: no CR/LF or other control characters."""
    return CONTROL_CHARS.sub(" ", text).strip()


def slack_text(text: str) -> str:
    """Slack mrkdwn made inert: ``&`` escaped as Slack asks, and no ``{{``: Apprise fills
    ``{{name}}`` tokens into a Block Kit template, so a zero-width space keeps such text as it
    reads."""
    return text.replace("&", "&amp;").replace("{{", "{\u200b{")


# A CSV cell a spreadsheet would run: it starts with =, @, a tab or CR, or with + or - that does
# not begin a plain number ("+91…", "-1", "12.50" stay as they are).
_FORMULA = re.compile(r"^(?:[=@\t\r]|[+-](?![0-9][0-9.]*$))")


def csv_cell(value: object) -> str:
    """One value as a CSV cell: lists joined by ``;``, none as empty, one line, never a formula
    (a leading apostrophe makes it text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(csv_cell(v) for v in value)
    text = one_line(str(value))
    return "'" + text if _FORMULA.match(text) else text


def escape(value: object, target: Target) -> str:
    """An API value made inert for ``target``: one line, no markup, no mention, no formula."""
    if target == "terminal":
        return tty(value)
    if target == "csv":
        return csv_cell(value)
    if target == "slack":
        return slack_text(esc(value, "markdown"))
    return esc(value, target)


def dashboard_link(base: str, page: str = "", e164: str | None = None) -> str:
    """A page of the dashboard at ``base`` (``alerts.dashboard_url``): its findings list, or a
    number's page; the number is percent-encoded, so no API string can change the link."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{page}" if page else "/")
    if e164 is not None:
        path += "/" + quote(e164, safe="+")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
