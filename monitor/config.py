"""TOML file + environment → validated, frozen settings; redaction of secrets for display.

The config is read once at start-up. Precedence for every key, highest first:
``DID_MONITOR__SECTION__KEY`` environment variables (``__`` separates levels, list items by index,
e.g. ``DID_MONITOR__CHANNELS__0__URL``), the documented shortcuts ``VOBIZ_AUTH_ID`` and
``VOBIZ_AUTH_TOKEN``, ``*_file`` secrets (Docker/Kubernetes secrets), the TOML file, defaults.

Longer than 400 lines on purpose: the section models, their validators and the loader that turns
pydantic's errors into "file: key: what to do" messages change together (a new key touches all
three), and splitting them would put one key's rules in several files. The ``[rules.<id>]``
tables are the exception: each built-in rule declares its table beside its function, and
``RulesConfig`` derives them from the registry (``rules.REGISTRY``).

The environment and ``*_file`` layer is our own, not pydantic-settings: its environment source
cannot address list items by index (``CHANNELS__0__URL``), does not read values as TOML, and
its errors do not name the variable; its secrets source reads files named after fields from one
folder, not a ``*_file`` key's path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeGuard, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from monitor import redact
from monitor.alerts.email import check_dir, legacy_warnings
from monitor.conditions import MAX_DEPTH
from monitor.errors import ConfigError
from monitor.rules import REGISTRY
from monitor.rules.base import RuleTables, Severity, Table, error_text
from monitor.vocab import ascii_digits

ENV_PREFIX = "DID_MONITOR__"
DEFAULT_CONFIG = "config.toml"


@dataclass(frozen=True)
class Secret:
    """``Annotated`` marker of a setting that holds a secret: the one place secrets are named.

    A marked setting is masked by ``check-config`` (``mask``), its secret parts are taught to the
    scrubber when the config loads, it makes a config file that others can read worth a warning,
    and it may be read from ``<key>_file`` when its table has that key. ``kind``: ``"text"``, the
    whole value is the secret (shown as ``***``); ``"url"``, a URL whose location is credentials
    (Apprise channels, pings: scheme and host shown); ``"server"``, a URL whose only secrets are
    its password and secret query values (database, API: the rest shown).
    """

    kind: Literal["text", "url", "server"]

    def mask(self, value: str) -> str:
        if self.kind == "text":
            return redact.MASK if value else ""
        return redact.mask_url(value, keep_path=self.kind == "server")

    def parts(self, value: str) -> list[str]:
        """What the scrubber must mask wherever ``value``'s secret may show up."""
        return [value] if self.kind == "text" else redact.url_secrets(value)

    def held_in(self, value: str) -> bool:
        """Whether ``value`` holds a secret (a server URL only with a password or secret query)."""
        return bool(value) and (self.kind != "server" or self.mask(value) != value)


SecretText = Annotated[str, Field(repr=False), Secret("text")]
SecretURL = Annotated[str, Field(repr=False), Secret("url")]
ServerURL = Annotated[str, Field(repr=False), Secret("server")]


def _https_or_loopback(url: str) -> bool:
    """An https:// URL, or http:// to this machine only: where a secret may be sent."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return parts.scheme == "https" and bool(parts.hostname)
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False


# --- listen addresses -----------------------------------------------------------------------------

DEFAULT_LISTEN_HOST = "127.0.0.1"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_LISTEN_HINT = (
    "use host:port such as 127.0.0.1:9108 or 0.0.0.0:9108 ([::1]:9108 for IPv6), or a port alone"
)


def parse_listen(value: str, key: str = "service.health_listen") -> tuple[str, int] | None:
    """A listen address as (host, port), a port alone meaning 127.0.0.1; None when empty (the
    listener is off). Raises ``ConfigError`` naming ``key`` for anything else."""
    try:
        return _listen_address(value)
    except ValueError as exc:
        raise ConfigError(f"{key} = {value!r}: {exc}", hint=_LISTEN_HINT) from None


def _listen_address(value: str) -> tuple[str, int] | None:
    """``parse_listen`` without the key: ``ValueError`` says what is wrong."""
    text = value.strip()
    if not text:
        return None
    if "://" in text or "/" in text:
        raise ValueError("give host:port, not a URL")
    if ascii_digits(text):
        host, port_text = DEFAULT_LISTEN_HOST, text
    elif text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("an IPv6 address in brackets must be followed by :port")
        host, port_text = inside, rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("expected host:port or a port number")
        if ":" in host:
            raise ValueError("write an IPv6 address in brackets, e.g. [::]:9108")
        if not host:
            raise ValueError(
                "the host is missing (write 0.0.0.0:PORT to listen on every interface)"
            )
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r} is not a host name or IP address")
    if not ascii_digits(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, not {port_text!r}")
    return host, int(port_text)


def _valid_listen(value: str) -> str:
    _listen_address(value)
    return value


ListenAddress = Annotated[str, AfterValidator(_valid_listen)]


def iana_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'UTC', 'Asia/Kolkata')") from None
    return value


IanaZone = Annotated[str, AfterValidator(iana_zone)]


def _folded(case: Callable[[str], str]) -> BeforeValidator:
    """Names compared in any case: text is stripped and brought to ``case`` before the check."""
    return BeforeValidator(lambda value: case(value.strip()) if isinstance(value, str) else value)


class VobizConfig(Table):
    base_url: ServerURL = "https://api.vobiz.ai"
    auth_id: str = ""
    auth_token: SecretText = ""
    auth_token_file: str | None = None
    per_page: int = Field(default=100, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=32)
    max_requests_per_second: float = Field(default=10.0, ge=0, le=10_000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=5, ge=0, le=20)
    retry_budget: int = Field(default=100, ge=0, le=100_000)
    backoff_base_seconds: float = Field(default=0.5, ge=0, le=3600)
    backoff_max_seconds: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("auth_id", "auth_token")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        # Sent as HTTP header values: a stray CR/LF (a secret file saved on Windows) or a
        # character outside Latin-1 would fail every request, quoting the secret in the error.
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError(
                "contains a control character (a carriage return or line feed?); "
                "remove it, e.g. re-save the secret file without Windows line endings"
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                "contains characters that cannot be sent in an HTTP header (outside Latin-1); "
                "copy the credential again from the Vobiz console"
            ) from None
        return value

    @field_validator("base_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if _https_or_loopback(value):
            return value.rstrip("/")
        raise ValueError(
            "must be an https:// URL (plain http:// is only allowed for loopback hosts such as "
            "the sandbox), so the API token never crosses a network in clear text"
        )


class DatabaseConfig(Table):
    url: ServerURL = "sqlite:///did-monitor.db"
    auto_migrate: bool = True

    @field_validator("url")
    @classmethod
    def _persistent(cls, value: str) -> str:
        # Every command is its own process: an in-memory database would forget each sweep.
        stripped = value.strip()
        if (
            stripped in {"sqlite://", "sqlite:///"}
            or ":memory:" in stripped
            or (stripped.startswith("sqlite") and "mode=memory" in stripped)
        ):
            raise ValueError(
                "an in-memory SQLite database forgets everything when the command ends; "
                "use a file, e.g. sqlite:///did-monitor.db"
            )
        return value


class ScheduleConfig(Table):
    cron: str = "0 6 * * mon"
    timezone: IanaZone = "UTC"
    misfire_grace_seconds: int = Field(default=86_400, ge=1, le=366 * 86_400)
    jitter_seconds: int = Field(default=0, ge=0, le=86_400)
    run_on_start: bool = False

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            normal = weekday_names(value)
            trigger = CronTrigger.from_crontab(normal, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a valid 5-field crontab expression: {exc}") from None
        minute, hour, dom, month, dow = value.split()
        # Crontab fires on a day either field matches unless one of them starts with '*';
        # APScheduler fires only on days both match.
        if not dom.startswith("*") and not dow.startswith("*"):
            raise ValueError(
                f"{value!r} restricts both day of month and day of week: crontab fires on "
                "either, APScheduler only on both; use one of them (e.g. "
                f"'{minute} {hour} {dom} {month} *' or '{minute} {hour} * {month} {dow}')"
            )
        # A fixed reference, not the clock: a date like 31 February never comes in any year.
        if trigger.get_next_fire_time(None, _CRON_REFERENCE) is None:
            raise ValueError(
                f"{value!r} never fires (a day that no month has?); e.g. '0 6 * * mon'"
            )
        return normal


_CRON_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def weekday_names(expr: str) -> str:
    """Rewrite a crontab day-of-week field as day names, item by item: numbers as crontab reads
    them (0 or 7 = Sunday), names as they are, ranges mixing the two and steps spelled out.

    APScheduler 3 counts weekday numbers from Monday = 0, so "0 6 * * 1" would fire on Tuesdays
    ("sat,0" on Saturdays and Mondays), it ignores a step after names ("mon-fri/2"), and it
    refuses a range from Sunday ("sun-tue": its Sunday is 6). Any other field of names, commas
    and dashes means the same to both and is left as it is. Raises ValueError for an item
    crontab would not read.
    """
    fields = expr.split()
    if len(fields) != 5 or not re.search(r"[0-9/]|(?i:sun)-", fields[4]):
        return expr
    days: set[int] = set()
    for item in fields[4].split(","):
        days.update(d % 7 for d in _weekdays(item))
    names = ",".join(_DAY_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7))
    return " ".join([*fields[:4], "*" if len(days) == 7 else names])


def _weekdays(item: str) -> range:
    """One item of a crontab day-of-week field as day numbers, 0 and 7 both Sunday."""
    span, _, step_text = item.partition("/")
    low: int | None
    high: int | None
    if span == "*":
        low, high = 0, 6
    else:
        low_text, _, high_text = span.partition("-")
        low, high = _weekday(low_text), _weekday(high_text or low_text)
        if high_text.lower() == "sun" and low:
            high = 7  # "thu-sun": Sunday ends the week here, as it does for APScheduler
    step = int(step_text or "1") if ascii_digits(step_text or "1") else 0
    if low is None or high is None or low > high or step < 1:
        raise ValueError(
            f"day of week {item!r}: write days as 0-7 (0 or 7 is Sunday) or sun-sat, a range "
            "from low to high, e.g. 'mon-fri' or '1-5'"
        )
    return range(low, high + 1, step)


def _weekday(text: str) -> int | None:
    if ascii_digits(text):
        return int(text) if int(text) <= 7 else None
    return _DAY_NAMES.index(text.lower()) if text.lower() in _DAY_NAMES else None


class SweepConfig(Table):
    max_shrink_fraction: float = Field(default=0.2, ge=0, le=1)
    reread_attempts: int = Field(default=2, ge=0, le=10)
    accounts: bool = True  # also read the customer accounts (no_active_number, names in costs)
    # Seconds a sweep may take before it fails ("90m", "4h" and "1d" are read too).
    max_duration: int = Field(default=4 * 3600, ge=60, le=7 * 86_400)

    @field_validator("max_duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
            number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
            if ascii_digits(number):
                return int(number) * units[unit]
            raise ValueError("give seconds, or a duration such as 90m, 4h or 1d")
        return value


class RulesConfig(RuleTables):
    """``[rules]``: ``timezone``, the user-defined rules (``custom``) and, added below, one
    ``[rules.<id>]`` table per registered built-in rule."""

    timezone: IanaZone | None = None  # the day dates are counted in; None: schedule.timezone


if not TYPE_CHECKING:  # mypy reads a built-in rule's table with ``rule(id)``
    RulesConfig = create_model(
        "RulesConfig",
        __base__=RulesConfig,
        __module__=__name__,
        __doc__=RulesConfig.__doc__,
        **{rid: (type(spec.defaults), spec.defaults) for rid, spec in REGISTRY.items()},
    )


class ChannelConfig(Table):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # The Apprise URL, or read from ``url_file`` when the config loads (a Docker secret).
    url: SecretURL = ""
    url_file: str | None = None
    enabled: bool = True
    min_severity: Severity = "info"
    rules: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    default: bool = False
    format: Literal["auto", "markdown", "text", "html"] = "auto"
    max_length: int | None = Field(default=None, ge=500, le=1_000_000)

    @model_validator(mode="after")
    def _apprise_understands(self) -> ChannelConfig:
        from monitor.alerts.channels import check_url

        if not self.url:
            raise ValueError(
                f"channel {self.name!r}: set url (an Apprise URL) or url_file (a file holding "
                "one, e.g. /run/secrets/slack_url)"
            )
        if (problem := check_url(self.url)) is not None:
            raise ValueError(
                f"channel {self.name!r}: Apprise cannot use its url ({problem}); "
                "see the Apprise wiki for the URL format of this service"
            )
        return self

    def body_format(self) -> Literal["markdown", "text", "html"]:
        if self.format != "auto":
            return self.format
        return "html" if self.kind() == "email" else "markdown"

    def kind(self) -> Literal["email", "slack", "chat"]:
        """What the URL delivers to: email and Slack get their own message designs."""
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if scheme in {"mailto", "mailtos"}:
            return "email"
        if scheme == "slack" or (scheme == "https" and parts.hostname == "hooks.slack.com"):
            return "slack"
        return "chat"

    def uses_blocks(self) -> bool:
        """Slack channels get a Block Kit message unless a format is set explicitly."""
        return self.kind() == "slack" and self.format == "auto"


# One send is at most SEND_TIMEOUTS of ``delivery_timeout_seconds`` (a few requests: a split
# message, uploads, each with its connect and read phases), and the outbox's claim lease
# (``outbox.CLAIM_LEASE``) outlasts that many of the largest timeout: a send still running is
# never claimed and sent again by another sender.
DELIVERY_TIMEOUT_MAX = 60
SEND_TIMEOUTS = 8


class AlertsConfig(Table):
    resolved: bool = True
    title_prefix: str = Field(default="did-monitor", max_length=60)
    # Bounded so the delay doubling per attempt always fits a date (a week / 30 days at most).
    retry_backoff_seconds: int = Field(default=300, ge=1, le=7 * 86_400)
    retry_backoff_max_seconds: int = Field(default=6 * 3600, ge=1, le=30 * 86_400)
    failing_after: int = Field(default=3, ge=1, le=1000)
    delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=DELIVERY_TIMEOUT_MAX)
    max_items: int = Field(default=50, ge=1, le=10_000)
    # Deprecated, read for one more release (a warning at load): title.txt, intro.txt, footer.txt.
    templates: dict[str, str] = Field(default_factory=dict)
    # Jinja2 templates (digest.html, digest.txt, title.txt, ...) that replace the packaged ones;
    # a relative path is relative to the config file. Checked when the config loads.
    templates_dir: str | None = None
    # Rows an email's body shows; past it, the most urgent ones and the whole list as CSV.
    # 100 rows are about 70 KB of HTML, under Gmail's clip (the body also stops at 95 KB).
    email_max_rows: int = Field(default=100, ge=10, le=5000)
    # Public address of the dashboard, linked from digests ("N more" in Slack, the email footer).
    dashboard_url: str = ""

    @field_validator("dashboard_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not value or (parts.scheme in {"https", "http"} and parts.hostname):
            return value
        raise ValueError("must be an http:// or https:// URL, e.g. https://monitor.example.com/")

    @field_validator("templates")
    @classmethod
    def _known_templates(cls, value: dict[str, str]) -> dict[str, str]:
        if unknown := sorted(set(value) - {"title", "intro", "footer"}):
            raise ValueError(f"unknown template(s) {', '.join(unknown)}; use title, intro, footer")
        return value


class ServiceConfig(Table):
    health_listen: ListenAddress = ""
    heartbeat_url: SecretURL = ""
    fail_url: SecretURL = ""
    retry_interval_seconds: int = Field(default=300, ge=10, le=86_400)
    shutdown_timeout_seconds: int = Field(default=30, ge=1, le=3600)

    @field_validator("heartbeat_url", "fail_url")
    @classmethod
    def _ping_url(cls, value: str) -> str:
        if not value or _https_or_loopback(value):
            return value
        raise ValueError("must be an https:// URL (http:// only for loopback hosts)")


_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: valid in a header, no spaces


class DashboardConfig(Table):
    """``[dashboard]``: the read-only web pages on the service's one HTTP listener.

    ``listen`` and ``service.health_listen`` name the same listener (set either); the pages,
    ``/metrics`` and the probes are all served there. With ``username``/``password`` or
    ``token`` set, everything but ``/healthz``, ``/readyz`` and the stylesheet asks for them.
    """

    listen: ListenAddress = ""
    enabled: bool = True
    username: str = ""
    password: SecretText = ""
    password_file: str | None = None
    token: SecretText = ""
    token_file: str | None = None
    page_size: int = Field(default=50, ge=10, le=500)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if ":" in value or (value and not value.isprintable()):
            raise ValueError("a user name cannot hold ':' or control characters")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if value and (len(value) < 16 or not _TOKEN_CHARS.match(value)):
            raise ValueError(
                "the token must be at least 16 visible ASCII characters without spaces "
                "(e.g. from `openssl rand -hex 32`)"
            )
        return value

    @model_validator(mode="after")
    def _pair(self) -> DashboardConfig:
        if bool(self.username) != bool(self.password):
            raise ValueError("set both username and password for basic auth, or neither")
        return self


class LoggingConfig(Table):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _folded(str.upper)] = "INFO"
    format: Annotated[Literal["auto", "json", "text"], _folded(str.lower)] = "auto"


class Settings(Table):
    vobiz: VobizConfig = VobizConfig()
    database: DatabaseConfig = DatabaseConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    sweep: SweepConfig = SweepConfig()
    rules: RulesConfig = RulesConfig()
    channels: tuple[ChannelConfig, ...] = ()
    alerts: AlertsConfig = AlertsConfig()
    service: ServiceConfig = ServiceConfig()
    dashboard: DashboardConfig = DashboardConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _unique_channels(self) -> Settings:
        if dupes := sorted(n for n, k in Counter(c.name for c in self.channels).items() if k > 1):
            raise ValueError(f"channel names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _one_listener(self) -> Settings:
        service, dashboard = self.service.health_listen.strip(), self.dashboard.listen.strip()
        if service and dashboard and parse_listen(service) != parse_listen(dashboard):
            raise ValueError(
                f"service.health_listen ({service!r}) and dashboard.listen ({dashboard!r}) "
                "name two addresses, but the service has one listener: set one of them"
            )
        return self

    def listen_address(self) -> tuple[str, tuple[str, int] | None]:
        """The key in force for the one HTTP listener (either may be set), and where it binds:
        None when it is off."""
        if self.dashboard.listen.strip():
            return "dashboard.listen", parse_listen(self.dashboard.listen, "dashboard.listen")
        return "service.health_listen", parse_listen(self.service.health_listen)

    @property
    def rules_zone(self) -> zoneinfo.ZoneInfo:
        """The time zone rules count days in: ``rules.timezone``, else ``schedule.timezone``."""
        return zoneinfo.ZoneInfo(self.rules.timezone or self.schedule.timezone)

    def channel(self, name: str) -> ChannelConfig:
        for chan in self.channels:
            if chan.name == name:
                return chan
        raise ConfigError(
            f"no channel named {name!r}",
            hint=f"configured channels: {', '.join(c.name for c in self.channels) or 'none'}",
        )


@dataclass(frozen=True)
class LoadedConfig:
    """Settings plus where they came from (for ``check-config``) and warnings to print."""

    settings: Settings
    path: Path | None
    sources: dict[str, str]
    warnings: tuple[str, ...]


CONFIG_MAX_BYTES = 1024 * 1024  # the config file
SECRET_MAX_BYTES = 64 * 1024  # a ``*_file`` secret

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_small_file(path: Path, limit: int, label: str, *, hint: str) -> str:
    """The text of the regular file ``path`` (UTF-8, a byte-order mark dropped), at most
    ``limit`` bytes; ``ConfigError`` starting with ``label`` (the key and/or the path) otherwise.

    Only regular files are opened: a FIFO with no writer would block for ever and a device such
    as /dev/zero never ends. The size is checked before reading and again while reading (at most
    ``limit + 1`` bytes are read), so a file that grows meanwhile cannot exhaust memory.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"{label}: {reason}", hint=hint)

    def check(info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _NOT_REGULAR if test(info.st_mode)), "not a file")
            raise refuse(f"is {kind}, not a regular file")
        if info.st_size > limit:
            raise refuse(f"is larger than {limit // 1024} KiB ({info.st_size} bytes)")

    try:
        check(path.stat())  # never open what is not a regular file (a FIFO blocks in open)
        # O_NONBLOCK: should the path become a FIFO after the check, open does not wait.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            check(os.fstat(handle.fileno()))
            data = handle.read(limit + 1)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise refuse(f"is larger than {limit // 1024} KiB")
    try:
        # utf-8-sig: a byte-order mark (editors on Windows add one) is not part of the text.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(f"not a text file (byte {exc.start} is not UTF-8)") from None


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML: tables or arrays nested too deeply",
            hint=f"nest tables and arrays less deeply (conditions: at most {MAX_DEPTH} levels)",
        ) from None
    except ValueError:  # an integer past Python's int-string conversion limit (4300 digits)
        where = ""
        if long := re.search(r"[0-9_]{4000,}", text):
            start = text.rfind("\n", 0, long.start()) + 1
            key, eq, _ = text[start : long.start()].partition("=")
            where = f"line {text.count(chr(10), 0, start) + 1}"
            where += f" ({key.strip()}): " if eq else ": "
        raise ConfigError(
            f"{path}: {where}a number with thousands of digits cannot be read",
            hint="no setting needs a number that large; check for a pasted value",
        ) from None


def load(cli_path: str | None = None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, merge and validate the configuration; raise ``ConfigError`` naming file and key."""
    env = dict(os.environ if environ is None else environ)
    named = cli_path or env.get("DID_MONITOR_CONFIG")  # explicitly: it must then exist
    path = Path(named or DEFAULT_CONFIG)
    found = path if path.exists() else None
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    if found:
        hint = "the config must be a UTF-8 TOML file; see config.example.toml"
        text = read_small_file(path, CONFIG_MAX_BYTES, str(path), hint=hint)
        data = _parse_toml(text, path)
        _mark(data, "", f"file {path}", sources)
        if _readable_by_others(path) and any(s.held_in(v) for s, v in _secret_values(data)):
            warnings.append(
                f"{path} holds secrets and is readable by other users; run: chmod 600 {path}"
            )
    elif named:
        raise ConfigError(
            f"{path}: config file not found",
            hint="copy config.example.toml to config.toml, or pass --config PATH",
        )

    _apply_env(data, env, sources)
    warnings.extend(_apply_secret_files(data, sources, path))
    _remember_secrets(data)  # before validation: its messages and Apprise's logs are scrubbed
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, found, sources)) from None
    settings = _check_templates(settings, path)
    warnings.extend(legacy_warnings(settings.alerts.templates))
    _remember_secrets(settings.model_dump())
    return LoadedConfig(settings, found, sources, tuple(warnings))


def _check_templates(settings: Settings, path: Path) -> Settings:
    """Resolve ``alerts.templates_dir`` against the config file's folder and compile every
    template in it, so a broken one is a config error (exit 2) naming the file."""
    folder = settings.alerts.templates_dir
    if not folder:
        return settings
    where = path.parent / Path(folder).expanduser()  # an absolute path stays as it is
    check_dir(where)
    alerts = settings.alerts.model_copy(update={"templates_dir": str(where)})
    return settings.model_copy(update={"alerts": alerts})


def _mark(node: Any, prefix: str, origin: str, sources: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _mark(value, f"{prefix}.{key}" if prefix else str(key), origin, sources)
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for idx, value in enumerate(node):
            _mark(value, f"{prefix}[{idx}]", origin, sources)
    else:
        sources[prefix] = origin


def _label(parts: Sequence[str | int]) -> str:
    """A setting's name as messages and ``LoadedConfig.sources`` give it: channels[0].url."""
    first, *rest = (str(p) for p in parts)
    return first + "".join(f"[{p}]" if ascii_digits(p) else f".{p}" for p in rest)


_SHORTCUTS = (("auth_id", "VOBIZ_AUTH_ID"), ("auth_token", "VOBIZ_AUTH_TOKEN"))


def _apply_env(data: dict[str, Any], env: Mapping[str, str], sources: dict[str, str]) -> None:
    if not isinstance(data.get("vobiz", {}), dict):
        raise ConfigError("[vobiz] must be a table")
    overrides = [
        ([p.lower() for p in var[len(ENV_PREFIX) :].split("__") if p], var)
        for var in env
        if var.startswith(ENV_PREFIX)
    ]
    # Indices in numeric order (CHANNELS__2 before CHANNELS__10), so a list grows one by one.
    overrides.sort(key=lambda o: [(0, int(p), "") if ascii_digits(p) else (1, 0, p) for p in o[0]])
    shortcuts = [(["vobiz", key], var) for key, var in _SHORTCUTS if env.get(var)]
    for parts, var in shortcuts + overrides:  # the DID_MONITOR__ names win over the shortcuts
        if parts:
            _set_path(data, parts, env[var], var)
            sources[_label(parts)] = f"env {var}"


def _set_path(data: dict[str, Any], parts: list[str], raw: str, var: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        key: str | int = part
        if isinstance(node, list):
            key = _list_index(node, part, var)
        elif not isinstance(node, dict):
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(
                f"environment variable {var} does not match the config's structure "
                f"({where} is not a table)",
                hint="DID_MONITOR__SECTION__KEY, e.g. DID_MONITOR__VOBIZ__PER_PAGE",
            )
        elif depth + 1 < len(parts):
            node.setdefault(part, [] if ascii_digits(parts[depth + 1]) else {})
        if depth + 1 == len(parts):
            node[key] = raw if _is_text(parts) else _parse_env_value(raw)
        else:
            node = node[key]


def _list_index(node: list[Any], part: str, var: str) -> int:
    """The list position ``part`` names: an existing item, or the next one (added as an empty
    table, never past a gap)."""
    if not ascii_digits(part):
        raise ConfigError(
            f"environment variable {var}: {part!r} is not a list index",
            hint="list items are numbered from 0, e.g. DID_MONITOR__CHANNELS__0__URL",
        )
    idx = int(part)
    if idx > len(node):
        raise ConfigError(
            f"environment variable {var}: index {idx} is past the end "
            f"({len(node)} item(s) defined, so the next is {len(node)})",
            hint="number list items from 0 without gaps; a new channel needs its name and url",
        )
    if idx == len(node):
        node.append({})
    return idx


def _is_text(parts: list[str]) -> bool:
    """Whether the setting at ``parts`` holds text: its environment value is then taken verbatim,
    so a numeric-looking token stays a string; other values are read as TOML."""
    annotation: Any = Settings
    for part in parts:
        annotation = _unwrap_optional(annotation)
        origin = get_origin(annotation)
        if origin is tuple and ascii_digits(part):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        elif _is_model(annotation) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return False
    return _unwrap_optional(annotation) is str


def _unwrap_optional(annotation: Any) -> Any:
    """``X`` of ``X | None`` and of ``Annotated[X, ...]``."""
    if get_origin(annotation) in (Union, UnionType):
        rest = [a for a in get_args(annotation) if a is not NoneType]
        annotation = rest[0] if len(rest) == 1 else annotation
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)  # not tuple[X]


def _parse_env_value(raw: str) -> Any:
    """Environment values are TOML values when they parse as one (numbers, booleans, arrays)."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (ValueError, RecursionError):  # not TOML, a huge integer, nested too deeply
        return raw


@dataclass(frozen=True)
class SecretSetting:
    """One ``Secret``-marked setting's place in plain config data."""

    table: dict[str, Any]  # the table that holds it (or would)
    key: str
    label: str  # as errors and ``LoadedConfig.sources`` name it: channels[0].url
    secret: Secret
    from_file: bool  # the table also takes ``<key>_file`` (Docker/Kubernetes secrets)


def secret_settings(
    data: Any, model: type[BaseModel] | None = None, label: str = ""
) -> Iterator[SecretSetting]:
    """Every ``Secret``-marked setting of ``data`` (TOML and environment tables, or
    ``Settings.model_dump()``), set or not, in the models' order: the one list of secrets."""
    if not isinstance(data, dict):
        return
    model = model or Settings
    for name, info in model.model_fields.items():
        where = f"{label}.{name}" if label else name
        secret = next((m for m in info.metadata if isinstance(m, Secret)), None)
        if secret is not None:
            yield SecretSetting(data, name, where, secret, f"{name}_file" in model.model_fields)
            continue
        value, inner = data.get(name), info.annotation
        if get_origin(inner) is tuple and _is_model(get_args(inner)[0]):
            if isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    yield from secret_settings(item, get_args(inner)[0], f"{where}[{i}]")
        elif _is_model(inner):
            yield from secret_settings(value, inner, where)


def _apply_secret_files(data: dict[str, Any], sources: dict[str, str], path: Path) -> list[str]:
    """Read the ``*_file`` secrets; returns warnings (a secret file other users can read)."""
    warnings: list[str] = []
    for setting in secret_settings(data):
        table, key, label = setting.table, setting.key, setting.label
        if not setting.from_file or not table.get(f"{key}_file"):
            continue
        if sources.get(label, "").startswith("env"):
            continue  # an explicit environment value wins over the secret file
        name = f"{label}_file"
        # A URL (a channel's) is given one way, never empty; a token's file wins over the key.
        is_url = setting.secret.kind != "text"
        if is_url and key in table and not sources.get(name, "").startswith("env"):
            raise ConfigError(
                f"{path}: {label}: set {key} or {key}_file, not both",
                hint=f"keep {key}_file (the URL in a secret file) and delete {key}, or the reverse",
            )
        secret_path = path.parent / str(table[f"{key}_file"])  # relative to the config file
        hint = f"the file must hold only the secret, as text; mount it or unset {key}_file"
        # Editors end files with a newline (CR LF on Windows), which is not part of the secret.
        value = read_small_file(secret_path, SECRET_MAX_BYTES, f"{name}: {secret_path}", hint=hint)
        table[key] = value.strip()
        if not table[key]:  # an empty mount must not turn a token or password off
            raise ConfigError(f"{name}: {secret_path}: is empty", hint=hint)
        sources[label] = f"secret file {secret_path}"
        if _readable_by_others(secret_path):
            warnings.append(
                f"{secret_path} ({name}) is readable by other users; run: chmod 600 {secret_path}"
            )
    return warnings


def _secret_values(data: Any) -> Iterator[tuple[Secret, str]]:
    for setting in secret_settings(data):
        if value := setting.table.get(setting.key):
            yield setting.secret, str(value)


def _remember_secrets(data: Any) -> None:
    redact.remember(part for secret, value in _secret_values(data) for part in secret.parts(value))


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _describe(exc: ValidationError, path: Path | None, sources: dict[str, str]) -> str:
    """pydantic's errors as "file: key: what to do" lines (or naming the environment variable
    that set the key)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        label = _label(err["loc"]) if err["loc"] else loc
        below = (f"{label}.", f"{label}[")  # an environment variable set a key inside it
        origin = sources.get(label) or next(
            (v for k, v in sources.items() if v.startswith("env ") and k.startswith(below)), ""
        )
        if origin.startswith("env "):
            where = f"environment variable {origin[4:]} ({loc})"
        else:
            where = f"{path or 'configuration'}: {loc}"
        why = error_text(err)
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 2 and err["loc"][0] == "rules":
            why = (
                f"unknown rule {err['loc'][1]!r} (built-in rules: {', '.join(REGISTRY)}; "
                "define your own under [[rules.custom]])"
            )
        lines.append(f"{where}: {why}")
    return redact.scrub("\n  ".join(lines))


# --- placeholders left from config.example.toml -------------------------------------------------

_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", ".example", ".invalid")
# A URL part that only holds a placeholder: slack://T000/B000/XXXX, .../services/T000/...
_PLACEHOLDER_PART = re.compile(r"(?i)x{3,}|[a-z]?0{3,}|\.{3}|…")
_PLACEHOLDER_ID = re.compile(r"(?i)[a-z]{2}_x{4,}")
_PLACEHOLDER_SECRET = re.compile(r"(?i)\.+|…|x{3,}|\*+|<[^>]*>|changeme|your[-_ ]?token")


def _is_placeholder_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return False
    if any(host == d or host.endswith(d if d[0] == "." else f".{d}") for d in _EXAMPLE_DOMAINS):
        return True
    pieces = [parts.netloc.rpartition("@")[2], *parts.path.split("/")]
    return any(_PLACEHOLDER_PART.fullmatch(piece) for piece in pieces if piece)


def placeholder_warnings(settings: Settings) -> list[str]:
    """Values still as config.example.toml (or a tutorial) wrote them, one warning each; a
    secret's value is never quoted, a URL only masked."""
    found: list[str] = []
    vobiz = settings.vobiz
    if _PLACEHOLDER_ID.fullmatch(vobiz.auth_id):
        found.append(
            f"vobiz.auth_id is the example's placeholder {vobiz.auth_id!r}: set your partner "
            "auth id (PA_...) from the Vobiz console, or the environment variable VOBIZ_AUTH_ID"
        )
    data = settings.model_dump()
    secrets = {setting.label: setting for setting in secret_settings(data)}
    for label, setting in secrets.items():
        value = setting.table[setting.key]
        if setting.secret.kind == "text" and value and _PLACEHOLDER_SECRET.fullmatch(value):
            found.append(f"{label} is a placeholder, not a real secret: set the real one")
    for section, table in data.items():  # every url setting; channels below
        for key, url in table.items() if isinstance(table, dict) else ():
            label = f"{section}.{key}"
            if (key == "url" or key.endswith("_url")) and url and _is_placeholder_url(url):
                shown = (
                    secrets[label].secret.mask(url) if label in secrets else redact.mask_url(url)
                )
                found.append(
                    f"{label} is the example's address ({shown}): set the real one or remove it"
                )
    for i, chan in enumerate(settings.channels):
        if chan.enabled and _is_placeholder_url(chan.url):
            found.append(
                f"channels[{i}] ({chan.name}): url looks like the example's placeholder "
                f"({redact.mask_url(chan.url)}); alerts queued for it wait and are retried until "
                "it works: set the real URL or enabled = false "
                f"(`did-monitor outbox drop --channel {chan.name}` clears its queue)"
            )
    return found


# --- redaction --------------------------------------------------------------------------------


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data with every secret masked."""
    data = settings.model_dump(mode="json")
    for setting in secret_settings(data):
        setting.table[setting.key] = setting.secret.mask(setting.table[setting.key])
    rules = data["rules"]
    rules["custom"] = rules.pop("custom")  # shown after the built-in rules' tables
    for table in [v for v in rules.values() if isinstance(v, dict)] + rules["custom"]:
        for key in ("include", "exclude"):  # only the lists that are set
            table[key] = {k: v for k, v in table[key].items() if v}
    return data
