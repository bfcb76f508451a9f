"""The shared words of every output: severities (order, label, mark, colour), money, times, days
left, durations, and escaping for each target. No other module formats these.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


Format = Literal["markdown", "text", "html"]


SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


# Most urgent first: the order of every digest's sections.
SEVERITIES = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True))


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
    text = CONTROL_CHARS.sub(" ", str(value)).strip().replace("@", MENTION)
    if len(text) > 120:
        text = text[:119] + "…"
    if fmt == "html":
        return html.escape(text, quote=True)
    if fmt == "markdown":
        text = text.replace("`", "ʹ").replace("<", "‹").replace(">", "›")
        return f"`{text}`" if text else "—"
    return text


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


def dashboard_link(base: str, page: str = "", e164: str | None = None) -> str:
    """A page of the dashboard at ``base`` (``alerts.dashboard_url``): its findings list, or a
    number's page; the number is percent-encoded, so no API string can change the link."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{page}" if page else "/")
    if e164 is not None:
        path += "/" + quote(e164, safe="+")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
