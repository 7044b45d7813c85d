"""Abuse limits: sign-in and sign-up per address and per account, refreshes per sign-in
session, password changes per account, invite-code guessing per account and per address, open
sockets per account, and request sizes (REST and sockets).

Addresses are simulated with X-Forwarded-For on a server that trusts one proxy hop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import socketio
import websocket

from service.extensions import db
from service.models import RefreshToken
from service.realtime import members
from service.security.tokens import hash_refresh_token
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

Server = Callable[..., LiveServer]


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def login(client: ApiClient, email: str, password: str, address: str) -> int:
    body = {"email": email, "password": password}
    return client.post("/api/v1/auth/login", json=body, headers=from_address(address)).status_code


def assert_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_guessing_one_accounts_password_from_many_addresses_is_throttled(
    server_with: Server,
) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="3 per minute")
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")
    wrong = [login(client, ana.email, "wrong password", f"203.0.113.{n}") for n in range(3)]
    assert wrong == [401, 401, 401]
    # A fourth address gets nowhere with Ana's account, even with the right password ...
    body = {"email": ana.email.upper(), "password": PASSWORD}
    limited = client.post("/api/v1/auth/login", json=body, headers=from_address("198.51.100.7"))
    assert_limited(limited)
    # ... while the same addresses still sign in to other accounts.
    assert login(client, ben.email, PASSWORD, "203.0.113.0") == 200


def test_only_failed_sign_ins_count_against_an_account(server_with: Server) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="3 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    signed_in = [login(client, ana.email, PASSWORD, f"203.0.113.{n}") for n in range(6)]
    assert signed_in == [200] * 6


def test_wrong_passwords_sent_at_once_are_held_to_the_accounts_limit(
    server_with: Server,
) -> None:
    """Each sign-in counts as it arrives, so sign-ins in flight together cannot all get past
    the account's limit before the first refusal is counted."""
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="3 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")

    def guess(n: int) -> int:
        body = {"email": ana.email, "password": f"wrong password {n}"}
        headers = from_address(f"203.0.113.{n}")
        url = f"{server.url}/api/v1/auth/login"
        return requests.post(url, json=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = sorted(pool.map(guess, range(12)))
    assert statuses == [401] * 3 + [429] * 9
    assert login(client, ana.email, PASSWORD, "198.51.100.7") == 429


def test_a_refused_sign_in_stays_counted_and_the_others_are_given_back(
    server_with: Server,
) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="2 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    malformed = client.post(
        "/api/v1/auth/login", json={"email": ana.email}, headers=from_address("203.0.113.1")
    )
    assert malformed.status_code == 422
    attempts = [
        login(client, ana.email, PASSWORD, "203.0.113.2"),
        login(client, ana.email, "wrong password", "203.0.113.3"),
        login(client, ana.email, PASSWORD, "203.0.113.4"),
        login(client, ana.email, "wrong password", "203.0.113.5"),
        login(client, ana.email, PASSWORD, "203.0.113.6"),
    ]
    assert attempts == [200, 401, 200, 401, 429]


def test_sign_ins_from_one_address_are_throttled_across_accounts(server_with: Server) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH="3 per minute")
    client = ApiClient(server.url)
    emails = [f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.test" for n in range(4)]
    statuses = [login(client, email, "wrong password", "203.0.113.9") for email in emails]
    assert statuses == [401, 401, 401, 429]
    assert login(client, emails[0], "wrong password", "203.0.113.10") == 401  # another address


def test_an_ipv6_client_is_one_address_for_its_whole_64(server_with: Server) -> None:
    """A host or subscriber holds a whole /64: a fresh address from it is no fresh limit."""
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH="3 per minute")
    client = ApiClient(server.url)
    emails = [f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.test" for n in range(4)]
    one_64 = ["2001:db8:7:9::1", "2001:db8:7:9::2", "2001:db8:7:9:ffff:1:2:3", "2001:db8:7:9::4"]
    statuses = [login(client, e, "wrong password", a) for e, a in zip(emails, one_64, strict=True)]
    assert statuses == [401, 401, 401, 429]
    assert login(client, emails[0], "wrong password", "2001:db8:7:a::1") == 401  # another /64


def test_sign_ups_are_throttled_per_email_and_per_address(server_with: Server) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH="3 per minute")
    client = ApiClient(server.url)

    def register(email: str, address: str, password: str = PASSWORD) -> Any:
        body = {"email": email, "password": password, "display_name": "X", "timezone": "UTC"}
        return client.post("/api/v1/auth/register", json=body, headers=from_address(address))

    one = f"probe-{uuid.uuid4().hex[:8]}@example.test"
    statuses = [register(one, "203.0.113.1", f"password number {n}") for n in range(3)]
    assert [response.status_code for response in statuses] == [201, 409, 409]
    assert_limited(register(f"other-{uuid.uuid4().hex[:8]}@example.test", "203.0.113.1"))

    per_email = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="2 per minute")
    other = ApiClient(per_email.url)
    two = f"probe-{uuid.uuid4().hex[:8]}@example.test"
    codes = []
    for n in range(3):
        body = {"email": two, "password": f"password {n}", "display_name": "X", "timezone": "UTC"}
        headers = from_address(f"198.51.100.{n}")
        sent = other.post("/api/v1/auth/register", json=body, headers=headers)
        codes.append(sent.status_code)
    assert codes == [201, 409, 429]


def sign_up_again(client: ApiClient, who: Person, password: str, address: str) -> Any:
    """`who`'s sign-up sent again (from `address`), as after an answer lost."""
    body = {"email": who.email, "password": password, "display_name": "X", "timezone": "UTC"}
    return client.post("/api/v1/auth/register", json=body, headers=from_address(address))


def test_a_sign_up_sent_again_is_a_sign_in_under_the_accounts_limit(
    server_with: Server,
) -> None:
    """A sign-up of a new account with its password signs in to it: one with a wrong password
    is a failed sign-in, so sign-ups cannot guess a password faster than sign-ins do."""
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="3 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    assert login(client, ana.email, "wrong password", "203.0.113.1") == 401
    assert sign_up_again(client, ana, "wrong password 2", "203.0.113.2").status_code == 409
    assert login(client, ana.email, "wrong password 3", "203.0.113.3") == 401
    # The account's three failures are spent: neither way signs in now, right password or not.
    assert_limited(sign_up_again(client, ana, PASSWORD, "198.51.100.7"))
    assert login(client, ana.email, PASSWORD, "198.51.100.8") == 429


def test_a_sign_up_sent_again_that_signs_in_is_given_back(server_with: Server) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH_EMAIL="3 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    assert sign_up_again(client, ana, PASSWORD, "203.0.113.1").status_code == 200
    assert sign_up_again(client, ana, PASSWORD, "203.0.113.2").status_code == 200
    # Two sign-ins that succeeded left the account's count of failures as it was.
    assert [login(client, ana.email, "wrong", f"198.51.100.{n}") for n in range(4)] == [
        401,
        401,
        401,
        429,
    ]


def test_a_sign_up_sent_again_counts_as_a_sign_in_of_its_address(server_with: Server) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_AUTH="3 per minute")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    emails = [f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.test" for n in range(3)]
    assert [login(client, email, "wrong", "203.0.113.9") for email in emails] == [401] * 3
    assert_limited(sign_up_again(client, ana, PASSWORD, "203.0.113.9"))
    assert sign_up_again(client, ana, PASSWORD, "203.0.113.10").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/login"])
def test_a_sign_up_or_sign_in_refused_unread_does_not_use_up_the_limits(
    server_with: Server, path: str
) -> None:
    """A phone whose HTTP client sent its first tries as a form or text (415) or broken JSON
    (400) had used up its address's sign-ups and its email's, and was told to wait when it
    sent the right body. Only a body read counts: one refused for a field short (422), or one
    that could create an account (201, or 409 for an email taken) or sign in (200, 401)."""
    server = server_with(
        TRUSTED_PROXIES=1, RATELIMIT_AUTH="3 per minute", RATELIMIT_AUTH_EMAIL="3 per minute"
    )
    client = ApiClient(server.url)
    email = f"first-{uuid.uuid4().hex[:8]}@example.test"
    if path.endswith("/login"):
        client.register("Ana", email=email)
    body = {"email": email, "password": PASSWORD, "display_name": "X", "timezone": "UTC"}
    if path.endswith("/login"):
        body = {"email": email, "password": PASSWORD}
    here = from_address("203.0.113.1")
    form = client.post(path, data=body, headers=here)
    text = client.post(path, data=json.dumps(body), headers={**here, "Content-Type": "text/plain"})
    broken = client.post(
        path, data=json.dumps(body)[:-1], headers={**here, "Content-Type": "application/json"}
    )
    short = client.post(path, json={"email": email}, headers=here)
    assert [r.status_code for r in (form, text, broken, short)] == [415, 415, 400, 422]
    assert client.post(path, json=body, headers=here).status_code in (200, 201)
    # What was read counts as before, the field short too: one more from the address, then it
    # waits.
    other = {**body, "email": f"other-{uuid.uuid4().hex[:8]}@example.test"}
    assert client.post(path, json=other, headers=here).status_code in (201, 401)
    assert_limited(client.post(path, json=body, headers=here))


def test_push_token_registrations_are_limited_per_account(server_with: Server) -> None:
    server = server_with(RATELIMIT_DEVICES="2 per hour")
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")

    def register_device(who: Person) -> Any:
        token = {"platform": "android", "push_token": f"token-{uuid.uuid4().hex}"}
        return client.post("/api/v1/devices", as_=who, json=token)

    assert [register_device(ana).status_code for _ in range(2)] == [201, 201]
    assert_limited(register_device(ana))
    assert register_device(ben).status_code == 201
    assert len(client.get("/api/v1/devices", as_=ana).json()["items"]) == 2


def test_refreshes_are_limited_per_sign_in_session(server_with: Server) -> None:
    """Each refresh stores a token: one session cannot rotate without end. The refused token
    stays good, and the account's other sessions refresh as usual."""
    server = server_with(RATELIMIT_REFRESH="2 per hour")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    other = client.post("/api/v1/auth/login", json={"email": ana.email, "password": PASSWORD})
    token = ana.refresh_token
    for _ in range(2):
        rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert rotated.status_code == 200, rotated.text
        token = rotated.json()["refresh_token"]
    assert_limited(client.post("/api/v1/auth/refresh", json={"refresh_token": token}))
    elsewhere = {"refresh_token": other.json()["refresh_token"]}
    assert client.post("/api/v1/auth/refresh", json=elsewhere).status_code == 200
    # Not used up by the refusal: once the hour is over, the phone refreshes with it.
    with server.app.app_context():
        stored = db.session.get(RefreshToken, hash_refresh_token(token))
        assert stored is not None and stored.used_at is None


def test_a_session_out_of_refreshes_still_reveals_a_reused_token(server_with: Server) -> None:
    """Someone who took the phone's token rotates it until the session's refreshes run out.
    The phone's own token, used by then, must still get its 401 and end the session, not a
    429 that would hide the theft. Nor is a token that is no session's ever limited."""
    server = server_with(RATELIMIT_REFRESH="2 per hour")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    token = ana.refresh_token
    for _ in range(2):
        token = client.post("/api/v1/auth/refresh", json={"refresh_token": token}).json()[
            "refresh_token"
        ]
    assert_limited(client.post("/api/v1/auth/refresh", json={"refresh_token": token}))
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert reused.status_code == 401, reused.text
    ended = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert ended.status_code == 401, ended.text  # the session is revoked: no more rotations
    for n in range(5):
        unknown = client.post("/api/v1/auth/refresh", json={"refresh_token": f"rt_gone_{n}"})
        assert unknown.status_code == 401, unknown.text


def test_a_retried_refresh_counts_as_a_rotation(server_with: Server) -> None:
    """A retry of a refresh whose answer was lost stores a token as a rotation does, so it
    counts as one for its session: retries cannot store tokens without end either."""
    server = server_with(RATELIMIT_REFRESH="2 per hour")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    body = {"refresh_token": ana.refresh_token}
    assert client.post("/api/v1/auth/refresh", json=body).status_code == 200
    retried = client.post("/api/v1/auth/refresh", json=body)
    assert retried.status_code == 200, retried.text
    assert_limited(client.post("/api/v1/auth/refresh", json=body))
    # The limit refused that retry before it replaced anything: the last answer still works.
    with server.app.app_context():
        stored = db.session.get(RefreshToken, hash_refresh_token(retried.json()["refresh_token"]))
        assert stored is not None and stored.used_at is None


def test_a_refresh_token_that_cannot_be_encoded_is_refused_not_a_server_error(
    client: ApiClient,
) -> None:
    """A lone surrogate is refused by the schemas, as any text field's is (422, naming it)."""
    body = json.dumps({"refresh_token": "\ud800"})
    headers = {"Content-Type": "application/json"}
    for path in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
        answer = client.post(path, data=body, headers=headers)
        assert answer.status_code == 422, (path, answer.text)
        assert "refresh_token" in answer.json()["errors"], (path, answer.text)


def test_invite_codes_cannot_be_guessed_with_many_accounts_from_one_address(
    server_with: Server,
) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_JOIN_ADDRESS="3 per hour")
    client = ApiClient(server.url)
    guessers = [client.register(f"G{n}") for n in range(4)]

    def guess(who: Person, address: str) -> Any:
        return client.post(
            "/api/v1/couple/join",
            as_=who,
            json={"code": "ZZZZ-ZZZZ"},
            headers=from_address(address),
        )

    assert [guess(who, "203.0.113.5").status_code for who in guessers[:3]] == [422] * 3
    assert_limited(guess(guessers[3], "203.0.113.5"))
    assert guess(guessers[3], "203.0.113.6").status_code == 422  # another address


def test_couples_pairing_behind_one_address_are_not_taken_for_guessers(
    server_with: Server,
) -> None:
    """Phones on one carrier's NAT, or one office's Wi-Fi, share an address. Every join from it
    was counted against the limit of code guessing from an address, those that paired too: past
    it, the next couple there to type a right code was refused (429). Only wrong codes count."""
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_JOIN_ADDRESS="2 per hour")
    client = ApiClient(server.url)
    shared = from_address("203.0.113.5")
    for n in range(3):
        inviter, joiner = client.register(f"I{n}"), client.register(f"J{n}")
        code = client.post("/api/v1/couple/invites", as_=inviter).json()["code"]
        joined = client.post("/api/v1/couple/join", as_=joiner, json={"code": code}, headers=shared)
        assert joined.status_code == 201, (n, joined.text)
    guessers = [client.register(f"G{n}") for n in range(3)]
    wrong = [
        client.post(
            "/api/v1/couple/join", as_=who, json={"code": "ZZZZ-ZZZZ"}, headers=shared
        ).status_code
        for who in guessers[:2]
    ]
    assert wrong == [422, 422]
    assert_limited(
        client.post(
            "/api/v1/couple/join", as_=guessers[2], json={"code": "ZZZZ-ZZZZ"}, headers=shared
        )
    )


def test_invite_codes_cannot_be_guessed_by_one_account_from_many_addresses(
    server_with: Server,
) -> None:
    server = server_with(TRUSTED_PROXIES=1, RATELIMIT_JOIN="2 per hour")
    client = ApiClient(server.url)
    guesser = client.register("G")
    statuses = [
        client.post(
            "/api/v1/couple/join",
            as_=guesser,
            json={"code": "ZZZZ-ZZZZ"},
            headers=from_address(f"203.0.113.{n}"),
        ).status_code
        for n in range(3)
    ]
    assert statuses == [422, 422, 429]


def test_an_account_may_hold_a_bounded_number_of_sockets(server_with: Server) -> None:
    server = server_with(SOCKETS_PER_USER=2)
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")
    opened = [Phone(server.url, ana.access_token).connect() for _ in range(2)]
    extra = Phone(server.url, ana.access_token)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            extra.connect()
        assert extra.refusal["data"]["status"] == 429
        assert extra.refusal["data"]["code"] == "rate_limited"
        assert "2 connections" in extra.refusal["message"]
        # As every 429 problem: how long to wait, here until a socket that died unseen is
        # dropped (a ping missed), rather than a phone retrying at once.
        settings = server.app.extensions["reach.settings"]
        reaped = settings.SOCKET_PING_INTERVAL + settings.SOCKET_PING_TIMEOUT
        assert extra.refusal["data"]["retry_after"] == reaped
        ben_phone = Phone(server.url, ben.access_token).connect()  # others are not affected
        opened.append(ben_phone)
        # Closing one makes room again, once the server has seen it go.
        opened[0].disconnect()

        def open_for_ana() -> int:
            with server.app.app_context():
                return members.open_sockets().count(ana.id)

        wait_until(lambda: open_for_ana() == 1, timeout=5, what="the server to forget a socket")
        opened.append(Phone(server.url, ana.access_token).connect())
        assert open_for_ana() == 2
    finally:
        for phone in opened:
            phone.disconnect()


def seconds_until_closed(ws: websocket.WebSocket, within: float) -> float | None:
    """How long until the server closed the WebSocket (None: still open after `within`)."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        try:
            if not ws.recv():  # a close frame reads as empty
                return time.monotonic() - began
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return time.monotonic() - began
        except websocket.WebSocketTimeoutException:
            continue
    return None


def test_a_socket_that_never_authenticates_is_closed(server_with: Server) -> None:
    """Opening Engine.IO sockets without joining a namespace (no token) cannot hold the
    process's socket slots: each is closed SOCKET_CONNECT_TIMEOUT seconds after it opened,
    while a phone that connected with its token stays."""
    server = server_with(SOCKET_CONNECT_TIMEOUT=1)
    ana = ApiClient(server.url).register("Ana")
    phone = Phone(server.url, ana.access_token).connect()
    silent = websocket.create_connection(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=5
    )
    try:
        opened = str(silent.recv())
        assert opened.startswith("0"), opened  # Engine.IO OPEN; then not a word from us
        closed_after = seconds_until_closed(silent, within=5)
        assert closed_after is not None and closed_after >= 0.9, closed_after
        assert phone.client.connected
        assert phone.call("bid.seen", {})["status"] == 422  # an answer: it is still served
    finally:
        silent.close()
        phone.disconnect()


def test_a_socket_that_leaves_its_namespace_is_closed_as_one_that_never_joined(
    server_with: Server,
) -> None:
    """A client that connects with its token and then leaves the namespace (a Socket.IO
    DISCONNECT packet) while keeping the Engine.IO socket open frees its SOCKETS_PER_USER
    slot. Such a socket must be closed as one that never joined, SOCKET_CONNECT_TIMEOUT after
    it left, or one account could hold as many of the process's socket slots as it likes,
    joining and leaving in turn."""
    server = server_with(SOCKET_CONNECT_TIMEOUT=1, SOCKETS_PER_USER=1)
    ana = ApiClient(server.url).register("Ana")
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    held: list[websocket.WebSocket] = []
    try:
        for _ in range(2):
            left = websocket.create_connection(url, timeout=5)
            held.append(left)
            assert str(left.recv()).startswith("0")  # Engine.IO OPEN
            left.send("40" + json.dumps({"token": ana.access_token}))
            joined = str(left.recv())
            assert joined.startswith("40{"), joined  # joined "/": the account's one socket
            time.sleep(1.5)  # past the connect deadline
            left.send("41")  # leaves "/", the Engine.IO socket stays open
            with server.app.app_context():
                wait_until(
                    lambda: members.open_sockets().count(ana.id) == 0, 5, "the slot given back"
                )
        for left in held:
            closed_after = seconds_until_closed(left, within=5)
            assert closed_after is not None, "a socket in no namespace is still open"
        phone = Phone(server.url, ana.access_token).connect()  # the slot is the phone's
        phone.disconnect()
    finally:
        for left in held:
            left.close()


def test_a_socket_that_stays_open_after_its_sign_out_is_closed(server_with: Server) -> None:
    """The server cuts a signed-out session's socket out of its namespace; a client that
    ignores that and keeps the Engine.IO socket open is closed SOCKET_CONNECT_TIMEOUT later."""
    server = server_with(SOCKET_CONNECT_TIMEOUT=1)
    client = ApiClient(server.url)
    ana = client.register("Ana")
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    kept = websocket.create_connection(url, timeout=5)
    try:
        assert str(kept.recv()).startswith("0")
        kept.send("40" + json.dumps({"token": ana.access_token}))
        assert str(kept.recv()).startswith("40{")
        time.sleep(1.5)  # past the connect deadline
        signed_out = client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token})
        assert signed_out.status_code == 204
        assert str(kept.recv()) == "41"  # the server's DISCONNECT; the client stays
        closed_after = seconds_until_closed(kept, within=5)
        assert closed_after is not None, "a signed-out socket in no namespace is still open"
    finally:
        kept.close()


def test_rest_bodies_over_the_limit_are_refused_with_413(server_with: Server) -> None:
    server = server_with(MAX_CONTENT_LENGTH=4096)
    client = ApiClient(server.url)
    ana, _ben = client.couple()
    body = json.dumps({"client_id": str(uuid.uuid4()), "kind": "share", "note": "x" * 5000})
    response = client.post(
        "/api/v1/bids", as_=ana, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "bad_request"
    assert client.get("/api/v1/bids", as_=ana).json()["items"] == []


def test_a_long_polling_post_over_the_limit_is_answered_at_once(server_with: Server) -> None:
    """The server closes the socket and answers 400; it does not hold the request (and its
    connection) waiting for a GET that would take the socket's last packets."""
    server = server_with(MAX_CONTENT_LENGTH=4096)
    ana = ApiClient(server.url).register("Ana")
    polling = f"{server.url}/socket.io/?EIO=4&transport=polling"
    http = requests.Session()
    opened = http.get(polling, timeout=5).text
    assert opened.startswith("0"), opened  # Engine.IO OPEN
    session = f"{polling}&sid={json.loads(opened[1:])['sid']}"
    joined = http.post(session, data="40" + json.dumps({"token": ana.access_token}), timeout=5)
    assert joined.status_code == 200, joined.text
    note = {"client_id": str(uuid.uuid4()), "kind": "share", "note": "x" * 5000}
    too_big = http.post(session, data="42" + json.dumps(["bid.send", note]), timeout=5)
    assert too_big.status_code == 400
    with server.app.app_context():
        assert members.open_sockets().count(ana.id) == 0
    assert http.get(session, timeout=5).status_code == 400  # the session is gone


def test_a_websocket_event_over_the_limit_is_acked_with_413(server_with: Server) -> None:
    """max_http_buffer_size follows MAX_CONTENT_LENGTH: a bigger event is answered, not run,
    and the socket stays (werkzeug's threads read it here; tests/realtime/test_transport.py
    covers gunicorn's event loop)."""
    server = server_with(MAX_CONTENT_LENGTH=4096)
    client = ApiClient(server.url)
    ana, _ben = client.couple()
    phone = Phone(server.url, ana.access_token).connect()
    try:
        big = {"client_id": str(uuid.uuid4()), "kind": "share", "note": "x" * 5000}
        refused = phone.call("bid.send", big)
        assert (refused["status"], refused["code"]) == (413, "bad_request"), refused
        assert "4096 bytes" in refused["detail"], refused
        small = phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "share"})
        assert small["status"] == "sent", small
        assert phone.client.connected
        with server.app.app_context():
            assert members.open_sockets().count(ana.id) == 1
    finally:
        phone.disconnect()
    assert len(client.get("/api/v1/bids", as_=ana).json()["items"]) == 1


def test_a_long_polling_message_over_the_limit_closes_the_connection(
    server_with: Server,
) -> None:
    """Over long-polling the POST that carries it is refused (400) and the session ends."""
    server = server_with(MAX_CONTENT_LENGTH=4096)
    client = ApiClient(server.url)
    ana, _ben = client.couple()
    phone = Phone(server.url, ana.access_token)
    phone.client.connect(
        server.url, auth={"token": ana.access_token}, transports=["polling"], wait_timeout=5
    )
    try:
        small = phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "share"})
        assert "id" in small, small
        phone.client.emit(
            "bid.send", {"client_id": str(uuid.uuid4()), "kind": "share", "note": "x" * 5000}
        )

        def open_for_ana() -> int:
            with server.app.app_context():
                return members.open_sockets().count(ana.id)

        # The server hangs up and forgets the socket (the client may notice only later).
        wait_until(lambda: open_for_ana() == 0, timeout=10, what="the server to hang up")
    finally:
        phone.disconnect()
    assert len(client.get("/api/v1/bids", as_=ana).json()["items"]) == 1


def test_exports_are_limited_per_account(server_with: Server) -> None:
    """An export reads and encodes everything an account ever wrote (about a second of the
    process's time for 20,000 bids): one token asking in a loop held the process without end."""
    server = server_with(RATELIMIT_EXPORT="2 per hour")
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")
    assert [client.get("/api/v1/me/export", as_=ana).status_code for _ in range(2)] == [200, 200]
    assert_limited(client.get("/api/v1/me/export", as_=ana))
    assert client.get("/api/v1/me/export", as_=ben).status_code == 200


def test_profile_changes_are_limited_per_account(server_with: Server) -> None:
    """Each new name or time zone is an event the couple's stream keeps for good and every
    phone of the partner receives: an app saving the profile in a loop filled both."""
    server = server_with(RATELIMIT_PROFILE="3 per hour")
    client = ApiClient(server.url)
    ana, ben = client.couple()
    names = [
        client.patch("/api/v1/me", as_=ana, json={"display_name": f"Ana {n}"}) for n in range(3)
    ]
    assert [answer.status_code for answer in names] == [200, 200, 200]
    assert_limited(client.patch("/api/v1/me", as_=ana, json={"display_name": "Ana 4"}))
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana 2"
    assert client.get("/api/v1/me", as_=ana).status_code == 200  # reading is not limited
    assert client.patch("/api/v1/me", as_=ben, json={"display_name": "Ben"}).status_code == 200


def change_password(client: ApiClient, who: Person, current: str, new: str) -> int:
    body = {"current_password": current, "new_password": new}
    return client.post("/api/v1/me/password", as_=who, json=body).status_code


def test_password_changes_are_limited_per_account_right_or_wrong(server_with: Server) -> None:
    """A stolen access token must not guess the current password without end, and each try
    costs an argon2 check (a right one, a second hash besides). A body refused before any
    check (a new password too short) is not counted."""
    server = server_with(RATELIMIT_PASSWORD="2 per hour")
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")
    assert change_password(client, ana, PASSWORD, "too short") == 422
    assert change_password(client, ana, "wrong password", "a new passphrase") == 422
    assert change_password(client, ana, PASSWORD, "a new passphrase") == 204
    limited = client.post(
        "/api/v1/me/password",
        as_=ana,
        json={"current_password": "a new passphrase", "new_password": "another passphrase"},
    )
    assert_limited(limited)
    assert change_password(client, ben, PASSWORD, "a new passphrase") == 204


def test_listing_and_ending_sessions_are_limited_per_account(server_with: Server) -> None:
    """Each list reads every live session of the account and its devices; each session ended
    locks the account. Signing out of every phone at once is not counted."""
    server = server_with(RATELIMIT_SESSIONS="2 per hour")
    client = ApiClient(server.url)
    ana, ben = client.register("Ana"), client.register("Ben")
    listed = client.get("/api/v1/me/sessions", as_=ana)
    assert listed.status_code == 200, listed.text
    assert client.get("/api/v1/me/sessions", as_=ana).status_code == 200
    assert_limited(client.get("/api/v1/me/sessions", as_=ana))
    (own,) = listed.json()["items"]
    for _ in range(2):
        missing = client.delete(f"/api/v1/me/sessions/{uuid.uuid4()}", as_=ana)
        assert missing.status_code == 404, missing.text
    assert_limited(client.delete(f"/api/v1/me/sessions/{own['id']}", as_=ana))
    assert client.get("/api/v1/me", as_=ana).status_code == 200  # not ended
    assert client.get("/api/v1/me/sessions", as_=ben).status_code == 200
    assert client.delete("/api/v1/me/sessions", as_=ana).status_code == 204


def test_wrong_current_passwords_sent_at_once_are_held_to_the_accounts_limit(
    server_with: Server,
) -> None:
    """Each change counts as it arrives: guesses in flight together cannot all be checked."""
    server = server_with(RATELIMIT_PASSWORD="3 per hour")
    client = ApiClient(server.url)
    ana = client.register("Ana")

    def guess(n: int) -> int:
        body = {"current_password": f"wrong password {n}", "new_password": "a new passphrase"}
        url = f"{server.url}/api/v1/me/password"
        return requests.post(url, json=body, headers=ana.headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(guess, range(8)))
    assert statuses == [422] * 3 + [429] * 5
    assert change_password(client, ana, PASSWORD, "a new passphrase") == 429
