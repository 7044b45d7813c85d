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


class TextFormatter(logging.Formatter):
    """Lines for a terminal; tracebacks without the rows the database refused."""

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
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
