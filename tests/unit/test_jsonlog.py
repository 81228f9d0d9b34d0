"""JsonFormatter: one JSON object per line, with the record's fields, its traceback and its extras."""

from __future__ import annotations

import json
import logging

from bokehserve_django.jsonlog import JsonFormatter


def formatted(record: logging.LogRecord) -> dict:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def record(message: str, *args: object, level: int = logging.INFO, exc_info=None, extra=None) -> logging.LogRecord:
    return logging.getLogger("bokehserve_django.test").makeRecord(
        "bokehserve_django.test", level, __file__, 1, message, args, exc_info, extra=extra
    )


def test_a_record_becomes_one_json_line() -> None:
    entry = formatted(record("Closing connection of session %r: %s", "abc", "Signed out\nby admin"))
    assert entry["message"] == "Closing connection of session 'abc': Signed out\nby admin"
    assert entry["level"] == "INFO" and entry["logger"] == "bokehserve_django.test"
    assert entry["time"].endswith("+00:00") and isinstance(entry["pid"], int)
    assert "exception" not in entry


def test_the_traceback_is_one_field() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        entry = formatted(record("failed", level=logging.ERROR, exc_info=sys.exc_info()))
    assert entry["exception"].startswith("Traceback") and "ValueError: bad" in entry["exception"]


def test_extras_are_added_and_what_json_cannot_hold_becomes_its_repr() -> None:
    entry = formatted(record("refused", extra={"app": "sliders", "code": 4003, "user": object()}))
    assert entry["app"] == "sliders" and entry["code"] == 4003
    assert entry["user"].startswith("<object object")
