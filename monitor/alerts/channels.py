"""Channel kinds: each kind's size limit (by the Apprise service its URL loads) and what
did-monitor adds to its Apprise URL (checked with Apprise's own parser, given our timeouts).
Rendering is ``chat``, ``email`` and ``slack``; ``compose`` picks one by the channel's kind.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import apprise

from monitor.redact import scrub

# Characters a message may have, by the Apprise service it goes to (named by its URL schemes:
# https://discord.com/api/webhooks/... loads Discord's plugin, so it is "discord"); beyond it we
# split items off.
LIMITS = {"slack": 35_000, "discord": 1_900, "tgram": 4_000, "mailto": 90_000, "mailtos": 90_000}
DEFAULT_LIMIT = 30_000


def limit_for(url: str, override: int | None = None) -> int:
    """``override``, or the limit of the Apprise service ``url`` loads (the smallest, for a URL
    naming several); a URL Apprise cannot load is looked up by its own scheme."""
    if override:
        return override
    services, _ = _load(url)
    if not services:
        return LIMITS.get(urlsplit(url).scheme.lower(), DEFAULT_LIMIT)
    return min(_service_limit(service) for service in services)


def _service_limit(service: Any) -> int:
    schemes: list[str] = []
    for value in (getattr(service, "protocol", None), getattr(service, "secure_protocol", None)):
        schemes += [value] if isinstance(value, str) else list(value or ())
    return next((LIMITS[s] for s in schemes if s in LIMITS), DEFAULT_LIMIT)


def check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (its own parser's words, scrubbed), or None if it can."""
    services, said = _load(url)
    if services:
        return None
    reasons = [line.strip().rstrip(".") for line in said.splitlines() if line.strip()]
    return scrub("; ".join(reasons) or "unsupported or incomplete URL", url)


def _load(url: str) -> tuple[list[Any], str]:
    """The Apprise services ``url`` loads (none unless all of them load) and what Apprise said
    meanwhile. Loading parses the URL and builds each plugin: nothing goes over the network.

    Apprise's log lines about the URL (which quote it whole) are captured, not logged.
    """
    logger = logging.getLogger("apprise")
    propagate, logger.propagate = logger.propagate, False
    app = apprise.Apprise()
    try:
        capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
        with capture as captured:
            try:
                usable = bool(app.add(url))
            except Exception as exc:  # a plugin's parser may raise on a hostile URL
                usable = False
                captured.write(type(exc).__name__)
            text = captured.getvalue()
    finally:
        logger.propagate = propagate
    return (list(app) if usable else []), str(text)


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
