"""Bids in real time: delivery over Socket.IO, socket writes with acknowledgements."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from flask import Flask

from service.extensions import db
from service.services import accounts
from tests.support.client import ApiClient
from tests.support.phones import Phone

Connect = Callable[[str | None], Phone]


def test_the_partner_receives_the_bid_within_a_second_and_the_sender_the_answer(
    client: ApiClient, phone: Connect
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    started = time.monotonic()
    posted = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    created = ben_phone.wait_for("bid.created", timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert created["data"] == posted
    assert created["type"] == "bid.created"

    response = client.post(
        f"/api/v1/bids/{posted['id']}/responses",
        as_=ben,
        json={"client_id": str(uuid.uuid4()), "kind": "toward"},
    ).json()
    answered = ana_phone.wait_for("bid.answered")
    assert answered["data"] == response
    assert answered["data"]["outcome"] == "toward"

    # Both phones hold the same gapless stream, and sync agrees with it.
    for device in (ana_phone, ben_phone):
        device.wait_for("bid.answered")
        cursors = [data["cursor"] for name, data in device.events if name.startswith("bid.")]
        assert cursors == [2, 3]
    synced = client.get("/api/v1/sync", as_=ben, params={"since": 0}).json()["events"]
    assert [e["cursor"] for e in synced] == [1, 2, 3]
    assert synced[1:] == [created, answered]


def test_socket_writes_answer_with_the_resource(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    client_id = str(uuid.uuid4())
    body = {"client_id": client_id, "kind": "share", "note": "news!"}
    bid = ana_phone.call("bid.send", body)
    assert bid["sender_id"] == ana.id and bid["note"] == "news!"
    assert ben_phone.wait_for("bid.created")["data"] == bid
    # A retry over the socket returns the original and emits nothing new.
    assert ana_phone.call("bid.send", body) == bid

    seen = ben_phone.call("bid.seen", {"bid_id": bid["id"]})
    assert seen["status"] == "seen"
    later = ben_phone.call(
        "bid.respond",
        {
            "bid_id": bid["id"],
            "client_id": str(uuid.uuid4()),
            "kind": "later",
            "back_at": "2099-01-01T00:00:00Z",
        },
    )
    assert later["code"] == "validation_error" and "back_at" in later["errors"]
    toward = ben_phone.call(
        "bid.respond", {"bid_id": bid["id"], "client_id": str(uuid.uuid4()), "kind": "toward"}
    )
    assert toward["response"] == "toward"
    assert ana_phone.wait_for("bid.answered")["data"] == toward
    assert [name for name, _ in ben_phone.events if name == "bid.created"] == ["bid.created"]
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ana).json() == toward


def test_socket_writes_refuse_bad_payloads_and_strangers(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    stranger = client.register("Sol")
    ana_phone, sol_phone = phone(ana.access_token), phone(stranger.access_token)
    bid = ana_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "help"})

    bad = ana_phone.call("bid.send", {"kind": "nope"})
    assert bad["status"] == 422 and {"client_id", "kind"} <= set(bad["errors"])
    assert ana_phone.call("bid.send", "not an object")["status"] == 422
    own = ana_phone.call(
        "bid.respond", {"bid_id": bid["id"], "client_id": str(uuid.uuid4()), "kind": "toward"}
    )
    assert own["code"] == "forbidden"
    for event, payload in (
        ("bid.seen", {"bid_id": bid["id"]}),
        ("bid.respond", {"bid_id": bid["id"], "client_id": str(uuid.uuid4()), "kind": "toward"}),
        ("bid.send", {"client_id": str(uuid.uuid4()), "kind": "help"}),
    ):
        answer = sol_phone.call(event, payload)
        assert answer["status"] == 404 and answer["code"] == "not_found", (event, answer)
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()["status"] == "sent"


def test_a_signed_out_phone_can_no_longer_write(
    app: Flask, client: ApiClient, phone: Connect
) -> None:
    """Signing out closes the session's sockets (tests/security/test_sessions.py). Should one
    stay open all the same (the close lost on its way to another process), every write
    checks the session again."""
    ana, _ = client.couple()
    ana_phone = phone(ana.access_token)
    with app.app_context():  # the session ends without anyone closing the socket
        accounts.revoke_all_sessions(db.session, uuid.UUID(ana.id), "logout", 900)
        db.session.commit()
    answer = ana_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect"})
    assert answer["status"] == 401


def test_a_bid_sent_over_the_socket_names_the_couple_it_was_written_in(
    client: ApiClient, phone: Connect
) -> None:
    """docs/mobile.md §8: `bid.send` takes the REST body, `couple_id` included. Ben's socket
    opened while he was with Ana (the process remembers him in that couple); Ana unpaired and
    Ben paired with Cat before his phone sent the bid it kept: the ack is the 409, and Cat's
    phone gets only the bid Ben then sends in their own couple."""
    ana, ben = client.couple()
    written_in = client.get("/api/v1/couple", as_=ben).json()["id"]
    ben_phone = phone(ben.access_token)
    warm = ben_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect"})
    assert warm["status"] == "sent"
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    cat = client.register("Cat")
    client.pair(cat, ben)
    cat_phone = phone(cat.access_token)
    draft = {"client_id": str(uuid.uuid4()), "kind": "comfort", "couple_id": written_in}

    refused = ben_phone.call("bid.send", draft)
    assert refused["status"] == 409 and refused["code"] == "conflict", refused
    assert "pairing that has ended" in refused["detail"]
    now_in = client.get("/api/v1/couple", as_=ben).json()["id"]
    taken = ben_phone.call("bid.send", {**draft, "couple_id": now_in})
    assert taken["status"] == "sent" and taken["recipient_id"] == cat.id
    assert cat_phone.wait_for("bid.created")["data"] == taken
    assert [name for name, _ in cat_phone.events if name == "bid.created"] == ["bid.created"]
