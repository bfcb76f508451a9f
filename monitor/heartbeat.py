"""Dead-man's switch pings: a GET to ``service.heartbeat_url`` after every complete sweep and to
``service.fail_url`` after a failed one (healthchecks.io, Uptime Kuma push monitors, ...).

A ping is best effort: it has a short timeout, never raises and logs a warning when it fails.
These URLs usually carry their secret in the path, so they are only ever logged redacted.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import KW_ONLY, dataclass

import httpx

from monitor.redact import mask_url, scrub
from monitor.vobiz import http_client

log = logging.getLogger(__name__)


@dataclass(repr=False, eq=False)  # no repr: the URLs carry secrets
class Heartbeat:
    """Pings the configured URLs; an empty URL means that ping is not wanted. ``http``: the
    client to ping through (the service's shared one); without it each ping opens its own."""

    heartbeat_url: str = ""
    fail_url: str = ""
    _: KW_ONLY
    timeout: float = 5.0
    http: httpx.Client | None = None

    def success(self) -> bool:
        """After a complete sweep. True when the ping was answered with 2xx/3xx."""
        return self._ping(self.heartbeat_url, "heartbeat")

    def failure(self) -> bool:
        """After a failed sweep. True when the ping was answered with 2xx/3xx."""
        return self._ping(self.fail_url, "failure ping")

    def _ping(self, url: str, what: str) -> bool:
        if not url:
            return False
        shown = mask_url(url)  # "***" when it does not even parse
        shared = self.http
        try:
            with nullcontext(shared) if shared else http_client(timeout=self.timeout) as client:
                response = client.get(url, timeout=self.timeout, follow_redirects=True)
        except Exception as exc:  # httpx errors, and anything else: a ping must never raise
            # In one line, every part of the URL that may be a secret masked.
            detail = scrub(str(exc).replace(url, shown), url)
            error = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            log.warning("%s to %s failed: %s", what, shown, error)
            return False
        if response.status_code >= 400:
            log.warning("%s to %s answered HTTP %d", what, shown, response.status_code)
            return False
        log.debug("%s sent to %s", what, shown)
        return True
