"""Bids over REST: send, retry, acknowledge, respond, list, and who may do what."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text, update

from service.extensions import db
from service.models import Bid
from tests.support.client import ApiClient, Person
from tests.support.history import other_couples
from tests.support.paging import assert_each_page_reads_a_page, every_page
from tests.support.phones import Phone
from tests.support.plans import rows_examined
from tests.support.server import LiveServer


def send(
    client: ApiClient,
    sender: Person,
    kind: str = "connect",
    note: str | None = None,
    client_id: str | None = None,
) -> dict:  # type: ignore[type-arg]
    body = {"client_id": client_id or str(uuid.uuid4()), "kind": kind}
    if note is not None:
        body["note"] = note
    response = client.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def respond(client: ApiClient, who: Person, bid_id: str, **body: object):  # type: ignore[no-untyped-def]
    body.setdefault("client_id", str(uuid.uuid4()))
    return client.post(f"/api/v1/bids/{bid_id}/responses", as_=who, json=body)


def test_a_bid_reaches_the_partner_with_its_timeline(client: ApiClient) -> None:
    ana, ben = client.couple()
    bid = send(client, ana, "comfort", "rough day, call me?")
    assert bid["sender_id"] == ana.id and bid["recipient_id"] == ben.id
    assert bid["status"] == "sent" and bid["kind"] == "comfort"
    assert bid["note"] == "rough day, call me?"
    assert bid["outcome"] == "pending" and bid["turned_toward"] is None
    assert bid["reachable_at"] == bid["created_at"]
    assert bid["delivered_at"] is None and bid["responses"] == []

    delivered = client.post(f"/api/v1/bids/{bid['id']}/delivered", as_=ben)
    assert delivered.status_code == 200 and delivered.json()["status"] == "delivered"
    seen = client.post(f"/api/v1/bids/{bid['id']}/seen", as_=ben).json()
    assert seen["status"] == "seen" and seen["seen_at"]
    answered = respond(client, ben, bid["id"], kind="toward", note="calling now")
    assert answered.status_code == 201
    final = answered.json()
    assert final["status"] == "answered" and final["response"] == "toward"
    assert final["outcome"] == "toward" and final["turned_toward"] is True
    assert final["response_seconds"] >= 0
    assert [r["kind"] for r in final["responses"]] == ["toward"]
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ana).json() == final


def test_acknowledgements_are_idempotent_and_emit_once(client: ApiClient) -> None:
    ana, ben = client.couple()
    bid = send(client, ana)
    first = client.post(f"/api/v1/bids/{bid['id']}/seen", as_=ben).json()
    again = client.post(f"/api/v1/bids/{bid['id']}/seen", as_=ben).json()
    late_delivery = client.post(f"/api/v1/bids/{bid['id']}/delivered", as_=ben).json()
    assert first == again == late_delivery
    assert first["delivered_at"] == first["seen_at"]
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ana).json()["events"]]
    assert types == ["couple.paired", "bid.created", "bid.seen"]


def test_retrying_a_send_returns_the_original_and_records_nothing_new(client: ApiClient) -> None:
    ana, _ = client.couple()
    client_id = str(uuid.uuid4())
    first = send(client, ana, client_id=client_id)
    retry = client.post("/api/v1/bids", as_=ana, json={"client_id": client_id, "kind": "connect"})
    assert retry.status_code == 200
    assert retry.json() == first
    events = client.get("/api/v1/sync", as_=ana).json()["events"]
    assert [e["type"] for e in events] == ["couple.paired", "bid.created"]
    assert len(client.get("/api/v1/bids", as_=ana).json()["items"]) == 1


def test_retrying_a_response_returns_the_original(client: ApiClient) -> None:
    ana, ben = client.couple()
    bid = send(client, ana)
    client_id = str(uuid.uuid4())
    first = respond(client, ben, bid["id"], kind="toward", client_id=client_id)
    retry = respond(client, ben, bid["id"], kind="toward", client_id=client_id)
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json() == first.json()
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ben).json()["events"]]
    assert types.count("bid.answered") == 1
    other = send(client, ana)
    reused = respond(client, ben, other["id"], kind="toward", client_id=client_id)
    assert reused.status_code == 409


def test_a_client_id_sent_again_with_another_bid_is_refused(client: ApiClient) -> None:
    """Another kind or note under a bid's `client_id` is another bid, not a retry: 409, never
    the first bid answered as if it were the one sent (the phone would take it as sent, and it
    would reach nobody). The same words, trimmed as they are stored, are a retry."""
    ana, _ = client.couple()
    client_id = str(uuid.uuid4())
    first = send(client, ana, "comfort", "Call me?", client_id=client_id)
    for other in ({"kind": "connect", "note": "Call me?"}, {"kind": "comfort", "note": "Now?"}):
        refused = client.post("/api/v1/bids", as_=ana, json={"client_id": client_id, **other})
        assert refused.status_code == 409, refused.text
        assert "client_id" in refused.json()["detail"]
    again = {"client_id": client_id, "kind": "comfort", "note": " Call me? "}
    retry = client.post("/api/v1/bids", as_=ana, json=again)
    assert (retry.status_code, retry.json()) == (200, first)
    assert len(client.get("/api/v1/bids", as_=ana).json()["items"]) == 1


def test_a_client_id_sent_again_with_another_response_is_refused(client: ApiClient) -> None:
    """Another kind, note or `back_at` under a response's `client_id` is another response: 409;
    the same response again is a retry, 200 with the bid."""
    ana, ben = client.couple()
    bid = send(client, ana)
    client_id = str(uuid.uuid4())
    back_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    later = {"client_id": client_id, "kind": "later", "note": "At 6", "back_at": back_at}
    first = respond(client, ben, bid["id"], **later)
    assert first.status_code == 201, first.text
    hour_later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    for other in ({"kind": "toward", "note": "At 6"}, {"note": "At 7"}, {"back_at": hour_later}):
        body = {**later, **other}
        if body["kind"] == "toward":
            body.pop("back_at")
        refused = respond(client, ben, bid["id"], **body)
        assert refused.status_code == 409, (other, refused.text)
    retry = respond(client, ben, bid["id"], **later)
    assert (retry.status_code, retry.json()) == (200, first.json())


def test_a_partner_cannot_answer_their_own_bid(client: ApiClient) -> None:
    ana, _ben = client.couple()
    bid = send(client, ana)
    own = respond(client, ana, bid["id"], kind="toward")
    assert own.status_code == 403 and own.json()["code"] == "forbidden"
    assert client.post(f"/api/v1/bids/{bid['id']}/seen", as_=ana).status_code == 403
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ana).json()["status"] == "sent"


def test_a_stranger_can_neither_read_nor_answer(client: ApiClient) -> None:
    ana, ben = client.couple()
    bid = send(client, ana, note="private words")
    stranger = client.register("Sol")
    other_ana, _ = client.couple("Cat", "Dan")
    for who in (stranger, other_ana):
        for method, path, body in (
            ("GET", f"/api/v1/bids/{bid['id']}", None),
            ("POST", f"/api/v1/bids/{bid['id']}/delivered", None),
            ("POST", f"/api/v1/bids/{bid['id']}/seen", None),
            (
                "POST",
                f"/api/v1/bids/{bid['id']}/responses",
                {"client_id": str(uuid.uuid4()), "kind": "toward"},
            ),
        ):
            response = client.request(method, path, as_=who, json=body)
            assert response.status_code == 404, (who.user["display_name"], path, response.text)
            assert "private words" not in response.text
        listed = client.get("/api/v1/bids", as_=who)
        assert "private words" not in listed.text
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()["status"] == "sent"
    unknown = client.get(f"/api/v1/bids/{uuid.uuid4()}", as_=ben)
    assert unknown.status_code == 404


def test_unpaired_people_cannot_send(client: ApiClient) -> None:
    loner = client.register("Lee")
    response = client.post(
        "/api/v1/bids", as_=loner, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert response.status_code == 404


def test_bad_bids_are_refused_and_change_nothing(client: ApiClient) -> None:
    ana, ben = client.couple()
    for body, field in (
        ({"kind": "connect"}, "client_id"),
        ({"client_id": "nope", "kind": "connect"}, "client_id"),
        ({"client_id": str(uuid.uuid4()), "kind": "demand"}, "kind"),
        ({"client_id": str(uuid.uuid4()), "kind": "share", "note": "x" * 281}, "note"),
        ({"client_id": str(uuid.uuid4()), "kind": "share", "sender_id": ben.id}, "sender_id"),
    ):
        response = client.post("/api/v1/bids", as_=ana, json=body)
        assert response.status_code == 422, body
        assert field in response.json()["errors"]
    bid = send(client, ana)
    for body, field in (
        ({"kind": "later"}, "back_at"),
        ({"kind": "toward", "back_at": "2030-01-01T00:00:00Z"}, "back_at"),
        ({"kind": "later", "back_at": "2000-01-01T00:00:00Z"}, "back_at"),
        ({"kind": "later", "back_at": "2030-01-01T00:00:00"}, "back_at"),
        ({"kind": "later", "back_at": "2099-01-01T00:00:00Z"}, "back_at"),
        ({"kind": "later", "back_at": "9999-12-31T23:59:59-14:00"}, "back_at"),
        ({"kind": "ignore"}, "kind"),
    ):
        response = respond(client, ben, bid["id"], **body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["errors"], (body, response.json())
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()["status"] == "sent"
    assert [e["type"] for e in client.get("/api/v1/sync", as_=ana).json()["events"]] == [
        "couple.paired",
        "bid.created",
    ]


def test_a_notes_length_counts_code_points(client: ApiClient) -> None:
    """As the guide says: not UTF-16 units, not what a person sees as one character."""
    ana, _ = client.couple()
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji to see, five code points
    assert send(client, ana, note=family * 56)["note"] == family * 56
    assert send(client, ana, note="\U0001fac2" * 280)["note"] == "\U0001fac2" * 280
    over = {"client_id": str(uuid.uuid4()), "kind": "share", "note": family * 56 + "!"}
    response = client.post("/api/v1/bids", as_=ana, json=over)
    assert response.status_code == 422 and "note" in response.json()["errors"]


def test_a_note_is_trimmed_and_a_blank_one_is_none(client: ApiClient) -> None:
    """A note of spaces or invisible characters would show as a blank lock-screen line."""
    ana, ben = client.couple()
    assert send(client, ana, note=" dinner? \n")["note"] == "dinner?"
    for blank in ("   ", "\u200b", "\u2060 \u3164", ""):
        bid = send(client, ana, note=blank)
        assert bid["note"] is None, repr(blank)
        answer = respond(client, ben, bid["id"], kind="toward", note=blank)
        assert answer.status_code == 201 and answer.json()["note"] is None, answer.text


def test_toward_after_toward_is_a_conflict(client: ApiClient) -> None:
    ana, ben = client.couple()
    bid = send(client, ana)
    assert respond(client, ben, bid["id"], kind="toward").status_code == 201
    again = respond(client, ben, bid["id"], kind="toward")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_listing_filters_and_pages_newest_first(client: ApiClient) -> None:
    ana, ben = client.couple()
    sent = [send(client, ana if i % 2 else ben) for i in range(5)]
    respond(client, ben, sent[1]["id"], kind="toward")
    page1 = client.get("/api/v1/bids", as_=ana, params={"limit": 2}).json()
    assert [b["id"] for b in page1["items"]] == [sent[4]["id"], sent[3]["id"]]
    page2 = client.get("/api/v1/bids", as_=ana, params={"limit": 2, "before": page1["next"]}).json()
    page3 = client.get("/api/v1/bids", as_=ben, params={"limit": 2, "before": page2["next"]}).json()
    assert [b["id"] for b in page2["items"] + page3["items"]] == [
        sent[2]["id"],
        sent[1]["id"],
        sent[0]["id"],
    ]
    assert page3["next"] is None
    answered = client.get("/api/v1/bids", as_=ben, params={"status": "answered"}).json()
    assert [b["id"] for b in answered["items"]] == [sent[1]["id"]]
    bad = client.get("/api/v1/bids", as_=ana, params={"before": "garbage!", "limit": 500})
    assert bad.status_code == 422
    assert {"before", "limit"} <= set(bad.json()["errors"]) or "limit" in bad.json()["errors"]


def test_bids_sent_at_one_moment_page_each_once(client: ApiClient, app: Flask) -> None:
    """Bids with one `created_at` (a burst of retries the server stamped alike): the pages
    show every one once, in the order of their ids, wherever a page ends among them."""
    ana, ben = client.couple()
    sent = [send(client, ana if i % 2 else ben)["id"] for i in range(7)]
    with app.app_context(), db.scope() as session:
        moment = datetime.now(UTC).replace(microsecond=0)
        ids = [uuid.UUID(bid_id) for bid_id in sent]
        session.execute(update(Bid).where(Bid.id.in_(ids)).values(created_at=moment))
    pages = lambda page: client.get("/api/v1/bids", as_=ana, params=page)  # noqa: E731
    shown, _ = every_page(app, pages, lambda _: False, {"limit": 2}, most_pages=len(sent))
    assert shown == sorted(sent, key=uuid.UUID, reverse=True)


@pytest.mark.postgres
def test_a_page_of_bids_of_one_status_reads_that_page_not_the_couples_history(
    client: ApiClient, app: Flask
) -> None:
    """Years of answered bids and two missed ones at the start: the list of missed bids (and
    one of a status the couple has none of) finds them without reading the whole history,
    nor every other couple's bids of that status."""
    ana, ben = client.couple()
    cat, dan = client.couple("Cat", "Dan")
    fill = (
        "INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, "
        "created_at, reachable_at, expires_at) SELECT gen_random_uuid(), :couple, :sender, "
        ":recipient, gen_random_uuid(), 'connect', :status, t, t, t + interval '1 day' "
        "FROM generate_series(1, :n) AS i, LATERAL (SELECT now() - i * interval '1 hour') AS at(t)"
    )
    history = 3000
    ours, theirs = (client.get("/api/v1/couple", as_=p).json()["id"] for p in (ana, cat))
    with app.app_context(), db.scope() as session:
        for couple, (sender, recipient), status, n, skip in (
            (ours, (ana, ben), "answered", history, 0),
            (ours, (ana, ben), "expired", 2, history),
            (theirs, (cat, dan), "expired", history, 0),
        ):
            shifted = fill.replace("i * interval", f"(i + {skip}) * interval")
            params = {"couple": couple, "sender": sender.id, "recipient": recipient.id}
            session.execute(text(shifted), {**params, "status": status, "n": n})
        other_couples(session.connection())  # a table of many couples, as in production

    pages: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM bids\b", statement, re.DOTALL):
            pages.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        missed = client.get("/api/v1/bids", as_=ben, params={"status": "expired"}).json()
        none = client.get("/api/v1/bids", as_=ben, params={"status": "delivered"}).json()
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert [b["status"] for b in missed["items"]] == ["expired", "expired"]
    assert none["items"] == []
    assert len(pages) == 2, pages
    with app.app_context(), db.scope() as session:
        for statement, parameters in pages:
            read = rows_examined(session.connection(), statement, parameters, "bids")
            assert read <= 10, f"read {read} bids for a page of {history} of history"


_HISTORY = (
    "INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, "
    "created_at, reachable_at, expires_at) SELECT gen_random_uuid(), :couple, :sender, "
    ":recipient, gen_random_uuid(), 'connect', 'answered', t, t, t + interval '1 day' "
    "FROM generate_series(1, :n) AS i, "
    "LATERAL (SELECT now() - (i / 3) * interval '1 hour') AS at(t)"
)


@pytest.mark.postgres
@pytest.mark.parametrize("status", [None, "answered"], ids=["all", "answered"])
def test_a_deep_page_of_bids_reads_that_page_not_every_newer_bid(
    client: ApiClient, app: Flask, status: str | None
) -> None:
    """Years of bids, three at a time at one moment, among a thousand other couples': paging
    back through them all (or those of one status) shows each bid once, newest first, and
    each page reads its own bids, not the couple's thousands of newer ones it comes after,
    nor every older one, nor other couples'."""
    ana, ben = client.couple()
    history, limit = 3000, 200
    ours = client.get("/api/v1/couple", as_=ana).json()["id"]
    with app.app_context(), db.scope() as session:
        params = {"couple": ours, "sender": ana.id, "recipient": ben.id}
        session.execute(text(_HISTORY), {**params, "n": history})
        other_couples(session.connection())
        newest_first = "SELECT id FROM bids WHERE couple_id = :c ORDER BY created_at DESC, id DESC"
        expected = [str(bid_id) for bid_id in session.scalars(text(newest_first), {"c": ours})]
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    shown, reads = every_page(
        app,
        lambda page: client.get("/api/v1/bids", as_=ben, params=page),
        lambda statement: re.match(r"\s*SELECT\b.*\bFROM bids\b", statement, re.DOTALL) is not None,
        params,
    )
    assert shown == expected and len(expected) == history
    assert len(reads) == history // limit, reads
    with app.app_context(), db.scope() as session:
        session.connection().exec_driver_sql("ANALYZE bids")
    assert_each_page_reads_a_page(app, reads, "bids", history, limit, "bids")


def test_too_many_bids_are_429_with_retry_after(server_with: Callable[..., LiveServer]) -> None:
    client = ApiClient(server_with(RATELIMIT_BIDS="2 per minute").url)
    ana, ben = client.couple()
    for _ in range(2):
        send(client, ana)
    limited = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    # The limit is per account: the partner can still reach back.
    send(client, ben)


def test_bids_sent_over_rest_and_the_socket_count_against_one_limit(
    server_with: Callable[..., LiveServer],
) -> None:
    server = server_with(RATELIMIT_BIDS="3 per minute")
    client = ApiClient(server.url)
    ana, _ben = client.couple()
    ana_phone = Phone(server.url, ana.access_token).connect()
    try:
        body = {"kind": "connect"}
        assert "id" in ana_phone.call("bid.send", {**body, "client_id": str(uuid.uuid4())})
        send(client, ana)
        assert "id" in ana_phone.call("bid.send", {**body, "client_id": str(uuid.uuid4())})
        over_rest = client.post(
            "/api/v1/bids", as_=ana, json={**body, "client_id": str(uuid.uuid4())}
        )
        assert over_rest.status_code == 429, over_rest.text
        refused = ana_phone.call("bid.send", {**body, "client_id": str(uuid.uuid4())})
        assert refused["code"] == "rate_limited", refused
        # An ack has no headers: the wait is in the problem, as REST's Retry-After.
        assert 0 < refused["retry_after"] <= int(over_rest.headers["Retry-After"]) + 1, refused
        assert over_rest.json()["retry_after"] == int(over_rest.headers["Retry-After"])
    finally:
        ana_phone.disconnect()


def test_every_limit_of_a_setting_holds_over_the_socket_too(
    server_with: Callable[..., LiveServer],
) -> None:
    client = ApiClient(server_with(RATELIMIT_BIDS="100 per minute;2 per hour").url)
    ana, _ben = client.couple()
    ana_phone = Phone(client.base_url, ana.access_token).connect()
    try:
        sends = [
            ana_phone.call("bid.send", {"kind": "help", "client_id": str(uuid.uuid4())})
            for _ in range(3)
        ]
        assert ["id" in sent for sent in sends[:2]] == [True, True]
        assert sends[2]["code"] == "rate_limited", sends[2]
    finally:
        ana_phone.disconnect()


@pytest.mark.parametrize("listing", ["/api/v1/bids", "/api/v1/repairs"])
@pytest.mark.parametrize(
    "moment",
    ["2031-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    ids=["no-time-zone", "before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_a_page_cursor_the_api_did_not_make_is_422(
    client: ApiClient, listing: str, moment: str
) -> None:
    ana, _ = client.couple()
    forged = base64.urlsafe_b64encode(f"{moment}|{uuid.uuid4()}".encode()).decode()
    response = client.get(listing, as_=ana, params={"before": forged})
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["before"]
