"""The exception tree of did-monitor: every failure the program expects, and what it means.

::

    MonitorError                  base; ``exit_code`` says how the CLI ends
    ├── ConfigError               bad configuration (exit 2)
    ├── ApiError                  the Vobiz API failed us (exit 1)
    │   ├── AuthError             401/403: wrong credentials or base path; not retried
    │   ├── RetryableApiError     429, 5xx, timeouts, broken bodies; retried with backoff
    │   └── ApiGaveUp             retries or the retry budget ran out
    ├── IncompleteSweep           the sweep did not see the whole inventory (exit 1)
    ├── DatabaseError             the database refused or is unreachable (exit 1)
    │   └── DatabaseBusy          SQLite stayed locked by another connection past its wait
    ├── DeliveryError             an alert channel failed (exit 1); the outbox keeps it and
    │                             retries it with backoff, unless ``permanent`` (sent by hand)
    ├── SweepCancelled            the service is shutting down; the sweep was rolled back
    ├── LockLost                  the sweep's database session (and its lock) ended: rolled back
    └── LockBusy                  a live did-monitor lease holds the sweep lock (skipped)

Each error carries the decision the caller needs (a ``RetryableApiError`` is worth another try,
every other ``ApiError`` is not; a ``DeliveryError`` says whether it is ``permanent``) rather than
leaving callers to inspect library exceptions.
"""

from __future__ import annotations

from datetime import datetime


class MonitorError(Exception):
    """Raised for any failure the program expects; the CLI prints it as one line, no traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(MonitorError):
    """Raised when the configuration file, a key or an environment override is invalid."""

    exit_code = 2


class ApiError(MonitorError):
    """Raised when the Vobiz API answers with an error or cannot be reached."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class AuthError(ApiError):
    """Raised on 401/403: the credentials or the base URL are wrong; retrying cannot help."""


class RetryableApiError(ApiError):
    """Raised on 429, 5xx, timeouts and unreadable bodies: worth another try after a pause."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, status=status, hint=hint)
        self.retry_after = retry_after


class ApiGaveUp(ApiError):
    """Raised when a request still failed after its retries or the sweep's retry budget ran out."""


class IncompleteSweep(MonitorError):
    """Raised when a sweep finished paging but cannot vouch that it saw the whole inventory."""


class DatabaseError(MonitorError):
    """Raised when the database cannot be reached, migrated, read or written.

    The store raises it for every failure of the database (``store.db.database_error``), so no
    caller handles SQLAlchemy's exceptions. ``detail`` is the database's own first line when the
    database said why (None when did-monitor refused by itself)."""

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.detail = detail


class DatabaseBusy(DatabaseError):
    """Raised when SQLite stayed locked by another connection's write transaction past the busy
    timeout: ``detail`` is SQLite's "database is locked"."""


class DeliveryError(MonitorError):
    """Raised when an alert could not be delivered to a channel. The outbox keeps the message
    either way; ``permanent`` says whether sending it again as it is can help.

    Permanent (``True``): Apprise cannot load the channel's URL, or could not make this message
    into a notification at all. The outbox records the failure and does not retry it on a
    schedule; ``did-monitor outbox retry`` sends it again by hand once the cause is fixed.
    Otherwise (the service was reached or tried and failed: refused, unreachable, timed out) it is
    retried with backoff, and a channel URL fixed in the config is then used."""

    def __init__(self, message: str, *, permanent: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.permanent = permanent


class LockBusy(MonitorError):
    """Raised when a live did-monitor lease holds the sweep lock; the caller skips this sweep.

    ``owner`` names the holder, ``held_since`` and ``expires_at`` bound its lease: a caller that
    wants the sweep done tries again at ``expires_at``. Any other lock or busy error of the
    database is a ``DatabaseError`` (a failed sweep), never this."""

    exit_code = 0

    def __init__(
        self, message: str, *, owner: str, held_since: datetime, expires_at: datetime
    ) -> None:
        super().__init__(message)
        self.owner = owner
        self.held_since = held_since
        self.expires_at = expires_at


class LockLost(MonitorError):
    """Raised when a sweep's database session ended mid-sweep, taking the sweep lock with it:
    the sweep was rolled back and recorded as aborted, without a "sweep failed" alert (another
    replica may be sweeping already); the service retries it like a failed sweep."""


class SweepCancelled(MonitorError):
    """Raised inside a sweep when shutdown was requested; the sweep is rolled back and aborted."""

    def __init__(self, message: str = "shutdown requested: sweep rolled back") -> None:
        super().__init__(message)
