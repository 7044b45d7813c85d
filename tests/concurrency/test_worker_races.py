"""Real concurrency on PostgreSQL: the worker's passes against the requests that withdraw the
pushes it takes."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from service.clock import clock
from service.extensions import db
from service.models import Bid, Couple, PushJob
from service.services import bids
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.mark.parametrize("answer", ["responses", "seen"])
def test_an_answer_as_the_worker_takes_the_expired_bids_push_is_no_deadlock(
    client: ApiClient, app: Flask, worker: Worker, answer: str
) -> None:
    """Ben answers (or opens) a bid past its `expires_at`, before the worker expired it, just
    as a pass claims its push. The answer finds the bid over and expires it: it holds the
    couple and waits for the claimed push to withdraw it; the pass, which finds the push
    expired, must not wait for the couple in turn (a deadlock: the answer or the pass
    aborted, the answer a 503)."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    sent = bid(client, ana)
    clock.freeze(clock.now() + timedelta(days=1, seconds=1))
    claimed = threading.Event()

    def hold_the_claim(*args: Any) -> None:
        statement = args[2]
        claim = statement.startswith("UPDATE push_jobs SET state") and "claimed_until" in statement
        if claim and not claimed.is_set():
            claimed.set()
            queued(1)  # the answer waits for the claimed push

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", hold_the_claim)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, lock_queue(app) as queued:
            passing = pool.submit(worker.run_once, False)
            body = {"client_id": str(uuid.uuid4()), "kind": "toward"}
            claimed.wait(timeout=10)
            answered = ApiClient(client.base_url).post(
                f"/api/v1/bids/{sent['id']}/{answer}",
                as_=client.fresh(ben),
                json=body if answer == "responses" else None,
            )
            tick = passing.result(timeout=20)
    finally:
        event.remove(engine, "after_cursor_execute", hold_the_claim)
    assert answered.status_code == (409 if answer == "responses" else 200), answered.text
    assert tick.pushes == 0
    with app.app_context(), db.scope() as session:
        assert session.scalar(select(Bid.status)) == "expired"
        assert session.scalar(select(PushJob.state)) in ("cancelled", "expired")


def test_an_answer_racing_the_expiry_at_expires_at_finds_the_bid_expired(
    client: ApiClient, app: Flask
) -> None:
    """At the bid's `expires_at`, Ben's answer waits for the couple (another transaction holds
    it) and a worker's pass comes meanwhile: the pass leaves the bid for later rather than wait
    (a transaction left open would hold up every push behind it). The bid is over either way:
    the answer is refused (409), the bid expires once, with one `bid.expired`, and the worker's
    next pass finds it expired already."""
    ana, ben = client.couple()
    sent = bid(client, ana)
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    expires_at = datetime.fromisoformat(sent["expires_at"])
    clock.freeze(expires_at)
    ben = client.fresh(ben)

    def expire() -> int:
        with app.app_context(), db.scope() as session:
            return bids.expire_due(session, clock.now())

    try:
        with (
            ThreadPoolExecutor(max_workers=1) as pool,
            lock_queue(app) as queued,
            rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
        ):
            answering = pool.submit(
                ApiClient(client.base_url).post,
                f"/api/v1/bids/{sent['id']}/responses",
                as_=ben,
                json={"client_id": str(uuid.uuid4()), "kind": "toward"},
            )
            queued(1)
            assert expire() == 0  # at once: the couple is held, the bid left for a later pass
        answered = answering.result(timeout=10)
        assert answered.status_code == 409, answered.text
        assert expire() == 0
        ana = client.fresh(ana)
        got = client.get(f"/api/v1/bids/{sent['id']}", as_=ana).json()
        assert (got["status"], got["responses"]) == ("expired", [])
        types = [e["type"] for e in client.get("/api/v1/sync", as_=ana).json()["events"]]
        assert types == ["couple.paired", "bid.created", "bid.expired"]
    finally:
        clock.unfreeze()


def test_bids_of_couples_held_elsewhere_do_not_keep_the_others_from_expiring(
    client: ApiClient, app: Flask
) -> None:
    """As many overdue bids of held couples (a request, a transaction left open) as a pass
    takes: each pass took those same bids first, left every one for later, and never reached
    Eve's, which stayed open long past its expiry. A pass skips the held couples' bids."""
    t0 = clock.now()
    clock.freeze(t0)
    try:
        held = []
        for sender, partner in (("Ana", "Ben"), ("Cat", "Dan")):
            who, _ = client.couple(sender, partner)
            bid(client, who)
            held.append(uuid.UUID(client.get("/api/v1/couple", as_=who).json()["id"]))
        clock.freeze(t0 + timedelta(minutes=1))
        eve, fay = client.couple("Eve", "Fay")
        due_last = bid(client, client.fresh(eve))
        clock.freeze(t0 + timedelta(days=2))

        def expire() -> int:
            with app.app_context(), db.scope() as session:
                return bids.expire_due(session, clock.now(), batch=2)

        with rows_held(app, select(Couple).where(Couple.id.in_(held)).with_for_update()):
            assert [expire(), expire()] == [1, 0]
        fay = client.fresh(fay)
        shown = client.get(f"/api/v1/bids/{due_last['id']}", as_=fay).json()
        assert shown["status"] == "expired"
        assert expire() == 2  # once free, the held couples' bids expire too
    finally:
        clock.unfreeze()
