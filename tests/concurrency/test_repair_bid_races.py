"""Real concurrency on PostgreSQL: a conversation started about a bid as the bid is answered.

A bid write locks the couple, then the bid. Starting a conversation about a bid writes a row
that names it (a key-share lock on the bid): it must take the couple first as well, or each
waits for the other until PostgreSQL aborts one (503 "deadlock detected").
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import select

from service.models import Couple
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.mark.parametrize("answer", ["seen", "responses"])
def test_a_conversation_about_a_bid_starts_while_the_bid_is_answered(
    client: ApiClient, app: Flask, answer: str
) -> None:
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    body = {"client_id": str(uuid.uuid4()), "kind": "toward"} if answer == "responses" else None
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
    ):
        answered = pool.submit(
            ApiClient(client.base_url).post,
            f"/api/v1/bids/{bid['id']}/{answer}",
            as_=ben,
            json=body,
        )
        queued(1)
        started = pool.submit(
            ApiClient(client.base_url).post,
            "/api/v1/repairs",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "bid_id": bid["id"]},
        )
        queued(2)
    assert answered.result(timeout=10).status_code in (200, 201)
    repair = started.result(timeout=10)
    assert repair.status_code == 201, repair.text
    assert repair.json()["bid_id"] == bid["id"]
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ana).json()["events"]]
    assert types[-1] == "repair.started", types
