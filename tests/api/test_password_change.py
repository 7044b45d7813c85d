"""A member changes their password (the other phones are signed out, this one goes on), sees
where the account is signed in, signs one phone out, and signs out of every phone at once."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
import socketio
from flask import Flask
from sqlalchemy import text, update

from service.clock import clock
from service.extensions import db
from service.models import AuthSession, Device, RefreshToken
from service.realtime import members
from service.services.accounts import password_change
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.paging import assert_each_page_reads_a_page, every_page
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

Connect = Callable[[str | None], Phone]
NEW = "a brand new passphrase"


def change(client: ApiClient, who: Person, current: str, new: str) -> requests.Response:
    body = {"current_password": current, "new_password": new}
    return client.post("/api/v1/me/password", as_=who, json=body)


def sign_in(client: ApiClient, email: str, password: str) -> requests.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def refresh(client: ApiClient, token: str) -> requests.Response:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def another_phone(client: ApiClient, who: Person) -> Person:
    """The same account signed in on another phone: a session of its own."""
    signed_in = sign_in(client, who.email, who.password)
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    return Person(
        who.email, who.password, body["user"], body["access_token"], body["refresh_token"]
    )


def register_device(client: ApiClient, who: Person, token: str) -> str:
    body = {"platform": "android", "push_token": token}
    response = client.post("/api/v1/devices", as_=who, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def device_states(client: ApiClient, who: Person) -> dict[str, tuple[bool, str | None]]:
    items = client.get("/api/v1/devices", as_=who).json()["items"]
    return {item["id"]: (item["active"], item["disabled_reason"]) for item in items}


def cut_off(phone: Phone, what: str) -> None:
    wait_until(lambda: not phone.client.connected, timeout=5, what=what)


def still_open(phone: Phone) -> None:
    """A round trip on the connection (an ack) proves the server still serves it."""
    answer = phone.call("bid.seen", {})
    assert answer["status"] == 422, answer


def refused(connect: Callable[[], Any]) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect()


def test_a_new_password_signs_out_the_other_phones_and_this_one_goes_on(
    client: ApiClient, phone: Connect
) -> None:
    ana = client.register("Ana")
    other = another_phone(client, ana)
    this_device = register_device(client, ana, f"ana-phone-{uuid.uuid4().hex}")
    other_device = register_device(client, other, f"ana-tablet-{uuid.uuid4().hex}")
    this_socket, other_socket = phone(ana.access_token), phone(other.access_token)

    changed = change(client, ana, PASSWORD, NEW)
    assert changed.status_code == 204, changed.text
    assert changed.content == b""

    # The other phone: its socket closes, its tokens stop working, its pushes stop.
    cut_off(other_socket, "the other phone's socket to close")
    ended = client.get("/api/v1/me", as_=other)
    assert ended.status_code == 401
    assert ended.json()["code"] == "unauthorized"
    assert refresh(client, other.refresh_token).status_code == 401
    refused(lambda: phone(other.access_token))
    # This phone: the same socket, access token and refresh token go on.
    still_open(this_socket)
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    rotated = refresh(client, ana.refresh_token)
    assert rotated.status_code == 200, rotated.text
    assert device_states(client, ana) == {
        this_device: (True, None),
        other_device: (False, "signed_out"),
    }
    # The old password signs in no more; the new one does.
    assert sign_in(client, ana.email, PASSWORD).status_code == 401
    assert sign_in(client, ana.email, NEW).status_code == 200


def test_a_wrong_current_password_is_a_422_naming_it_and_changes_nothing(
    client: ApiClient,
) -> None:
    """The caller is signed in: a 401 would send the app to refresh its tokens and retry (or
    to the sign-in screen), for a password the user mistyped."""
    ana = client.register("Ana")
    other = another_phone(client, ana)
    wrong = change(client, ana, "not the password at all", NEW)
    assert wrong.status_code == 422, wrong.text
    assert wrong.headers["Content-Type"] == "application/problem+json"
    problem = wrong.json()
    assert problem["code"] == "validation_error"
    assert list(problem["errors"]) == ["current_password"]
    assert client.get("/api/v1/me", as_=other).status_code == 200
    assert sign_in(client, ana.email, PASSWORD).status_code == 200
    assert sign_in(client, ana.email, NEW).status_code == 401


def test_a_change_retried_after_its_answer_was_lost_is_answered_again(
    client: ApiClient, phone: Connect
) -> None:
    """The phone sent its change and the answer never came (a tunnel, the app suspended): the
    change was made. Sent again as it was, it was told 422 "not the account's password", and
    the user thought the new password was not taken. The retry is answered 204 and changes
    nothing: the other phones stay signed out, one signed in since with the new password stays
    signed in."""
    ana = client.register("Ana")
    other = another_phone(client, ana)
    assert change(client, ana, PASSWORD, NEW).status_code == 204
    since = another_phone(client, Person(ana.email, NEW, ana.user, "", ""))
    since_socket = phone(since.access_token)

    retried = change(client, ana, PASSWORD, NEW)
    assert retried.status_code == 204, retried.text
    assert retried.content == b""
    assert client.get("/api/v1/me", as_=other).status_code == 401
    assert refresh(client, other.refresh_token).status_code == 401
    still_open(since_socket)
    assert client.get("/api/v1/me", as_=since).status_code == 200
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    assert sign_in(client, ana.email, NEW).status_code == 200
    assert sign_in(client, ana.email, PASSWORD).status_code == 401


def test_a_retried_change_closes_the_other_phones_sockets_the_first_left_open(
    server_with: Callable[..., LiveServer], phones: list[Phone], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first change committed, but its word to close the other phones' sockets was lost
    (Redis away drops it; the process stopped right after the commit), and so was its answer.
    The retry was answered 204, "every other phone signed out", and closed nothing: the other
    phone's socket went on receiving the couple's events until the next sweep of the sockets'
    sessions. The retry closes the sockets of the sessions that change ended."""
    server = server_with(SOCKET_RECHECK_SECONDS=3600)  # no sweep closes them meanwhile
    client = ApiClient(server.url)
    ana = client.register("Ana")
    other = another_phone(client, ana)
    phones.extend(Phone(server.url, who.access_token) for who in (ana, other))
    this_socket, other_socket = (device.connect() for device in phones)

    with monkeypatch.context() as lost:
        lost.setattr(members, "disconnect_session", lambda session_id: None)
        assert change(client, ana, PASSWORD, NEW).status_code == 204
    # Its session has ended, its socket is still served.
    assert other_socket.call("bid.seen", {})["status"] == 401
    assert client.get("/api/v1/me", as_=other).status_code == 401

    retried = change(client, ana, PASSWORD, NEW)
    assert retried.status_code == 204, retried.text
    cut_off(other_socket, "the other phone's socket to close on the retry")
    still_open(this_socket)
    client.http.close()


def test_only_the_same_change_by_the_same_phone_soon_after_counts_as_its_retry(
    client: ApiClient,
) -> None:
    """Any other mismatch stays a 422: another new password, another phone sending the same
    change, or the same change sent again minutes later."""
    ana = client.register("Ana")
    assert change(client, ana, PASSWORD, NEW).status_code == 204
    since = another_phone(client, Person(ana.email, NEW, ana.user, "", ""))
    for who, new in ((ana, "yet another passphrase"), (since, NEW)):
        wrong = change(client, who, PASSWORD, new)
        assert wrong.status_code == 422, wrong.text
        assert list(wrong.json()["errors"]) == ["current_password"]
    clock.freeze(clock.now())
    clock.advance(password_change.RETRY_WINDOW + timedelta(seconds=1))
    rotated = refresh(client, ana.refresh_token)  # the same session, its token fresh
    assert rotated.status_code == 200, rotated.text
    ana.access_token = rotated.json()["access_token"]
    late = change(client, ana, PASSWORD, NEW)
    assert late.status_code == 422, late.text
    assert sign_in(client, ana.email, NEW).status_code == 200


def test_the_new_password_follows_the_sign_up_rules(client: ApiClient) -> None:
    """10-256 characters once normalised (NFKC), as at sign-up; both fields are required."""
    ana = client.register("Ana")
    short = unicodedata.normalize("NFD", "\u00e9" * 9)  # 18 code points, 9 characters
    too_long = "\ufb03" * 90  # 90 ligatures: 270 letters once normalised
    for new in (short, too_long, ""):
        refused = change(client, ana, PASSWORD, new)
        assert refused.status_code == 422, (new, refused.text)
        assert list(refused.json()["errors"]) == ["new_password"], refused.text
    missing = client.post("/api/v1/me/password", as_=ana, json={"new_password": NEW})
    assert missing.status_code == 422
    assert list(missing.json()["errors"]) == ["current_password"]
    extra = {"current_password": PASSWORD, "new_password": NEW, "email": "x@example.test"}
    assert client.post("/api/v1/me/password", as_=ana, json=extra).status_code == 422
    assert sign_in(client, ana.email, PASSWORD).status_code == 200
    # 200 accented letters typed decomposed are 400 code points but 200 characters: taken.
    assert change(client, ana, PASSWORD, unicodedata.normalize("NFD", "\u00e9" * 200)).ok


def test_passwords_are_compared_however_their_accents_were_typed(client: ApiClient) -> None:
    """Both passwords are read in NFKC form, as at sign-up and sign-in."""
    composed = "cr\u00e8me br\u00fbl\u00e9e \u00e0 deux"
    decomposed = unicodedata.normalize("NFD", composed)
    ana = client.register("Ana")
    assert change(client, ana, PASSWORD, decomposed).status_code == 204
    assert sign_in(client, ana.email, composed).status_code == 200
    assert change(client, ana, composed, "pin \uff11\uff12\uff13\uff14 and more").status_code == 204
    assert sign_in(client, ana.email, "pin 1234 and more").status_code == 200


def test_changing_the_password_needs_a_live_session(client: ApiClient) -> None:
    ana = client.register("Ana")
    body = {"current_password": PASSWORD, "new_password": NEW}
    anonymous = client.post("/api/v1/me/password", json=body)
    assert anonymous.status_code == 401
    assert client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token}).ok
    signed_out = change(client, ana, PASSWORD, NEW)
    assert signed_out.status_code == 401
    assert signed_out.json()["code"] == "unauthorized"
    assert sign_in(client, ana.email, PASSWORD).status_code == 200


def test_a_device_of_no_known_session_is_switched_off_by_a_change(
    app: Flask, client: ApiClient
) -> None:
    """A push token registered before devices named their session (migration 0012) may be a
    phone that is now signed out: it gets no more pushes until it registers again."""
    ana = client.register("Ana")
    token = f"ana-old-{uuid.uuid4().hex}"
    old = register_device(client, ana, token)
    with app.app_context():
        db.session.execute(
            update(Device).where(Device.id == uuid.UUID(old)).values(session_id=None)
        )
        db.session.commit()
    assert change(client, ana, PASSWORD, NEW).status_code == 204
    assert device_states(client, ana) == {old: (False, "signed_out")}
    assert register_device(client, ana, token) == old
    assert device_states(client, ana) == {old: (True, None)}


def test_signing_out_everywhere_ends_every_session_this_one_included(
    client: ApiClient, phone: Connect
) -> None:
    ana, ben = client.couple()
    other = another_phone(client, ana)
    devices = [
        register_device(client, ana, f"ana-phone-{uuid.uuid4().hex}"),
        register_device(client, other, f"ana-tablet-{uuid.uuid4().hex}"),
    ]
    sockets = [phone(ana.access_token), phone(other.access_token)]
    ben_socket = phone(ben.access_token)

    out = client.delete("/api/v1/me/sessions", as_=ana)
    assert out.status_code == 204, out.text
    for n, socket in enumerate(sockets):
        cut_off(socket, f"socket {n} of the account to close")
    for who in (ana, other):
        assert client.get("/api/v1/me", as_=who).status_code == 401
        assert refresh(client, who.refresh_token).status_code == 401
        refused(lambda who=who: phone(who.access_token))
    still_open(ben_socket)
    assert client.get("/api/v1/me", as_=ben).status_code == 200
    # Signing in again starts afresh; the devices turn on as each phone registers again.
    back = another_phone(client, ana)
    assert device_states(client, back) == dict.fromkeys(devices, (False, "signed_out"))
    assert client.delete("/api/v1/me/sessions", as_=back).status_code == 204


def test_signing_out_everywhere_retried_after_its_answer_was_lost_is_answered_done(
    client: ApiClient, phone: Connect
) -> None:
    """The phone asked to sign out of every phone and the answer never came (a tunnel, the app
    suspended): it was done. Sent again with the same token, it was told 401, which the app
    reads as "this session is over" (for any reason: a password changed elsewhere, an operator)
    and cannot tell the user whether every phone was signed out. The retry is answered 204 and
    ends nothing more: a phone signed in since stays signed in, its socket open."""
    ana = client.register("Ana")
    other = another_phone(client, ana)
    assert client.delete("/api/v1/me/sessions", as_=ana).status_code == 204
    since = another_phone(client, ana)
    since_socket = phone(since.access_token)

    retried = client.delete("/api/v1/me/sessions", as_=ana)
    assert retried.status_code == 204, retried.text
    assert retried.content == b""
    for who in (ana, other):
        assert client.get("/api/v1/me", as_=who).status_code == 401
        assert refresh(client, who.refresh_token).status_code == 401
    still_open(since_socket)
    assert client.get("/api/v1/me", as_=since).status_code == 200
    assert refresh(client, since.refresh_token).status_code == 200


def test_signing_out_everywhere_with_a_session_ended_otherwise_is_refused(
    client: ApiClient,
) -> None:
    """Only the session that sign-out ended is answered as done: one signed out on its own, or
    ended by a password change on another phone, gets 401, and nothing more ends."""
    ana = client.register("Ana")
    signed_out, changed_away = another_phone(client, ana), another_phone(client, ana)
    assert client.post("/api/v1/auth/logout", json={"refresh_token": signed_out.refresh_token}).ok
    assert change(client, ana, PASSWORD, NEW).status_code == 204
    for who in (signed_out, changed_away):
        refused_call = client.delete("/api/v1/me/sessions", as_=who)
        assert refused_call.status_code == 401, refused_call.text
        assert refused_call.json()["code"] == "unauthorized"
    assert client.get("/api/v1/me", as_=ana).status_code == 200


def test_a_retried_sign_out_everywhere_closes_the_sockets_the_first_left_open(
    server_with: Callable[..., LiveServer], phones: list[Phone], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first sign-out committed, but its word to close the account's sockets was lost
    (Redis away; the process stopped right after the commit), and so was its answer. The retry
    closes the sockets of the sessions that sign-out ended, and of no session signed in since."""
    server = server_with(SOCKET_RECHECK_SECONDS=3600)  # no sweep closes them meanwhile
    client = ApiClient(server.url)
    ana = client.register("Ana")
    other = another_phone(client, ana)
    phones.extend(Phone(server.url, who.access_token) for who in (ana, other))
    this_socket, other_socket = (device.connect() for device in phones)

    with monkeypatch.context() as lost:
        lost.setattr(members, "disconnect_user", lambda user_id: None)
        assert client.delete("/api/v1/me/sessions", as_=ana).status_code == 204
    since = another_phone(client, ana)
    phones.append(Phone(server.url, since.access_token))
    since_socket = phones[-1].connect()
    assert other_socket.call("bid.seen", {})["status"] == 401  # ended, still served

    retried = client.delete("/api/v1/me/sessions", as_=ana)
    assert retried.status_code == 204, retried.text
    cut_off(this_socket, "this phone's socket to close on the retry")
    cut_off(other_socket, "the other phone's socket to close on the retry")
    still_open(since_socket)
    client.http.close()


def sessions(client: ApiClient, who: Person, **params: Any) -> requests.Response:
    return client.get("/api/v1/me/sessions", as_=who, params=params)


def own_session(client: ApiClient, who: Person) -> str:
    """The id of the caller's own session, as the list marks it."""
    listed = sessions(client, who)
    assert listed.status_code == 200, listed.text
    (current,) = [item for item in listed.json()["items"] if item["current"]]
    return str(current["id"])


def end(client: ApiClient, who: Person, session_id: str) -> requests.Response:
    return client.delete(f"/api/v1/me/sessions/{session_id}", as_=who)


def test_a_member_sees_where_the_account_is_signed_in(client: ApiClient) -> None:
    """Each live session of the account, newest first, the caller's marked, with the device
    it registered last; never another account's, nor one that has ended."""
    ana, ben = client.couple()
    tablet = another_phone(client, ana)
    body = {"platform": "ios", "push_token": f"ana-tablet-{uuid.uuid4().hex}", "app_version": "2.1"}
    assert client.post("/api/v1/devices", as_=tablet, json=body).status_code == 201
    laptop = another_phone(client, ana)
    assert refresh(client, laptop.refresh_token).status_code == 200
    gone = another_phone(client, ana)
    assert client.post("/api/v1/auth/logout", json={"refresh_token": gone.refresh_token}).ok

    listed = sessions(client, tablet)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["next"] is None
    items = page["items"]
    assert [item["id"] for item in items] == [
        own_session(client, laptop),
        own_session(client, tablet),
        own_session(client, ana),
    ]
    assert [item["current"] for item in items] == [False, True, False]
    assert set(items[0]) == {"id", "created_at", "last_refreshed_at", "current", "device"}
    laptop_item, tablet_item, ana_item = items
    assert laptop_item["last_refreshed_at"] is not None
    assert laptop_item["last_refreshed_at"] >= laptop_item["created_at"]
    assert tablet_item["last_refreshed_at"] is None
    assert tablet_item["device"] == {"platform": "ios", "app_version": "2.1"}
    assert ana_item["device"] is None and laptop_item["device"] is None
    assert own_session(client, ben) not in {item["id"] for item in items}
    # A page at a time, as every list.
    first = sessions(client, ana, limit=2).json()
    assert [item["id"] for item in first["items"]] == [item["id"] for item in items[:2]]
    rest = sessions(client, ana, limit=2, before=first["next"]).json()
    assert [item["id"] for item in rest["items"]] == [items[2]["id"]]
    assert rest["next"] is None


def test_ending_one_session_signs_that_phone_out_and_no_other(
    client: ApiClient, phone: Connect
) -> None:
    ana, ben = client.couple()
    other = another_phone(client, ana)
    this_device = register_device(client, ana, f"ana-phone-{uuid.uuid4().hex}")
    other_device = register_device(client, other, f"ana-tablet-{uuid.uuid4().hex}")
    this_socket, other_socket = phone(ana.access_token), phone(other.access_token)
    ben_socket = phone(ben.access_token)

    ended = end(client, ana, own_session(client, other))
    assert ended.status_code == 204, ended.text
    assert ended.content == b""
    # That phone: its socket closes, its tokens stop working, its pushes stop.
    cut_off(other_socket, "the ended session's socket to close")
    assert client.get("/api/v1/me", as_=other).status_code == 401
    assert refresh(client, other.refresh_token).status_code == 401
    refused(lambda: phone(other.access_token))
    # This phone and the partner's go on.
    still_open(this_socket)
    still_open(ben_socket)
    assert [item["id"] for item in sessions(client, ana).json()["items"]] == [
        own_session(client, ana)
    ]
    assert refresh(client, ana.refresh_token).status_code == 200
    assert device_states(client, ana) == {
        this_device: (True, None),
        other_device: (False, "signed_out"),
    }


def test_a_session_not_the_callers_or_ended_is_not_found(client: ApiClient) -> None:
    """Another account's session (the partner's too) is a 404, and goes on; so is one that
    has ended, or an id of no session."""
    ana, ben = client.couple()
    bens = own_session(client, ben)
    gone = another_phone(client, ana)
    gone_id = own_session(client, gone)
    assert client.post("/api/v1/auth/logout", json={"refresh_token": gone.refresh_token}).ok
    for session_id in (bens, gone_id, str(uuid.uuid4())):
        missing = end(client, ana, session_id)
        assert missing.status_code == 404, missing.text
        assert missing.headers["Content-Type"] == "application/problem+json"
        assert missing.json()["code"] == "not_found"
    assert client.get("/api/v1/me", as_=ben).status_code == 200
    assert refresh(client, ben.refresh_token).status_code == 200
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    assert end(client, ana, "not-a-session").status_code == 404


def test_ending_the_callers_own_session_signs_it_out(client: ApiClient, phone: Connect) -> None:
    ana = client.register("Ana")
    other = another_phone(client, ana)
    socket = phone(ana.access_token)
    assert end(client, ana, own_session(client, ana)).status_code == 204
    cut_off(socket, "the caller's own socket to close")
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    assert refresh(client, ana.refresh_token).status_code == 401
    assert client.get("/api/v1/me", as_=other).status_code == 200
    assert sessions(client, ana).status_code == 401


def test_a_session_whose_refresh_tokens_ran_out_is_listed_and_ended_while_its_access_works(
    app: Flask, client: ApiClient, phone: Connect
) -> None:
    """A stolen phone's refresh tokens have all expired, but the access token it got last still
    works for a few minutes: it was neither listed nor endable (404), so the member who saw it
    signed in could not sign it out. It is listed, and ending it signs it out at once."""
    ana = client.register("Ana")
    stolen = another_phone(client, ana)
    stolen_id = own_session(client, stolen)
    stolen_device = register_device(client, stolen, f"ana-stolen-{uuid.uuid4().hex}")
    stolen_socket = phone(stolen.access_token)
    with app.app_context():
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id == uuid.UUID(stolen_id))
            .values(expires_at=clock.now() - timedelta(seconds=1))
        )
        db.session.commit()
    assert client.get("/api/v1/me", as_=stolen).status_code == 200

    listed = [item["id"] for item in sessions(client, ana).json()["items"]]
    assert stolen_id in listed, listed
    ended = end(client, ana, stolen_id)
    assert ended.status_code == 204, ended.text
    cut_off(stolen_socket, "the ended session's socket to close")
    assert client.get("/api/v1/me", as_=stolen).status_code == 401
    refused(lambda: phone(stolen.access_token))
    assert device_states(client, ana)[stolen_device] == (False, "signed_out")
    assert [item["id"] for item in sessions(client, ana).json()["items"]] == [
        own_session(client, ana)
    ]


def test_sessions_signed_in_at_one_moment_page_each_once(client: ApiClient, app: Flask) -> None:
    """Sessions with one `created_at`: the pages show every one once, in the order of their
    ids, wherever a page ends among them."""
    ana, _ = client.couple()
    phones = [ana] + [another_phone(client, ana) for _ in range(6)]
    with app.app_context(), db.scope() as session:
        moment = clock.now().replace(microsecond=0)
        mine = AuthSession.user_id == uuid.UUID(ana.id)
        session.execute(update(AuthSession).where(mine).values(created_at=moment))
    pages = lambda page: sessions(client, ana, **page)  # noqa: E731
    shown, _ = every_page(app, pages, lambda _: False, {"limit": 2}, most_pages=len(phones))
    everyone = {own_session(client, phone) for phone in phones}
    assert shown == sorted(everyone, key=uuid.UUID, reverse=True)


_SIGNED_IN_OVER_A_MONTH = (
    "INSERT INTO auth_sessions (id, user_id, created_at) SELECT gen_random_uuid(), :user, "
    "now() - (1 + i / 3) * interval '10 minutes' FROM generate_series(1, :n) AS i"
)
_THEIR_TOKENS = (
    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) "
    "SELECT encode(sha256(CAST(CAST(s.id AS text) AS bytea)), 'hex'), s.id, s.created_at, "
    "now() + interval '29 days' FROM auth_sessions AS s WHERE s.user_id = :user "
    "AND NOT EXISTS (SELECT 1 FROM refresh_tokens AS t WHERE t.session_id = s.id)"
)


@pytest.mark.postgres
def test_a_deep_page_of_sessions_reads_that_page_not_every_newer_one(
    client: ApiClient, app: Flask
) -> None:
    """An account signed in thousands of times this month, three sign-ins at a time at one
    moment: paging back through them all shows each session once, newest first, and each
    page reads its own sessions, not the thousands of newer ones it comes after, nor every
    older one (nor another account's)."""
    ana, ben = client.couple()
    history, limit = 3000, 200
    with app.app_context(), db.scope() as session:
        for user in (ana, ben):
            session.execute(text(_SIGNED_IN_OVER_A_MONTH), {"user": user.id, "n": history})
            session.execute(text(_THEIR_TOKENS), {"user": user.id})
        newest_first = (
            "SELECT id FROM auth_sessions WHERE user_id = :u ORDER BY created_at DESC, id DESC"
        )
        expected = [str(row) for row in session.scalars(text(newest_first), {"u": ana.id})]
    shown, reads = every_page(
        app,
        lambda page: sessions(client, ana, **page),
        lambda statement: "ORDER BY auth_sessions.created_at DESC" in statement,
        {"limit": limit},
    )
    assert shown == expected and len(expected) == history + 1
    assert len(reads) == history // limit + 1, reads
    with app.app_context(), db.scope() as session:
        session.connection().exec_driver_sql("ANALYZE auth_sessions")
        session.connection().exec_driver_sql("ANALYZE refresh_tokens")
    assert_each_page_reads_a_page(app, reads, "auth_sessions", history + 1, limit, "sessions")
