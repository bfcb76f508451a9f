"""Apprise URLs outside sending: checked with Apprise's own parser when the config loads,
given connect/read timeouts, and their secrets scrubbed from text.

Apart from ``notify.py`` (which sends), the only module that imports apprise: the config needs
the parser's verdict, and ``notify.py`` depends on the config, so the check lives here.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import apprise

from monitor import redact
from monitor.redact import url_secrets


def secrets_in(url: str) -> list[str]:
    """Parts of an Apprise URL that may be credentials (password, path tokens, query values)."""
    found = url_secrets(url)
    # both spellings, longest first, so a secret inside another is masked whole
    spellings = {form for s in found for form in (s, unquote(s)) if len(form) >= 4}
    return sorted(spellings, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` without ``url``'s secrets nor any other known secret."""
    for secret in secrets_in(url):
        text = text.replace(secret, "***")
    return redact.scrub(text)


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
