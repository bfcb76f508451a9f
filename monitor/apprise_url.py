"""Apprise URLs outside sending: checked with Apprise's own parser when the config loads, and
given connect/read timeouts (their secrets are masked by ``redact.scrub(text, url)``).

Apart from ``notify.py`` (which sends), the only module that imports apprise: the config needs
the parser's verdict, and ``notify.py`` depends on the config, so the check lives here.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import apprise

from monitor.redact import scrub


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
