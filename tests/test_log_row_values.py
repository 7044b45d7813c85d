"""A database error logged with its traceback never quotes the row it refused.

PostgreSQL's message for a refused row carries the row's values ("DETAIL:  Failing row
contains (...)", "DETAIL:  Key (...)=(...) already exists."): a note or a message body would
reach the logs through the traceback, which `hide_parameters` does not cover.
"""

from __future__ import annotations

import logging
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.db import make_engine
from service.logs import JsonFormatter, TextFormatter

pytestmark = pytest.mark.postgres

SECRET = "our-secret-words-4f1c"


def _logged_refusal(database_url: str, row: str) -> logging.LogRecord:
    """The record `log.exception` makes for the IntegrityError of inserting `row`."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMP TABLE refused (note text UNIQUE, n int NOT NULL)"))
            conn.execute(text("INSERT INTO refused VALUES (:note, 1)"), {"note": SECRET})
            try:
                conn.execute(text(f"INSERT INTO refused VALUES {row}"), {"note": SECRET})
            except IntegrityError:
                return logging.LogRecord(
                    "reach", logging.ERROR, __file__, 1, "unhandled error", None, sys.exc_info()
                )
    finally:
        engine.dispose()
    raise AssertionError("PostgreSQL took the row")


@pytest.mark.parametrize(
    "row",
    ["(:note || '-2', NULL)", "(:note, 2)"],
    ids=["failing-row-contains", "key-already-exists"],
)
@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_a_refused_rows_values_stay_out_of_the_logged_traceback(
    database_url: str, row: str, formatter: logging.Formatter
) -> None:
    record = _logged_refusal(database_url, row)
    assert record.exc_info and SECRET in str(record.exc_info[1]), "PostgreSQL quotes the row"
    line = formatter.format(record)
    assert "IntegrityError" in line and "DETAIL" in line, line
    assert SECRET not in line, line
