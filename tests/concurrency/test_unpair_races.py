"""Real concurrency on PostgreSQL: a write that reaches an unpair's lock lands nowhere.

The couple's row is held by another transaction, so the unpair waits for it, then a bid, a
repair message or the worker ending a break waits behind the unpair. Once the unpair has
committed, the write must find the couple ended: no row of it is kept, nothing joins the ended
couple's stream and no push waits for the former partner. (Its liveness checks ran before, on a
couple that was still live.)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.clock import clock
from service.extensions import db
from service.models import Bid, Couple, CoupleEvent, PushJob, RepairMessage
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

Written = TypeVar("Written")


def race_unpair(
    client: ApiClient, app: Flask, ben: Person, write: Callable[[], Written]
) -> Written:
    """Ben unpairs while `write` is on its way; returns what `write` returned."""
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ben).json()["id"])
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
    ):
        unpair = pool.submit(ApiClient(client.base_url).delete, "/api/v1/couple", as_=ben)
        queued(1)
        written = pool.submit(write)
        queued(2)
    assert unpair.result(timeout=10).status_code == 204
    return written.result(timeout=10)


def count(app: Flask, statement: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(statement) or 0)


@pytest.mark.parametrize("remembered", [False, True], ids=["looked-up", "remembered"])
def test_a_bid_sent_as_the_couple_ends_is_not_written(
    client: ApiClient, app: Flask, remembered: bool
) -> None:
    ana, ben = client.couple()
    if remembered:  # Ana's first bid has the API process remember her (`members.Members`)
        first = {"client_id": str(uuid.uuid4()), "kind": "connect"}
        assert client.post("/api/v1/bids", as_=ana, json=first).status_code == 201
    client_id = str(uuid.uuid4())
    answer = race_unpair(
        client,
        app,
        ben,
        lambda: ApiClient(client.base_url).post(
            "/api/v1/bids", as_=ana, json={"client_id": client_id, "kind": "comfort"}
        ),
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "not_found"
    assert count(app, select(func.count()).where(Bid.client_id == uuid.UUID(client_id))) == 0
    assert count(app, select(func.count()).select_from(CoupleEvent)) == 0
    assert count(app, select(func.count()).where(PushJob.state == "pending")) == 0


def test_a_repair_message_written_as_the_couple_ends_is_not_kept(
    client: ApiClient, app: Flask
) -> None:
    ana, ben = client.couple()
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())})
    rid = repair.json()["id"]
    answer = race_unpair(
        client,
        app,
        ben,
        lambda: ApiClient(client.base_url).post(
            f"/api/v1/repairs/{rid}/messages",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "body": "are you there?"},
        ),
    )
    assert answer.status_code == 404, answer.text
    assert count(app, select(func.count()).select_from(RepairMessage)) == 0
    assert count(app, select(func.count()).select_from(CoupleEvent)) == 0
    assert count(app, select(func.count()).where(PushJob.state == "pending")) == 0


@pytest.mark.parametrize("change", ["pause", "read", "resume", "resolve"])
def test_a_repair_change_that_waits_on_the_unpair_is_refused_not_deadlocked(
    client: ApiClient, app: Flask, change: str
) -> None:
    """The change's pending pushes (a message push for Ben, a break's reminders) are what the
    unpair cancels once it holds the couple: the change must not hold them while it waits for
    the couple, or each waits for the other until PostgreSQL aborts one (503)."""
    ana, ben = client.couple()
    rid = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())}).json()[
        "id"
    ]
    written = client.post(
        f"/api/v1/repairs/{rid}/messages",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "body": "are you there?"},
    )
    assert written.status_code == 201, written.text
    if change == "resolve":
        assert client.post(f"/api/v1/repairs/{rid}/resolve", as_=ben).status_code == 200
    if change in ("resume", "resolve"):
        paused = client.post(f"/api/v1/repairs/{rid}/pause", as_=ana, json={"minutes": 20})
        assert paused.status_code == 200, paused.text
    body = {"pause": {"minutes": 20}, "read": {"seq": 1}}.get(change)
    who = ben if change == "read" else ana
    answer = race_unpair(
        client,
        app,
        ben,
        lambda: ApiClient(client.base_url).post(
            f"/api/v1/repairs/{rid}/{change}", as_=who, json=body
        ),
    )
    assert answer.status_code == 404, answer.text
    assert count(app, select(func.count()).select_from(CoupleEvent)) == 0
    assert count(app, select(func.count()).where(PushJob.state == "pending")) == 0


def test_a_break_that_ends_as_the_couple_ends_is_told_to_nobody(
    client: ApiClient, app: Flask, worker: Worker
) -> None:
    ana, ben = client.couple()
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())})
    paused = client.post(
        f"/api/v1/repairs/{repair.json()['id']}/pause", as_=ana, json={"minutes": 20}
    )
    assert paused.status_code == 200, paused.text
    clock.freeze(clock.now() + timedelta(minutes=21))
    ben = client.fresh(ben)
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ben).json()["id"])
    try:
        with (
            ThreadPoolExecutor(max_workers=1) as pool,
            lock_queue(app) as queued,
            rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
        ):
            unpair = pool.submit(ApiClient(client.base_url).delete, "/api/v1/couple", as_=ben)
            queued(1)
            # The pass does not wait for the couple the unpair holds: the break is left for
            # the next pass (a transaction left open would hold up every push behind it).
            assert worker.run_once().resumed_repairs == 0
        assert unpair.result(timeout=10).status_code == 204
        tick = worker.run_once()
    finally:
        clock.unfreeze()
    assert tick.resumed_repairs == 1
    assert count(app, select(func.count()).select_from(CoupleEvent)) == 0
    assert count(app, select(func.count()).where(PushJob.state == "pending")) == 0


def test_a_new_name_saved_as_the_couple_ends_is_kept_and_told_to_nobody(
    client: ApiClient, app: Flask
) -> None:
    """A change of name and time zone waits for the couple before it changes the account, as
    the unpair does (the other order would have each wait for the other until PostgreSQL
    aborts one): once the unpair has committed, it is saved, and no event joins the stream."""
    ana, ben = client.couple()
    changes = {"display_name": "Ana B.", "timezone": "Asia/Tokyo"}
    answer = race_unpair(
        client,
        app,
        ben,
        lambda: ApiClient(client.base_url).patch("/api/v1/me", as_=ana, json=changes),
    )
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in changes} == changes
    assert answer.json()["couple_id"] is None
    assert count(app, select(func.count()).select_from(CoupleEvent)) == 0
