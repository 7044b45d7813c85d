"""Paging back through a long list, and what each page read (PostgreSQL reading plans)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from flask import Flask
from sqlalchemy import event

from service.extensions import db
from tests.support.plans import rows_fetched

Read = tuple[str, Any]


def every_page(
    app: Flask,
    page_of: Callable[[dict[str, Any]], requests.Response],
    reads: Callable[[str], bool],
    params: dict[str, Any],
    most_pages: int = 1000,
) -> tuple[list[str], list[Read]]:
    """Each item's id, page after page of `page_of(params)` (its `before` from the page before),
    and the statements `reads` picks out of those the pages ran, with their parameters. More
    than `most_pages` pages fails: a cursor that never ends."""
    with app.app_context():
        engine = db.engine
    picked: list[Read] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if reads(statement):
            picked.append((statement, parameters))

    shown: list[str] = []
    before = None
    for _ in range(most_pages):
        event.listen(engine, "before_cursor_execute", on)
        try:
            page = page_of({**params, **({"before": before} if before else {})})
        finally:
            event.remove(engine, "before_cursor_execute", on)
        assert page.status_code == 200, page.text
        shown += [item["id"] for item in page.json()["items"]]
        before = page.json()["next"]
        if before is None:
            return shown, picked
    raise AssertionError(f"still a next page after {most_pages} pages")


def assert_each_page_reads_a_page(
    app: Flask, picked: list[Read], table: str, total: int, limit: int, what: str
) -> None:
    """Each of the pages' statements fetched about a page of `table`'s rows: `limit` and a few
    more, or, in the older half of the `total`, what was left. PostgreSQL may rather read and
    sort what is left than walk an index, and where it turns to that follows its statistics:
    with 3,000 conversations in pages of 200 it did at 1,000 left in a run of this test alone,
    at 1,200 in a run of the whole suite (whose earlier tests leave the table other statistics).
    Never on a page in the newer half: one reading every newer row, or every older one from the
    start, is what these tests are for."""
    with app.app_context(), db.scope() as session:
        for number, (statement, parameters) in enumerate(picked, 1):
            read = rows_fetched(session.connection(), statement, parameters, table)
            left = total - (number - 1) * limit
            tail = left <= total // 2 and read <= left + 10
            assert read <= limit + 10 or tail, f"read {read} {what} of {total} for page {number}"
