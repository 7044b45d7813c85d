"""Finished pushes are deleted with their deliveries and attempts once PUSH_RETENTION_DAYS have
passed; what is still to be sent, and anything newer, stays."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import TextClause, create_engine, func, select, text

from service import create_app
from service.clock import clock
from service.extensions import db
from service.models import AuthSession, PushAttempt, PushDelivery, PushJob
from service.services import devices
from service.services.push_outbox import Pruned
from service.worker.runner import Tick, Worker
from tests.push.test_delivery import bid, device
from tests.support import fcm_standin as fcm
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def pushes(worker: Worker) -> dict[str, tuple[str, int, int]]:
    """Each job by its dedupe key: its state, its deliveries and their attempts."""
    with worker.app.app_context(), db.scope() as session:
        jobs = {job.id: job for job in session.scalars(select(PushJob))}
        deliveries = dict(
            session.execute(
                select(PushDelivery.job_id, func.count()).group_by(PushDelivery.job_id)
            ).all()
        )
        attempts = dict(
            session.execute(
                select(PushDelivery.job_id, func.count())
                .join(PushAttempt, PushAttempt.delivery_id == PushDelivery.id)
                .group_by(PushDelivery.job_id)
            ).all()
        )
    return {
        job.dedupe_key: (job.state, deliveries.get(job_id, 0), attempts.get(job_id, 0))
        for job_id, job in jobs.items()
    }


def test_finished_pushes_go_after_the_retention_and_nothing_else_does(
    client: ApiClient, worker: Worker
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    sent = bid(client, client.fresh(ana))
    answered = bid(client, client.fresh(ana))
    respond = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    client.post(f"/api/v1/bids/{answered['id']}/responses", as_=client.fresh(ben), json=respond)
    worker.run_once()  # the first is sent; the second's push was withdrawn by the answer
    # Ben sleeps from 22:00 (Berlin): a bid at 23:00Z waits, and no worker runs after it.
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    clock.freeze(T0 + timedelta(hours=11))
    held = bid(client, client.fresh(ana))
    clock.freeze(T0 + timedelta(days=30, hours=1))
    recent = bid(client, client.fresh(ana))
    # A month on, the held bid expires unsent (its push finishes now); the recent one goes.
    clock.freeze(T0 + timedelta(days=30, hours=2))
    assert worker.run_once().pushes == 1
    assert pushes(worker) == {
        f"bid.created:{sent['id']}": ("done", 1, 1),
        f"bid.created:{answered['id']}": ("cancelled", 0, 0),
        f"bid.created:{held['id']}": ("cancelled", 0, 0),
        f"bid.created:{recent['id']}": ("done", 1, 1),
    }

    # 30 days after the first two finished: those go, with their delivery and attempt. The
    # held one was made as long ago, but finished only now.
    assert worker.prune() == 2
    assert pushes(worker) == {
        f"bid.created:{held['id']}": ("cancelled", 0, 0),
        f"bid.created:{recent['id']}": ("done", 1, 1),
    }
    with worker.app.app_context(), db.scope() as session:
        assert session.scalar(select(func.count()).select_from(PushAttempt)) == 1
        assert session.scalar(select(func.count()).select_from(PushDelivery)) == 1
    assert worker.prune() == 0


def test_a_push_still_to_be_sent_is_kept_however_old(client: ApiClient, worker: Worker) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    waiting = bid(client, client.fresh(ana))  # no worker has run: it is pending
    clock.freeze(T0 + timedelta(days=90))
    assert worker.prune() == 0
    assert pushes(worker) == {f"bid.created:{waiting['id']}": ("pending", 0, 0)}


@contextmanager
def running(loop: Worker) -> Iterator[None]:
    """`loop.run_forever` in a thread for the block; stopped (and finished) after it."""
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


@contextmanager
def left_open(database_url: str, locking: TextClause, **params: Any) -> Iterator[None]:
    """The rows `locking` locks, held for the block by a transaction left open on a connection
    of its own (a `psql` session someone forgot)."""
    locker = create_engine(database_url)
    holding = locker.connect()
    try:
        holding.execute(locking, params)
        yield
    finally:
        holding.rollback()
        holding.close()
        locker.dispose()


# The deliveries of the push with this dedupe key (a finished push's is held by nothing else).
HELD_DELIVERY = text(
    "SELECT push_deliveries.id FROM push_deliveries JOIN push_jobs"
    " ON push_jobs.id = push_deliveries.job_id WHERE push_jobs.dedupe_key = :key"
    " FOR UPDATE OF push_deliveries"
)


def test_the_running_worker_prunes_as_it_starts_and_then_once_a_period(
    app: Flask, client: ApiClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = bid(client, client.fresh(ana))
    worker.run_once()
    clock.freeze(T0 + timedelta(days=31))
    loop = Worker(app, name="pruning-worker", idle_seconds=0.02, prune_seconds=1.0)
    prunes: list[float] = []
    passes: list[float] = []
    prune, run_once = loop._prune_pushes, loop.run_once

    def counted_prune() -> Pruned:
        prunes.append(time.monotonic())
        return prune()

    def counted_pass(housekeeping: bool = True) -> Tick:
        passes.append(time.monotonic())
        return run_once(housekeeping)

    monkeypatch.setattr(loop, "_prune_pushes", counted_prune)
    monkeypatch.setattr(loop, "run_once", counted_pass)
    # A month on, Ben's phone has signed in again (its sign-in expired: the prune ends it).
    device(client, client.fresh(ben), "ben-phone-token")
    with running(loop):
        # The first prune runs as the loop starts: the month-old push goes.
        wait_until(lambda: f"bid.created:{old['id']}" not in pushes(worker), 5, "the old push")
        new = bid(client, client.fresh(ana))
        key = f"bid.created:{new['id']}"
        wait_until(lambda: pushes(worker).get(key) == ("done", 1, 1), 5, "the new push sent")
        # A month after it was sent, the loop's next prune deletes it too.
        clock.freeze(T0 + timedelta(days=62))
        wait_until(lambda: key not in pushes(worker), 5, "the next prune")
    # Once a period, not once a pass.
    assert len(prunes) >= 2
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(prunes))
    assert len(passes) > 5 * len(prunes)


def test_a_backlog_larger_than_one_share_is_worked_off_pass_by_pass_not_hour_by_hour(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = [bid(client, client.fresh(ana)) for _ in range(3)]
    assert worker.run_once().pushes == 3
    clock.freeze(T0 + timedelta(days=31))
    # One job per share: the first share, at start, leaves two; the next prune is an hour away.
    loop = Worker(
        app,
        name="pruning-worker",
        idle_seconds=0.02,
        prune_seconds=3600,
        prune_batch=1,
        prune_batches=1,
    )
    with running(loop):
        keys = {f"bid.created:{sent['id']}" for sent in old}
        wait_until(lambda: not keys & set(pushes(worker)), 5, "every month-old push deleted")


def test_prune_deletes_everything_due_however_many_shares_it_takes(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    for _ in range(3):
        bid(client, client.fresh(ana))
    worker.run_once()
    clock.freeze(T0 + timedelta(days=31))
    small = Worker(app, name="small-shares", prune_batch=1, prune_batches=2)
    assert small.prune() == 3
    assert pushes(worker) == {}


@pytest.mark.postgres
@pytest.mark.committed
def test_a_prune_that_cannot_finish_does_not_hold_up_the_pushes(
    database_url: str, client: ApiClient, worker: Worker
) -> None:
    """A month-old push's delivery locked by a transaction left open (a `psql` session): the
    prune's DELETE waits for it until the statement timeout, every time. New pushes still go."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = bid(client, client.fresh(ana))
    worker.run_once()
    clock.freeze(T0 + timedelta(days=31))
    # Ben's phone has signed in again (its sign-in expired: the prune ends it).
    device(client, client.fresh(ben), "ben-phone-token")
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=500))
    loop = Worker(app, name="pruning-worker", idle_seconds=0.05)
    held = HELD_DELIVERY
    with left_open(database_url, held, key=f"bid.created:{old['id']}"), running(loop):
        new = bid(client, client.fresh(ana))
        key = f"bid.created:{new['id']}"
        wait_until(lambda: pushes(worker).get(key) == ("done", 1, 1), 10, "the new push")


@pytest.mark.postgres
@pytest.mark.committed
@pytest.mark.parametrize("due", ["a bid to expire", "a break to end"])
def test_housekeeping_behind_a_couple_left_locked_does_not_hold_up_the_pushes(
    database_url: str, client: ApiClient, worker: Worker, due: str
) -> None:
    """A couple held by a transaction left open (a `psql` session): expiring its overdue bid,
    or ending its break, waited out the statement timeout and failed the whole pass, every
    pass, so no other couple's push went out. It is left for a later pass; once the couple
    is free it is done."""
    clock.freeze(T0)
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    device(client, dan, "dan-phone-token")
    if due == "a bid to expire":
        old = bid(client, client.fresh(ana))
        clock.freeze(T0 + timedelta(days=2))
    else:
        repair = repair_helpers.start(client, client.fresh(ana))
        paused = client.post(
            f"/api/v1/repairs/{repair['id']}/pause", as_=client.fresh(ben), json={"minutes": 20}
        )
        assert paused.status_code == 200, paused.text
        clock.freeze(T0 + timedelta(hours=1))
    couple = client.get("/api/v1/couple", as_=client.fresh(ana)).json()["id"]
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=500))
    loop = Worker(app, name="housekeeping-worker", idle_seconds=0.05, housekeeping_seconds=0.05)
    held = text("SELECT id FROM couples WHERE id = :id FOR UPDATE")
    with left_open(database_url, held, id=couple), running(loop):
        new = bid(client, client.fresh(cat))
        key = f"bid.created:{new['id']}"
        wait_until(lambda: pushes(worker).get(key) == ("done", 1, 1), 10, "Dan's push")
    worker.run_once()
    if due == "a bid to expire":
        shown = client.get(f"/api/v1/bids/{old['id']}", as_=client.fresh(ben)).json()
        assert shown["status"] == "expired"
    else:
        shown = client.get(f"/api/v1/repairs/{repair['id']}", as_=client.fresh(ben)).json()
        assert shown["paused_until"] is None


@pytest.mark.postgres
@pytest.mark.committed
def test_expired_sign_ins_go_while_the_pushes_prune_is_held_up(
    database_url: str, client: ApiClient, worker: Worker
) -> None:
    """A month-old push's delivery locked by a transaction left open fails the pushes' prune,
    every try. The expired sign-ins were deleted only after it, in the same share: none went, and
    their phones kept their pushes, for as long as the push was held. They go regardless,
    and a backlog of them is worked off share after share."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = bid(client, client.fresh(ana))
    worker.run_once()
    clock.freeze(T0 + timedelta(days=31))  # every sign-in so far has expired
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=500))
    # One expired refresh token per share: several shares are needed.
    loop = Worker(app, name="pruning-worker", idle_seconds=0.05, prune_batch=1, prune_batches=1)

    def sign_ins() -> int:
        with app.app_context(), db.scope() as session:
            return int(session.scalar(select(func.count()).select_from(AuthSession)) or 0)

    assert sign_ins() > 2
    held = HELD_DELIVERY
    with left_open(database_url, held, key=f"bid.created:{old['id']}"), running(loop):
        wait_until(lambda: sign_ins() == 0, 10, "the expired sign-ins deleted")
    assert f"bid.created:{old['id']}" in pushes(worker)


@pytest.mark.postgres
@pytest.mark.committed
def test_a_finished_push_held_by_a_transaction_left_open_is_passed_over_not_waited_for(
    database_url: str, client: ApiClient, worker: Worker
) -> None:
    """One of three month-old pushes locked by a transaction left open (a `psql` session): the
    prune waited for it until the statement timeout, then failed and deleted none, every try,
    and the pushes waited with it. It deletes the other two at once, and the held one once it
    is free."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = [bid(client, client.fresh(ana)) for _ in range(3)]
    assert worker.run_once().pushes == 3
    clock.freeze(T0 + timedelta(days=31))
    held = f"bid.created:{old[1]['id']}"
    locking = text("SELECT id FROM push_jobs WHERE dedupe_key = :key FOR UPDATE")
    with left_open(database_url, locking, key=held):
        started = time.monotonic()
        assert worker.prune() == 2
        assert time.monotonic() - started < 1.0
        assert set(pushes(worker)) == {held}
    assert worker.prune() == 1
    assert pushes(worker) == {}


def shares_until_done(loop: Worker, most: int) -> tuple[int, int]:
    """Calls the loop's prune of pushes, share after share, until it says none are left (at
    most `most` shares): how many shares it took, and how many pushes they deleted."""
    deleted = 0
    for share in range(1, most + 1):
        pruned = loop._prune_pushes()
        deleted += pruned.deleted
        if not pruned.more:
            return share, deleted
    raise AssertionError(f"{most} shares deleted {deleted} pushes and still said more were left")


def test_shares_that_find_nothing_to_delete_move_on_and_end(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    """A month-old push still waiting (Ben's quiet hours), before two finished ones. Each share
    began again from the first push: with a share of one push, every share found the waiting
    one, deleted nothing and said more were left, so the loop ran the prune every pass for
    ever and never reached the finished ones. Each share goes on where the last one ended."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ana, "ana-phone-token")
    device(client, ben, "ben-phone-token")
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    clock.freeze(T0 + timedelta(hours=11))  # 23:00Z: Ben sleeps
    waiting = bid(client, client.fresh(ana))
    sent = [bid(client, client.fresh(ben)) for _ in range(2)]
    assert worker.run_once(housekeeping=False).pushes == 2
    clock.freeze(T0 + timedelta(days=31))
    small = Worker(app, name="small-shares", prune_batch=1, prune_batches=1)
    assert set(pushes(worker)) == {f"bid.created:{b['id']}" for b in [waiting, *sent]}
    shares, deleted = shares_until_done(small, 10)
    # One share for each push, and one that finds no more.
    assert (shares, deleted) == (4, 2)
    assert pushes(worker) == {f"bid.created:{waiting['id']}": ("pending", 0, 0)}
    # The next prune starts from the first push again, and finds nothing more to delete.
    assert shares_until_done(small, 10) == (2, 0)


@pytest.mark.postgres
@pytest.mark.committed
def test_shares_that_find_only_held_pushes_move_on_and_end(
    database_url: str, app: Flask, client: ApiClient, worker: Worker
) -> None:
    """The first of three month-old pushes locked by a transaction left open (a `psql`
    session): with a share of one push, every share found it, passed over it, and said more
    were left, for ever. The shares go on past it, and the next prune deletes it once free."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = [bid(client, client.fresh(ana)) for _ in range(3)]
    assert worker.run_once().pushes == 3
    clock.freeze(T0 + timedelta(days=31))
    small = Worker(app, name="small-shares", prune_batch=1, prune_batches=1)
    held = f"bid.created:{old[0]['id']}"
    locking = text("SELECT id FROM push_jobs WHERE dedupe_key = :key FOR UPDATE")
    with left_open(database_url, locking, key=held):
        assert shares_until_done(small, 10) == (4, 2)
        assert set(pushes(worker)) == {held}
    assert shares_until_done(small, 10) == (2, 1)
    assert pushes(worker) == {}


# The attempts of the push with this dedupe key.
HELD_ATTEMPT = text(
    "SELECT push_attempts.id FROM push_attempts JOIN push_deliveries"
    " ON push_deliveries.id = push_attempts.delivery_id JOIN push_jobs"
    " ON push_jobs.id = push_deliveries.job_id WHERE push_jobs.dedupe_key = :key"
    " FOR UPDATE OF push_attempts"
)


@pytest.mark.postgres
@pytest.mark.committed
@pytest.mark.parametrize("locking", [HELD_DELIVERY, HELD_ATTEMPT], ids=["delivery", "attempt"])
def test_a_finished_push_whose_delivery_or_attempt_is_held_is_passed_over_not_waited_for(
    database_url: str, client: ApiClient, worker: Worker, locking: TextClause
) -> None:
    """The delivery, or the attempt, of one of three month-old pushes locked by a transaction
    left open (a `psql` session): deleting the push deletes them with it, which waited for the
    lock until the statement timeout, then failed and deleted none, every try. The prune
    deletes the other two at once, and the held one once it is free."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    clock.freeze(T0)
    old = [bid(client, client.fresh(ana)) for _ in range(3)]
    assert worker.run_once().pushes == 3
    clock.freeze(T0 + timedelta(days=31))
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=3000))
    loop = Worker(app, name="pruning-worker")
    held = f"bid.created:{old[1]['id']}"
    with left_open(database_url, locking, key=held):
        started = time.monotonic()
        assert loop.prune() == 2
        assert time.monotonic() - started < 1.0
        assert pushes(worker) == {held: ("done", 1, 1)}
    assert loop.prune() == 1
    assert pushes(worker) == {}


@pytest.mark.postgres
@pytest.mark.committed
def test_a_dead_token_held_by_a_transaction_left_open_is_passed_over_not_waited_for(
    database_url: str, client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """One of two tokens FCM declared dead a year ago locked by a transaction left open (a
    `psql` session): forgetting it waited for the lock until the statement timeout, then failed
    and forgot neither, every try. The other is forgotten at once; the held one once free."""
    clock.freeze(T0)
    ana, ben = client.couple("Ana", "Ben")
    tokens = ["ben-old-phone-token", "ben-old-tablet-token"]
    for token in tokens:
        device(client, ben, token)
        standin.script(token, fcm.UNREGISTERED)
    bid(client, ana)
    fcm_worker.run_once()
    clock.freeze(T0 + timedelta(days=366))
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=3000))
    loop = Worker(app, name="pruning-worker")

    def registered(token: str) -> int:
        body = {"platform": "android", "push_token": token}
        return client.post("/api/v1/devices", as_=client.fresh(ben), json=body).status_code

    locking = text("SELECT token_sha256 FROM dead_push_tokens WHERE token_sha256 = :sha FOR UPDATE")
    with left_open(database_url, locking, sha=devices.token_sha256(tokens[0])):
        started = time.monotonic()
        loop.prune()
        assert time.monotonic() - started < 1.0
    # The devices still have their tokens: delete them, as the phones' users would.
    for listed in client.get("/api/v1/devices", as_=client.fresh(ben)).json()["items"]:
        client.delete(f"/api/v1/devices/{listed['id']}", as_=client.fresh(ben))
    assert [registered(token) for token in tokens] == [422, 201]
    loop.prune()
    assert registered(tokens[0]) == 201
