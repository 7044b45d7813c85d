"""Structured logs: one JSON object per line, with the fields each record was given."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# PostgreSQL's detail of a refused row quotes the row's values ("Failing row contains (...)",
# "Key (...)=(...) already exists."): a note or a message body. The statement's parameters are
# hidden from the logs (`hide_parameters`), the detail only here.
_ROW_DETAIL = re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE)
_WITHHELD = r"\1  (withheld from the logs: it may quote the row's values)"


def withhold_row_values(text: str) -> str:
    """`text` with every PostgreSQL DETAIL line's content replaced."""
    return _ROW_DETAIL.sub(_WITHHELD, text)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given (`extra=`), beyond logging's own."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _plain(value: Any) -> str:
    """A field's value as `key=value` shows it: bare when it is one word, else quoted with
    JSON's escapes (a newline as \\n), so that every record stays one line."""
    if isinstance(value, int | float | bool | None):
        return json.dumps(value)
    shown = str(value)
    if shown and not any(c.isspace() or c in '"=\\' for c in shown):
        return shown
    return json.dumps(shown, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Lines for a terminal: time, level, logger and message, then the record's fields as
    `key=value`; tracebacks without the rows the database refused."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        given = " ".join(f"{key}={_plain(value)}" for key, value in fields(record).items())
        if not given:
            return line
        head, newline, rest = line.partition("\n")  # a traceback goes on the lines after
        return f"{head} {given}{newline}{rest}"

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return withhold_row_values(super().formatException(ei))


class JsonFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields(record).items():
            entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    root = logging.getLogger()
    if getattr(root, "_reach_configured", False):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root._reach_configured = True  # type: ignore[attr-defined]
    for noisy in (
        "engineio.server",
        "socketio.server",
        "werkzeug",
        "geventwebsocket.handler",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
