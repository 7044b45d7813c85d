"""Repair conversations over REST: start, feel heard, take a break, and who may see them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text, update

from service.extensions import db
from service.models import Repair
from tests.support.client import ApiClient, Person
from tests.support.history import other_couples
from tests.support.paging import assert_each_page_reads_a_page, every_page
from tests.support.plans import rows_examined
from tests.support.repairs import event_types, post_message, start, write


def test_a_conversation_starts_open_for_both_partners(client: ApiClient) -> None:
    ana, ben = client.couple()
    client_id = str(uuid.uuid4())
    repair = start(client, ana, client_id=client_id, topic="Saturday's argument")
    assert repair["status"] == "open" and repair["started_by"] == ana.id
    assert repair["topic"] == "Saturday's argument" and repair["bid_id"] is None
    assert repair["last_seq"] == 0 and repair["paused_until"] is None
    assert repair["resolved_at"] is None
    assert {p["user_id"] for p in repair["partners"]} == {ana.id, ben.id}
    assert all(p["last_read_seq"] == 0 and p["heard"] is False for p in repair["partners"])
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ben).json() == repair

    retry = client.post(
        "/api/v1/repairs", as_=ana, json={"client_id": client_id, "topic": "Saturday's argument"}
    )
    assert retry.status_code == 200 and retry.json() == repair
    assert event_types(client, ben) == ["couple.paired", "repair.started"]
    assert client.get("/api/v1/repairs", as_=ben).json() == {"items": [repair], "next": None}


def test_a_client_id_sent_again_for_another_conversation_is_refused(client: ApiClient) -> None:
    """A phone that started a second conversation under the first one's client_id was answered
    200 with the first: its topic (or the bid it came back to) was dropped unseen. Another
    topic or bid under a client_id is another conversation: 409, nothing started. The same
    topic again, however it was spaced, is a retry."""
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids", as_=ben, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    client_id = str(uuid.uuid4())
    first = start(client, ana, client_id=client_id, topic="Saturday's argument")
    for changed in ({"topic": "The trip"}, {"topic": None}, {"bid_id": bid["id"]}):
        body = {"client_id": client_id, "topic": "Saturday's argument", **changed}
        refused = client.post("/api/v1/repairs", as_=ana, json=body)
        assert refused.status_code == 409, (changed, refused.text)
        assert refused.json()["code"] == "conflict"
    retry = client.post(
        "/api/v1/repairs", as_=ana, json={"client_id": client_id, "topic": " Saturday's argument "}
    )
    assert retry.status_code == 200 and retry.json() == first
    assert client.get("/api/v1/repairs", as_=ben).json()["items"] == [first]
    assert event_types(client, ben) == ["couple.paired", "bid.created", "repair.started"]


def test_a_topic_is_trimmed_and_a_blank_one_is_none(client: ApiClient) -> None:
    ana, _ben = client.couple()
    assert start(client, ana, topic="  Saturday's argument \n")["topic"] == "Saturday's argument"
    for blank in ("   ", "\u200b", " \u3164 ", ""):
        assert start(client, ana, topic=blank)["topic"] is None, repr(blank)


def test_bad_conversations_are_refused(client: ApiClient) -> None:
    ana, ben = client.couple()
    cat, _dan = client.couple("Cat", "Dan")
    their_bid = client.post(
        "/api/v1/bids", as_=cat, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    ).json()
    for body, field in (
        ({"bid_id": their_bid["id"]}, "bid_id"),
        ({"bid_id": str(uuid.uuid4())}, "bid_id"),
        ({"topic": "t" * 201}, "topic"),
        ({"client_id": None}, "client_id"),
        ({"status": "resolved"}, "status"),
    ):
        response = client.post(
            "/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4()), **body}
        )
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["errors"]
    assert client.get("/api/v1/repairs", as_=ana).json()["items"] == []
    our_bid = client.post(
        "/api/v1/bids", as_=ben, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    assert start(client, ana, bid_id=our_bid["id"])["bid_id"] == our_bid["id"]
    loner = client.register("Lee")
    alone = client.post("/api/v1/repairs", as_=loner, json={"client_id": str(uuid.uuid4())})
    assert alone.status_code == 404


def test_resolution_needs_both_partners_and_then_the_conversation_closes(
    client: ApiClient,
) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    client_id = str(uuid.uuid4())
    said = write(client, ben, repair["id"], client_id=client_id)
    half = client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=ana).json()
    assert half["status"] == "open" and half["resolved_at"] is None
    heard = {p["user_id"]: p["heard"] for p in half["partners"]}
    assert heard == {ana.id: True, ben.id: False}
    again = client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=ana).json()
    assert again == half
    assert write(client, ben, repair["id"])["seq"] == 2

    done = client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=ben).json()
    assert done["status"] == "resolved" and done["resolved_at"]
    assert all(p["heard"] and p["resolved_at"] for p in done["partners"])
    late = post_message(client, ana, repair["id"])
    assert late.status_code == 409 and late.json()["code"] == "conflict"
    pause = client.post(f"/api/v1/repairs/{repair['id']}/pause", as_=ana, json={"minutes": 30})
    assert pause.status_code == 409
    # A phone retrying a message it sent before the end still gets the original.
    retry = post_message(client, ben, repair["id"], client_id=client_id)
    assert retry.status_code == 200 and retry.json() == said
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ana).json() == done
    types = event_types(client, ana)
    assert types[-3:] == ["repair.heard", "repair.message", "repair.resolved"]
    resolved = client.get("/api/v1/repairs", as_=ben, params={"status": "resolved"}).json()
    assert [r["id"] for r in resolved["items"]] == [repair["id"]]


def test_a_break_is_20_minutes_to_a_day_and_can_end_early(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    for minutes in (19, 1441, "soon", None):
        bad = client.post(
            f"/api/v1/repairs/{repair['id']}/pause", as_=ben, json={"minutes": minutes}
        )
        assert bad.status_code == 422 and "minutes" in bad.json()["errors"], minutes
    before = datetime.now(UTC)
    paused = client.post(f"/api/v1/repairs/{repair['id']}/pause", as_=ben, json={"minutes": 20})
    assert paused.status_code == 200
    body = paused.json()
    assert body["paused_by"] == ben.id
    until = datetime.fromisoformat(body["paused_until"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=20) <= until <= datetime.now(UTC) + timedelta(minutes=20)
    # Words written during the break are kept.
    assert write(client, ana, repair["id"])["seq"] == 1
    resumed = client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=ana).json()
    assert resumed["paused_until"] is None and resumed["paused_by"] is None
    assert client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=ben).json() == resumed
    types = event_types(client, ben)
    assert types[-3:] == ["repair.paused", "repair.message", "repair.resumed"]


def test_strangers_and_former_partners_see_nothing(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana, topic="private topic")
    write(client, ana, repair["id"], body="private words")
    stranger = client.register("Sol")
    cat, _dan = client.couple("Cat", "Dan")
    rid = repair["id"]
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/api/v1/repairs/{rid}", None),
        ("GET", f"/api/v1/repairs/{rid}/messages", None),
        ("POST", f"/api/v1/repairs/{rid}/messages", {"client_id": str(uuid.uuid4()), "body": "hi"}),
        ("POST", f"/api/v1/repairs/{rid}/read", {"seq": 1}),
        ("POST", f"/api/v1/repairs/{rid}/pause", {"minutes": 30}),
        ("POST", f"/api/v1/repairs/{rid}/resume", None),
        ("POST", f"/api/v1/repairs/{rid}/resolve", None),
    ]

    def refused(who: Person) -> None:
        for method, path, body in attempts:
            response = client.request(method, path, as_=who, json=body)
            assert response.status_code == 404, (who.user["display_name"], path, response.text)
            assert "private" not in response.text
        listed = client.get("/api/v1/repairs", as_=who)
        assert "private" not in listed.text

    for who in (stranger, cat):
        refused(who)
    assert client.get(f"/api/v1/repairs/{uuid.uuid4()}", as_=ana).status_code == 404

    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    for who in (ana, ben):
        refused(who)
    # Paired again with someone else, a former partner still sees nothing of it.
    eve = client.register("Eve")
    client.pair(eve, ben)
    refused(ben)
    assert client.get("/api/v1/repairs", as_=ben).json()["items"] == []


def test_listing_pages_newest_first(client: ApiClient) -> None:
    ana, ben = client.couple()
    made = [start(client, ana if i % 2 else ben, topic=f"moment {i}") for i in range(5)]
    page1 = client.get("/api/v1/repairs", as_=ana, params={"limit": 2}).json()
    assert [r["id"] for r in page1["items"]] == [made[4]["id"], made[3]["id"]]
    page2 = client.get("/api/v1/repairs", as_=ben, params={"limit": 2, "before": page1["next"]})
    page3 = client.get(
        "/api/v1/repairs", as_=ben, params={"limit": 2, "before": page2.json()["next"]}
    ).json()
    rest = page2.json()["items"] + page3["items"]
    assert [r["id"] for r in rest] == [made[2]["id"], made[1]["id"], made[0]["id"]]
    assert page3["next"] is None
    bad = client.get("/api/v1/repairs", as_=ana, params={"before": "garbage!"})
    assert bad.status_code == 422 and "before" in bad.json()["errors"]
    bad_page = client.get(f"/api/v1/repairs/{made[0]['id']}/messages", as_=ana, params={"limit": 0})
    assert bad_page.status_code == 422 and "limit" in bad_page.json()["errors"]


def test_a_page_of_one_status_keeps_the_order_and_cursors_of_the_whole_list(
    client: ApiClient,
) -> None:
    """Open and resolved conversations interleaved: a status's pages are the whole list's
    conversations of that status, newest first, and each `next` leads to the rest."""
    ana, ben = client.couple()
    made = [start(client, ana if i % 2 else ben, topic=f"moment {i}") for i in range(7)]
    for repair in made[1::2]:
        for who in (ana, ben):
            client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=who)
    everything = client.get("/api/v1/repairs", as_=ana, params={"limit": 50}).json()["items"]
    assert [r["id"] for r in everything] == [r["id"] for r in reversed(made)]
    for status in ("open", "resolved"):
        expected = [r for r in everything if r["status"] == status]
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"status": status, "limit": 2}
        while True:
            page = client.get("/api/v1/repairs", as_=ben, params=params).json()
            assert len(page["items"]) <= 2
            seen += page["items"]
            if page["next"] is None:
                break
            params["before"] = page["next"]
        assert seen == expected, status
        # A cursor of the whole list leads to the same rest of one status's list.
        whole = client.get("/api/v1/repairs", as_=ana, params={"limit": 3}).json()
        rest = client.get(
            "/api/v1/repairs", as_=ana, params={"status": status, "before": whole["next"]}
        ).json()
        assert rest["items"] == [r for r in everything[3:] if r["status"] == status]
    bad = client.get("/api/v1/repairs", as_=ana, params={"status": "paused"})
    assert bad.status_code == 422 and "status" in bad.json()["errors"]


def test_conversations_started_at_one_moment_page_each_once(client: ApiClient, app: Flask) -> None:
    """Conversations with one `created_at`: the pages show every one once, in the order of
    their ids, wherever a page ends among them."""
    ana, ben = client.couple()
    started = [start(client, ana if i % 2 else ben)["id"] for i in range(7)]
    with app.app_context(), db.scope() as session:
        moment = datetime.now(UTC).replace(microsecond=0)
        ids = [uuid.UUID(repair_id) for repair_id in started]
        session.execute(update(Repair).where(Repair.id.in_(ids)).values(created_at=moment))
    pages = lambda page: client.get("/api/v1/repairs", as_=ana, params=page)  # noqa: E731
    shown, _ = every_page(app, pages, lambda _: False, {"limit": 2}, most_pages=len(started))
    assert shown == sorted(started, key=uuid.UUID, reverse=True)


_HISTORY = (
    "INSERT INTO repairs (id, couple_id, started_by, client_id, status, created_at, "
    "last_seq, pause_count, resolved_at) SELECT gen_random_uuid(), :couple, :starter, "
    "gen_random_uuid(), 'resolved', t, 0, 0, t FROM generate_series(1, :n) AS i, "
    "LATERAL (SELECT now() - (i / 3) * interval '1 hour') AS at(t)"
)


@pytest.mark.postgres
@pytest.mark.parametrize("status", [None, "resolved"], ids=["all", "resolved"])
def test_a_deep_page_of_conversations_reads_that_page_not_every_newer_one(
    client: ApiClient, app: Flask, status: str | None
) -> None:
    """Years of conversations, three at a time at one moment, among a thousand other
    couples': paging back through them all (or those of one status) shows each once, newest
    first, and each page reads its own conversations, not the couple's thousands of newer
    ones it comes after, nor every older one, nor other couples'."""
    ana, ben = client.couple()
    history, limit = 3000, 200
    ours = client.get("/api/v1/couple", as_=ana).json()["id"]
    with app.app_context(), db.scope() as session:
        session.execute(text(_HISTORY), {"couple": ours, "starter": ana.id, "n": history})
        other_couples(session.connection())
        newest_first = (
            "SELECT id FROM repairs WHERE couple_id = :c ORDER BY created_at DESC, id DESC"
        )
        expected = [str(row) for row in session.scalars(text(newest_first), {"c": ours})]
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    shown, reads = every_page(
        app,
        lambda page: client.get("/api/v1/repairs", as_=ben, params=page),
        lambda statement: (
            re.match(r"\s*SELECT\b.*\bFROM repairs\b", statement, re.DOTALL) is not None
        ),
        params,
    )
    assert shown == expected and len(expected) == history
    assert len(reads) == history // limit, reads
    with app.app_context(), db.scope() as session:
        session.connection().exec_driver_sql("ANALYZE repairs")
    assert_each_page_reads_a_page(app, reads, "repairs", history, limit, "conversations")


@pytest.mark.postgres
def test_a_page_of_one_status_reads_that_page_not_the_couples_history(
    client: ApiClient, app: Flask
) -> None:
    """Years of resolved conversations between an open one at the start and one open now:
    each page of the open ones is found without reading the couple's whole history, nor
    every other couple's conversations of that status."""
    ana, ben = client.couple()
    cat, _ = client.couple("Cat", "Dan")
    fill = (
        "INSERT INTO repairs (id, couple_id, started_by, client_id, status, created_at, "
        "last_seq, pause_count, resolved_at) SELECT gen_random_uuid(), :couple, :starter, "
        "gen_random_uuid(), CAST(:status AS text), t, 0, 0, "
        "CASE WHEN CAST(:status AS text) = 'resolved' THEN t END "
        "FROM generate_series(1, :n) AS i, "
        "LATERAL (SELECT now() - (i + :skip) * interval '1 hour') AS at(t)"
    )
    history = 3000
    ours, theirs = (client.get("/api/v1/couple", as_=p).json()["id"] for p in (ana, cat))
    with app.app_context(), db.scope() as session:
        for couple, starter, status, n, skip in (
            (ours, ben, "open", 1, -1),
            (ours, ana, "resolved", history, 0),
            (ours, ben, "open", 1, history),
            (theirs, cat, "open", history, 0),
        ):
            params = {"couple": couple, "starter": starter.id, "status": status}
            session.execute(text(fill), {**params, "n": n, "skip": skip})

    pages: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM repairs\b", statement, re.DOTALL):
            pages.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        first = client.get("/api/v1/repairs", as_=ben, params={"status": "open", "limit": 1})
        rest = client.get(
            "/api/v1/repairs",
            as_=ben,
            params={"status": "open", "limit": 1, "before": first.json()["next"]},
        ).json()
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert [r["status"] for r in first.json()["items"] + rest["items"]] == ["open", "open"]
    assert rest["next"] is None
    assert len(pages) == 2, pages
    with app.app_context(), db.scope() as session:
        for statement, parameters in pages:
            read = rows_examined(session.connection(), statement, parameters, "repairs")
            assert read <= 10, f"read {read} conversations for a page of {history} of history"
