"""The one scrubber: masks secrets in any text before it leaves the process.

Secret *values* are learned once, when the configuration loads (``remember``): the API token and
id, passwords and tokens inside channel, ping and database URLs. ``scrub`` then replaces every
spelling of them (as given, URL-encoded, JSON-escaped) with ``***``, and also masks whatever looks
like a credential in a URL, whoever wrote the text: ``user:password@``, ``?password=`` /
``token=`` / ``key=`` values, and the path tokens of chat webhooks (Slack, Discord, Apprise
schemes). It is applied where text leaves: log handlers, the database (sweep and delivery errors,
rendered alerts), command output. ``without_credentials`` drops credential-looking keys from
item JSON before it is stored. ``mask_url`` is the one way a URL is shown (check-config, errors,
pings).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import IO, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Shorter values would mask ordinary words; no real token or password is this short.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Any scheme but these is an Apprise service whose whole location is tokens (Slack, Discord,
# Telegram, a mistyped "slak://", ...): masked after the "://".
_PLAIN_SCHEMES = (
    r"https?|mailtos?|jsons?|forms?|xmls?|file|ftp|sqlite|postgres(?:ql)?(?:\+\w+)?|"
    r"mysql(?:\+\w+)?|redis|wss?"
)
_URL_TOKEN = re.compile(
    rf"(?<![\w+.\-])(?!(?:{_PLAIN_SCHEMES})://)([a-z][a-z0-9+.\-]*://)[^\s\"'<>);,]+",
    re.IGNORECASE,
)
# json://, form://, xml://: the host stays readable, the path (often a token) does not.
_HOOK_PATH = re.compile(r"\b((?:json|form|xml)s?://[^/\s\"'<>]+)/[^\s\"'<>);,…]+", re.IGNORECASE)
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.\-]*://)[^\s/@\"'<>:]*:[^\s/@\"'<>]+@", re.IGNORECASE)
# A URL query key whose value is a secret: ?password=, &api_key=, &sig=...
_CREDENTIAL_QUERY_NAME = (
    r"[a-z_\-]*(?:pass(?:word)?|passwd|pwd|token|secret|key|apikey|auth|sig|signature|"
    r"credential)[a-z_\-]*"
)
_QUERY_SECRET = re.compile(rf"([?&;]{_CREDENTIAL_QUERY_NAME}=)[^&\s\"'<>#]+", re.IGNORECASE)
_SECRET_QUERY_KEY = re.compile(rf"^{_CREDENTIAL_QUERY_NAME}$", re.IGNORECASE)
# Webhook URLs whose path is the credential.
_WEBHOOK_PATH = re.compile(
    r"\b(https?://(?:hooks\.slack\.com/services|(?:[a-z0-9-]+\.)?discord(?:app)?\.com/api/webhooks|"
    r"api\.telegram\.org/bot|outlook\.office\.com/webhook|[a-z0-9.-]+\.webhook\.office\.com))"
    r"/[^\s\"'<>]+",
    re.IGNORECASE,
)

# Key names that hold secrets, whatever their case or separators (searched, not matched):
# auth_token, authToken, api-key, client_secret, sip_passwd, private_key, session_id, otp, pin...
CREDENTIAL_KEYS = re.compile(
    r"token|secret|passw|passphrase|pwd|(?:api|access|private|signing)[_\-]?key|credential|"
    r"session|cookie|bearer|jwt|^(?:otp|pin|key)$",
    re.IGNORECASE,
)


# Longest key the caches below keep: an API's real keys are short, and a hostile one's long keys
# (an item may be megabytes) must not stay in a long-running service's memory.
MAX_CACHED_KEY = 64


def is_credential_key(key: str) -> bool:
    """Whether a JSON key (or a URL's query key) looks like it holds a credential. Cached for
    keys up to ``MAX_CACHED_KEY`` characters: every item of a sweep repeats the same few dozen
    keys; a regex per key was a tenth of its CPU."""
    if len(key) > MAX_CACHED_KEY:
        return CREDENTIAL_KEYS.search(key) is not None
    return _is_credential_key(key)


@functools.lru_cache(maxsize=4096)
def _is_credential_key(key: str) -> bool:
    return CREDENTIAL_KEYS.search(key) is not None


def remember(values: Iterable[str | None]) -> None:
    """Add secret values to mask from now on (every spelling of each)."""
    global _pattern
    fresh = {s for v in values if v and len(v) >= MIN_SECRET_LENGTH for s in _spellings(v)}
    with _lock:
        if fresh - _values:
            _values.update(s for s in fresh if len(s) >= MIN_SECRET_LENGTH)
            ordered = sorted(_values, key=len, reverse=True)  # a secret inside another: whole
            _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def _spellings(value: str) -> set[str]:
    escaped = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return {value, quote(value, safe=""), quote_plus(value), unquote(value), *escaped}


# Schemes whose location is a host, not a credential: only passwords and secret query values.
_HOST_SCHEMES = re.compile(r"^(?:https?|mailtos?|sqlite|postgres(?:ql)?|mysql|.*sql.*)$")


def is_secret_query_key(key: str) -> bool:
    """Whether a URL's query key holds a secret (``?password=``, ``&sig=``, ``&auth=``...):
    the one test for every URL the monitor shows or scrubs."""
    return _SECRET_QUERY_KEY.match(key) is not None or is_credential_key(key)


def url_secrets(url: str) -> list[str]:
    """Parts of a URL that may be credentials: the password, secret-looking query values, and for
    Apprise services (Slack, Discord, json://, ...) the tokens in host and path."""
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return [url]
    found = [password or ""]
    if password and username and _looks_like_token(username):
        found.append(username)  # e.g. an API key sent as the user
    found += [v for k, v in parse_qsl(parts.query) if is_secret_query_key(k)]
    scheme = parts.scheme.lower()
    if not _HOST_SCHEMES.match(scheme) or scheme in {"http", "https"}:
        found += [seg for seg in parts.path.split("/") if _looks_like_token(seg)]
        if not _HOST_SCHEMES.match(scheme) and scheme not in _HOOK_SCHEMES:
            found += [seg for seg in re.split(r"[@:]", parts.netloc) if _looks_like_token(seg)]
    return [s for s in found if s]


_HOOK_SCHEMES = {"json", "jsons", "form", "forms", "xml", "xmls"}


def mask_url(url: str, *, keep_path: bool = False) -> str:
    """``url`` as it may be shown: its credentials masked, ``***`` when it does not parse.

    By default (channel and ping URLs, whose path or host is often the token) only the scheme,
    host and port stay readable: ``json://***@host:8080/…``, ``mailtos://***@smtp.host/…``,
    ``slack://***``. With ``keep_path`` (database and API URLs, whose path is a name) only the
    password and secret query values are masked: ``postgresql://app:***@db/m?sslmode=require``.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
        host, port_number = ("", None) if keep_path else (parts.hostname or "", parts.port)
    except ValueError:
        return MASK
    if keep_path:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if password is None and not any(is_secret_query_key(k) for k, _ in pairs):
            return url  # rebuilding would also drop the empty host of sqlite:////abs/path
        netloc = parts.netloc
        if password is not None:
            user, _, location = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:{MASK}@{location}"
        masked = [(k, MASK if is_secret_query_key(k) else v) for k, v in pairs]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked, safe="*")))
    scheme = parts.scheme or "?"
    port = f":{port_number}" if port_number else ""
    if scheme in {"http", "https", *_HOOK_SCHEMES}:
        path = "/…" if parts.path not in {"", "/"} else ""
        userinfo = f"{MASK}@" if parts.username or password else ""
        return f"{scheme}://{userinfo}{host}{port}{path}"
    if scheme in {"mailto", "mailtos"}:
        userinfo = f"{MASK}@" if password else ""
        return f"{scheme}://{userinfo}{host}{port}/…"
    return f"{scheme}://{MASK}"


def _looks_like_token(segment: str) -> bool:
    """A path or host part that is a token (webhook ids, keys), not a word like "alerts": masking
    a word would garble every message that uses it ("did-monitor" in every title)."""
    if len(segment) < 6 or (segment.isdigit() and len(segment) < 9):
        return False
    letters = sum(ch.isalpha() for ch in segment)
    digits = sum(ch.isdigit() for ch in segment)
    mixed_case = segment != segment.lower() and segment != segment.upper()
    return len(segment) >= 24 or (digits > 0 and letters > 0) or mixed_case or digits >= 9


def scrub(text: str, url: str = "") -> str:
    """``text`` with every known secret and credential-shaped URL part masked; given ``url`` (a
    channel's or a ping's), also that URL's ``url_secrets``, as written and decoded."""
    if not text:
        return text
    if url:  # both spellings, longest first, so a secret inside another is masked whole
        found = {f for s in url_secrets(url) for f in (s, unquote(s)) if len(f) >= 4}
        for secret in sorted(found, key=len, reverse=True):
            text = text.replace(secret, MASK)
    if (pattern := _pattern) is not None:  # read once: ``remember`` may replace it meanwhile
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_TOKEN.sub(lambda m: m.group(1) + MASK, text)
        text = _HOOK_PATH.sub(lambda m: m.group(1) + "/" + MASK, text)
        text = _WEBHOOK_PATH.sub(lambda m: m.group(1) + "/" + MASK, text)
        text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return text


def scrub_value(value: Any) -> Any:
    """``scrub`` applied to every string inside plain data (dicts, lists)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def strip_credentials(value: Any) -> Any:
    """A copy of item JSON without credential-looking keys (``auth_token``, ``password``, ...)
    at any depth. Only a dict with no such key and no dict or list inside (or a scalar) comes
    back itself: a list is always copied, and so is every dict above a nested one, even when
    nothing is removed. No depth bound: ``without_credentials`` runs it only after
    ``has_credentials`` found a key to drop and refused deep nesting."""
    if isinstance(value, dict):
        if not any(isinstance(k, str) and is_credential_key(k) for k in value) and not any(
            isinstance(v, dict | list) for v in value.values()
        ):
            return value
        return {
            k: strip_credentials(v)
            for k, v in value.items()
            if not (isinstance(k, str) and is_credential_key(k))
        }
    if isinstance(value, list):
        return [strip_credentials(v) for v in value]
    return value


class TooDeep(ValueError):
    """JSON nested deeper than a walk allows."""


MAX_DEPTH = 64  # levels of nesting in one API item or account; deeper is unreadable


def without_credentials(value: Any) -> Any:
    """``value`` (JSON-shaped data from the API) without credential-looking keys at any depth,
    itself when it holds none; ``TooDeep`` past ``MAX_DEPTH`` levels of nesting. The one gate
    every API item and account passes before anything keeps it."""
    return strip_credentials(value) if has_credentials(value, MAX_DEPTH) else value


_KEY_SETS: dict[tuple[Any, ...], bool] = {}  # key tuple → holds a credential key; bounded


def _keys_hold_credential(keys: tuple[Any, ...]) -> bool:
    if (found := _KEY_SETS.get(keys)) is None:
        found = any(isinstance(k, str) and is_credential_key(k) for k in keys)
        short = all(isinstance(k, str) and len(k) <= MAX_CACHED_KEY for k in keys)
        if short and len(keys) <= 64 and len(_KEY_SETS) < 1024:
            _KEY_SETS[keys] = found  # the first 1,024 short key sets: a sweep repeats a few
    return found


def has_credentials(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """Whether a credential-looking key stands anywhere in ``value`` (JSON-shaped data).

    The whole value is walked, so ``TooDeep`` is raised past ``max_depth`` levels of nesting
    wherever they are (and ``strip_credentials`` may then recurse safely). Each object's key
    tuple is checked once and cached (1.8 µs an item against 3.5 µs key by key, on the
    sandbox's items): every item of a sweep repeats the same few key sets. Only the first 1,024
    sets of up to 64 keys of up to ``MAX_CACHED_KEY`` characters are kept, so a hostile API's
    keys never pile up in memory."""
    if max_depth < 0:
        raise TooDeep("JSON nested too deep")
    found = False
    if isinstance(value, dict):
        found = _keys_hold_credential(tuple(value))
        values: Iterable[Any] = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return False
    for v in values:
        kind = type(v)
        if (kind is dict or kind is list) and has_credentials(v, max_depth - 1):
            found = True
    return found


class ScrubFilter(logging.Filter):
    """Rewrites each record's message (arguments merged) and exception text, scrubbed, so every
    handler and formatter sees only masked text, whichever library logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: keep what we can show
            message = f"{record.msg!r} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in LOG_RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, scrub(value))
        return True


# A log record's own attributes; every other one is an ``extra`` field.
LOG_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class ScrubFormatter(logging.Formatter):
    """Wraps a formatter and scrubs its output (a last net for text the filter cannot see)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record))


class ScrubbingStream:
    """A text stream that scrubs what is written to it (command output: rich consoles, JSON)."""

    def __init__(self, inner: IO[str]) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
