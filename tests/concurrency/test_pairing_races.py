"""Real concurrency on PostgreSQL: two joins that both pair one person."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, event, insert, select, update

from service.clock import clock
from service.extensions import db
from service.models import Couple, Invite, User
from tests.support.client import ApiClient
from tests.support.locks import first_statement_held, lock_queue, lock_waiters, rows_held
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_whoever_joins_second_is_told_they_are_paired(client: ApiClient, app: Flask) -> None:
    """Xan shared a code with Zoe and types Yui's. Zoe's join pairs Xan first, while Xan's own
    join, which read Xan unpaired when it began, waits for Xan's row: it must find Xan paired."""
    xan, yui, zoe = client.register("Xan"), client.register("Yui"), client.register("Zoe")
    xans_code = client.post("/api/v1/couple/invites", as_=xan).json()["code"]
    yuis_code = client.post("/api/v1/couple/invites", as_=yui).json()["code"]
    join = ApiClient(client.base_url).post
    xan_row = select(User).where(User.id == uuid.UUID(xan.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, xan_row),
    ):
        zoes = pool.submit(join, "/api/v1/couple/join", as_=zoe, json={"code": xans_code})
        queued(1)
        xans = pool.submit(join, "/api/v1/couple/join", as_=xan, json={"code": yuis_code})
        queued(2)
    assert zoes.result(timeout=10).status_code == 201
    refused = xans.result(timeout=10)
    assert refused.status_code == 409, refused.text
    assert client.get("/api/v1/couple", as_=xan).json()["partner"]["id"] == zoe.id
    assert client.get("/api/v1/couple", as_=zoe).json()["partner"]["id"] == xan.id
    assert client.get("/api/v1/couple", as_=yui).status_code == 404
    # Yui's code was not spent on the refused join.
    cat = client.register("Cat")
    assert client.post("/api/v1/couple/join", as_=cat, json={"code": yuis_code}).status_code == 201


def test_a_join_sent_again_while_the_first_still_pairs_gets_the_couple(
    client: ApiClient, app: Flask
) -> None:
    """Ben's phone gave up on its join and sent the code again while the first join, which has
    claimed the code, waits for Ben's row. The second waits for the code's row; once the first
    has paired them it found the code used, and Ben was told it "may be mistyped, used or
    expired" (422) though the code had just paired him: it answers the couple (200)."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    bens_row = select(User).where(User.id == uuid.UUID(ben.id)).with_for_update()
    join = ApiClient(client.base_url).post
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, bens_row),
    ):
        first = pool.submit(join, "/api/v1/couple/join", as_=ben, json={"code": code})
        queued(1)
        again = pool.submit(join, "/api/v1/couple/join", as_=ben, json={"code": code})
        queued(2)
    assert first.result(timeout=10).status_code == 201
    retried = again.result(timeout=10)
    assert retried.status_code == 200, retried.text
    assert retried.json() == client.get("/api/v1/couple", as_=ben).json()
    assert retried.json()["partner"]["id"] == ana.id


def test_two_people_joining_each_others_codes_at_once_pair_once(
    client: ApiClient, app: Flask
) -> None:
    """Ana and Ben each made a code and each types the other's at the same moment. Each join
    is held once it has claimed its code, until the other join has claimed its own or waits
    for a lock: one of them pairs the two, the other is told the code is no longer valid,
    never a deadlock answered 503."""
    ana, ben = client.register("Ana"), client.register("Ben")
    anas_code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    bens_code = client.post("/api/v1/couple/invites", as_=ben).json()["code"]
    with app.app_context():
        engine = db.engine
    claimed: set[int] = set()
    guard = threading.Lock()
    join = ApiClient(client.base_url).post
    with lock_waiters(app) as waiting:

        def hold_after_the_claim(*args: Any) -> None:
            if not args[2].startswith("UPDATE invites"):
                return
            with guard:
                claimed.add(threading.get_ident())
            wait_until(
                lambda: len(claimed) == 2 or waiting() > 0,
                what="the other join to claim its code or wait for a lock",
            )

        event.listen(engine, "after_cursor_execute", hold_after_the_claim)
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                anas = pool.submit(join, "/api/v1/couple/join", as_=ana, json={"code": bens_code})
                bens = pool.submit(join, "/api/v1/couple/join", as_=ben, json={"code": anas_code})
                answers = sorted(
                    (anas.result(timeout=20), bens.result(timeout=20)),
                    key=lambda r: r.status_code,
                )
        finally:
            event.remove(engine, "after_cursor_execute", hold_after_the_claim)
    assert [a.status_code for a in answers] == [201, 422], [a.text for a in answers]
    assert "code" in answers[1].json()["errors"]
    assert client.get("/api/v1/couple", as_=ana).json()["partner"]["id"] == ben.id
    assert client.get("/api/v1/couple", as_=ben).json()["partner"]["id"] == ana.id


def test_a_join_by_an_account_deleted_meanwhile_is_refused_and_spends_no_code(
    client: ApiClient, app: Flask
) -> None:
    """Dan types Eve's code on one phone while deleting his account on another. The deletion
    holds Dan's row when the join comes to lock it, and commits: the join finds no account,
    and is answered 401 (not a 500), leaving Eve's code unspent."""
    dan, eve = client.register("Dan"), client.register("Eve")
    eves_code = client.post("/api/v1/couple/invites", as_=eve).json()["code"]
    dans_row = select(User).where(User.id == uuid.UUID(dan.id)).with_for_update()
    with app.app_context():
        deletion = db.engine.connect()
    try:
        deletion.begin()
        assert deletion.execute(dans_row).first() is not None
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            joining = pool.submit(
                ApiClient(client.base_url).post,
                "/api/v1/couple/join",
                as_=dan,
                json={"code": eves_code},
            )
            queued(1)
            deletion.execute(delete(User).where(User.id == uuid.UUID(dan.id)))
            deletion.commit()
            refused = joining.result(timeout=10)
    finally:
        deletion.close()
    assert refused.status_code == 401, refused.text
    assert client.get("/api/v1/couple", as_=eve).status_code == 404
    fay = client.register("Fay")
    assert client.post("/api/v1/couple/join", as_=fay, json={"code": eves_code}).status_code == 201


def test_a_code_asked_for_as_a_join_pairs_its_maker_is_refused(
    client: ApiClient, app: Flask
) -> None:
    """Ana asks for a new code while Ben's join of her last one is pairing them (it holds her
    account's row): once the join commits, she is paired, and gets 409, not a code."""
    ana, ben = client.register("Ana"), client.register("Ben")
    ana_id, ben_id = uuid.UUID(ana.id), uuid.UUID(ben.id)
    with app.app_context():
        joining = db.engine.connect()
    try:
        joining.begin()
        joining.execute(select(User).where(User.id == ana_id).with_for_update()).one()
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            asking = pool.submit(ApiClient(client.base_url).post, "/api/v1/couple/invites", as_=ana)
            queued(1)
            couple_id = uuid.uuid4()
            joining.execute(
                insert(Couple).values(
                    id=couple_id, partner_a_id=ana_id, partner_b_id=ben_id, paired_at=clock.now()
                )
            )
            joining.execute(
                update(User).where(User.id.in_((ana_id, ben_id))).values(couple_id=couple_id)
            )
            joining.commit()
            refused = asking.result(timeout=10)
    finally:
        joining.close()
    assert refused.status_code == 409, refused.text
    with app.app_context():
        live = db.engine.connect()
        try:
            unused = live.execute(
                select(Invite.code).where(Invite.inviter_id == ana_id, Invite.used_at.is_(None))
            ).all()
        finally:
            live.close()
    assert unused == []


def test_a_new_name_saved_as_a_join_pairs_its_author_reaches_the_new_partner(
    client: ApiClient, app: Flask
) -> None:
    """Ben renames himself while Ana types his code. The join locks Ben's row first; the rename
    read Ben unpaired and waits behind it. Once the join has committed, the rename finds Ben
    paired: the new couple's stream tells Ana the new name, after `couple.paired`."""
    ana, ben = client.register("Ana"), client.register("Ben")
    bens_code = client.post("/api/v1/couple/invites", as_=ben).json()["code"]
    bens_row = select(User).where(User.id == uuid.UUID(ben.id)).with_for_update()
    changes = {"display_name": "Ben C.", "timezone": "America/Chicago"}
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, bens_row),
    ):
        joining = pool.submit(
            ApiClient(client.base_url).post,
            "/api/v1/couple/join",
            as_=ana,
            json={"code": bens_code},
        )
        queued(1)
        renaming = pool.submit(
            ApiClient(client.base_url).patch, "/api/v1/me", as_=ben, json=changes
        )
        queued(2)
    assert joining.result(timeout=10).status_code == 201
    renamed = renaming.result(timeout=10)
    assert renamed.status_code == 200, renamed.text
    partner = client.get("/api/v1/couple", as_=ana).json()["partner"]
    assert partner == {"id": ben.id, **changes}
    events = client.get("/api/v1/sync", as_=ana).json()["events"]
    assert [(e["cursor"], e["type"]) for e in events] == [
        (1, "couple.paired"),
        (2, "couple.partner_updated"),
    ]
    assert events[1]["data"] == partner


def test_invites_asked_for_at_once_leave_one_live_code(client: ApiClient, app: Flask) -> None:
    """Ana taps "invite" on two phones (or twice) at the same moment. Each request expired her
    earlier codes, found none of the other's uncommitted one, and made its own: two codes
    lived for a day, one of them never shown to her. However many arrive at once, one code is
    live afterwards: the one made last; every other is refused as a used or expired code."""
    ana = client.register("Ana")
    ana_id = uuid.UUID(ana.id)
    many = 3
    with app.app_context():
        engine = db.engine
    replaced: set[int] = set()
    guard = threading.Lock()
    ask = ApiClient(client.base_url).post
    with lock_waiters(app) as waiting:

        def hold_after_the_replacement(*args: Any) -> None:
            if not args[2].startswith("UPDATE invites"):
                return
            with guard:
                replaced.add(threading.get_ident())
            wait_until(
                lambda: len(replaced) == many or waiting() > 0,
                what="the other requests to replace the codes or wait for a lock",
            )

        event.listen(engine, "after_cursor_execute", hold_after_the_replacement)
        try:
            with ThreadPoolExecutor(max_workers=many) as pool:
                asked = [pool.submit(ask, "/api/v1/couple/invites", as_=ana) for _ in range(many)]
                answers = [future.result(timeout=20) for future in asked]
        finally:
            event.remove(engine, "after_cursor_execute", hold_after_the_replacement)
    assert [a.status_code for a in answers] == [201] * many, [a.text for a in answers]
    with app.app_context():
        live = db.engine.connect()
        try:
            codes = live.execute(
                select(Invite.code).where(
                    Invite.inviter_id == ana_id,
                    Invite.used_at.is_(None),
                    Invite.expires_at > clock.now(),
                )
            ).all()
        finally:
            live.close()
    assert len(codes) == 1, codes
    shown = [answer.json()["code"] for answer in answers]
    ben = client.register("Ben")
    for code in shown:
        if code.replace("-", "") != codes[0].code:
            refused = client.post("/api/v1/couple/join", as_=ben, json={"code": code})
            assert refused.status_code == 422, refused.text
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": codes[0].code})
    assert joined.status_code == 201, joined.text


def test_a_code_asked_for_while_a_join_claims_the_last_one_is_refused_without_a_deadlock(
    client: ApiClient, app: Flask
) -> None:
    """Ben types Ana's code as she asks for a new one. The join holds the code's row from its
    claim until it has paired them, and waits for Ana's account meanwhile; her request expires
    that code, so it waits for the join: it must not hold her account while it waits (each
    would wait for the other, and one be answered 503). The join pairs them; Ana gets 409."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, lambda sql: sql.startswith("UPDATE invites")) as claimed,
    ):
        joining = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/couple/join", as_=ben, json={"code": code}
        )
        assert claimed.wait(10)
        asking = pool.submit(ApiClient(client.base_url).post, "/api/v1/couple/invites", as_=ana)
        joined, refused = joining.result(timeout=20), asking.result(timeout=20)
    assert joined.status_code == 201, joined.text
    assert refused.status_code == 409, refused.text
    assert client.get("/api/v1/couple", as_=ana).json()["partner"]["id"] == ben.id


@contextmanager
def claims_held(app: Flask) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the first join's claim of its code just before it runs (the join has read the
    clock), until the test lets go. Yields (held, go)."""
    with app.app_context():
        engine = db.engine
    held, go = threading.Event(), threading.Event()

    def hold(*args: Any) -> None:
        if held.is_set() or not args[2].startswith("UPDATE invites SET used_at"):
            return
        held.set()
        go.wait(10)

    event.listen(engine, "before_cursor_execute", hold)
    try:
        yield held, go
    finally:
        go.set()
        event.remove(engine, "before_cursor_execute", hold)


def test_a_code_replaced_while_a_join_of_it_is_on_its_way_does_not_pair(
    client: ApiClient, app: Flask
) -> None:
    """Ana makes a new code while Ben's join of her old one is on its way: the join read the
    clock, then Ana's request ended the old code (its expiry set to that moment, later than
    the join's), and the join found it still unexpired and paired them with the code Ana had
    just replaced. Once replaced, a code pairs nobody."""
    ana, ben = client.register("Ana"), client.register("Ben")
    old = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    with ThreadPoolExecutor(max_workers=1) as pool, claims_held(app) as (held, go):
        joining = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/couple/join", as_=ben, json={"code": old}
        )
        assert held.wait(10)
        new = client.post("/api/v1/couple/invites", as_=ana)
        go.set()
        late = joining.result(timeout=10)
    assert new.status_code == 201, new.text
    assert late.status_code == 422, late.text
    assert client.get("/api/v1/couple", as_=ana).status_code == 404
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": new.json()["code"]})
    assert joined.status_code == 201, joined.text


def test_a_code_withdrawn_while_a_join_of_it_is_on_its_way_does_not_pair(
    client: ApiClient, app: Flask
) -> None:
    """Ana withdraws her code as Ben's join of it, which has read the clock, is on its way: the
    join is refused as it is for an expired code, and Ana stays unpaired."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    with ThreadPoolExecutor(max_workers=1) as pool, claims_held(app) as (held, go):
        joining = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/couple/join", as_=ben, json={"code": code}
        )
        assert held.wait(10)
        withdrawn = client.delete("/api/v1/couple/invites", as_=ana)
        go.set()
        late = joining.result(timeout=10)
    assert withdrawn.status_code == 204, withdrawn.text
    assert late.status_code == 422, late.text
    assert client.get("/api/v1/couple", as_=ana).status_code == 404


def test_a_code_withdrawn_as_it_pairs_its_maker_is_told_they_are_paired(
    client: ApiClient, app: Flask
) -> None:
    """Ben's join has claimed Ana's code when she withdraws it: the withdrawal waits for the
    join, which pairs them. Ana is told 409 (already paired), not 204 as if the code were
    dead while her phone still waits for a partner."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, lambda sql: sql.startswith("UPDATE invites SET used_at")) as held,
    ):
        joining = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/couple/join", as_=ben, json={"code": code}
        )
        assert held.wait(10)
        withdrawing = pool.submit(
            ApiClient(client.base_url).delete, "/api/v1/couple/invites", as_=ana
        )
        joined, refused = joining.result(timeout=20), withdrawing.result(timeout=20)
    assert joined.status_code == 201, joined.text
    assert refused.status_code == 409, refused.text
    assert client.get("/api/v1/couple", as_=ana).json()["partner"]["id"] == ben.id


def test_a_join_sent_again_as_the_partner_unpairs_is_not_told_it_is_paired(
    client: ApiClient, app: Flask
) -> None:
    """Ben's join paired him with Ana, its answer was lost, and his phone sends the code again
    as Ana unpairs. The retry read Ben paired, then looked for the couple the code made once
    the unpair had ended it: it told Ben 409 "You are already paired. Unpair first to join
    someone else." though he no longer was. It answers as a retry after the unpair does: the
    code is spent (422), and Ben is not paired."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": code}).status_code == 201
    with app.app_context():
        engine = db.engine
    held, go = threading.Event(), threading.Event()

    def hold_the_search_for_the_couple(*args: Any) -> None:
        if held.is_set() or "JOIN invites" not in args[2]:
            return
        held.set()
        go.wait(10)

    event.listen(engine, "before_cursor_execute", hold_the_search_for_the_couple)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            retrying = pool.submit(
                ApiClient(client.base_url).post,
                "/api/v1/couple/join",
                as_=ben,
                json={"code": code},
            )
            assert held.wait(10)
            assert client.delete("/api/v1/couple", as_=ana).status_code == 204
            go.set()
            retried = retrying.result(timeout=10)
    finally:
        go.set()
        event.remove(engine, "before_cursor_execute", hold_the_search_for_the_couple)
    assert retried.status_code == 422, retried.text
    assert "code" in retried.json()["errors"]
    assert client.get("/api/v1/couple", as_=ben).status_code == 404
