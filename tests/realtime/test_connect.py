"""Socket.IO connections: token auth on connect, rooms, couple events, typing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
import socketio

from service.clock import clock
from service.realtime import members, rooms, transport
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.races import hang_up_while_connecting
from tests.support.server import LiveServer

Connect = Callable[[str | None], Phone]


def test_a_phone_connects_with_its_access_token(client: ApiClient, phone: Connect) -> None:
    ana = client.register("Ana")
    device = phone(ana.access_token)
    assert device.client.connected


def test_sockets_are_served_by_the_lean_transport(
    client: ApiClient, phone: Connect, live_server: LiveServer
) -> None:
    """engineio's server and sockets are the transport's (service/realtime/transport/)."""
    eio = live_server.app.extensions["socketio"].server.eio
    assert isinstance(eio, transport.LeanServer)
    device = phone(client.register("Ana").access_token)
    sid = device.client.eio.sid
    assert type(eio.sockets[sid]) is transport.LeanSocket
    assert eio.sockets[sid].upgraded


def test_a_socket_is_only_in_its_users_and_its_sessions_rooms(
    client: ApiClient, phone: Connect, live_server: LiveServer
) -> None:
    """Events reach sockets through their users' rooms. No room is the couple's: a socket would
    stay in it after an unpair, and hear what is sent to a couple it has left."""
    ana, _ben = client.couple()
    device = phone(ana.access_token)
    sid = device.client.get_sid("/")
    session_id = jwt.decode(ana.access_token, options={"verify_signature": False})["sid"]
    manager = live_server.app.extensions["socketio"].server.manager
    joined = set(manager.get_rooms(sid, "/"))
    assert joined == {sid, rooms.user_room(ana.id), rooms.session_room(session_id)}


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "eyJhbGciOiJub25lIn0.e30."])
def test_connections_without_a_valid_token_are_refused(
    live_server: LiveServer, token: str | None
) -> None:
    device = Phone(live_server.url, token)
    with pytest.raises(socketio.exceptions.ConnectionError):
        device.connect()
    assert device.refusal["data"]["code"] == "unauthorized"
    assert device.refusal["data"]["status"] == 401
    assert device.refusal["message"] == device.refusal["data"]["detail"]


def test_a_tampered_or_expired_token_is_refused(client: ApiClient, phone: Connect) -> None:
    ana = client.register("Ana")
    header, payload, signature = ana.access_token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(socketio.exceptions.ConnectionError):
        phone(tampered)
    clock.freeze(clock.now() + timedelta(hours=1))
    with pytest.raises(socketio.exceptions.ConnectionError):
        phone(ana.access_token)


def test_a_token_sent_with_its_bearer_scheme_is_refused_saying_so(
    client: ApiClient, live_server: LiveServer
) -> None:
    """`auth.token` is the access token alone. An app that copies the REST header's value
    into it was told that the token is not valid and to sign in again; following the guide
    (refresh on 401, sign in when that fails) it refreshed and was refused in a loop."""
    ana = client.register("Ana")
    for scheme in ("Bearer ", "bearer "):
        device = Phone(live_server.url, scheme + ana.access_token)
        with pytest.raises(socketio.exceptions.ConnectionError):
            device.connect()
        assert device.refusal["data"]["status"] == 401
        assert "without 'Bearer '" in device.refusal["data"]["detail"], device.refusal
        assert "sign in" not in device.refusal["data"]["detail"]


def test_a_signed_out_session_cannot_connect(client: ApiClient, phone: Connect) -> None:
    ana = client.register("Ana")
    client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token})
    with pytest.raises(socketio.exceptions.ConnectionError):
        phone(ana.access_token)


def test_both_phones_hear_of_the_pairing_with_the_same_envelope(
    client: ApiClient, phone: Connect
) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    couple = client.pair(ana, ben)
    for device in (ana_phone, ben_phone):
        event = device.wait_for("couple.paired")
        assert event["cursor"] == 1
        assert event["couple_id"] == couple["id"]
        assert event["type"] == "couple.paired"
        assert event["at"].endswith("Z")
        assert event["data"]["couple_id"] == couple["id"]
        # The inviter's phone shows whom it paired with without asking GET /couple.
        assert event["data"]["partners"] == [
            {"id": ana.id, "display_name": "Ana", "timezone": "Europe/Berlin"},
            {"id": ben.id, "display_name": "Ben", "timezone": "Europe/Berlin"},
        ]
        assert event["data"]["partner_ids"] == [ana.id, ben.id]
    assert client.get("/api/v1/couple", as_=ana).json()["partner"] in event["data"]["partners"]
    synced = client.get("/api/v1/sync", as_=ana, params={"since": 0}).json()
    assert synced["couple_id"] == couple["id"]
    assert synced["events"] == [ana_phone.wait_for("couple.paired")]
    assert synced["next"] == 1
    assert synced["has_more"] is False


def test_a_stranger_hears_nothing_of_a_couple(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    stranger = client.register("Sol")
    watcher = phone(stranger.access_token)
    ana_phone = phone(ana.access_token)
    client.pair(ana, ben)
    ana_phone.wait_for("couple.paired")
    client.delete("/api/v1/couple", as_=ana)
    ana_phone.wait_for("couple.ended")
    assert watcher.events == []
    assert client.get("/api/v1/sync", as_=stranger).status_code == 404


def test_typing_reaches_only_the_partner(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    stranger = client.register("Sol")
    ana_phone, ben_phone, watcher = (
        phone(ana.access_token),
        phone(ben.access_token),
        phone(stranger.access_token),
    )
    repair_id = repair_helpers.start(client, ana)["id"]
    ana_phone.client.emit("typing", {"repair_id": repair_id.upper()})
    assert ben_phone.wait_for("typing") == {"user_id": ana.id, "repair_id": repair_id}
    watcher.client.emit("typing", {})
    ben_phone.client.emit("typing", {})
    ana_phone.wait_for("typing")
    assert watcher.events == []
    assert ana_phone.named("typing") == [{"user_id": ben.id}]


def test_typing_follows_the_couple_as_it_is_now(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    client.delete("/api/v1/couple", as_=ana)
    ben_phone.wait_for("couple.ended")
    cat = client.register("Cat")
    client.pair(ana, cat)
    cat_phone = phone(cat.access_token)
    ana_phone.client.emit("typing", {})
    assert cat_phone.wait_for("typing") == {"user_id": ana.id}
    ben_phone.client.emit("typing", {})  # Ben is single now: nobody hears it
    again = repair_helpers.start(client, cat)["id"]
    ana_phone.client.emit("typing", {"repair_id": again})
    cat_phone.wait_for("typing", lambda data: data.get("repair_id") == again)
    assert ben_phone.named("typing") == []
    assert ana_phone.named("typing") == []


def test_a_socket_passes_typing_on_at_most_once_a_second(
    server_with: Callable[..., LiveServer],
) -> None:
    """A phone that sends `typing` without pause (SOCKET_TYPING_EVERY_MS, 1 s by default): the
    partner hears the first, the rest are dropped before any lookup; another socket of the
    same account is counted apart."""
    server = server_with(SOCKET_TYPING_EVERY_MS=1000)
    ana, ben = ApiClient(server.url).couple()
    ana_phone = Phone(server.url, ana.access_token).connect()
    ana_tablet = Phone(server.url, ana.access_token).connect()
    ben_phone = Phone(server.url, ben.access_token).connect()
    started = [repair_helpers.start(ApiClient(server.url), ana)["id"] for _ in range(6)]
    burst, tablet = started[:5], started[5]
    try:
        for repair_id in burst:
            ana_phone.client.emit("typing", {"repair_id": repair_id})
        assert ben_phone.wait_for("typing") == {"user_id": ana.id, "repair_id": burst[0]}
        ana_tablet.client.emit("typing", {"repair_id": tablet})
        ben_phone.wait_for("typing", lambda data: data.get("repair_id") == tablet)
        heard = [data["repair_id"] for data in ben_phone.named("typing")]
        assert heard == [burst[0], tablet]
    finally:
        for device in (ana_phone, ana_tablet, ben_phone):
            device.disconnect()


def test_a_phone_that_hangs_up_while_connecting_leaves_no_socket_behind(
    server_with: Callable[..., LiveServer],
) -> None:
    """The network drops while the server still checks the token: the account must not keep a
    phantom socket (with one socket allowed, it would be refused from then on)."""
    server = server_with(SOCKETS_PER_USER=1)
    client = ApiClient(server.url)
    ana, ben = client.couple()
    hang_up_while_connecting(server.app, server.url, "/", auth={"token": ana.access_token})

    sio = server.app.extensions["socketio"].server
    with server.app.app_context():
        assert members.open_sockets().count(ana.id) == 0
    assert list(sio.manager.get_participants("/", rooms.user_room(ana.id))) == []
    ana_phone = Phone(server.url, ana.access_token).connect()
    try:
        sent = client.post(
            "/api/v1/bids", as_=ben, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        )
        assert sent.status_code == 201, sent.text
        ana_phone.wait_for("bid.created", lambda event: event["data"]["id"] == sent.json()["id"])
    finally:
        ana_phone.disconnect()


def test_typing_about_a_conversation_not_of_the_couple_is_dropped(
    client: ApiClient, phone: Connect
) -> None:
    """A `repair_id` names one of the caller's live couple's conversations or nothing is passed
    on: not a former couple's, not another couple's, not an id made up."""
    ana, fay = client.couple("Ana", "Fay")
    old = repair_helpers.start(client, fay)["id"]
    client.delete("/api/v1/couple", as_=ana)
    ben = client.register("Ben")
    client.pair(ana, ben)
    cy, _dee = client.couple("Cy", "Dee")
    theirs = repair_helpers.start(client, cy)["id"]
    ours = repair_helpers.start(client, ben)["id"]
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    for named in (old, theirs, str(uuid.uuid4())):
        ana_phone.client.emit("typing", {"repair_id": named})
    ana_phone.client.emit("typing", {"repair_id": ours})
    ben_phone.wait_for("typing", lambda data: data.get("repair_id") == ours)
    assert ben_phone.named("typing") == [{"user_id": ana.id, "repair_id": ours}]


@pytest.mark.parametrize("named", ["r-1", "\ud800", "", 7, ["x"]])
def test_typing_passes_on_only_a_conversation_id(
    client: ApiClient, phone: Connect, named: object
) -> None:
    """Whatever else a phone puts in `repair_id` stays with it: the partner hears that it
    types, not a string it made up (a lone surrogate breaks the partner's JSON decoder)."""
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    ana_phone.client.emit("typing", {"repair_id": named})
    assert ben_phone.wait_for("typing") == {"user_id": ana.id}
