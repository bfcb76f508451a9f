"""Logging setup: JSON lines when not on a terminal (containers), readable lines on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from monitor.redact import LOG_RECORD_ATTRS, ScrubFilter, ScrubFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"  # on a terminal


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in LOG_RECORD_ATTRS})
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if use_json else logging.Formatter(TEXT_FORMAT, "%H:%M:%S")
    # Every record, ours or a library's, is scrubbed of secrets before any formatter sees it,
    # and the formatted line once more (exception text, extra fields).
    handler.addFilter(ScrubFilter())
    handler.setFormatter(ScrubFormatter(inner))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request URLs (webhook paths hold tokens) stay at WARNING whatever the
    # level; the scrubber is the second line of defence.
    for name in ("apprise", "httpx", "httpcore", "urllib3", "apscheduler", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
