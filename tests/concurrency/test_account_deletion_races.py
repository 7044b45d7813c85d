"""Real concurrency on PostgreSQL: deleting an account while a pairing or a partner moves.

A deletion locks what it changes in the order every other write takes it (the account's
invites, the conversations it started, the couple, the account), so a join that commits under
it is seen and ended, and a partner writing into the account's conversation never deadlocks it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import delete, func, insert, select

from service.clock import clock
from service.extensions import db
from service.models import Bid, Couple, Repair, RepairMessage, User
from service.worker.runner import Worker
from tests.support.client import PASSWORD, ApiClient
from tests.support.locks import first_statement_held, lock_queue, rows_held
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.mark.parametrize("deleting", ["inviter", "joiner"])
def test_an_account_deleted_as_a_join_pairs_it_leaves_nobody_paired_to_it(
    client: ApiClient, app: Flask, deleting: str
) -> None:
    """The join has claimed the code and waits for the account's row when the deletion
    begins: the deletion must see the couple the join makes, and end it."""
    ana, cat = client.register("Ana"), client.register("Cat")
    inviter, joiner = (ana, cat) if deleting == "inviter" else (cat, ana)
    code = client.post("/api/v1/couple/invites", as_=inviter).json()["code"]
    api = ApiClient(client.base_url)
    ana_row = select(User).where(User.id == uuid.UUID(ana.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, ana_row),
    ):
        joined = pool.submit(api.post, "/api/v1/couple/join", as_=joiner, json={"code": code})
        queued(1)
        deleted = pool.submit(api.delete, "/api/v1/me", as_=ana)
        queued(2)
    assert joined.result(timeout=10).status_code == 201
    assert deleted.result(timeout=10).status_code == 204, deleted.result().text
    assert client.get("/api/v1/me", as_=cat).json()["couple_id"] is None
    assert client.get("/api/v1/couple", as_=cat).status_code == 404
    assert client.get("/api/v1/sync", as_=cat).status_code == 404
    with app.app_context():
        live = select(func.count()).select_from(Couple).where(Couple.ended_at.is_(None))
        assert db.session.scalar(live) == 0
    # Cat can pair again.
    assert client.post("/api/v1/couple/invites", as_=cat).status_code == 201


def test_a_partner_writing_into_the_deleted_accounts_conversation_does_not_deadlock_it(
    client: ApiClient, app: Flask
) -> None:
    """Ben's message holds Ana's conversation and is about to take the couple's cursor when
    Ana deletes her account: the deletion waits for the conversation before it takes the
    couple, so both finish (the other order is a deadlock, and one of them a 503)."""
    ana, ben = client.couple()
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())})
    repair_id = uuid.UUID(repair.json()["id"])
    his = client.post("/api/v1/repairs", as_=ben, json={"client_id": str(uuid.uuid4())})
    client_id = uuid.uuid4()
    # Another transaction's message with Ben's client_id, in his own conversation: Ben's insert
    # waits for it after his write has locked Ana's conversation, before it takes the couple.
    held_message = (
        insert(RepairMessage)
        .values(
            id=uuid.uuid4(),
            repair_id=uuid.UUID(his.json()["id"]),
            seq=1_000,
            author_id=uuid.UUID(ben.id),
            client_id=client_id,
            body="held",
        )
        .returning(RepairMessage.id)
    )
    api = ApiClient(client.base_url)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, held_message),
    ):
        written = pool.submit(
            api.post,
            f"/api/v1/repairs/{repair_id}/messages",
            as_=ben,
            json={"client_id": str(client_id), "body": "I am here"},
        )
        queued(1)
        deleted = pool.submit(api.delete, "/api/v1/me", as_=ana)
        queued(2)
    assert written.result(timeout=10).status_code == 201, written.result().text
    assert deleted.result(timeout=10).status_code == 204, deleted.result().text
    with app.app_context():
        kept = select(RepairMessage.body).where(RepairMessage.author_id == uuid.UUID(ben.id))
        assert list(db.session.scalars(kept)) == ["I am here"]


@pytest.mark.parametrize("write", ["sign-in", "invite", "profile"])
def test_a_sign_in_or_a_code_of_an_account_deleted_meanwhile_is_refused(
    client: ApiClient, app: Flask, write: str
) -> None:
    """Ana signs in on her tablet, makes a pairing code or renames herself, just as her phone
    deletes the account: the deletion holds her row while the sign-in (past its password
    check), the code or the new name waits for it, and commits. Each is answered 401 (not a
    500), and nothing of Ana's is left behind."""
    ana = client.register("Ana")
    api = ApiClient(client.base_url)
    ana_id = uuid.UUID(ana.id)
    with app.app_context():
        deletion = db.engine.connect()
    try:
        deletion.begin()
        assert deletion.execute(select(User).where(User.id == ana_id).with_for_update()).first()
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            if write == "sign-in":
                body = {"email": ana.email, "password": PASSWORD}
                writing = pool.submit(api.post, "/api/v1/auth/login", json=body)
            elif write == "invite":
                writing = pool.submit(api.post, "/api/v1/couple/invites", as_=ana)
            else:
                body = {"display_name": "Ana B."}
                writing = pool.submit(api.patch, "/api/v1/me", as_=ana, json=body)
            queued(1)
            deletion.execute(delete(User).where(User.id == ana_id))
            deletion.commit()
            refused = writing.result(timeout=10)
    finally:
        deletion.close()
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "unauthorized"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_a_refresh_as_the_account_is_deleted_does_not_deadlock_the_deletion(
    client: ApiClient, app: Flask
) -> None:
    """Ana's tablet refreshes its tokens just as her phone deletes the account. The refresh
    holds its refresh token when the deletion begins, and is held there until the deletion
    waits for a lock: the refresh finishes, and the deletion after it (not a deadlock that
    leaves the account in place, answered 503 "briefly unavailable")."""
    ana = client.register("Ana")

    def the_refresh_locks_its_token(statement: str) -> bool:
        return "FROM refresh_tokens" in statement and "FOR UPDATE" in statement

    api = ApiClient(client.base_url)
    with (
        first_statement_held(app, the_refresh_locks_its_token) as token_held,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        body = {"refresh_token": ana.refresh_token}
        refreshing = pool.submit(api.post, "/api/v1/auth/refresh", json=body)
        wait_until(token_held.is_set, what="the refresh to hold its token")
        deleting = pool.submit(api.delete, "/api/v1/me", as_=ana)
        deleted, refreshed = deleting.result(timeout=20), refreshing.result(timeout=20)
    assert deleted.status_code == 204, deleted.text
    assert refreshed.status_code == 200, refreshed.text
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_a_bid_of_an_ended_couple_expiring_as_its_sender_is_deleted_does_not_deadlock(
    client: ApiClient, app: Flask, worker: Worker
) -> None:
    """Ana's bid was still open when Ben unpaired; she deletes her account just as it expires.
    The worker locks the former couple, then the bid; the deletion must take them in that
    order too (it clears the bid's note, and its cascade the couple's partner), or each waits
    for the other until PostgreSQL aborts one: the deletion answered 503, the account kept."""
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "share"}
    )
    assert bid.status_code == 201, bid.text
    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    clock.freeze(clock.now() + timedelta(days=2))
    api = ApiClient(client.base_url)
    try:
        ana = client.fresh(ana)  # signed in again: the access token of two days ago expired
        with (
            ThreadPoolExecutor(max_workers=2) as pool,
            first_statement_held(
                app, lambda sql: "FROM couples" in sql and "FOR UPDATE" in sql
            ) as couple_held,
        ):
            ticking = pool.submit(worker.run_once)
            wait_until(couple_held.is_set, what="the worker to hold the former couple")
            deleting = pool.submit(api.delete, "/api/v1/me", as_=ana)
            deleted, tick = deleting.result(timeout=20), ticking.result(timeout=20)
    finally:
        clock.unfreeze()
    assert deleted.status_code == 204, deleted.text
    assert tick.expired_bids == 1
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    with app.app_context():
        kept = db.session.execute(select(Bid.status, Bid.sender_id, Bid.note)).all()
    assert [tuple(row) for row in kept] == [("expired", None, None)]


def test_a_conversation_paused_as_the_account_is_deleted_does_not_deadlock_the_partner(
    client: ApiClient, app: Flask
) -> None:
    """Ana pauses Ben's conversation from her tablet just as her phone deletes the account:
    the deletion has locked the conversations she started or paused (not this one yet) and
    waits for the couple, which the pause holds. Once the pause commits, Ben writes in the
    conversation, which locks it and waits for the couple. The deletion must not then wait for
    the conversation it did not lock (to clear who paused it): each would wait for the other."""
    ana, ben = client.couple()
    his = client.post("/api/v1/repairs", as_=ben, json={"client_id": str(uuid.uuid4())})
    rid = his.json()["id"]
    api = ApiClient(client.base_url)
    # Ana's row is held (as a sign-in does) so the deletion waits there once it has the couple.
    ana_row = (
        select(User.id)
        .where(User.id == uuid.UUID(ana.id))
        .with_for_update(read=True, key_share=True)
    )
    with (
        ThreadPoolExecutor(max_workers=3) as pool,
        lock_queue(app) as queued,
        rows_held(app, ana_row),
    ):
        with first_statement_held(
            app, lambda sql: "FROM couples" in sql and "FOR NO KEY UPDATE" in sql
        ) as pause_holds_the_couple:
            pausing = pool.submit(
                api.post, f"/api/v1/repairs/{rid}/pause", as_=ana, json={"minutes": 20}
            )
            wait_until(pause_holds_the_couple.is_set, what="the pause to hold the couple")
            deleting = pool.submit(api.delete, "/api/v1/me", as_=ana)
            paused = pausing.result(timeout=10)
        assert paused.status_code == 200, paused.text
        queued(1)  # the deletion, for Ana's row
        writing = pool.submit(
            api.post,
            f"/api/v1/repairs/{rid}/messages",
            as_=ben,
            json={"client_id": str(uuid.uuid4()), "body": "I am here"},
        )
        queued(2)  # Ben's message, for the couple
    deleted, written = deleting.result(timeout=20), writing.result(timeout=20)
    assert deleted.status_code == 204, deleted.text
    assert written.status_code == 201, written.text
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    with app.app_context():
        kept = select(Repair.paused_by, Repair.last_seq).where(Repair.id == uuid.UUID(rid))
        assert tuple(db.session.execute(kept).one()) == (None, 1)
