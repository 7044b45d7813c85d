"""Real concurrency on PostgreSQL: insights are read from one snapshot.

The figures take several statements. Under READ COMMITTED each saw what had committed by its
own start, so a bid committed between two of them was counted by one and not the other: Ana's
`bids_sent` one less than Ben's `bids_received` in the same answer.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from service.extensions import db
from tests.support.client import ApiClient

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_a_bid_committed_while_insights_are_read_is_counted_by_every_figure_or_none(
    client: ApiClient, app: Flask
) -> None:
    ana, ben = client.couple()
    for _ in range(2):
        client.post("/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "share"})
    with app.app_context():
        engine = db.engine
    sent_meanwhile: list[int] = []
    once = threading.Lock()

    def between_statements(*args: Any) -> None:
        """After the insights' first count of bids, another request of Ana's sends one."""
        if "FROM bids" not in args[2] or "count(" not in args[2] or not once.acquire(False):
            return
        other = ApiClient(client.base_url)
        body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
        sent_meanwhile.append(other.post("/api/v1/bids", as_=ana, json=body).status_code)

    event.listen(engine, "after_cursor_execute", between_statements)
    try:
        insights = client.get("/api/v1/insights", as_=ana, params={"days": 7}).json()
    finally:
        event.remove(engine, "after_cursor_execute", between_statements)
    assert sent_meanwhile == [201]
    by_id = {p["user_id"]: p for p in insights["partners"]}
    ana_sent, ben_received = by_id[ana.id]["bids_sent"], by_id[ben.id]["bids_received"]
    assert ana_sent == ben_received, (ana_sent, ben_received)
    assert insights["couple"]["bids"] == sum(week["bids"] for week in insights["weekly"])
    # Read again: the bid sent meanwhile is there for every figure.
    again = client.get("/api/v1/insights", as_=ben, params={"days": 7}).json()
    assert {p["user_id"]: p["bids_sent"] for p in again["partners"]}[ana.id] == 3
