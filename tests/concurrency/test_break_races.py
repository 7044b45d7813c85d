"""Real concurrency on PostgreSQL: two workers end breaks of the same couples at once.

Workers scale without coordination (docs/operations.md). Each break ends in a transaction of
its own that locks the conversation, then its couple: one transaction for a whole batch held
the couples of the breaks before while it waited for the next one's, and a worker taking two
couples in the other order deadlocked with it (PostgreSQL aborts one pass).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, text

from service.clock import clock
from service.extensions import db
from service.models import Couple, CoupleEvent, Repair
from service.services import repair_breaks
from tests.support.client import ApiClient, Person
from tests.support.locks import rows_held
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def take_a_break(client: ApiClient, who: Person) -> None:
    """`who` starts a conversation and pauses it for 20 minutes."""
    rid = client.post("/api/v1/repairs", as_=who, json={"client_id": str(uuid.uuid4())}).json()[
        "id"
    ]
    paused = client.post(f"/api/v1/repairs/{rid}/pause", as_=who, json={"minutes": 20})
    assert paused.status_code == 200, paused.text


def test_two_workers_ending_breaks_of_the_same_couples_do_not_deadlock(
    client: ApiClient, app: Flask
) -> None:
    ana, _ = client.couple()
    cat, _ = client.couple("Cat", "Dan")
    clock.freeze(clock.now())
    try:
        # The breaks end in this order: Ana's couple's, Cat's twice, Ana's couple's again.
        for who in (ana, cat, cat, ana):
            take_a_break(client, who)
            clock.advance(timedelta(seconds=1))
        clock.advance(timedelta(minutes=30))
        ended = count_and_end_breaks_side_by_side(app)
        assert all(isinstance(n, int) for n in ended), ended
        with app.app_context(), db.scope() as session:  # the next pass ends what is left
            repair_breaks.resume_due(session, clock.now(), batch=2)
    finally:
        clock.unfreeze()
    with app.app_context():
        paused = select(func.count()).where(Repair.paused_until.is_not(None))
        resumed = select(func.count()).where(CoupleEvent.type == "repair.resumed")
        assert db.session.scalar(paused) == 0
        assert db.session.scalar(resumed) == 4  # each break ended once


def count_and_end_breaks_side_by_side(app: Flask) -> list[Any]:
    """Two workers' passes of 2 breaks each. The first is held once it has locked its first
    couple, until the second has finished or waits for a lock. What each returned or raised."""
    with app.app_context():
        engine, watcher = db.engine, db.engine.connect()
    held, second_done = threading.Event(), threading.Event()
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )

    def second_waits_or_is_done() -> bool:
        count = int(watcher.execute(waiting).scalar_one())
        watcher.rollback()
        return count > 0 or second_done.is_set()

    def hold(*args: Any) -> None:
        statement = args[2]
        if held.is_set() or "FROM couples" not in statement or "FOR UPDATE" not in statement:
            return
        held.set()
        wait_until(second_waits_or_is_done, what="the second pass to wait or finish")

    def one_pass() -> int:
        with app.app_context(), db.scope() as session:
            return repair_breaks.resume_due(session, clock.now(), batch=2)

    def second_pass() -> int:
        try:
            return one_pass()
        finally:
            second_done.set()

    event.listen(engine, "after_cursor_execute", hold)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(one_pass)
            wait_until(held.is_set, what="the first pass to lock a couple")
            second = pool.submit(second_pass)
            results: list[Any] = []
            for running in (first, second):
                try:
                    results.append(running.result(timeout=20))
                except Exception as exc:  # a deadlock: PostgreSQL aborted this pass
                    results.append(exc)
            return results
    finally:
        event.remove(engine, "after_cursor_execute", hold)
        watcher.close()


def test_breaks_of_couples_held_elsewhere_do_not_keep_the_others_from_ending(
    client: ApiClient, app: Flask
) -> None:
    """As many ended breaks of held couples (a request, a transaction left open) as a pass
    takes: each pass took those same breaks first, left every one for later, and never reached
    Eve's, which stayed on long past its end. A pass skips the held couples' breaks."""
    held = []
    clock.freeze(clock.now())
    try:
        for first, second in (("Ana", "Ben"), ("Cat", "Dan")):
            who, _ = client.couple(first, second)
            take_a_break(client, who)
            held.append(uuid.UUID(client.get("/api/v1/couple", as_=who).json()["id"]))
        clock.advance(timedelta(seconds=1))
        eve, _ = client.couple("Eve", "Fay")
        take_a_break(client, eve)
        clock.advance(timedelta(minutes=30))

        def end_breaks() -> int:
            with app.app_context(), db.scope() as session:
                return repair_breaks.resume_due(session, clock.now(), batch=2)

        with rows_held(app, select(Couple).where(Couple.id.in_(held)).with_for_update()):
            assert [end_breaks(), end_breaks()] == [1, 0]
        assert end_breaks() == 2  # once free, the held couples' breaks end too
    finally:
        clock.unfreeze()
    with app.app_context():
        paused = select(func.count()).where(Repair.paused_until.is_not(None))
        assert db.session.scalar(paused) == 0
