"""Real concurrency on PostgreSQL: one socket sending events faster than they are handled.

python-socketio starts a greenlet for every event as it arrives, so a socket that sent
thousands without waiting for their answers held its process's database and CPU for seconds.
Held behind a locked row here, the events a socket has in flight are counted exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import select

from service.models import Bid
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held
from tests.support.phones import Phone
from tests.support.server import LiveServer

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_a_socket_has_at_most_its_share_of_events_handled_at_once(
    server_with: Callable[..., LiveServer], app: Flask
) -> None:
    """With SOCKET_EVENTS_IN_FLIGHT=2, two `bid.seen` wait behind the bid's locked row; the
    third and fourth the phone sends meanwhile are answered at once with a 429 and do nothing;
    once the first two are answered, the socket's events are handled again. Another phone of
    the same account is not held back by the first one's."""
    server = server_with(SOCKET_EVENTS_IN_FLIGHT=2)
    client = ApiClient(server.url)
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    flooding = Phone(server.url, ben.access_token).connect()
    other = Phone(server.url, ben.access_token).connect()
    try:
        seen = {"bid_id": bid["id"]}
        with (
            ThreadPoolExecutor(max_workers=3) as pool,
            lock_queue(app) as queued,
            rows_held(app, select(Bid).where(Bid.id == uuid.UUID(bid["id"])).with_for_update()),
        ):
            first = pool.submit(flooding.call, "bid.seen", seen, 10)
            queued(1)
            second = pool.submit(flooding.call, "bid.seen", seen, 10)
            queued(2)
            for _ in range(2):
                refused = flooding.call("bid.seen", seen)
                assert refused["status"] == 429 and refused["code"] == "rate_limited", refused
                assert refused["retry_after"] == 1
                assert "wait for their answers" in refused["detail"]
            third = pool.submit(other.call, "bid.seen", seen, 10)
            queued(3)
        answers = [future.result(timeout=10) for future in (first, second, third)]
        assert all(answer["status"] == "seen" for answer in answers), answers
        assert flooding.call("bid.seen", seen)["status"] == "seen"
    finally:
        flooding.disconnect()
        other.disconnect()
