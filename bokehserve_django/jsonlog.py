"""Formats log records as one JSON object per line, for log shippers (docs/operations.md, "Logs").

Use it in Django's ``LOGGING``::

    "formatters": {"json": {"()": "bokehserve_django.jsonlog.JsonFormatter"}}

Each line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
``pid`` and, for a record with an exception, ``exception`` (the traceback as one string).
Fields given with ``extra={...}`` are added as they are when JSON can hold them, as their
``repr`` otherwise. No Django import: it works for any ``logging`` configuration.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

__all__ = ("JsonFormatter",)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        return json.dumps(entry, default=repr, ensure_ascii=False)
