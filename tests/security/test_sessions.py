"""Sessions end for real: deleted, disabled, signed-out and revoked credentials (and the other
phones' after a password change) stop working over REST and sockets, open sockets are cut,
and sockets take tokens only from `auth`.

Refresh-token reuse revoking the whole session family is covered in
tests/api/test_accounts.py::test_reusing_a_refresh_token_revokes_the_whole_family; here we only
add that the revoked session's open sockets close too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import socketio
from flask import Flask
from sqlalchemy import update

from service import create_app
from service.clock import clock
from service.extensions import db
from service.models import AuthSession, RefreshToken
from service.realtime import members
from service.security.tokens import hash_refresh_token
from tests.security.conftest import create_operator, sign_in_operator
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.queue import listening
from tests.support.races import server_disconnects_held, socket_closed
from tests.support.redis_needed import require_redis
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

Connect = Callable[[str | None], Phone]


def refused(connect: Callable[[], Any]) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect()


def cut_off(phone: Phone, what: str) -> None:
    wait_until(lambda: not phone.client.connected, timeout=5, what=what)


def still_open(phone: Phone) -> None:
    """A round trip on the connection (an ack) proves the server still serves it."""
    answer = phone.call("bid.seen", {})
    assert answer["status"] == 422, answer


def open_here(app: Flask, person: Person) -> int:
    with app.app_context():
        return members.open_sockets().count(person.id)


def test_a_deleted_accounts_tokens_are_refused_everywhere(
    client: ApiClient, live_server: LiveServer
) -> None:
    ana = client.register("Ana")
    assert client.delete("/api/v1/me", as_=ana).status_code == 204
    response = client.get("/api/v1/me", as_=ana)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert refresh.status_code == 401
    phone = Phone(live_server.url, ana.access_token)
    refused(phone.connect)
    assert phone.refusal["data"]["code"] == "unauthorized"
    login = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    assert login.status_code == 401
    # The email signed up again is a new account: the old tokens open nothing of it either.
    again = client.register("Ana", email=ana.email)
    assert again.id != ana.id
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert refresh.status_code == 401
    assert client.get("/api/v1/me", as_=again).json()["id"] == again.id


@pytest.mark.parametrize(
    "carrier",
    ["cookie", "authorization header", "query string", "ops cookie name"],
)
def test_the_member_socket_takes_tokens_only_from_auth(
    carrier: str, client: ApiClient, live_server: LiveServer
) -> None:
    """Cookies ride along with any browser request (CSRF): they never authenticate a socket."""
    ana = client.register("Ana")
    url, headers = live_server.url, {}
    if carrier == "cookie":
        headers["Cookie"] = f"access_token={ana.access_token}"
    elif carrier == "authorization header":
        headers["Authorization"] = f"Bearer {ana.access_token}"
    elif carrier == "query string":
        url = f"{url}?token={ana.access_token}&access_token={ana.access_token}"
    else:
        headers["Cookie"] = f"reach_ops={ana.access_token}"
    phone = Phone(url, None)
    refused(lambda: phone.client.connect(url, headers=headers, transports=["websocket"]))
    assert phone.refusal["data"]["code"] == "unauthorized"


def origin_client(origin: str | None, transport: str) -> socketio.Client:
    """A client that sends exactly this Origin (websocket-client adds its own unless told)."""
    if transport == "websocket":
        options = {"suppress_origin": True} if origin is None else {"origin": origin}
        return socketio.Client(reconnection=False, websocket_extra_options=options)
    return socketio.Client(reconnection=False)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_browser_origins_are_checked_and_native_apps_send_none(
    transport: str, client: ApiClient, server_with: Callable[..., LiveServer]
) -> None:
    server = server_with(ALLOWED_ORIGINS=("https://app.example",))
    ana = client.register("Ana")
    auth = {"token": ana.access_token}
    outcomes: dict[str | None, bool] = {}
    for origin in ("https://evil.example", "https://app.example.evil", "https://app.example", None):
        sock = origin_client(origin, transport)
        headers = {"Origin": origin} if origin and transport == "polling" else {}
        try:
            sock.connect(
                server.url, auth=auth, headers=headers, transports=[transport], wait_timeout=5
            )
            outcomes[origin] = sock.connected
        except socketio.exceptions.ConnectionError:
            outcomes[origin] = False
        finally:
            sock.disconnect()
    assert outcomes == {
        "https://evil.example": False,
        "https://app.example.evil": False,
        "https://app.example": True,
        None: True,  # phones send no Origin: the token is the gate
    }


def test_signing_out_closes_that_sessions_sockets_only(
    client: ApiClient, phone: Connect, app: Flask
) -> None:
    ana = client.register("Ana")
    other = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    this_phone, other_phone = phone(ana.access_token), phone(other.json()["access_token"])
    assert open_here(app, ana) == 2
    out = client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token})
    assert out.status_code == 204
    cut_off(this_phone, "the signed-out session's socket to close")
    still_open(other_phone)
    wait_until(lambda: open_here(app, ana) == 1, timeout=5, what="the server to forget it")
    refused(lambda: phone(ana.access_token))


def test_a_phone_that_closes_its_socket_as_it_signs_out_leaves_no_socket_behind(
    server_with: Callable[..., LiveServer],
) -> None:
    """The sign-out cuts the session's socket just as the phone closes it: the account keeps no
    phantom socket (with one socket allowed, it would be refused from then on)."""
    server = server_with(SOCKETS_PER_USER=1)
    client = ApiClient(server.url)
    ana = client.register("Ana")
    phone = Phone(server.url, ana.access_token).connect()
    eio_sid = phone.client.eio.sid
    with ThreadPoolExecutor(1) as background, server_disconnects_held(server.app) as held:
        signing_out = background.submit(
            client.post, "/api/v1/auth/logout", json={"refresh_token": ana.refresh_token}
        )
        assert held.wait(5), "the sign-out did not cut the socket"
        phone.disconnect()
        wait_until(lambda: socket_closed(server.app, eio_sid), what="the socket to close")
    assert signing_out.result(timeout=10).status_code == 204
    wait_until(lambda: open_here(server.app, ana) == 0, timeout=5, what="the server to forget it")
    again = Phone(server.url, client.fresh(ana).access_token).connect()
    again.disconnect()


def test_a_reused_refresh_token_closes_the_revoked_sessions_sockets(
    client: ApiClient, phone: Connect
) -> None:
    ana = client.register("Ana")
    device = phone(ana.access_token)
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert rotated.status_code == 200
    newer = phone(rotated.json()["access_token"])  # the same session, a fresher token
    clock.freeze(clock.now() + timedelta(seconds=30))  # too late for a retry of a lost answer
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert replay.status_code == 401
    cut_off(device, "the revoked session's first socket to close")
    cut_off(newer, "the revoked session's second socket to close")


def test_disabling_an_account_closes_its_sockets(
    app: Flask, client: ApiClient, live_server: LiveServer, phone: Connect
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    ops = sign_in_operator(live_server.url, create_operator(app))
    try:
        response = ops.post(f"/ops/support/users/{ana.id}/disable", data={"csrf_token": ops.csrf()})
        assert response.status_code == 302
    finally:
        ops.http.close()
    cut_off(ana_phone, "the disabled account's socket to close")
    wait_until(lambda: open_here(app, ana) == 0, timeout=5, what="the server to forget it")
    still_open(ben_phone)
    refused(lambda: phone(ana.access_token))
    # The partner's next bid no longer reaches the disabled account over any socket.
    note = f"private-{uuid.uuid4().hex}"
    body = {"client_id": str(uuid.uuid4()), "kind": "share", "note": note}
    sent = client.post("/api/v1/bids", as_=ben, json=body)
    assert sent.status_code == 201
    ben_phone.wait_for("bid.created")
    assert note not in str(ana_phone.events)


def _revoked_in_the_database_alone(person: Person) -> None:
    """The session ends with no message at all (one lost with Redis away, say)."""
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == uuid.UUID(person.id))
        .values(revoked_at=clock.now(), revoked_reason="test")
    )


def _refresh_token_expired(person: Person) -> None:
    """Over (its phone cannot refresh), though the worker's hourly prune deletes it only
    later."""
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(person.refresh_token))
        .values(expires_at=clock.now() - timedelta(seconds=1))
    )


@pytest.mark.parametrize("ending", [_revoked_in_the_database_alone, _refresh_token_expired])
def test_a_socket_whose_session_ended_unannounced_is_closed_by_the_next_check(
    server_with: Callable[..., LiveServer], phones: list[Phone], ending: Callable[[Person], None]
) -> None:
    """The message that closes a session's sockets can be lost (Redis away), and a session
    whose refresh token expired is over without one; each process also looks its sockets'
    sessions up every SOCKET_RECHECK_SECONDS: the socket must not go on receiving the
    couple's events."""
    server = server_with(SOCKET_RECHECK_SECONDS=1)
    client = ApiClient(server.url)
    ana, ben = client.couple()
    ana_phone = Phone(server.url, ana.access_token).connect()
    ben_phone = Phone(server.url, ben.access_token).connect()
    phones.extend([ana_phone, ben_phone])
    with server.app.app_context():
        ending(ana)
        db.session.commit()
    refused = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert refused.status_code == 401, refused.text
    cut_off(ana_phone, "the next check of the sessions to close the socket")
    still_open(ben_phone)


def test_a_socket_whose_refresh_token_expired_writes_nothing_before_the_next_check(
    app: Flask, client: ApiClient, phone: Connect
) -> None:
    """A session whose refresh token expired is over, but until the next check of the
    sessions (SOCKET_RECHECK_SECONDS, a minute) its socket's writes were done and its typing
    passed on, and it could open another socket with an access token still valid: only a
    revoked session was refused. Each write's ack is now the 401 of an ended session."""
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    with app.app_context():
        _refresh_token_expired(ana)
        db.session.commit()
    answer = ana_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "share"})
    assert answer["status"] == 401 and answer["code"] == "unauthorized", answer
    assert "session has ended" in answer["detail"], answer
    ana_phone.client.emit("typing", {})
    refused(lambda: phone(ana.access_token))
    # Ben's socket is served as before, and heard nothing of Ana's.
    still_open(ben_phone)
    assert client.get("/api/v1/bids", as_=ben).json()["items"] == []
    assert ben_phone.named("typing") == []


# --- several processes: a message queue between two servers ----------------------------


@pytest.fixture
def queue_url() -> str:
    return require_redis("the multi-process tests")


@pytest.fixture
def two_processes(
    queue_url: str, database_url: str, server_with: Callable[..., LiveServer]
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two API servers with their own Socket.IO servers, joined by the Redis message queue."""
    yield server_with(REDIS_URL=queue_url), server_with(REDIS_URL=queue_url)
    # flask-limiter's Limiter is one object: the app built last chose its storage (Redis here).
    # Building one more app puts the tests after this one back on in-memory limits.
    create_app(make_settings(database_url))


def test_cutting_an_account_reaches_sockets_in_other_processes(
    client: ApiClient, two_processes: tuple[LiveServer, LiveServer], phones: list[Phone]
) -> None:
    here, there = two_processes
    ana, ben = client.couple()
    far = Phone(there.url, ana.access_token).connect()
    ben_far = Phone(there.url, ben.access_token).connect()
    phones.extend([far, ben_far])
    listening(here, far, ana.id)
    with here.app.app_context():
        members.disconnect_user(ana.id)
    cut_off(far, "the other process to close the account's socket")
    still_open(ben_far)
    # A phone never sees the internal message itself.
    assert members.CUT not in [name for name, _ in ben_far.events]


def test_cutting_a_session_reaches_sockets_in_other_processes(
    client: ApiClient, two_processes: tuple[LiveServer, LiveServer], phones: list[Phone]
) -> None:
    here, there = two_processes
    ana = client.register("Ana")
    second = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    far = Phone(there.url, ana.access_token).connect()
    far_second = Phone(there.url, second.json()["access_token"]).connect()
    phones.extend([far, far_second])
    listening(here, far, ana.id)
    out = ApiClient(here.url).post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token})
    assert out.status_code == 204
    cut_off(far, "the other process to close the signed-out session's socket")
    still_open(far_second)


def test_deleting_the_account_closes_its_sockets_in_every_process(
    client: ApiClient, two_processes: tuple[LiveServer, LiveServer], phones: list[Phone]
) -> None:
    """The deletion is served by one process; the account's phone holds its socket on
    another, where its partner's phone stays connected and is told the couple ended."""
    here, there = two_processes
    ana, ben = client.couple()
    far = Phone(there.url, ana.access_token).connect()
    ben_far = Phone(there.url, ben.access_token).connect()
    phones.extend([far, ben_far])
    listening(here, far, ana.id)
    assert ApiClient(here.url).delete("/api/v1/me", as_=ana).status_code == 204
    cut_off(far, "the deleted account's socket on the other process to close")
    assert ben_far.wait_for("couple.ended")["data"]["reason"] == "account_deleted"
    still_open(ben_far)


def test_an_operator_disabling_an_account_cuts_its_sockets_in_every_process(
    app: Flask,
    client: ApiClient,
    two_processes: tuple[LiveServer, LiveServer],
    phones: list[Phone],
) -> None:
    """Behind the load balancer the account's phone may hold its socket on another process.

    service/dashboard/support.py closes only the sockets of the process that served the
    operator (`live.disconnect_room`): the phone elsewhere keeps receiving the couple's events.
    """
    here, there = two_processes
    ana, _ben = client.couple()
    far = Phone(there.url, ana.access_token).connect()
    phones.append(far)
    listening(here, far, ana.id)
    ops = sign_in_operator(here.url, create_operator(app))
    try:
        response = ops.post(f"/ops/support/users/{ana.id}/disable", data={"csrf_token": ops.csrf()})
        assert response.status_code == 302
    finally:
        ops.http.close()
    cut_off(far, "the disabled account's socket on the other process to close")


def test_a_new_password_cuts_the_other_phones_sockets_in_every_process(
    client: ApiClient, two_processes: tuple[LiveServer, LiveServer], phones: list[Phone]
) -> None:
    """The change is served by one process; the other phone's socket is held by another, and
    this phone's own socket, there too, stays open."""
    here, there = two_processes
    ana = client.register("Ana")
    other = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    this_socket = Phone(there.url, ana.access_token).connect()
    other_socket = Phone(there.url, other.json()["access_token"]).connect()
    phones.extend([this_socket, other_socket])
    listening(here, other_socket, ana.id)
    body = {"current_password": ana.password, "new_password": "a new passphrase"}
    changed = ApiClient(here.url).post("/api/v1/me/password", as_=ana, json=body)
    assert changed.status_code == 204, changed.text
    cut_off(other_socket, "the other process to close the other phone's socket")
    still_open(this_socket)
