"""Real concurrency on PostgreSQL: both partners answer a check-in at once, or one answers as
the couple ends."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.extensions import db
from service.models import CheckInAnswer, CheckInRound, Couple
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

SCORES = {"accessible": 4, "responsive": 3, "engaged": 5}


def test_both_partners_answering_at_once_share_one_round_revealed_once(
    client: ApiClient, app: Flask
) -> None:
    ana, ben = client.couple()
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    post = ApiClient(client.base_url).post
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
    ):
        anas = pool.submit(
            post, "/api/v1/checkins", as_=ana, json={**SCORES, "client_id": str(uuid.uuid4())}
        )
        queued(1)
        bens = pool.submit(
            post, "/api/v1/checkins", as_=ben, json={**SCORES, "client_id": str(uuid.uuid4())}
        )
        queued(2)
    answers = [anas.result(timeout=10), bens.result(timeout=10)]
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert {a.json()["number"] for a in answers} == {1}
    assert client.get("/api/v1/checkins/current", as_=ana).json()["revealed_at"] is not None
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ben).json()["events"]]
    assert types == ["couple.paired", "checkin.answered", "checkin.revealed"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CheckInRound)) == 1


@pytest.mark.parametrize("ending", ["unpair", "delete_me"])
def test_an_answer_given_as_the_couple_ends_is_not_kept(
    client: ApiClient, app: Flask, ending: str
) -> None:
    ana, ben = client.couple()
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    path = "/api/v1/couple" if ending == "unpair" else "/api/v1/me"
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
    ):
        ended = pool.submit(ApiClient(client.base_url).delete, path, as_=ben)
        queued(1)
        answered = pool.submit(
            ApiClient(client.base_url).post,
            "/api/v1/checkins",
            as_=ana,
            json={**SCORES, "client_id": str(uuid.uuid4())},
        )
        queued(2)
    assert ended.result(timeout=10).status_code == 204
    answer = answered.result(timeout=10)
    assert answer.status_code == 404, answer.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CheckInAnswer)) == 0
        assert db.session.scalar(select(func.count()).select_from(CheckInRound)) == 0


def test_a_retried_answer_that_waits_on_an_unpair_shows_nothing_of_the_ended_couple(
    client: ApiClient, app: Flask
) -> None:
    """Ana's phone never heard the answer to its answer; Ben answered since (the round is
    revealed) and unpairs as the retry arrives. Once the unpair has committed, the retry finds
    the couple ended: 404 as for every other write, not Ben's answers with 200."""
    ana, ben = client.couple()
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    mine = {**SCORES, "client_id": str(uuid.uuid4())}
    assert client.post("/api/v1/checkins", as_=ana, json=mine).status_code == 201
    theirs = {"accessible": 2, "responsive": 2, "engaged": 2, "client_id": str(uuid.uuid4())}
    assert client.post("/api/v1/checkins", as_=ben, json=theirs).status_code == 201
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, select(Couple).where(Couple.id == couple_id).with_for_update()),
    ):
        ended = pool.submit(ApiClient(client.base_url).delete, "/api/v1/couple", as_=ben)
        queued(1)
        retried = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/checkins", as_=ana, json=mine
        )
        queued(2)
    assert ended.result(timeout=10).status_code == 204
    answer = retried.result(timeout=10)
    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "not_found"
