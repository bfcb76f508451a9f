"""Channel kinds: each kind's size limit and what did-monitor adds to its Apprise URL (checked
with Apprise's own parser, given our timeouts). Rendering is ``chat``, ``email`` and ``slack``;
``compose`` picks one by the channel's kind.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import apprise

from monitor.redact import scrub

# Characters a message may have, by the start of the Apprise URL; beyond it we split items off.
LIMITS = {"slack": 35_000, "discord": 1_900, "tgram": 4_000, "mailto": 90_000, "mailtos": 90_000}
DEFAULT_LIMIT = 30_000


def limit_for(url: str, override: int | None = None) -> int:
    if override:
        return override
    return LIMITS.get(url.split(":", 1)[0].lower(), DEFAULT_LIMIT)


def check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (its own parser's words, scrubbed), or None if it can.

    Apprise's log lines about the URL (which quote it whole) are captured, not logged.
    """
    logger = logging.getLogger("apprise")
    propagate, logger.propagate = logger.propagate, False
    try:
        capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
        with capture as captured:
            try:
                usable = bool(apprise.Apprise().add(url))
            except Exception as exc:  # a plugin's parser may raise on a hostile URL
                usable = False
                captured.write(type(exc).__name__)
            text = captured.getvalue()
    finally:
        logger.propagate = propagate
    if usable:
        return None
    reasons = [line.strip().rstrip(".") for line in str(text).splitlines() if line.strip()]
    return scrub("; ".join(reasons) or "unsupported or incomplete URL", url)


def with_timeouts(url: str, timeout: float) -> str:
    """``url`` with Apprise's connect/read timeouts (``cto``/``rto``) set to ``timeout`` unless
    the URL sets them itself: Apprise's plugins otherwise give up reading after 4 s."""
    parts = urlsplit(url)
    args = parse_qs(parts.query, keep_blank_values=True)
    extra = {k: f"{timeout:g}" for k in ("cto", "rto") if k not in args}
    if not extra:
        return url
    query = "&".join(filter(None, [parts.query, urlencode(extra)]))
    return urlunsplit(parts._replace(query=query))
