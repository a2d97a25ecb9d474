"""How ``infernet-node`` writes its log: readable text (the default), or one JSON object per
line (``--log-format json`` or ``log.format``) for log collectors."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

from infernet_core.codec import encode as _encode

__all__ = ("CONTEXT_FIELDS", "JsonFormatter", "configure_logging")

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTEXT_FIELDS: Final = (
    "job_id",
    "subscription_id",
    "container_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "client",
)
"""Attributes a log call may pass (``extra={...}``) that a JSON line carries as fields."""


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...context, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr at ``level``, as ``fmt`` (``text`` or ``json``), replacing any set-up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
