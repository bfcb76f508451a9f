"""What every response of the listener passes through: GET/HEAD only, access control,
security headers, and a last-resort error answer that never shows a traceback or a secret.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.errors import MonitorError
from monitor.health import describe_failure

log = logging.getLogger(__name__)

READ_METHODS: Final = frozenset({"GET", "HEAD"})
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})  # orchestrators probe without credentials
PAGE_CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS: Final = (
    ("content-security-policy", PAGE_CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cache-control", "no-store"),
)
REALM: Final = "did-monitor"


@dataclass(frozen=True)
class Access:
    """Who may read the protected paths: basic-auth credentials, a bearer token, or both
    (either one suffices). Compared in constant time."""

    username: str = ""
    password: str = ""
    token: str = ""

    @property
    def required(self) -> bool:
        return bool(self.password or self.token)

    def allows(self, authorization: str | None) -> bool:
        if not self.required:
            return True
        scheme, _, value = (authorization or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic" and self.password:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8
                return False
            # Both compared, always: which half was wrong must not show in the timing.
            user_ok = hmac.compare_digest(user.encode(), self.username.encode())
            password_ok = hmac.compare_digest(password.encode(), self.password.encode())
            return bool(sep) and user_ok and password_ok
        return False

    def challenge(self) -> str:
        if self.password:
            return f'Basic realm="{REALM}", charset="UTF-8"'
        return f'Bearer realm="{REALM}"'


ErrorPage = Callable[[Scope, int, str], Response]


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, indent=1) + "\n", status, media_type="application/json")


def plain_error(scope: Scope, status: int, message: str) -> Response:
    """The default error answer: JSON, as the probes answer."""
    return json_response(status, {"status": "error", "reasons": [message]})


@dataclass(frozen=True)
class Guard:
    """ASGI middleware in front of everything the listener serves.

    A trailing slash is ignored (``/readyz/`` is ``/readyz``); a method other than GET or HEAD
    is a 405 (the service is read-only); a protected path without valid credentials is a 401;
    every response gets the security headers (a route may set its own CSP); an exception before
    the response started becomes a 500 saying only what ``describe_failure`` says.
    """

    app: ASGIApp
    access: Access
    error_page: ErrorPage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
            scope = dict(scope, path=path)
        # A stylesheet holds no secret.
        open_path = path in OPEN_PATHS or path.startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        answer: ASGIApp = self.app  # or a refusal
        if scope["method"] not in READ_METHODS:
            text, allow = "method not allowed: this service is read-only\n", {"Allow": "GET, HEAD"}
            answer = PlainTextResponse(text, 405, headers=allow)
        elif not open_path and not self.access.allows(Headers(scope=scope).get("authorization")):
            challenge = {"WWW-Authenticate": self.access.challenge()}
            answer = PlainTextResponse("authentication required\n", 401, headers=challenge)
        try:
            await answer(scope, receive, send_with_headers)
        except Exception as exc:  # a broken view or probe must answer, not kill the listener
            if started:
                raise
            if isinstance(exc, MonitorError):
                log.warning("web: %s failed: %s", scope["path"], describe_failure(exc))
            else:
                log.exception("web: %s failed unexpectedly", scope["path"])
            response = self.error_page(scope, 500, describe_failure(exc))
            await response(scope, receive, send_with_headers)
