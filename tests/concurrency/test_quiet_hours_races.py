"""Real concurrency on PostgreSQL: a member changes their quiet hours as a bid waiting them out
is answered by them, or expired by the worker.

The change locks the couple, then the account, then the waiting bids, then their pushes; an
answer locks the couple, then the bid, then withdraws its push; an expiry takes the couple and
the bid only if nobody holds them. Whichever comes first, neither fails, the couple's stream
has each change once and in order, the bid's `reachable_at` is the one its last event showed,
and the push of a bid that is over is withdrawn.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.services import bids
from tests.support.client import ApiClient, Person
from tests.support.locks import first_statement_held
from tests.support.phones import Phone

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

# 03:00 in New York, where Ben sleeps 22:00-07:00: Ana's bid waits for 12:00Z.
NIGHT = datetime(2031, 1, 15, 8, 0, tzinfo=UTC)
MORNING = "2031-01-15T12:00:00.000000Z"
NO_QUIET_HOURS = {"quiet_hours": None}


def asleep_in_new_york(client: ApiClient) -> tuple[Person, Person, dict[str, Any]]:
    """Ana in Berlin; Ben in New York, asleep, with a phone; Ana's bid waiting for his morning."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert client.patch("/api/v1/me", as_=ben, json=quiet).status_code == 200
    device = {"platform": "android", "push_token": "ben-token"}
    assert client.post("/api/v1/devices", as_=ben, json=device).status_code == 201
    clock.freeze(NIGHT)
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    sent = client.post("/api/v1/bids", as_=client.fresh(ana), json=body)
    assert sent.status_code == 201, sent.text
    assert sent.json()["reachable_at"] == MORNING
    return client.fresh(ana), client.fresh(ben), dict(sent.json())


def the_change(statement: str) -> bool:
    """The quiet-hours change, once it holds the couple, the account and the waiting bids."""
    return statement.startswith("SELECT") and "bids.reachable_at >" in statement


def the_answer(statement: str) -> bool:
    """The answer, once it holds the couple and the bid and has written its response."""
    return statement.startswith("INSERT INTO bid_responses")


def the_expiry(statement: str) -> bool:
    """The expiry, once it holds the couple and the bid and withdraws the push."""
    return statement.startswith("UPDATE push_jobs SET state")


def stream_of(client: ApiClient, who: Person) -> list[dict[str, Any]]:
    """The couple's stream, checked for gaps and duplicates."""
    events: list[dict[str, Any]] = client.get("/api/v1/sync", as_=who).json()["events"]
    assert [e["cursor"] for e in events] == list(range(1, len(events) + 1)), events
    return events


def push_states(app: Flask) -> list[str]:
    with app.app_context(), db.scope() as session:
        return list(session.scalars(select(PushJob.state).where(PushJob.kind == "bid.created")))


def answering(client: ApiClient, ben: Person, bid_id: str, channel: str) -> Callable[[], Any]:
    """Ben's answer over REST (its response) or over his socket (its ack)."""
    body = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    if channel == "rest":
        return lambda: ApiClient(client.base_url).post(
            f"/api/v1/bids/{bid_id}/responses", as_=ben, json=body
        )
    phone = Phone(client.base_url, ben.access_token).connect()
    return lambda: phone.call("bid.respond", {"bid_id": bid_id, **body}, timeout=20)


def answered_bid(channel: str, answer: Any) -> dict[str, Any]:
    if channel == "rest":
        assert answer.status_code == 201, answer.text
        return dict(answer.json())
    assert isinstance(answer, dict) and "status" in answer and "code" not in answer, answer
    return answer


@pytest.mark.parametrize("channel", ["rest", "socket"])
@pytest.mark.parametrize("first", ["change", "answer"])
def test_quiet_hours_changed_as_the_waiting_bid_is_answered(
    client: ApiClient, app: Flask, first: str, channel: str
) -> None:
    """Ben turns his quiet hours off on one phone as he answers Ana's bid on another; the first
    holds its locks until the second waits for them."""
    ana, ben, sent = asleep_in_new_york(client)
    answer = answering(client, ben, sent["id"], channel)
    change = lambda: ApiClient(client.base_url).patch(  # noqa: E731
        "/api/v1/me", as_=ben, json=NO_QUIET_HOURS
    )
    try:
        with (
            ThreadPoolExecutor(max_workers=2) as pool,
            first_statement_held(app, the_change if first == "change" else the_answer) as held,
        ):
            before: Future[Any] = pool.submit(change if first == "change" else answer)
            assert held.wait(10), "the first never took its locks"
            after: Future[Any] = pool.submit(answer if first == "change" else change)
            changed = (before if first == "change" else after).result(timeout=20)
            answered = (after if first == "change" else before).result(timeout=20)
        assert changed.status_code == 200, changed.text
        bid = answered_bid(channel, answered)
    finally:
        clock.unfreeze()
    # Moved to the moment his hours ended, then answered; or answered while still waiting.
    reachable = NIGHT.isoformat().replace("+00:00", ".000000Z") if first == "change" else MORNING
    assert (bid["status"], bid["reachable_at"], bid["response_seconds"]) == (
        "answered",
        reachable,
        0,
    )
    got = client.get(f"/api/v1/bids/{sent['id']}", as_=client.fresh(ana)).json()
    assert (got["status"], got["reachable_at"]) == ("answered", reachable)
    events = stream_of(client, ana)
    expected = ["bid.rescheduled", "bid.answered"] if first == "change" else ["bid.answered"]
    assert [e["type"] for e in events if e["type"].startswith("bid.")][1:] == expected
    assert events[-1]["data"]["reachable_at"] == reachable
    assert push_states(app) == ["cancelled"]


@pytest.mark.parametrize("first", ["change", "expiry"])
def test_quiet_hours_changed_as_the_waiting_bid_expires(
    client: ApiClient, app: Flask, first: str
) -> None:
    """At the bid's `expires_at` Ben changes his quiet hours as a worker's pass expires it.
    The pass never waits for a couple a request holds: it leaves the bid for its next pass."""
    ana, ben, sent = asleep_in_new_york(client)
    clock.freeze(datetime.fromisoformat(sent["expires_at"]))
    ben = client.fresh(ben)

    def expire() -> int:
        with app.app_context(), db.scope() as session:
            return bids.expire_due(session, clock.now())

    change = lambda: ApiClient(client.base_url).patch(  # noqa: E731
        "/api/v1/me", as_=ben, json=NO_QUIET_HOURS
    )
    passes: list[int] = []
    try:
        if first == "change":
            # The pass runs while the change holds the couple, the account and the bids.
            with (
                first_statement_held(app, the_change) as held,
                ThreadPoolExecutor(max_workers=1) as pool,
            ):
                changing = pool.submit(change)
                assert held.wait(10), "the change never took its locks"
                passing = threading.Thread(target=lambda: passes.append(expire()))
                passing.start()
                passing.join(10)
                # Something must wait for a lock to let the change go: a second change.
                second = ApiClient(client.base_url).patch(
                    "/api/v1/me", as_=ben, json={"display_name": "Ben"}
                )
                changed = changing.result(timeout=20)
            assert second.status_code == 200, second.text
        else:
            with (
                ThreadPoolExecutor(max_workers=2) as pool,
                first_statement_held(app, the_expiry) as held,
            ):
                passing_f = pool.submit(expire)
                assert held.wait(10), "the pass never withdrew the push"
                changed = pool.submit(change).result(timeout=20)
                passes.append(passing_f.result(timeout=20))
        assert changed.status_code == 200, changed.text
        passes.append(expire())
    finally:
        clock.unfreeze()
    assert passes == ([0, 1] if first == "change" else [1, 0])
    got = client.get(f"/api/v1/bids/{sent['id']}", as_=client.fresh(ana)).json()
    assert (got["status"], got["reachable_at"]) == ("expired", MORNING)
    events = stream_of(client, ana)
    assert [e["type"] for e in events if e["type"].startswith("bid.")] == [
        "bid.created",
        "bid.expired",
    ]
    assert events[-1]["data"]["reachable_at"] == MORNING
    assert push_states(app) == ["cancelled"]
